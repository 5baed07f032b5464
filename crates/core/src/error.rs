//! One error enum for the gateway: HTTP status, client-facing message, a metric label, and
//! the two body formats (the gateway's own and OpenAI's).
//!
//! It owns what a client is told about a failure and what is kept back: internal details
//! ([`GatewayError::Internal`]) never reach a client; the shell logs them once, where the
//! error response is built, through [`GatewayError::log_detail`] with every secret
//! scrubbed. It must not build HTTP responses or log anything itself.

use serde_json::{json, Value};

/// Everything that can make a request fail, with what the client and the metrics see.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    /// The request body or a field in it is invalid.
    BadRequest(String),
    /// A named parameter of an OpenAI-style request is invalid.
    InvalidParam { param: String, message: String },
    /// The requested model is neither `auto`, a tier, nor a model a tier serves.
    UnknownModel {
        model: String,
        available: Vec<String>,
    },
    /// The query is larger than MAX_QUERY_BYTES (or the body larger than its bound).
    PayloadTooLarge { limit: usize, actual: usize },
    /// No route for this path.
    NotFound { path: String },
    /// The path exists but not for this method.
    MethodNotAllowed {
        method: String,
        allowed: &'static str,
    },
    /// LLM_MUX_API_KEYS is set and the request has no valid bearer token.
    Unauthorized,
    /// The API key of the chosen tier's backend (e.g. MISTRAL_API_KEY) is not configured.
    UpstreamKeyMissing { variable: String },
    /// A configuration variable holds an invalid value.
    InvalidConfig {
        variable: &'static str,
        message: String,
    },
    /// The upstream answered with an error status or an unusable body.
    Upstream {
        status: Option<u16>,
        message: String,
        retry_after: Option<String>,
    },
    /// The upstream did not answer within UPSTREAM_TIMEOUT_MS.
    UpstreamTimeout { timeout_ms: u64 },
    /// A bug or runtime failure; the detail is logged, never sent.
    Internal(String),
    /// `GET /v1/models/{id}` of a model the gateway does not serve.
    ModelNotFound { model: String },
}

impl GatewayError {
    /// HTTP status code returned to the client.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::InvalidParam { .. } | Self::UnknownModel { .. } => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Unauthorized => 401,
            Self::UpstreamKeyMissing { .. } => 503,
            Self::InvalidConfig { .. } | Self::Internal(_) => 500,
            Self::Upstream { .. } => 502,
            Self::UpstreamTimeout { .. } => 504,
            Self::ModelNotFound { .. } => 404,
        }
    }

    /// The `error.type` field of the body.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::InvalidParam { .. } | Self::UnknownModel { .. } => {
                "invalid_request_error"
            }
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized => "authentication_error",
            Self::UpstreamKeyMissing { .. } => "upstream_not_configured",
            Self::InvalidConfig { .. } => "configuration_error",
            Self::Upstream { .. } => "upstream_error",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::Internal(_) => "internal_error",
            Self::ModelNotFound { .. } => "invalid_request_error",
        }
    }

    /// Low-cardinality label under which /metrics counts this failure.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::InvalidParam { .. } => "bad_request",
            Self::UnknownModel { .. } => "unknown_model",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::UpstreamKeyMissing { .. } => "upstream_not_configured",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Upstream { .. } => "upstream_error",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::Internal(_) => "internal_error",
            Self::ModelNotFound { .. } => "model_not_found",
        }
    }

    /// The message the client sees. Internal details never leave the worker.
    pub fn client_message(&self) -> String {
        match self {
            Self::BadRequest(message) | Self::InvalidParam { message, .. } => message.clone(),
            Self::UnknownModel { model, available } => format!(
                "the model '{model}' is not served by this gateway; use one of: {}",
                available.join(", ")
            ),
            Self::PayloadTooLarge { limit, actual } => format!(
                "query is {actual} bytes, over the limit of {limit} bytes (MAX_QUERY_BYTES)"
            ),
            Self::NotFound { path } => format!(
                "no route for {path}; available: POST /query, GET /metrics, POST /v1/chat/completions, GET /v1/models"
            ),
            Self::MethodNotAllowed { method, allowed } => {
                format!("method {method} is not allowed here; use {allowed}")
            }
            Self::Unauthorized => String::from(
                "missing or invalid API key: send 'Authorization: Bearer <key>' with one of the keys in LLM_MUX_API_KEYS",
            ),
            Self::UpstreamKeyMissing { variable } => format!(
                "{variable} is not configured: run 'npx wrangler secret put {variable}' (deployed) or add it to .dev.vars (local)"
            ),
            Self::InvalidConfig { variable, message } => {
                format!("invalid configuration: {variable}: {message}")
            }
            Self::Upstream { status, message, .. } => match status {
                Some(code) => format!("upstream returned HTTP {code}: {message}"),
                None => format!("upstream request failed: {message}"),
            },
            Self::UpstreamTimeout { timeout_ms } => format!(
                "upstream did not answer within {timeout_ms} ms (UPSTREAM_TIMEOUT_MS)"
            ),
            Self::Internal(_) => String::from("internal error"),
            Self::ModelNotFound { model } => {
                format!("The model '{model}' does not exist or is not served by this gateway")
            }
        }
    }

    /// What the log says about this error (500 and 502 answers): the client message plus
    /// the detail a client never sees, with each of `secrets` replaced by `*****`.
    pub fn log_detail(&self, secrets: &[&str]) -> String {
        let mut detail = match self {
            Self::Internal(detail) => format!("internal error: {detail}"),
            other => other.client_message(),
        };
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            detail = detail.replace(secret, "*****");
        }
        detail
    }

    /// The JSON body `{"error": {"type", "message", ...}}`.
    pub fn to_body(&self) -> Value {
        let mut error = json!({
            "type": self.error_type(),
            "message": self.client_message(),
        });
        match self {
            Self::Upstream { status, .. } => {
                error["upstream_status"] = json!(status);
            }
            Self::InvalidConfig { variable, .. } => {
                error["variable"] = json!(variable);
            }
            Self::PayloadTooLarge { limit, .. } => {
                error["limit_bytes"] = json!(limit);
            }
            _ => {}
        }
        json!({ "error": error })
    }
}

/// The OpenAI error body `{"error": {"message", "type", "param", "code"}}` for an error.
pub fn openai_error_body(error: &GatewayError) -> Value {
    let (kind, param, code) = match error {
        GatewayError::BadRequest(_) => ("invalid_request_error", Value::Null, Value::Null),
        GatewayError::InvalidParam { param, .. } => {
            ("invalid_request_error", json!(param), Value::Null)
        }
        GatewayError::UnknownModel { .. } => (
            "invalid_request_error",
            json!("model"),
            json!("model_not_found"),
        ),
        GatewayError::PayloadTooLarge { .. } => (
            "invalid_request_error",
            Value::Null,
            json!("request_too_large"),
        ),
        GatewayError::NotFound { .. } => ("invalid_request_error", Value::Null, json!("not_found")),
        GatewayError::MethodNotAllowed { .. } => (
            "invalid_request_error",
            Value::Null,
            json!("method_not_allowed"),
        ),
        GatewayError::Unauthorized => (
            "invalid_request_error",
            Value::Null,
            json!("invalid_api_key"),
        ),
        GatewayError::UpstreamKeyMissing { .. } | GatewayError::InvalidConfig { .. } => {
            ("server_error", Value::Null, json!(error.metric_label()))
        }
        GatewayError::Upstream { status, .. } => (
            "upstream_error",
            Value::Null,
            status.map(|s| json!(s.to_string())).unwrap_or(Value::Null),
        ),
        GatewayError::UpstreamTimeout { .. } => ("timeout", Value::Null, json!("upstream_timeout")),
        GatewayError::Internal(_) => ("server_error", Value::Null, Value::Null),
        GatewayError::ModelNotFound { .. } => (
            "invalid_request_error",
            json!("model"),
            json!("model_not_found"),
        ),
    };
    json!({
        "error": {
            "message": error.client_message(),
            "type": kind,
            "param": param,
            "code": code,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_contract() {
        let cases = [
            (GatewayError::BadRequest("x".into()), 400),
            (
                GatewayError::PayloadTooLarge {
                    limit: 1,
                    actual: 2,
                },
                413,
            ),
            (GatewayError::NotFound { path: "/x".into() }, 404),
            (
                GatewayError::MethodNotAllowed {
                    method: "GET".into(),
                    allowed: "POST",
                },
                405,
            ),
            (GatewayError::Unauthorized, 401),
            (
                GatewayError::UpstreamKeyMissing {
                    variable: "MISTRAL_API_KEY".into(),
                },
                503,
            ),
            (
                GatewayError::Upstream {
                    status: Some(500),
                    message: "boom".into(),
                    retry_after: None,
                },
                502,
            ),
            (GatewayError::UpstreamTimeout { timeout_ms: 5 }, 504),
            (GatewayError::Internal("secret detail".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            let body = error.to_body();
            assert_eq!(body["error"]["type"], error.error_type());
            assert!(body["error"]["message"].is_string());
        }
    }

    #[test]
    fn internal_details_are_not_sent() {
        let body = GatewayError::Internal("stack trace with key sk-123".into()).to_body();
        assert_eq!(body["error"]["message"], "internal error");
    }

    #[test]
    fn upstream_status_is_kept_in_the_body() {
        let body = GatewayError::Upstream {
            status: Some(429),
            message: "rate limited".into(),
            retry_after: Some("2".into()),
        }
        .to_body();
        assert_eq!(body["error"]["upstream_status"], 429);
        assert!(body["error"]["message"].as_str().unwrap().contains("429"));
    }

    #[test]
    fn missing_key_message_says_how_to_set_it() {
        let msg = GatewayError::UpstreamKeyMissing {
            variable: "MISTRAL_API_KEY".into(),
        }
        .client_message();
        assert!(msg.contains("MISTRAL_API_KEY") && msg.contains("wrangler secret put"));
    }
    #[test]
    fn openai_error_body_shape() {
        let body = openai_error_body(&GatewayError::UnknownModel {
            model: "gpt-9".into(),
            available: vec!["auto".into()],
        });
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["code"], "model_not_found");
        assert!(body["error"]["message"].as_str().unwrap().contains("gpt-9"));
        let body = openai_error_body(&GatewayError::Unauthorized);
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }

    #[test]
    fn log_detail_keeps_the_internal_detail_and_scrubs_secrets() {
        let e = GatewayError::Internal("fetch failed with key sk-live-9 and tok-2".into());
        let line = e.log_detail(&["sk-live-9", "", "tok-2"]);
        assert_eq!(
            line,
            "internal error: fetch failed with key ***** and *****"
        );
        let upstream = GatewayError::Upstream {
            status: Some(502),
            message: "bad gateway from sk-live-9".into(),
            retry_after: None,
        };
        assert_eq!(
            upstream.log_detail(&["sk-live-9"]),
            "upstream returned HTTP 502: bad gateway from *****"
        );
    }
}

//! One error enum for the gateway: HTTP status, client-facing message and a metric label.

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
        }
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
}

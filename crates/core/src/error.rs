//! One error enum for the gateway: HTTP status, client-facing message, a metric label, and
//! the two body formats (the gateway's own and OpenAI's).
//!
//! It owns what a client is told about a failure and what is kept back: internal details
//! ([`GatewayError::Internal`]) never reach a client; the shell logs them once, where the
//! error response is built, through [`GatewayError::log_detail`] with every secret
//! scrubbed. It must not build HTTP responses or log anything itself.

use serde_json::Value;

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
    /// The request body is larger than MAX_BODY_BYTES, or the query than MAX_QUERY_BYTES
    /// (`variable` names which); `actual` is unknown when a body without a length was cut
    /// off while being read.
    PayloadTooLarge {
        variable: &'static str,
        limit: usize,
        actual: Option<usize>,
    },
    /// No route for this path.
    NotFound { path: String },
    /// The path exists but not for this method.
    MethodNotAllowed {
        method: String,
        allowed: &'static str,
    },
    /// LLM_MUX_API_KEYS is set and the request has no valid bearer token.
    Unauthorized,
    /// An admin action (`DELETE /metrics`) without LLM_MUX_ADMIN_KEY configured, or
    /// with another token.
    Forbidden(String),
    /// The API key of the chosen tier's backend (e.g. MISTRAL_API_KEY) is not configured.
    UpstreamKeyMissing { variable: String },
    /// A configuration variable holds an invalid value.
    InvalidConfig {
        variable: &'static str,
        message: String,
    },
    /// The upstream answered with an error status (`status`), or with a 2xx body that is
    /// not a usable answer (`status: None`). The client's status follows the upstream's
    /// ([`GatewayError::status`]): 429 stays 429, a refused request (400, 422) is the
    /// client's 400, a refused gateway key (401, 403) and server errors are 502.
    Upstream {
        status: Option<u16>,
        message: String,
        retry_after: Option<String>,
    },
    /// The upstream could not be reached (DNS, refused or lost connection); `cause` is
    /// the gateway's wording, never the runtime's message with host names.
    UpstreamUnreachable { cause: String },
    /// The upstream's answer grew past MAX_UPSTREAM_RESPONSE_BYTES while being read.
    UpstreamTooLarge { limit: usize },
    /// A 2xx answer's body broke off (or stalled past the deadline) after
    /// `received_bytes`: the upstream has likely billed it, so it is neither retried nor
    /// sent to another tier.
    UpstreamBroken {
        received_bytes: usize,
        timed_out: bool,
    },
    /// The upstream did not answer within UPSTREAM_TIMEOUT_MS.
    UpstreamTimeout { timeout_ms: u64 },
    /// A stream failed after it began (cut, stalled, too long or too large): sent as the
    /// stream's last event, never as a status. `reason` is the metric label.
    StreamFailed {
        reason: &'static str,
        message: String,
    },
    /// A bug or runtime failure; the detail is logged, never sent.
    Internal(String),
    /// `GET /v1/models/{id}` of a model the gateway does not serve.
    ModelNotFound { model: String },
    /// Over a rate limit or a spend budget (KEY_POLICIES, GLOBAL_*): refused before the
    /// upstream call. `reason` is the metric label (`rate_limited`, `budget_exceeded`),
    /// `retry_after` the seconds until a retry can pass, `key_id` the key's id.
    OverLimit {
        reason: &'static str,
        message: String,
        retry_after: u64,
        key_id: Option<String>,
    },
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
            Self::Forbidden(_) => 403,
            Self::UpstreamKeyMissing { .. } => 503,
            Self::InvalidConfig { .. } | Self::Internal(_) => 500,
            Self::Upstream { status, .. } => match status {
                Some(429) => 429,
                Some(400 | 422) => 400,
                _ => 502,
            },
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamTooLarge { .. }
            | Self::UpstreamBroken {
                timed_out: false, ..
            }
            | Self::StreamFailed { .. } => 502,
            Self::UpstreamTimeout { .. }
            | Self::UpstreamBroken {
                timed_out: true, ..
            } => 504,
            Self::ModelNotFound { .. } => 404,
            Self::OverLimit { .. } => 429,
        }
    }

    /// Whether the failure came from the upstream (or the way to it): the gateway has
    /// made its own retries and fallbacks already, so clients are told not to add theirs
    /// (`x-should-retry: false`, honoured by the OpenAI SDKs).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            Self::Upstream { .. }
                | Self::UpstreamUnreachable { .. }
                | Self::UpstreamTooLarge { .. }
                | Self::UpstreamBroken { .. }
                | Self::UpstreamTimeout { .. }
                | Self::StreamFailed { .. }
        )
    }

    /// The `Retry-After` value sent with this error: an upstream 429's own (or one second
    /// when it gave none), or the wait until a limit or budget lets a request pass.
    pub fn retry_after(&self) -> Option<String> {
        match self {
            Self::Upstream {
                status: Some(429),
                retry_after,
                ..
            } => Some(retry_after.clone().unwrap_or_else(|| String::from("1"))),
            Self::OverLimit { retry_after, .. } => Some(retry_after.to_string()),
            _ => None,
        }
    }

    /// The id of the client key a refusal concerns.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Self::OverLimit { key_id, .. } => key_id.as_deref(),
            _ => None,
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
            Self::Forbidden(_) => "permission_error",
            Self::UpstreamKeyMissing { .. } => "upstream_not_configured",
            Self::InvalidConfig { .. } => "configuration_error",
            Self::Upstream { status, .. } => match status {
                Some(429) => "rate_limit_error",
                Some(400 | 422) => "invalid_request_error",
                _ => "upstream_error",
            },
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamTooLarge { .. }
            | Self::UpstreamBroken { .. }
            | Self::StreamFailed { .. } => "upstream_error",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::Internal(_) => "internal_error",
            Self::ModelNotFound { .. } => "invalid_request_error",
            Self::OverLimit { .. } => "rate_limit_error",
        }
    }

    /// The upstream's HTTP status when this failure is its error answer (not a 2xx).
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Upstream {
                status: Some(status),
                ..
            } if !(200..300).contains(status) => Some(*status),
            _ => None,
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
            Self::Forbidden(_) => "forbidden",
            Self::UpstreamKeyMissing { .. } => "upstream_not_configured",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Upstream { status, .. } => match status {
                Some(429) => "upstream_rate_limited",
                Some(400 | 422) => "upstream_rejected",
                Some(401 | 403) => "upstream_auth_failed",
                // A 2xx whose body is not a usable answer.
                Some(200..=299) | None => "upstream_invalid_response",
                Some(_) => "upstream_error",
            },
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamTooLarge { .. } => "upstream_too_large",
            Self::UpstreamBroken {
                timed_out: false, ..
            } => "upstream_broken",
            Self::UpstreamTimeout { .. }
            | Self::UpstreamBroken {
                timed_out: true, ..
            } => "upstream_timeout",
            Self::StreamFailed { reason, .. } => reason,
            Self::Internal(_) => "internal_error",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::OverLimit { reason, .. } => reason,
        }
    }

    /// The message the client sees. Internal details never leave the worker.
    pub fn client_message(&self) -> String {
        match self {
            Self::BadRequest(message)
            | Self::InvalidParam { message, .. }
            | Self::Forbidden(message)
            | Self::OverLimit { message, .. } => message.clone(),
            Self::UnknownModel { model, available } => format!(
                "the model '{model}' is not served by this gateway; use one of: {}",
                available.join(", ")
            ),
            Self::PayloadTooLarge {
                variable,
                limit,
                actual,
            } => {
                let what = if *variable == "MAX_QUERY_BYTES" {
                    "query"
                } else {
                    "request body"
                };
                match actual {
                    Some(actual) => format!(
                        "{what} is {actual} bytes, over the limit of {limit} bytes ({variable})"
                    ),
                    None => {
                        format!("{what} is over the limit of {limit} bytes ({variable})")
                    }
                }
            }
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
                Some(code @ (401 | 403)) => format!(
                    "upstream returned HTTP {code}: it refused the gateway's own API key (not yours): {message}"
                ),
                Some(code @ (400 | 422)) => {
                    format!("upstream refused the request (HTTP {code}): {message}")
                }
                Some(code) => format!("upstream returned HTTP {code}: {message}"),
                None => format!("upstream sent an unusable answer: {message}"),
            },
            Self::UpstreamUnreachable { cause } => format!("cannot reach upstream host: {cause}"),
            Self::UpstreamTooLarge { limit } => format!(
                "upstream answer is over the limit of {limit} bytes (MAX_UPSTREAM_RESPONSE_BYTES)"
            ),
            Self::UpstreamBroken {
                received_bytes,
                timed_out,
            } => {
                let how = if *timed_out {
                    "stalled past UPSTREAM_TIMEOUT_MS"
                } else {
                    "broke off"
                };
                format!(
                    "upstream answer {how} after {received_bytes} bytes; not retried, since the upstream may have billed it"
                )
            }
            Self::UpstreamTimeout { timeout_ms } => format!(
                "upstream did not answer within {timeout_ms} ms (UPSTREAM_TIMEOUT_MS)"
            ),
            Self::StreamFailed { message, .. } => message.clone(),
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
        let mut error = crate::object! {
            "type": self.error_type(),
            "message": self.client_message(),
        };
        match self {
            Self::Upstream { status, .. } => {
                error["upstream_status"] = Value::from(*status);
            }
            Self::InvalidConfig { variable, .. } => {
                error["variable"] = Value::from(*variable);
            }
            Self::PayloadTooLarge {
                limit, variable, ..
            } => {
                error["limit_bytes"] = Value::from(*limit);
                error["variable"] = Value::from(*variable);
            }
            Self::OverLimit { key_id, .. } => {
                error["key_id"] = Value::from(key_id.as_deref());
            }
            _ => {}
        }
        crate::object! {"error": error}
    }
}

/// The OpenAI error body `{"error": {"message", "type", "param", "code"}}` for an error.
pub fn openai_error_body(error: &GatewayError) -> Value {
    use std::borrow::Cow;
    let label = || Some(Cow::Borrowed(error.metric_label()));
    let (kind, param, code): (&str, Option<&str>, Option<Cow<'static, str>>) = match error {
        GatewayError::BadRequest(_) => ("invalid_request_error", None, None),
        GatewayError::InvalidParam { param, .. } => ("invalid_request_error", Some(param), None),
        GatewayError::UnknownModel { .. } | GatewayError::ModelNotFound { .. } => (
            "invalid_request_error",
            Some("model"),
            Some("model_not_found".into()),
        ),
        GatewayError::PayloadTooLarge { .. } => (
            "invalid_request_error",
            None,
            Some("request_too_large".into()),
        ),
        GatewayError::NotFound { .. } => ("invalid_request_error", None, Some("not_found".into())),
        GatewayError::MethodNotAllowed { .. } => (
            "invalid_request_error",
            None,
            Some("method_not_allowed".into()),
        ),
        GatewayError::Unauthorized => (
            "invalid_request_error",
            None,
            Some("invalid_api_key".into()),
        ),
        GatewayError::Forbidden(_) => ("permission_error", None, Some("forbidden".into())),
        GatewayError::UpstreamKeyMissing { .. } | GatewayError::InvalidConfig { .. } => {
            ("server_error", None, label())
        }
        GatewayError::Upstream {
            status: Some(429), ..
        } => ("rate_limit_error", None, Some("rate_limit_exceeded".into())),
        GatewayError::Upstream {
            status: Some(status @ (400 | 422)),
            ..
        } => (
            "invalid_request_error",
            None,
            Some(format!("upstream_{status}").into()),
        ),
        GatewayError::Upstream { .. }
        | GatewayError::UpstreamUnreachable { .. }
        | GatewayError::UpstreamTooLarge { .. }
        | GatewayError::UpstreamBroken { .. }
        | GatewayError::StreamFailed { .. } => ("upstream_error", None, label()),
        GatewayError::UpstreamTimeout { .. } => ("timeout", None, Some("upstream_timeout".into())),
        GatewayError::Internal(_) => ("server_error", None, None),
        GatewayError::OverLimit { .. } => ("rate_limit_error", None, label()),
    };
    let mut fields = crate::object! {
        "message": error.client_message(),
        "type": kind,
        "param": param,
        "code": code.map(Cow::into_owned),
    };
    if let Some(id) = error.key_id() {
        fields["key_id"] = Value::from(id);
    }
    crate::object! {"error": fields}
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
                    variable: "MAX_BODY_BYTES",
                    limit: 1,
                    actual: Some(2),
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

    #[test]
    fn upstream_failures_map_to_the_client_status_label_and_code() {
        let upstream = |status: Option<u16>| GatewayError::Upstream {
            status,
            message: "why".into(),
            retry_after: None,
        };
        // (error, status, label, OpenAI code, phrase of the message)
        let cases = [
            (
                upstream(Some(429)),
                429,
                "upstream_rate_limited",
                "rate_limit_exceeded",
                "429",
            ),
            (
                upstream(Some(400)),
                400,
                "upstream_rejected",
                "upstream_400",
                "refused the request",
            ),
            (
                upstream(Some(422)),
                400,
                "upstream_rejected",
                "upstream_422",
                "refused the request",
            ),
            (
                upstream(Some(401)),
                502,
                "upstream_auth_failed",
                "upstream_auth_failed",
                "not yours",
            ),
            (
                upstream(Some(403)),
                502,
                "upstream_auth_failed",
                "upstream_auth_failed",
                "not yours",
            ),
            (
                upstream(Some(503)),
                502,
                "upstream_error",
                "upstream_error",
                "HTTP 503",
            ),
            (
                upstream(Some(404)),
                502,
                "upstream_error",
                "upstream_error",
                "HTTP 404",
            ),
            (
                upstream(Some(200)),
                502,
                "upstream_invalid_response",
                "upstream_invalid_response",
                "HTTP 200",
            ),
            (
                upstream(None),
                502,
                "upstream_invalid_response",
                "upstream_invalid_response",
                "unusable answer",
            ),
            (
                GatewayError::UpstreamUnreachable {
                    cause: "DNS lookup failed".into(),
                },
                502,
                "upstream_unreachable",
                "upstream_unreachable",
                "cannot reach upstream host: DNS lookup failed",
            ),
            (
                GatewayError::UpstreamTooLarge { limit: 8 },
                502,
                "upstream_too_large",
                "upstream_too_large",
                "MAX_UPSTREAM_RESPONSE_BYTES",
            ),
            (
                GatewayError::UpstreamBroken {
                    received_bytes: 7,
                    timed_out: false,
                },
                502,
                "upstream_broken",
                "upstream_broken",
                "broke off after 7 bytes",
            ),
            (
                GatewayError::UpstreamBroken {
                    received_bytes: 7,
                    timed_out: true,
                },
                504,
                "upstream_timeout",
                "upstream_timeout",
                "stalled past UPSTREAM_TIMEOUT_MS",
            ),
            (
                GatewayError::StreamFailed {
                    reason: "upstream_cut",
                    message: "cut".into(),
                },
                502,
                "upstream_cut",
                "upstream_cut",
                "cut",
            ),
            (
                GatewayError::Forbidden("no".into()),
                403,
                "forbidden",
                "forbidden",
                "no",
            ),
        ];
        for (error, status, label, code, phrase) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.metric_label(), label, "{error:?}");
            let body = openai_error_body(&error);
            assert_eq!(body["error"]["code"], code, "{error:?}");
            let message = error.client_message();
            assert!(message.contains(phrase), "{message}");
            assert_eq!(body["error"]["message"], message);
            assert_eq!(error.to_body()["error"]["type"], error.error_type());
            // Only errors the upstream caused tell clients not to retry.
            assert_eq!(error.is_upstream(), status != 403, "{error:?}");
        }
        assert_eq!(upstream(Some(429)).retry_after().as_deref(), Some("1"));
        let with = GatewayError::Upstream {
            status: Some(429),
            message: "x".into(),
            retry_after: Some("7".into()),
        };
        assert_eq!(with.retry_after().as_deref(), Some("7"));
        assert_eq!(upstream(Some(503)).retry_after(), None);
        assert!(!GatewayError::BadRequest("x".into()).is_upstream());
    }
}

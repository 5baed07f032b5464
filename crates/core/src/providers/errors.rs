//! Upstream failures: turning a non-2xx answer into a sanitised
//! [`GatewayError::Upstream`] (message taken from the common body shapes, control
//! characters removed, the key scrubbed, length capped) and the retry policy (which
//! statuses are worth another try, and how long to wait first). It must not perform the
//! retry or read the clock (the caller owns the attempts and the deadline), and no upstream
//! message may leave here without going through [`sanitise`].

use serde_json::Value;

use crate::error::GatewayError;

/// Longest upstream message passed on to the client.
const MAX_MESSAGE_CHARS: usize = 300;

/// Generic error classification: the message is taken from the common body shapes
/// (`{"message"}`, `{"error": {"message"}}`, `{"detail"}`, `message` as an object), the
/// secret scrubbed from it.
pub fn classify_error(
    status: u16,
    body: &[u8],
    retry_after: Option<String>,
    secret: &str,
) -> GatewayError {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let field = v
                .get("message")
                .or_else(|| v.get("error").and_then(|e| e.get("message")))
                .or_else(|| v.get("detail"))
                .or_else(|| v.get("error"))?;
            Some(match field {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .unwrap_or_else(|| default_reason(status).to_string());
    GatewayError::Upstream {
        status: Some(status),
        message: sanitise(&detail, secret),
        retry_after,
    }
}

fn default_reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        401 => "the upstream refused the API key",
        403 => "forbidden",
        404 => "not found",
        422 => "request rejected by validation",
        429 => "rate limited",
        500..=599 => "upstream server error",
        _ => "unexpected status",
    }
}

/// Truncates, removes control characters and scrubs the secret from an upstream message.
pub fn sanitise(message: &str, secret: &str) -> String {
    let mut clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if !secret.is_empty() {
        clean = clean.replace(secret, "*****");
    }
    if clean.chars().count() > MAX_MESSAGE_CHARS {
        clean = clean.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "...";
    }
    clean
}

/// Whether a failed attempt is worth one more try (rate limits and server errors).
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// Delay before retry number `attempt` (1-based): honours a `Retry-After` of whole seconds
/// if it fits in `budget_ms`, else exponential backoff from 200 ms. `None`: do not retry.
pub fn retry_delay_ms(attempt: u32, retry_after: Option<&str>, budget_ms: u64) -> Option<u64> {
    let delay = match retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(seconds) => seconds.saturating_mul(1000),
        None => 200u64.saturating_mul(1 << attempt.saturating_sub(1).min(10)),
    };
    (delay < budget_ms).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_observed_shape() {
        let e = classify_error(
            429,
            include_bytes!("../../tests/fixtures/mistral/error_429.json"),
            Some("3".into()),
            "sk",
        );
        assert!(
            matches!(&e, GatewayError::Upstream { status: Some(429), message, retry_after: Some(_) } if message.contains("Rate limit"))
        );
        let e = classify_error(
            422,
            include_bytes!("../../tests/fixtures/mistral/error_422.json"),
            None,
            "",
        );
        assert!(
            matches!(&e, GatewayError::Upstream { message, .. } if message.contains("extra_forbidden"))
        );
        let e = classify_error(500, b"Internal Server Error", None, "");
        assert!(
            matches!(&e, GatewayError::Upstream { message, .. } if message == "upstream server error")
        );
        let e = classify_error(400, br#"{"message": {"detail": "bad"}}"#, None, "");
        assert!(matches!(&e, GatewayError::Upstream { message, .. } if message.contains("bad")));
        let e = classify_error(
            400,
            br#"{"error": {"message": "openai says no", "type": "x"}}"#,
            None,
            "",
        );
        assert!(
            matches!(&e, GatewayError::Upstream { message, .. } if message == "openai says no")
        );
    }

    #[test]
    fn secret_is_scrubbed_and_long_messages_truncated() {
        let e = classify_error(
            401,
            br#"{"message": "key sk-live-123 invalid"}"#,
            None,
            "sk-live-123",
        );
        assert!(!e.client_message().contains("sk-live-123"));
        let long = "x".repeat(1000);
        assert!(sanitise(&long, "").chars().count() <= MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn retry_policy() {
        assert!(is_retryable(429) && is_retryable(503));
        assert!(!is_retryable(400) && !is_retryable(401) && !is_retryable(422));
        assert_eq!(retry_delay_ms(1, None, 10_000), Some(200));
        assert_eq!(retry_delay_ms(2, None, 10_000), Some(400));
        assert_eq!(retry_delay_ms(1, Some("2"), 10_000), Some(2000));
        assert_eq!(retry_delay_ms(1, Some("20"), 10_000), None);
        assert_eq!(retry_delay_ms(1, None, 100), None);
    }
}

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
                other => crate::jsonwrite::text(other),
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

/// Truncates, removes control characters, drops URLs and host names (an upstream's
/// internal topology is not the client's business) and scrubs the secret from an
/// upstream message.
pub fn sanitise(message: &str, secret: &str) -> String {
    let mut clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if !secret.is_empty() {
        clean = clean.replace(secret, "*****");
    }
    clean = without_hosts(&clean);
    if clean.chars().count() > MAX_MESSAGE_CHARS {
        clean = clean.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "...";
    }
    clean
}

/// `text` with every URL and host name (a dotted name ending in a letter label, or an IPv4
/// address, with an optional port) replaced by `<host>`; words, numbers and versions stay.
fn without_hosts(text: &str) -> String {
    let delimiter =
        |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | ')' | '<' | '>' | ',');
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(delimiter) {
        let (token, end) = match piece.char_indices().last() {
            Some((i, c)) if delimiter(c) => piece.split_at(i),
            _ => (piece, ""),
        };
        if is_url_or_host(token) {
            out.push_str("<host>");
            // Keep sentence punctuation that followed the host.
            if token.ends_with(['.', ';', ':']) {
                out.push_str(&token[token.len() - 1..]);
            }
        } else {
            out.push_str(token);
        }
        out.push_str(end);
    }
    out
}

fn is_url_or_host(token: &str) -> bool {
    if let Some(i) = token.find("://") {
        return i > 0 && token[..i].chars().all(|c| c.is_ascii_alphabetic());
    }
    let token = token.trim_end_matches(['.', ';', ':']);
    // host[:port][/path]
    let host = token.split('/').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return false;
    }
    let ipv4 = labels.len() == 4
        && labels
            .iter()
            .all(|l| l.len() <= 3 && l.chars().all(|c| c.is_ascii_digit()));
    let last = labels[labels.len() - 1];
    let named = last.len() >= 2
        && last.chars().all(|c| c.is_ascii_alphabetic())
        && labels[0].chars().any(|c| c.is_ascii_alphabetic())
        && !COMMON_DOTTED.contains(&host.to_ascii_lowercase().as_str());
    ipv4 || named
}

/// Dotted words that are not hosts (abbreviations in prose).
const COMMON_DOTTED: &[&str] = &["e.g", "i.e", "etc.al", "a.m", "p.m"];

/// The client's wording of a failed connection, from the runtime's message: workerd says
/// "Network connection lost." when the connection was refused or closed before an
/// answer, and only "internal error; reference = ..." when the host name did not resolve
/// (or the connection could not be set up at all); the detail is in its own log.
pub fn unreachable_cause(runtime_message: &str) -> String {
    let m = runtime_message.to_ascii_lowercase();
    if m.contains("dns") || m.contains("internal error") || m.contains("not known") {
        "DNS lookup failed or the connection could not be set up (check the tier's base URL)".into()
    } else if m.contains("refused") || m.contains("connection lost") || m.contains("reset") {
        "connection refused or closed before an answer".into()
    } else {
        format!("network error ({})", sanitise(runtime_message, ""))
    }
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
    fn urls_and_host_names_are_dropped_from_upstream_messages() {
        let cases = [
            (
                "connect to http://10.0.3.7:8080/v1/chat failed",
                "connect to <host> failed",
            ),
            (
                "backend inference-7.internal.corp:9000 overloaded.",
                "backend <host> overloaded.",
            ),
            ("upstream at 10.1.2.3 said no", "upstream at <host> said no"),
            ("see (https://docs.example.com/errors)", "see (<host>)"),
            ("host api.mistral.ai.", "host <host>."),
            // Prose, numbers and versions stay.
            (
                "model v1.2 takes e.g. 3.5 seconds, i.e. slow",
                "model v1.2 takes e.g. 3.5 seconds, i.e. slow",
            ),
            (
                "Invalid model: mistral-large-2411",
                "Invalid model: mistral-large-2411",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitise(input, ""), expected, "{input}");
        }
    }

    #[test]
    fn unreachable_causes_name_dns_and_refused_connections() {
        assert!(unreachable_cause("internal error; reference = m8bq").contains("DNS lookup failed"));
        assert!(unreachable_cause("Network connection lost.").contains("connection refused"));
        let other = unreachable_cause("TLS handshake failed at api.example.com");
        assert!(other.contains("TLS handshake failed") && !other.contains("example.com"));
    }

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

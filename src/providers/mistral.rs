//! Mistral chat completions: request building, response parsing, error classification.
//! Wire format: shared/reference/mistral-api.md (POST {base}/v1/chat/completions).

use serde_json::{json, Value};

use super::{ChatCompletion, Usage};
use crate::error::GatewayError;

/// Provider name used in logs and errors.
pub const PROVIDER_TYPE: &str = "mistral";

/// Longest upstream message passed on to the client.
const MAX_MESSAGE_CHARS: usize = 300;

/// URL of the chat completions endpoint under a base URL (no trailing slash).
pub fn chat_completions_url(base_url: &str) -> String {
    format!("{base_url}/v1/chat/completions")
}

/// Body of a single-turn chat completion request. Only fields Mistral's schema accepts
/// are sent: it refuses unknown fields with 422.
pub fn build_chat_request(model: &str, query: &str, max_tokens: Option<u32>) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": query}],
        "stream": false,
    });
    if let Some(limit) = max_tokens {
        body["max_tokens"] = json!(limit);
    }
    body
}

/// Converts Mistral's `usage` object, when complete, into ours.
pub fn mistral_usage_to_usage(usage: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: usage.get("prompt_tokens")?.as_u64()?,
        completion_tokens: usage.get("completion_tokens")?.as_u64()?,
    })
}

/// Text of a message `content`: a string, null, or an array of chunks of which the
/// `text` ones are the answer (`thinking` chunks are reasoning, not answer).
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Array(chunks) => Some(
            chunks
                .iter()
                .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// Parses a 2xx body. A body that is not a chat completion is an upstream failure.
pub fn parse_chat_response(body: &[u8]) -> Result<ChatCompletion, GatewayError> {
    let garbage = |what: &str| GatewayError::Upstream {
        status: Some(200),
        message: format!("unusable response from {PROVIDER_TYPE}: {what}"),
        retry_after: None,
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| garbage("body is not JSON"))?;
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| garbage("no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| garbage("choice has no message"))?;
    let answer = content_text(message.get("content").unwrap_or(&Value::Null))
        .ok_or_else(|| garbage("message content is neither text nor chunks"))?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(ChatCompletion {
        answer,
        model,
        usage: value.get("usage").and_then(mistral_usage_to_usage),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Turns a non-2xx answer into a sanitised upstream error. Mistral's documented error body
/// is `{"object":"error","message":...}` but observed bodies vary (`{"detail": ...}`,
/// `message` as an object); the secret is scrubbed from whatever is passed on.
pub fn classify_error(
    status: u16,
    body: &[u8],
    retry_after: Option<String>,
    secret: &str,
) -> GatewayError {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let field = v.get("message").or_else(|| v.get("detail"))?;
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
        401 => "the upstream refused the API key (check MISTRAL_API_KEY)",
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
    matches!(status, 429 | 500 | 502 | 503 | 504)
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
    fn request_has_only_mistral_fields() {
        let body = build_chat_request("mistral-small-latest", "hello", Some(64));
        assert_eq!(body["model"], "mistral-small-latest");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"][0]["content"], "hello");
        assert_eq!(body["max_tokens"], 64);
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        for key in keys {
            assert!(
                ["model", "messages", "stream", "max_tokens"].contains(&key.as_str()),
                "unexpected field {key}"
            );
        }
        assert!(build_chat_request("m", "q", None).get("max_tokens").is_none());
    }

    #[test]
    fn url_joins_base_and_path() {
        assert_eq!(
            chat_completions_url("https://api.mistral.ai"),
            "https://api.mistral.ai/v1/chat/completions"
        );
    }

    #[test]
    fn parses_string_and_chunked_content() {
        let c = parse_chat_response(include_bytes!("../../tests/fixtures/mistral/chat_completion.json"))
            .unwrap();
        assert_eq!(c.model, "mistral-small-2603");
        assert!(c.answer.starts_with("Paris"));
        assert_eq!(c.usage, Some(Usage { prompt_tokens: 8, completion_tokens: 12 }));
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));

        let c = parse_chat_response(include_bytes!(
            "../../tests/fixtures/mistral/chat_completion_thinking.json"
        ))
        .unwrap();
        assert_eq!(c.answer, "The answer is 42.");
    }

    #[test]
    fn missing_usage_is_reported_as_none() {
        let c = parse_chat_response(
            br#"{"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(c.usage, None);
    }

    #[test]
    fn garbage_is_an_upstream_error() {
        for body in [&b"<html>oops</html>"[..], b"{}", br#"{"choices": []}"#, br#"{"choices": [{"message": {"content": 5}}]}"#] {
            let e = parse_chat_response(body).unwrap_err();
            assert_eq!(e.status(), 502, "{body:?}");
        }
    }

    #[test]
    fn error_bodies_of_every_observed_shape() {
        let e = classify_error(
            429,
            include_bytes!("../../tests/fixtures/mistral/error_429.json"),
            Some("3".into()),
            "sk",
        );
        assert!(matches!(&e, GatewayError::Upstream { status: Some(429), message, retry_after: Some(_) } if message.contains("Rate limit")));
        let e = classify_error(422, include_bytes!("../../tests/fixtures/mistral/error_422.json"), None, "");
        assert!(matches!(&e, GatewayError::Upstream { message, .. } if message.contains("extra_forbidden")));
        let e = classify_error(500, b"Internal Server Error", None, "");
        assert!(matches!(&e, GatewayError::Upstream { message, .. } if message == "upstream server error"));
        let e = classify_error(400, br#"{"message": {"detail": "bad"}}"#, None, "");
        assert!(matches!(&e, GatewayError::Upstream { message, .. } if message.contains("bad")));
    }

    #[test]
    fn secret_is_scrubbed_and_long_messages_truncated() {
        let e = classify_error(401, br#"{"message": "key sk-live-123 invalid"}"#, None, "sk-live-123");
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

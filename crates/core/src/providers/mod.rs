//! Upstream providers. Each backend is one file with the same shape — build the request
//! from the OpenAI-format [`ChatRequest`], parse the response into an OpenAI
//! `chat.completion`, classify errors, decode its stream — behind the [`Provider`] trait.
//! Adding a backend touches no handler: a file here and a [`BackendKind`] variant.

pub mod anthropic;
pub mod mistral;
pub mod openai;
pub mod sse;

use serde_json::Value;

use crate::chat::ChatRequest;
use crate::error::GatewayError;

/// Token counts reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

/// A parsed, non-streaming completion in the OpenAI `chat.completion` shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The `chat.completion` object returned to OpenAI-compatible clients.
    pub body: Value,
    /// Text of the first choice.
    pub answer: String,
    /// Model id the upstream reports (the dated id an alias resolved to).
    pub model: String,
    /// Usage, when the upstream sent it.
    pub usage: Option<Usage>,
}

/// What a stream decoder needs to know about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// The client's `stream_options.include_usage`.
    pub client_wants_usage: bool,
    /// Unix time (seconds) for chunks the gateway writes itself.
    pub created: u64,
}

/// What a stream decoder makes of one upstream event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// The event is already an OpenAI chunk: forward it unchanged.
    Forward,
    /// These OpenAI chunks (JSON text) replace the event (possibly none).
    Chunks(Vec<String>),
    /// The end of the stream (`[DONE]`, `message_stop`).
    Done,
}

/// Incremental decoder of one provider's server-sent events into OpenAI chunks, keeping
/// the usage and an estimate of the streamed text.
pub trait StreamDecoder {
    /// Handles one event (`event:` name, possibly empty, and `data:` text).
    fn on_event(&mut self, event: &str, data: &str) -> Decoded;
    /// Usage, once the upstream has sent it.
    fn usage(&self) -> Option<Usage>;
    /// Characters of completion text seen so far (for estimates when usage never comes).
    fn completion_chars(&self) -> usize;
    /// Model id the stream reports.
    fn model(&self) -> Option<&str>;
}

/// One upstream API dialect.
pub trait Provider: Sync {
    /// The backend kind.
    fn kind(&self) -> BackendKind;
    /// Chat endpoint under a base URL (no trailing slash).
    fn endpoint(&self, base_url: &str) -> String;
    /// Authentication and protocol headers.
    fn headers(&self, key: &str) -> Vec<(&'static str, String)>;
    /// The upstream request body for `request`, sent to `model`.
    fn build_request(&self, request: &ChatRequest, model: &str) -> Result<Value, GatewayError>;
    /// Parses a 2xx body into an OpenAI `chat.completion`.
    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError>;
    /// A decoder for a streamed answer.
    fn stream_decoder(&self, options: StreamOptions) -> Box<dyn StreamDecoder>;
    /// Turns a non-2xx answer into a sanitised upstream error.
    fn classify_error(
        &self,
        status: u16,
        body: &[u8],
        retry_after: Option<String>,
        secret: &str,
    ) -> GatewayError {
        classify_error(status, body, retry_after, secret)
    }
}

/// The API dialects llm-mux speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Mistral's chat completions API.
    Mistral,
    /// Any OpenAI-compatible `/v1/chat/completions` server (OpenAI, vLLM, Ollama, Together, Groq...).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl BackendKind {
    /// Parses the configuration value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "mistral" => Some(Self::Mistral),
            "openai" | "openai-compatible" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    /// Default base URL of the backend.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Mistral => "https://api.mistral.ai",
            Self::OpenAi => "https://api.openai.com",
            Self::Anthropic => "https://api.anthropic.com",
        }
    }

    /// Variable that holds the backend's key unless a tier names another.
    pub fn default_key_variable(self) -> &'static str {
        match self {
            Self::Mistral => "MISTRAL_API_KEY",
            Self::OpenAi => "OPENAI_API_KEY",
            Self::Anthropic => "ANTHROPIC_API_KEY",
        }
    }

    /// The provider implementation.
    pub fn provider(self) -> &'static dyn Provider {
        match self {
            Self::Mistral => &mistral::Mistral,
            Self::OpenAi => &openai::OpenAi,
            Self::Anthropic => &anthropic::Anthropic,
        }
    }
}

/// Rough token estimate (~4 characters per token) for when an upstream omits usage.
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

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

/// Text of an OpenAI/Mistral message `content`: a string, null, or chunks of which the
/// `text` ones are the answer (`thinking` chunks are reasoning, not answer).
pub fn answer_text(content: &Value) -> Option<String> {
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

/// Parses an OpenAI-shaped `chat.completion` (Mistral and OpenAI-compatible servers).
pub fn parse_openai_shaped(body: &[u8], provider: &str) -> Result<ChatResponse, GatewayError> {
    let garbage = |what: &str| GatewayError::Upstream {
        status: Some(200),
        message: format!("unusable response from {provider}: {what}"),
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
    let answer = answer_text(message.get("content").unwrap_or(&Value::Null))
        .ok_or_else(|| garbage("message content is neither text nor chunks"))?;
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let usage = value.get("usage").and_then(openai_usage);
    Ok(ChatResponse {
        body: value,
        answer,
        model,
        usage,
    })
}

/// `{"prompt_tokens", "completion_tokens"}` -> [`Usage`].
pub fn openai_usage(usage: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: usage.get("prompt_tokens")?.as_u64()?,
        completion_tokens: usage.get("completion_tokens")?.as_u64()?,
    })
}

/// Stream decoder for OpenAI-shaped chunks (Mistral, OpenAI-compatible): forwards every
/// event and looks only at what it must (usage, model, content length) without parsing
/// chunks that carry no usage.
#[derive(Debug, Default)]
pub struct OpenAiChunkDecoder {
    usage: Option<Usage>,
    chars: usize,
    model: Option<String>,
    hide_usage_only: bool,
}

impl OpenAiChunkDecoder {
    /// A decoder that drops usage-only chunks (`choices: []`) instead of forwarding them.
    pub fn hiding_usage_only_chunks(hide: bool) -> Self {
        Self {
            hide_usage_only: hide,
            ..Self::default()
        }
    }
}

impl StreamDecoder for OpenAiChunkDecoder {
    fn on_event(&mut self, _event: &str, data: &str) -> Decoded {
        let data = data.trim();
        if data == "[DONE]" {
            return Decoded::Done;
        }
        self.chars += delta_content_len(data);
        let needs_parse = self.model.is_none() || has_usage(data);
        if needs_parse {
            if let Ok(chunk) = serde_json::from_str::<Value>(data) {
                if self.model.is_none() {
                    self.model = chunk
                        .get("model")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
                if let Some(usage) = chunk.get("usage").and_then(openai_usage) {
                    self.usage = Some(usage);
                    let no_choices = chunk
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty);
                    if no_choices && self.hide_usage_only {
                        return Decoded::Chunks(Vec::new());
                    }
                }
            }
        }
        Decoded::Forward
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completion_chars(&self) -> usize {
        self.chars
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

/// Whether a chunk's text carries a non-null `usage` object.
fn has_usage(data: &str) -> bool {
    let Some(at) = data.find("\"usage\"") else {
        return false;
    };
    let rest = data[at + 7..].trim_start_matches([' ', ':']);
    rest.starts_with('{')
}

/// Length in characters of the `"content":"..."` strings of a chunk, without parsing it
/// (escapes count as one character each, which is close enough for an estimate).
fn delta_content_len(data: &str) -> usize {
    let mut total = 0;
    let mut rest = data;
    while let Some(at) = rest.find("\"content\"") {
        rest = rest[at + 9..].trim_start_matches([' ', ':']);
        if let Some(body) = rest.strip_prefix('"') {
            let mut escaped = false;
            let mut end = body.len();
            for (i, c) in body.char_indices() {
                if escaped {
                    escaped = false;
                    total += 1;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = i;
                    break;
                } else {
                    total += 1;
                }
            }
            rest = &body[end..];
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use openai::OpenAi;

    #[test]
    fn estimate_is_about_four_chars_per_token() {
        assert_eq!(estimate_tokens(0), 1);
        assert_eq!(estimate_tokens(4), 1);
        assert_eq!(estimate_tokens(5), 2);
    }

    #[test]
    fn backend_kinds_parse() {
        assert_eq!(BackendKind::parse("mistral"), Some(BackendKind::Mistral));
        assert_eq!(BackendKind::parse("openai"), Some(BackendKind::OpenAi));
        assert_eq!(
            BackendKind::parse("anthropic"),
            Some(BackendKind::Anthropic)
        );
        assert_eq!(BackendKind::parse("cohere"), None);
        for kind in [
            BackendKind::Mistral,
            BackendKind::OpenAi,
            BackendKind::Anthropic,
        ] {
            assert_eq!(kind.provider().kind(), kind);
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

    #[test]
    fn chunk_decoder_finds_usage_model_and_content() {
        let mut d = OpenAiChunkDecoder::default();
        let first = r#"{"id":"a","model":"mistral-small-2603","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#;
        let middle = r#"{"id":"a","model":"mistral-small-2603","choices":[{"index":0,"delta":{"content":"Hel\"lo"},"finish_reason":null}]}"#;
        let last = r#"{"id":"a","model":"mistral-small-2603","choices":[{"index":0,"delta":{"content":" you"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#;
        assert_eq!(d.on_event("", first), Decoded::Forward);
        assert_eq!(d.usage(), None);
        d.on_event("", middle);
        d.on_event("", last);
        assert_eq!(
            d.usage(),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 3
            })
        );
        assert_eq!(d.model(), Some("mistral-small-2603"));
        assert_eq!(d.completion_chars(), 10);
        assert_eq!(d.on_event("", "[DONE]"), Decoded::Done);
    }

    #[test]
    fn usage_only_chunk_is_hidden_from_clients_that_did_not_ask() {
        let usage_only = r#"{"id":"c","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#;
        let mut hidden = OpenAiChunkDecoder::hiding_usage_only_chunks(true);
        assert_eq!(hidden.on_event("", usage_only), Decoded::Chunks(Vec::new()));
        assert_eq!(
            hidden.usage(),
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 2
            })
        );
        let mut shown = OpenAiChunkDecoder::hiding_usage_only_chunks(false);
        assert_eq!(shown.on_event("", usage_only), Decoded::Forward);
        assert_eq!(
            OpenAi.stream_decoder(StreamOptions::default()).usage(),
            None
        );
    }
}

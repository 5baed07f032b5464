//! The OpenAI `chat.completion` shape shared by Mistral and OpenAI-compatible servers:
//! reading the answer text, usage and model of a completion, and [`OpenAiChunkDecoder`],
//! which forwards streamed chunks while noting usage, model and content length. It must
//! not build requests or hold anything specific to one backend (that stays in the
//! backend's own file), and the stream decoder must not parse chunks it does not need to.

use serde_json::Value;

use super::{ChatResponse, Decoded, StreamDecoder, Usage};
use crate::error::GatewayError;

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
        let needs_parse = self.model.is_none() || has_usage(data);
        if !needs_parse {
            // Checked without building a tree: a malformed event is dropped, not relayed.
            if serde_json::from_slice::<serde::de::IgnoredAny>(data.as_bytes()).is_err() {
                return Decoded::Malformed;
            }
            self.chars += delta_content_len(data);
        } else {
            let Ok(chunk) = serde_json::from_slice::<Value>(data.as_bytes()) else {
                return Decoded::Malformed;
            };
            self.chars += delta_content_len(data);
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
    use super::super::openai::OpenAi;
    use super::super::{Provider, StreamOptions};
    use super::*;

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
        assert_eq!(d.on_event("", "{this is not json"), Decoded::Malformed);
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

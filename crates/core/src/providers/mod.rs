//! Upstream providers. Each backend is one file with the same shape — build the request
//! from the OpenAI-format [`ChatRequest`], parse the response into an OpenAI
//! `chat.completion`, classify errors, decode its stream — behind the [`Provider`] trait.
//! Adding a backend touches no handler: a file here and a [`BackendKind`] variant.
//! What the backends share sits beside them, re-exported here: `openai_shape` (the
//! OpenAI `chat.completion` and chunk shapes) and `errors` (error classification and the
//! retry policy).

pub mod anthropic;
pub mod mistral;
pub mod openai;
pub mod sse;

mod errors;
mod openai_shape;

pub use errors::{classify_error, is_retryable, retry_delay_ms, sanitise, unreachable_cause};
pub use openai_shape::{answer_text, openai_usage, parse_openai_shaped, OpenAiChunkDecoder};

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
    /// The event is not valid JSON: dropped and counted, never relayed.
    Malformed,
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

    /// The configuration value (`mistral`, `openai`, `anthropic`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mistral => "mistral",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
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

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(BackendKind::parse(kind.name()), Some(kind));
        }
    }
}

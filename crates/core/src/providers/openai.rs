//! OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, Together, Groq, any
//! `/v1/chat/completions` server): the request passes through nearly as sent.

use serde_json::{Map, Value};

use super::{
    parse_openai_shaped, BackendKind, ChatResponse, OpenAiChunkDecoder, Provider, StreamDecoder,
    StreamOptions,
};
use crate::chat::ChatRequest;
use crate::error::GatewayError;

/// The OpenAI-compatible provider.
pub struct OpenAi;

/// Mistral-only fields a Mistral SDK may send, and their OpenAI names (None: dropped).
const FROM_MISTRAL: [(&str, Option<&str>); 2] =
    [("random_seed", Some("seed")), ("safe_prompt", None)];

impl Provider for OpenAi {
    fn kind(&self) -> BackendKind {
        BackendKind::OpenAi
    }

    fn endpoint(&self, base_url: &str) -> String {
        // Accept base URLs given with or without the /v1 suffix.
        match base_url.strip_suffix("/v1") {
            Some(root) => format!("{root}/v1/chat/completions"),
            None => format!("{base_url}/v1/chat/completions"),
        }
    }

    fn headers(&self, key: &str) -> Vec<(&'static str, String)> {
        if key.is_empty() {
            // Local servers (Ollama, vLLM) often need no key.
            Vec::new()
        } else {
            vec![("authorization", format!("Bearer {key}"))]
        }
    }

    fn build_request(&self, request: &ChatRequest, model: &str) -> Result<Value, GatewayError> {
        let mut body: Map<String, Value> = request.params.clone();
        for (mistral_name, openai_name) in FROM_MISTRAL {
            if let Some(v) = body.remove(mistral_name) {
                if let Some(name) = openai_name {
                    body.entry(name).or_insert(v);
                }
            }
        }
        body.insert("model".into(), Value::from(model));
        body.insert("messages".into(), Value::Array(request.messages.clone()));
        body.insert("stream".into(), Value::Bool(request.stream));
        if request.stream {
            // Usage arrives only when asked for; the gateway needs it for cost accounting.
            body.insert(
                "stream_options".into(),
                crate::object! {"include_usage": true},
            );
        }
        Ok(Value::Object(body))
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        parse_openai_shaped(body, "openai-compatible backend")
    }

    fn stream_decoder(&self, options: StreamOptions) -> Box<dyn StreamDecoder> {
        // The gateway always asks for usage; a client that did not ask must not receive
        // the usage-only chunk (`choices: []`): code reading `choices[0]` would break.
        Box::new(OpenAiChunkDecoder::hiding_usage_only_chunks(
            !options.client_wants_usage,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: Value) -> ChatRequest {
        ChatRequest::parse(value.to_string().as_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn passes_openai_fields_and_asks_for_stream_usage() {
        let r = request(json!({
            "model": "auto", "messages": [{"role": "user", "content": "hi"}],
            "seed": 3, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "stream": true, "random_seed": 9, "safe_prompt": true, "logprobs": true
        }));
        let body = OpenAi.build_request(&r, "gpt-4o-mini").unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["seed"], 3);
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(body.get("random_seed").is_none() && body.get("safe_prompt").is_none());
        assert_eq!(body["tools"][0]["function"]["name"], "f");
    }

    #[test]
    fn endpoint_accepts_base_with_or_without_v1() {
        assert_eq!(
            OpenAi.endpoint("https://api.openai.com"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            OpenAi.endpoint("http://127.0.0.1:11434/v1"),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
    }

    #[test]
    fn parses_openai_completion_with_tool_calls() {
        let c = OpenAi
            .parse_response(include_bytes!(
                "../../tests/fixtures/openai/chat_completion_tool_call.json"
            ))
            .unwrap();
        assert_eq!(c.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(c.answer, "");
        assert_eq!(
            c.body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(c.usage.unwrap().prompt_tokens, 82);
    }
}

//! Mistral chat completions (shared/reference/mistral-api.md): the OpenAI-format request
//! mapped onto Mistral's schema, which refuses unknown fields with 422.

use serde_json::{Map, Value};

use super::{
    parse_openai_shaped, BackendKind, ChatResponse, OpenAiChunkDecoder, Provider, StreamDecoder,
    StreamOptions,
};
use crate::chat::ChatRequest;
use crate::error::GatewayError;

/// The Mistral provider.
pub struct Mistral;

/// Top-level fields Mistral's schema accepts besides model, messages and stream.
const ACCEPTED: [&str; 16] = [
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "safe_prompt",
    "prompt_cache_key",
    "reasoning_effort",
];

/// OpenAI names of fields Mistral calls otherwise.
const RENAMED: [(&str, &str); 2] = [
    ("seed", "random_seed"),
    ("max_completion_tokens", "max_tokens"),
];

/// Fields each message role may carry in Mistral's schema.
fn message_fields(role: &str) -> &'static [&'static str] {
    match role {
        "assistant" => &["role", "content", "tool_calls", "prefix"],
        "tool" => &["role", "content", "tool_call_id", "name"],
        _ => &["role", "content"],
    }
}

impl Provider for Mistral {
    fn kind(&self) -> BackendKind {
        BackendKind::Mistral
    }

    fn endpoint(&self, base_url: &str) -> String {
        format!("{base_url}/v1/chat/completions")
    }

    fn headers(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {key}"))]
    }

    fn build_request(&self, request: &ChatRequest, model: &str) -> Result<Value, GatewayError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::from(model));
        let messages = request.messages.iter().map(mistral_message).collect();
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), Value::Bool(request.stream));
        for (from, to) in RENAMED {
            if let Some(v) = request.params.get(from) {
                if !request.params.contains_key(to) && !v.is_null() {
                    body.insert(to.into(), v.clone());
                }
            }
        }
        for field in ACCEPTED {
            if let Some(v) = request.params.get(field) {
                if !v.is_null() {
                    body.insert(field.into(), v.clone());
                }
            }
        }
        // Mistral has no "developer" role and calls OpenAI's "required" tool choice "any".
        if body.get("tool_choice").and_then(Value::as_str) == Some("required") {
            body.insert("tool_choice".into(), Value::from("any"));
        }
        Ok(Value::Object(body))
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        parse_openai_shaped(body, "mistral")
    }

    fn stream_decoder(&self, _options: StreamOptions) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiChunkDecoder::default())
    }
}

/// One message in Mistral's schema: only its fields, tool-call ids in Mistral's form.
fn mistral_message(message: &Value) -> Value {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user");
    let role = if role == "developer" { "system" } else { role };
    let mut out = Map::new();
    for field in message_fields(role) {
        if let Some(v) = message.get(*field) {
            out.insert((*field).into(), v.clone());
        }
    }
    out.insert("role".into(), Value::from(role));
    if let Some(Value::String(id)) = out.get("tool_call_id") {
        let id = mistral_tool_call_id(id);
        out.insert("tool_call_id".into(), Value::from(id));
    }
    if let Some(Value::Array(calls)) = out.get_mut("tool_calls") {
        for call in calls {
            if let Some(Value::String(id)) = call.get("id") {
                let id = mistral_tool_call_id(id);
                call["id"] = Value::from(id);
            }
        }
    }
    Value::Object(out)
}

/// Mistral accepts only tool-call ids of exactly 9 characters of [a-zA-Z0-9]. Ids already
/// in that form are kept; others (OpenAI's `call_...`) map to a stable 9-character hash, so
/// an assistant's call and the tool's answer still match. Ids Mistral issues are of that
/// form, so they travel back to the client unchanged.
pub fn mistral_tool_call_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut hash = crate::hash::fnv1a64(id.as_bytes());
    (0..9)
        .map(|_| {
            let c = ALPHABET[(hash % 62) as usize] as char;
            hash /= 62;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: Value) -> ChatRequest {
        ChatRequest::parse(value.to_string().as_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn openai_fields_are_translated_and_unknown_ones_dropped() {
        let r = request(json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "hi", "name": "bob"}],
            "seed": 7, "max_completion_tokens": 20, "stream_options": {"include_usage": true},
            "temperature": 0.3, "user": "u-1", "logprobs": true, "store": false,
            "tool_choice": "required", "presence_penalty": 0.5
        }));
        let body = Mistral.build_request(&r, "mistral-small-latest").unwrap();
        assert_eq!(body["model"], "mistral-small-latest");
        assert_eq!(body["random_seed"], 7);
        assert_eq!(body["max_tokens"], 20);
        assert_eq!(body["temperature"], 0.3);
        assert_eq!(body["tool_choice"], "any");
        assert_eq!(body["stream"], false);
        for dropped in [
            "seed",
            "max_completion_tokens",
            "stream_options",
            "user",
            "logprobs",
            "store",
        ] {
            assert!(body.get(dropped).is_none(), "{dropped} was sent");
        }
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": "hi"})
        );
    }

    #[test]
    fn explicit_mistral_names_win_over_openai_ones() {
        let r = request(json!({
            "model": "auto", "messages": [{"role": "user", "content": "hi"}],
            "seed": 1, "random_seed": 2, "max_tokens": 5, "max_completion_tokens": 9
        }));
        let body = Mistral.build_request(&r, "m").unwrap();
        assert_eq!(body["random_seed"], 2);
        assert_eq!(body["max_tokens"], 5);
    }

    #[test]
    fn tool_call_ids_are_rewritten_consistently() {
        let r = request(json!({
            "model": "auto",
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123DEF456ghi789", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_abc123DEF456ghi789", "content": "18C"},
                {"role": "developer", "content": "be brief"}
            ]
        }));
        let body = Mistral.build_request(&r, "m").unwrap();
        let call_id = body["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
        assert_eq!(call_id.len(), 9);
        assert!(call_id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(body["messages"][2]["tool_call_id"], call_id);
        assert_eq!(body["messages"][3]["role"], "system");
        assert_eq!(mistral_tool_call_id("D681PevKs"), "D681PevKs");
        assert_ne!(
            mistral_tool_call_id("call_1"),
            mistral_tool_call_id("call_2")
        );
    }

    #[test]
    fn parses_string_and_chunked_content() {
        let c = Mistral
            .parse_response(include_bytes!(
                "../../tests/fixtures/mistral/chat_completion.json"
            ))
            .unwrap();
        assert_eq!(c.model, "mistral-small-2603");
        assert!(c.answer.starts_with("Paris"));
        assert_eq!(
            c.usage,
            Some(super::super::Usage {
                prompt_tokens: 8,
                completion_tokens: 12
            })
        );
        assert_eq!(c.body["object"], "chat.completion");
        let c = Mistral
            .parse_response(include_bytes!(
                "../../tests/fixtures/mistral/chat_completion_thinking.json"
            ))
            .unwrap();
        assert_eq!(c.answer, "The answer is 42.");
    }

    #[test]
    fn garbage_is_an_upstream_error() {
        for body in [
            &b"<html>oops</html>"[..],
            b"{}",
            br#"{"choices": []}"#,
            br#"{"choices": [{"message": {"content": 5}}]}"#,
        ] {
            let e = Mistral.parse_response(body).unwrap_err();
            assert_eq!(e.status(), 502, "{body:?}");
        }
    }

    #[test]
    fn missing_usage_is_reported_as_none() {
        let c = Mistral
            .parse_response(br#"{"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]}"#)
            .unwrap();
        assert_eq!(c.usage, None);
    }
}

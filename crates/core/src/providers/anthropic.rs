//! Anthropic Messages API: the OpenAI-format request translated to `/v1/messages`, and the
//! response, stream events and usage translated back to OpenAI's shapes.

use serde_json::{Map, Value};

use super::{BackendKind, ChatResponse, Decoded, Provider, StreamDecoder, StreamOptions, Usage};
use crate::chat::{content_text, ChatRequest};
use crate::error::GatewayError;

/// The Anthropic provider.
pub struct Anthropic;

/// API version header value.
const API_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by the Messages API; used when the client sets none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

impl Provider for Anthropic {
    fn kind(&self) -> BackendKind {
        BackendKind::Anthropic
    }

    fn endpoint(&self, base_url: &str) -> String {
        format!("{base_url}/v1/messages")
    }

    fn headers(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", key.to_string()),
            ("anthropic-version", API_VERSION.to_string()),
        ]
    }

    fn build_request(&self, request: &ChatRequest, model: &str) -> Result<Value, GatewayError> {
        let params = &request.params;
        let mut system = Vec::new();
        let mut messages: Vec<Value> = Vec::new();
        for message in &request.messages {
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("user");
            let (role, blocks) = match role {
                "system" | "developer" => {
                    system.push(content_text(message.get("content").unwrap_or(&Value::Null)));
                    continue;
                }
                "assistant" => ("assistant", assistant_blocks(message)?),
                "tool" => ("user", vec![tool_result_block(message)]),
                _ => ("user", user_blocks(message)?),
            };
            // The Messages API wants alternating roles: merge consecutive turns of one role.
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(Value::Array(content)) = last.get_mut("content") {
                        content.extend(blocks);
                    }
                }
                _ => messages.push(crate::object! {"role": role, "content": blocks}),
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), Value::from(model));
        body.insert("messages".into(), Value::Array(messages));
        if !system.is_empty() {
            body.insert("system".into(), Value::from(system.join("\n\n")));
        }
        let max_tokens = params
            .get("max_completion_tokens")
            .or_else(|| params.get("max_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        body.insert("max_tokens".into(), Value::from(max_tokens));
        if let Some(t) = params.get("temperature").and_then(Value::as_f64) {
            // OpenAI's range is 0..2, Anthropic's 0..1.
            body.insert("temperature".into(), Value::from(t.min(1.0)));
        }
        if let Some(p) = params.get("top_p").filter(|v| !v.is_null()) {
            body.insert("top_p".into(), p.clone());
        }
        match params.get("stop") {
            Some(Value::String(s)) => {
                body.insert(
                    "stop_sequences".into(),
                    Value::Array(vec![Value::from(s.as_str())]),
                );
            }
            Some(Value::Array(list)) => {
                body.insert("stop_sequences".into(), Value::Array(list.clone()));
            }
            _ => {}
        }
        if let Some(Value::Array(tools)) = params.get("tools") {
            let tools: Vec<Value> = tools
                .iter()
                .filter_map(|t| t.get("function"))
                .map(|f| {
                    crate::object! {
                        "name": f.get("name").cloned().unwrap_or(Value::Null),
                        "description": f.get("description").cloned().unwrap_or(Value::from("")),
                        "input_schema": f.get("parameters").cloned().unwrap_or_else(
                            || crate::object! {"type": "object", "properties": crate::object! {}}
                        ),
                    }
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = params.get("tool_choice").and_then(tool_choice) {
            body.insert("tool_choice".into(), choice);
        }
        if request.stream {
            body.insert("stream".into(), Value::Bool(true));
        }
        Ok(Value::Object(body))
    }

    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        let garbage = |what: &str| GatewayError::Upstream {
            status: Some(200),
            message: format!("unusable response from anthropic: {what}"),
            retry_after: None,
        };
        let value: Value = serde_json::from_slice(body).map_err(|_| garbage("body is not JSON"))?;
        let blocks = value
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| garbage("no content"))?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
                Some("tool_use") => tool_calls.push(crate::object! {
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": crate::object! {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": block.get("input").map(crate::jsonwrite::text).unwrap_or_else(|| "{}".into()),
                    },
                }),
                _ => {}
            }
        }
        let model = value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let usage = value.get("usage").and_then(anthropic_usage_to_usage);
        let mut message = crate::object! {"role": "assistant", "content": text.as_str()};
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        let finish_reason = finish_reason(value.get("stop_reason").and_then(Value::as_str));
        let choice =
            crate::object! {"index": 0, "message": message, "finish_reason": finish_reason};
        let mut body = crate::object! {
            "id": value.get("id").cloned().unwrap_or(Value::from("msg")),
            "object": "chat.completion",
            "created": 0,
            "model": model.as_str(),
            "choices": vec![choice],
        };
        if let Some(u) = usage {
            body["usage"] = usage_json(u);
        }
        Ok(ChatResponse {
            body,
            answer: text,
            model,
            usage,
        })
    }

    fn stream_decoder(&self, options: StreamOptions) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicStreamDecoder {
            created: options.created,
            ..AnthropicStreamDecoder::default()
        })
    }
}

fn user_blocks(message: &Value) -> Result<Vec<Value>, GatewayError> {
    match message.get("content") {
        Some(Value::String(s)) => Ok(vec![crate::object! {"type": "text", "text": s.as_str()}]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(crate::object! {
                    "type": "text",
                    "text": p.get("text").cloned().unwrap_or(Value::from("")),
                }),
                other => Err(GatewayError::InvalidParam {
                    param: "messages".into(),
                    message: format!(
                        "content part type {:?} is not supported by the anthropic backend",
                        other.unwrap_or("none")
                    ),
                }),
            })
            .collect(),
        _ => Ok(Vec::new()),
    }
}

fn assistant_blocks(message: &Value) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    let text = content_text(message.get("content").unwrap_or(&Value::Null));
    if !text.is_empty() {
        blocks.push(crate::object! {"type": "text", "text": text});
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        for call in calls {
            let function = call.get("function").unwrap_or(&Value::Null);
            let arguments = function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input: Value = serde_json::from_slice(arguments.as_bytes()).map_err(|_| {
                GatewayError::InvalidParam {
                    param: "messages".into(),
                    message: "tool call arguments must be a JSON object encoded as a string".into(),
                }
            })?;
            blocks.push(crate::object! {
                "type": "tool_use",
                "id": call.get("id").cloned().unwrap_or(Value::Null),
                "name": function.get("name").cloned().unwrap_or(Value::Null),
                "input": input,
            });
        }
    }
    Ok(blocks)
}

fn tool_result_block(message: &Value) -> Value {
    crate::object! {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
        "content": content_text(message.get("content").unwrap_or(&Value::Null)),
    }
}

fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Some(crate::object! {"type": "auto"}),
            "none" => Some(crate::object! {"type": "none"}),
            "required" | "any" => Some(crate::object! {"type": "any"}),
            _ => None,
        },
        Value::Object(_) => choice
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| crate::object! {"type": "tool", "name": name.clone()}),
        _ => None,
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        Some("end_turn") | Some("stop_sequence") => Value::from("stop"),
        Some("max_tokens") => Value::from("length"),
        Some("tool_use") => Value::from("tool_calls"),
        Some("refusal") => Value::from("content_filter"),
        Some(other) => Value::from(other),
        None => Value::Null,
    }
}

/// Anthropic usage (input incl. cache reads and writes, output) -> [`Usage`].
pub fn anthropic_usage_to_usage(usage: &Value) -> Option<Usage> {
    let field = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: usage.get("input_tokens")?.as_u64()?
            + field("cache_creation_input_tokens")
            + field("cache_read_input_tokens"),
        completion_tokens: usage.get("output_tokens")?.as_u64()?,
    })
}

fn usage_json(u: Usage) -> Value {
    crate::object! {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }
}

/// A chunk's delta carrying one tool call.
fn tool_calls_delta(call: Value) -> Value {
    crate::object! {"tool_calls": vec![call]}
}

/// Translates Anthropic stream events into OpenAI `chat.completion.chunk`s.
#[derive(Debug, Default)]
pub struct AnthropicStreamDecoder {
    created: u64,
    id: String,
    model: Option<String>,
    input_tokens: u64,
    usage: Option<Usage>,
    chars: usize,
    /// Anthropic content-block index -> OpenAI tool-call index.
    tool_index: Vec<(u64, usize)>,
}

impl AnthropicStreamDecoder {
    fn chunk(&self, delta: Value, finish_reason: Value, usage: Option<Usage>) -> String {
        let choice = crate::object! {"index": 0, "delta": delta, "finish_reason": finish_reason};
        let mut chunk = crate::object! {
            "id": self.id.as_str(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.as_deref().unwrap_or(""),
            "choices": vec![choice],
        };
        if let Some(u) = usage {
            chunk["usage"] = usage_json(u);
        }
        crate::jsonwrite::text(&chunk)
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn on_event(&mut self, event: &str, data: &str) -> Decoded {
        let Ok(value) = serde_json::from_slice::<Value>(data.as_bytes()) else {
            return Decoded::Malformed;
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event)
            .to_string();
        let chunks = match kind.as_str() {
            "message_start" => {
                let message = value.get("message").unwrap_or(&Value::Null);
                self.id = message
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("msg")
                    .to_string();
                self.model = message
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.input_tokens = message
                    .get("usage")
                    .and_then(anthropic_usage_to_usage)
                    .map(|u| u.prompt_tokens)
                    .unwrap_or(0);
                vec![self.chunk(
                    crate::object! {"role": "assistant", "content": ""},
                    Value::Null,
                    None,
                )]
            }
            "content_block_start" => {
                let block = value.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let anthropic_index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let index = self.tool_index.len();
                    self.tool_index.push((anthropic_index, index));
                    let function = crate::object! {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": "",
                    };
                    let call = crate::object! {
                        "index": index,
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": function,
                    };
                    vec![self.chunk(tool_calls_delta(call), Value::Null, None)]
                } else {
                    Vec::new()
                }
            }
            "content_block_delta" => {
                let delta = value.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        self.chars += text.chars().count();
                        vec![self.chunk(crate::object! {"content": text}, Value::Null, None)]
                    }
                    Some("input_json_delta") => {
                        let anthropic_index =
                            value.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let index = self
                            .tool_index
                            .iter()
                            .find(|(a, _)| *a == anthropic_index)
                            .map(|(_, i)| *i)
                            .unwrap_or(0);
                        let partial = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        self.chars += partial.chars().count();
                        let call = crate::object! {
                            "index": index,
                            "function": crate::object! {"arguments": partial},
                        };
                        vec![self.chunk(tool_calls_delta(call), Value::Null, None)]
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                let output = value
                    .get("usage")
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64);
                if let Some(output_tokens) = output {
                    self.usage = Some(Usage {
                        prompt_tokens: self.input_tokens,
                        completion_tokens: output_tokens,
                    });
                }
                let stop = value
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                vec![self.chunk(crate::object! {}, finish_reason(stop), self.usage)]
            }
            "message_stop" => return Decoded::Done,
            "error" => {
                // Pass the failure on the way OpenAI-compatible streams do, so SDKs raise.
                let error = value.get("error").unwrap_or(&Value::Null);
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream stream error");
                let kind = error
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream_error");
                let error = crate::object! {
                    "message": message,
                    "type": kind,
                    "param": Value::Null,
                    "code": Value::Null,
                };
                let body = crate::object! {"error": error};
                vec![crate::jsonwrite::text(&body)]
            }
            _ => Vec::new(),
        };
        Decoded::Chunks(chunks)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: Value) -> ChatRequest {
        ChatRequest::parse(value.to_string().as_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn request_translation() {
        let r = request(json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "user", "content": "thanks"}
            ],
            "temperature": 1.5, "stop": "END", "max_completion_tokens": 100,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "seed": 1
        }));
        let body = Anthropic.build_request(&r, "claude-haiku-4-5").unwrap();
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["temperature"], 1.0);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        assert!(body.get("seed").is_none());
        let messages = body["messages"].as_array().unwrap();
        // user, assistant(tool_use), user(tool_result + "thanks") merged
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][0]["type"], "tool_use");
        assert_eq!(messages[1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(messages[2]["content"][0]["type"], "tool_result");
        assert_eq!(messages[2]["content"][1]["text"], "thanks");
        assert_eq!(
            Anthropic
                .build_request(
                    &request(json!({"model": "a", "messages": [{"role": "user", "content": "x"}]})),
                    "m"
                )
                .unwrap()["max_tokens"],
            4096
        );
    }

    #[test]
    fn response_translation() {
        let c = Anthropic
            .parse_response(include_bytes!(
                "../../tests/fixtures/anthropic/message_tool_use.json"
            ))
            .unwrap();
        assert_eq!(c.answer, "Let me check.");
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 25,
                completion_tokens: 40
            })
        );
        assert_eq!(c.body["object"], "chat.completion");
        assert_eq!(c.body["choices"][0]["finish_reason"], "tool_calls");
        let call = &c.body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap()
                ["city"],
            "Paris"
        );
        assert_eq!(c.body["usage"]["total_tokens"], 65);
        assert!(Anthropic.parse_response(b"{}").is_err());
    }

    #[test]
    fn stream_translation() {
        let mut d = AnthropicStreamDecoder::default();
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-haiku-4-5","usage":{"input_tokens":12,"output_tokens":1}}}"#,
            ),
            ("ping", r#"{"type":"ping"}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"f","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}}"#,
            ),
        ];
        let mut chunks = Vec::new();
        for (event, data) in events {
            match d.on_event(event, data) {
                Decoded::Chunks(c) => chunks.extend(c),
                other => panic!("unexpected {other:?}"),
            }
        }
        let parsed: Vec<Value> = chunks
            .iter()
            .map(|c| serde_json::from_str(c).unwrap())
            .collect();
        assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(parsed[1]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(
            parsed[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_9"
        );
        assert_eq!(
            parsed[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(parsed[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(parsed[4]["usage"]["prompt_tokens"], 12);
        assert!(parsed
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "claude-haiku-4-5"));
        assert_eq!(
            d.usage(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 30
            })
        );
        assert_eq!(
            d.on_event("message_stop", r#"{"type":"message_stop"}"#),
            Decoded::Done
        );
    }

    #[test]
    fn stream_error_event_becomes_an_openai_error_chunk_and_chunks_carry_the_time() {
        let options = StreamOptions {
            client_wants_usage: false,
            created: 1_764_000_000,
        };
        let mut d = Anthropic.stream_decoder(options);
        let start = r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#;
        let Decoded::Chunks(start) = d.on_event("message_start", start) else {
            panic!("no chunk")
        };
        let start: Value = serde_json::from_str(&start[0]).unwrap();
        assert_eq!(start["created"], 1_764_000_000u64);
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let Decoded::Chunks(error) = d.on_event("error", error) else {
            panic!("no chunk")
        };
        let error: Value = serde_json::from_str(&error[0]).unwrap();
        assert_eq!(error["error"]["message"], "Overloaded");
        assert_eq!(error["error"]["type"], "overloaded_error");
    }
}

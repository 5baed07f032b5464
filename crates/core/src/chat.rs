//! The OpenAI-compatible chat request (`POST /v1/chat/completions`): validation, the text
//! the router scores, and the OpenAI error body.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;

/// Roles a message may have.
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// A validated chat request, kept in the OpenAI format every provider translates from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// `auto`, a tier name, or a concrete model id.
    pub model: String,
    /// The messages, as sent.
    pub messages: Vec<Value>,
    /// Whether the client asked for server-sent events.
    pub stream: bool,
    /// Every other field (temperature, tools, ...), as sent.
    pub params: Map<String, Value>,
}

impl ChatRequest {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8], max_body_bytes: usize) -> Result<Self, GatewayError> {
        if body.len() > max_body_bytes {
            return Err(GatewayError::PayloadTooLarge {
                limit: max_body_bytes,
                actual: body.len(),
            });
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            GatewayError::BadRequest(format!("request body is not valid JSON: {e}"))
        })?;
        let Value::Object(mut params) = value else {
            return Err(GatewayError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        };
        let model = match params.remove("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m,
            None | Some(Value::Null) => {
                return Err(invalid_param("model", "you must provide a model parameter"))
            }
            Some(_) => return Err(invalid_param("model", "'model' must be a non-empty string")),
        };
        let messages = match params.remove("messages") {
            Some(Value::Array(m)) if !m.is_empty() => m,
            Some(Value::Array(_)) => {
                return Err(invalid_param("messages", "'messages' must not be empty"))
            }
            None | Some(Value::Null) => {
                return Err(invalid_param(
                    "messages",
                    "missing required parameter 'messages'",
                ))
            }
            Some(_) => return Err(invalid_param("messages", "'messages' must be an array")),
        };
        for (i, message) in messages.iter().enumerate() {
            validate_message(i, message)?;
        }
        let stream = match params.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(invalid_param("stream", "'stream' must be a boolean")),
        };
        for (name, check) in NUMERIC_PARAMS {
            if let Some(v) = params.get(*name) {
                if !v.is_null() && !check(v) {
                    return Err(invalid_param(name, &format!("invalid value for '{name}'")));
                }
            }
        }
        Ok(Self {
            model,
            messages,
            stream,
            params,
        })
    }

    /// Whether the client asked for usage in the stream (`stream_options.include_usage`).
    pub fn wants_stream_usage(&self) -> bool {
        self.params
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The text the router scores: the latest user turn, preceded by the user turn before
    /// it when the latest is a short follow-up ("and why?"), so that context carries over.
    /// Bounded to `max_bytes` (the end is kept: it is the question).
    pub fn routing_text(&self, max_bytes: usize) -> String {
        let mut user_turns = self
            .messages
            .iter()
            .rev()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(message_text);
        let latest = user_turns.next().unwrap_or_default();
        let mut text = if latest.chars().count() < 200 {
            match user_turns.next() {
                Some(previous) => format!("{previous}\n{latest}"),
                None => latest,
            }
        } else {
            latest
        };
        if text.len() > max_bytes {
            let mut cut = text.len() - max_bytes;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text.split_off(cut);
        }
        text
    }

    /// Total characters of all message text (for estimating prompt tokens).
    pub fn prompt_chars(&self) -> usize {
        self.messages
            .iter()
            .map(|m| message_text(m).chars().count())
            .sum()
    }

    /// A one-turn request, as `/query` sends it.
    pub fn single_turn(model: &str, query: &str, max_tokens: Option<u32>, stream: bool) -> Self {
        let mut params = Map::new();
        if let Some(limit) = max_tokens {
            params.insert("max_tokens".into(), json!(limit));
        }
        Self {
            model: model.to_string(),
            messages: vec![json!({"role": "user", "content": query})],
            stream,
            params,
        }
    }
}

type ParamCheck = fn(&Value) -> bool;

/// Numeric parameters and what makes them valid (the upstream checks ranges further).
const NUMERIC_PARAMS: &[(&str, ParamCheck)] = &[
    ("temperature", |v| {
        v.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t))
    }),
    ("top_p", |v| {
        v.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
    }),
    ("max_tokens", |v| v.as_u64().is_some_and(|t| t >= 1)),
    ("max_completion_tokens", |v| {
        v.as_u64().is_some_and(|t| t >= 1)
    }),
    ("n", |v| v.as_u64().is_some_and(|t| t >= 1)),
    ("seed", |v| v.is_i64() || v.is_u64()),
    ("random_seed", |v| v.is_u64()),
    ("presence_penalty", |v| {
        v.as_f64().is_some_and(|t| (-2.0..=2.0).contains(&t))
    }),
    ("frequency_penalty", |v| {
        v.as_f64().is_some_and(|t| (-2.0..=2.0).contains(&t))
    }),
];

fn validate_message(index: usize, message: &Value) -> Result<(), GatewayError> {
    let param = format!("messages[{index}]");
    let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
        invalid_param(&param, &format!("{param} must be an object with a 'role'"))
    })?;
    if !ROLES.contains(&role) {
        return Err(invalid_param(
            &format!("{param}.role"),
            &format!("invalid role '{role}' in {param}: expected one of {ROLES:?}"),
        ));
    }
    match message.get("content") {
        None | Some(Value::Null) if role == "assistant" => Ok(()),
        Some(Value::String(_)) | Some(Value::Array(_)) => Ok(()),
        _ => Err(invalid_param(
            &format!("{param}.content"),
            &format!("{param}.content must be a string or an array of content parts"),
        )),
    }
}

/// The text of a message's content: a string, or the `text` parts of an array.
pub fn message_text(message: &Value) -> String {
    content_text(message.get("content").unwrap_or(&Value::Null))
}

/// The text of a `content` value.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn invalid_param(param: &str, message: &str) -> GatewayError {
    GatewayError::InvalidParam {
        param: param.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatRequest, GatewayError> {
        ChatRequest::parse(body.as_bytes(), 1 << 20)
    }

    fn param_of(body: &str) -> String {
        match parse(body) {
            Err(GatewayError::InvalidParam { param, .. }) => param,
            other => panic!("expected InvalidParam for {body}, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_full_request() {
        let r = parse(
            r#"{"model": "auto", "messages": [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "stream": true, "temperature": 0.2, "seed": 7, "tools": [],
                "stream_options": {"include_usage": true}}"#,
        )
        .unwrap();
        assert_eq!(r.model, "auto");
        assert!(r.stream && r.wants_stream_usage());
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.params["seed"], 7);
        assert!(!r.params.contains_key("model"));
        assert_eq!(r.routing_text(1000), "hi");
    }

    #[test]
    fn invalid_requests_name_the_parameter() {
        assert_eq!(
            param_of(r#"{"messages": [{"role": "user", "content": "x"}]}"#),
            "model"
        );
        assert_eq!(param_of(r#"{"model": "auto"}"#), "messages");
        assert_eq!(param_of(r#"{"model": "auto", "messages": []}"#), "messages");
        assert_eq!(
            param_of(r#"{"model": "auto", "messages": [{"content": "x"}]}"#),
            "messages[0]"
        );
        assert_eq!(
            param_of(r#"{"model": "auto", "messages": [{"role": "robot", "content": "x"}]}"#),
            "messages[0].role"
        );
        assert_eq!(
            param_of(r#"{"model": "auto", "messages": [{"role": "user", "content": 5}]}"#),
            "messages[0].content"
        );
        assert_eq!(
            param_of(
                r#"{"model": "auto", "messages": [{"role": "user", "content": "x"}], "temperature": 3}"#
            ),
            "temperature"
        );
        assert_eq!(
            param_of(
                r#"{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#
            ),
            "stream"
        );
        assert!(matches!(parse("{"), Err(GatewayError::BadRequest(_))));
    }

    #[test]
    fn assistant_tool_call_turn_may_have_no_content() {
        assert!(parse(
            r#"{"model": "auto", "messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "tool_calls": []}]}"#
        )
        .is_ok());
    }

    #[test]
    fn routing_text_carries_context_for_short_follow_ups() {
        let r = parse(
            r#"{"model": "auto", "messages": [
                {"role": "user", "content": "Prove Fermat's little theorem."},
                {"role": "assistant", "content": "..."},
                {"role": "user", "content": "and why?"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.routing_text(1000),
            "Prove Fermat's little theorem.\nand why?"
        );
        assert_eq!(r.routing_text(8), "and why?");
        let long = "é".repeat(300);
        let r = ChatRequest::single_turn("auto", &long, None, false);
        let text = r.routing_text(101);
        assert!(text.len() <= 101 && text.chars().all(|c| c == 'é'));
    }
}

//! The OpenAI-compatible chat request (`POST /v1/chat/completions`): validation, the text
//! the router scores, and the OpenAI error body.

use serde_json::{Map, Value};

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
        crate::api::check_body_size(body.len(), max_body_bytes)?;
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
            params.insert("max_tokens".into(), Value::from(limit));
        }
        Self {
            model: model.to_string(),
            messages: vec![crate::object! {"role": "user", "content": query}],
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
    use serde_json::json;

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

    const ONE_USER_TURN: &str =
        r#"{"model": "auto", "messages": [{"role": "user", "content": "x"}]}"#;

    /// A valid request with `extra` (`"name": value, `) before its other fields.
    fn with(extra: &str) -> String {
        format!(r#"{{{extra}"model": "auto", "messages": [{{"role": "user", "content": "x"}}]}}"#)
    }

    #[test]
    fn body_limit_is_inclusive() {
        let body = ONE_USER_TURN.as_bytes();
        assert!(ChatRequest::parse(body, body.len()).is_ok());
        assert_eq!(
            ChatRequest::parse(body, body.len() - 1),
            Err(GatewayError::PayloadTooLarge {
                variable: "MAX_BODY_BYTES",
                limit: body.len() - 1,
                actual: Some(body.len())
            })
        );
        assert!(matches!(
            ChatRequest::parse(body, 10),
            Err(GatewayError::PayloadTooLarge {
                limit: 10,
                actual: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn model_must_be_a_non_empty_string() {
        for body in [
            r#"{"model": "", "messages": [{"role": "user", "content": "x"}]}"#,
            r#"{"model": "  \t", "messages": [{"role": "user", "content": "x"}]}"#,
            r#"{"model": 5, "messages": [{"role": "user", "content": "x"}]}"#,
            r#"{"model": null, "messages": [{"role": "user", "content": "x"}]}"#,
        ] {
            assert_eq!(param_of(body), "model", "{body}");
        }
        assert_eq!(
            parse(r#"{"model": " m ", "messages": [{"role": "user", "content": "x"}]}"#)
                .unwrap()
                .model,
            " m "
        );
    }

    #[test]
    fn messages_must_be_a_non_empty_array() {
        let message = |body: &str| match parse(body) {
            Err(GatewayError::InvalidParam { param, message }) => (param, message),
            other => panic!("expected InvalidParam for {body}, got {other:?}"),
        };
        assert_eq!(
            message(r#"{"model": "auto", "messages": []}"#),
            ("messages".into(), "'messages' must not be empty".into())
        );
        assert_eq!(
            message(r#"{"model": "auto", "messages": null}"#),
            (
                "messages".into(),
                "missing required parameter 'messages'".into()
            )
        );
        assert_eq!(
            message(r#"{"model": "auto", "messages": {"role": "user"}}"#),
            ("messages".into(), "'messages' must be an array".into())
        );
        // the index of the first invalid message is named
        assert_eq!(
            param_of(
                r#"{"model": "auto", "messages": [{"role": "user", "content": "x"},
                    {"role": "user", "content": "y"}, {"role": "user"}]}"#
            ),
            "messages[2].content"
        );
    }

    #[test]
    fn only_assistant_turns_may_omit_content() {
        for role in ["system", "developer", "user", "tool"] {
            for content in ["", r#", "content": null"#] {
                let body =
                    format!(r#"{{"model": "auto", "messages": [{{"role": "{role}"{content}}}]}}"#);
                assert_eq!(param_of(&body), "messages[0].content", "{body}");
            }
            let body = format!(
                r#"{{"model": "auto", "messages": [{{"role": "{role}", "content": "x"}}]}}"#
            );
            assert!(parse(&body).is_ok(), "{body}");
        }
        assert!(parse(r#"{"model": "auto", "messages": [{"role": "assistant"}]}"#).is_ok());
        assert_eq!(
            param_of(r#"{"model": "auto", "messages": [{"role": "assistant", "content": 1}]}"#),
            "messages[0].content"
        );
    }

    #[test]
    fn stream_usage_is_asked_for_explicitly() {
        let wants = |extra: &str| parse(&with(extra)).unwrap().wants_stream_usage();
        assert!(!wants(""));
        assert!(!wants(r#""stream_options": {}, "#));
        assert!(!wants(r#""stream_options": {"include_usage": false}, "#));
        assert!(!wants(r#""stream_options": {"include_usage": "yes"}, "#));
        assert!(wants(r#""stream_options": {"include_usage": true}, "#));
        assert!(!parse(ONE_USER_TURN).unwrap().stream);
        assert!(!parse(&with(r#""stream": false, "#)).unwrap().stream);
        assert!(!parse(&with(r#""stream": null, "#)).unwrap().stream);
    }

    #[test]
    fn numeric_parameters_at_their_bounds() {
        let accepted = |name: &str, value: &str| parse(&with(&format!(r#""{name}": {value}, "#)));
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "temperature",
                &["0", "0.0", "1", "2", "2.0", "null"],
                &["-0.01", "2.01", "\"1\""],
            ),
            ("top_p", &["0", "0.5", "1"], &["-0.01", "1.01", "true"]),
            ("max_tokens", &["1", "4096"], &["0", "-1", "1.5"]),
            ("max_completion_tokens", &["1", "4096"], &["0", "-1", "1.5"]),
            ("n", &["1", "2"], &["0", "-1", "1.5"]),
            (
                "seed",
                &["0", "-1", "-9223372036854775808", "18446744073709551615"],
                &["1.5", "\"7\""],
            ),
            (
                "random_seed",
                &["0", "18446744073709551615"],
                &["-1", "1.5"],
            ),
            (
                "presence_penalty",
                &["-2", "-2.0", "-1", "0", "2"],
                &["-2.01", "2.01", "\"0\""],
            ),
            (
                "frequency_penalty",
                &["-2", "-2.0", "-1", "0", "2"],
                &["-2.01", "2.01", "\"0\""],
            ),
        ];
        for (name, valid, invalid) in cases {
            for value in *valid {
                let r = accepted(name, value);
                assert!(r.is_ok(), "{name} = {value}: {r:?}");
            }
            for value in *invalid {
                match accepted(name, value) {
                    Err(GatewayError::InvalidParam { param, message }) => {
                        assert_eq!(param, *name);
                        assert_eq!(message, format!("invalid value for '{name}'"));
                    }
                    other => panic!("{name} = {value}: expected InvalidParam, got {other:?}"),
                }
            }
        }
        // valid parameters are kept as sent
        let r = accepted("frequency_penalty", "-1.5").unwrap();
        assert_eq!(r.params["frequency_penalty"], -1.5);
    }

    #[test]
    fn short_follow_ups_are_under_200_characters() {
        let request = |latest: &str| {
            ChatRequest::parse(
                json!({"model": "auto", "messages": [
                    {"role": "user", "content": "first"},
                    {"role": "user", "content": latest}]})
                .to_string()
                .as_bytes(),
                1 << 20,
            )
            .unwrap()
        };
        let short = "é".repeat(199);
        assert_eq!(
            request(&short).routing_text(1000),
            format!("first\n{short}")
        );
        let long = "é".repeat(200);
        assert_eq!(request(&long).routing_text(1000), long);
        // a single user turn, however short, stands alone
        assert_eq!(
            ChatRequest::single_turn("auto", "hi", None, false).routing_text(1000),
            "hi"
        );
    }

    #[test]
    fn routing_text_keeps_the_end_within_max_bytes() {
        let r = ChatRequest::single_turn("auto", "abcdef", None, false);
        assert_eq!(r.routing_text(6), "abcdef");
        assert_eq!(r.routing_text(5), "bcdef");
        assert_eq!(r.routing_text(1), "f");
        assert_eq!(r.routing_text(0), "");
        // the cut moves forward to a character boundary: fewer bytes, never more
        let r = ChatRequest::single_turn("auto", "aéb", None, false);
        assert_eq!(r.routing_text(4), "aéb");
        assert_eq!(r.routing_text(3), "éb");
        assert_eq!(r.routing_text(2), "b");
    }

    #[test]
    fn prompt_characters_count_every_message() {
        let r = parse(
            r#"{"model": "auto", "messages": [{"role": "system", "content": "ab"},
                {"role": "user", "content": [{"type": "text", "text": "é"},
                    {"type": "image_url"}, {"type": "text", "text": "cd"}]},
                {"role": "assistant", "content": null}]}"#,
        )
        .unwrap();
        // "ab" + "é\ncd" + ""
        assert_eq!(r.prompt_chars(), 6);
        assert_eq!(content_text(&json!(5)), "");
    }

    #[test]
    fn single_turn_carries_max_tokens_and_stream() {
        let r = ChatRequest::single_turn("large", "q", Some(64), true);
        assert_eq!(r.model, "large");
        assert!(r.stream);
        assert_eq!(r.params["max_tokens"], 64);
        assert_eq!(r.messages, vec![json!({"role": "user", "content": "q"})]);
        let r = ChatRequest::single_turn("auto", "q", None, false);
        assert!(!r.stream && r.params.is_empty());
    }
}

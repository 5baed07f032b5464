//! Property tests of request parsing and validation through the endpoints' parse stage
//! (`QueryApi::parse` for `POST /query`, `ChatApi::parse` for `POST /v1/chat/completions`):
//! arbitrary bytes and arbitrary JSON never panic and never fail with a server error (a
//! bad request is the client's: 400 or 413); valid requests come through unchanged, and
//! the JSON formatting of a body does not change what it parses to.
//!
//! Bounded for CI: 512 cases per property (a few seconds in all).

// Helpers outside #[test] functions: a failed expectation there is a failed test too.
#![allow(clippy::expect_used)]

use llm_mux_core::config::Config;
use llm_mux_core::endpoint::{ChatApi, Endpoint, QueryApi};
use llm_mux_core::error::GatewayError;
use llm_mux_core::routing::Requested;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A small MAX_QUERY_BYTES so that generated queries land on both sides of the limit.
const MAX_QUERY: usize = 64;

fn config() -> Config {
    Config::from_lookup(|name| (name == "MAX_QUERY_BYTES").then(|| MAX_QUERY.to_string()))
        .expect("the test configuration is valid")
}

/// Field names the parsers look at, mixed with arbitrary ones, so that generated objects
/// reach the validation of each field, not only "missing field".
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "query", "tier", "stream", "max_tokens", "model", "messages", "role", "content",
            "temperature", "top_p", "n", "tools", "tool_calls", "tool_call_id", "name",
            "stream_options", "include_usage", "type", "text", "seed", "max_completion_tokens",
        ])
        .prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            "auto",
            "small",
            "large",
            "user",
            "assistant",
            "system",
            ""
        ])
        .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A non-blank string (the parsers refuse blank queries and messages).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{1,{max}}}"))
        .expect("valid regex")
        .prop_filter("not blank", |s| !s.trim().is_empty())
}

/// A body as the JSON parser reads it.
fn as_read(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("valid JSON")
}

/// Whether `result` is a success or a client error (400 or 413), never a server error.
fn is_client_outcome<T>(result: &Result<T, GatewayError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => matches!(e.status(), 400 | 413),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_and_are_client_errors(body in vec(any::<u8>(), 0..600)) {
        let config = config();
        let query = QueryApi.parse(&body, &config);
        prop_assert!(is_client_outcome(&query), "/query: {query:?}");
        let chat = ChatApi.parse(&body, &config);
        prop_assert!(is_client_outcome(&chat), "chat: {chat:?}");
    }

    #[test]
    fn arbitrary_json_never_panics_and_is_a_client_error_or_valid(value in json_value()) {
        let config = config();
        let body = serde_json::to_vec(&value).expect("serialisable");
        let query = QueryApi.parse(&body, &config);
        prop_assert!(is_client_outcome(&query), "/query {value}: {query:?}");
        let chat = ChatApi.parse(&body, &config);
        prop_assert!(is_client_outcome(&chat), "chat {value}: {chat:?}");
        // Error messages are what a client is told: never empty.
        for error in [query.err(), chat.err()].into_iter().flatten() {
            prop_assert!(!error.client_message().is_empty());
        }
    }

    #[test]
    fn a_valid_query_comes_through_unchanged_and_an_oversized_one_is_413(
        query in text(2 * MAX_QUERY),
        stream in any::<bool>(),
        tier in prop::sample::select(vec![None, Some("auto"), Some("small"), Some("large")]),
    ) {
        let config = config();
        let mut body = json!({"query": query, "stream": stream});
        if let Some(tier) = tier {
            body["tier"] = json!(tier);
        }
        let parsed = QueryApi.parse(&serde_json::to_vec(&body).expect("serialisable"), &config);
        if query.len() > MAX_QUERY {
            let error = parsed.expect_err("an oversized query is refused");
            prop_assert_eq!(error.status(), 413);
        } else {
            let parsed = parsed.expect("a valid query parses");
            prop_assert_eq!(&parsed.routing_text, &query);
            prop_assert_eq!(parsed.chat.stream, stream);
            let expected = match tier {
                None | Some("auto") => Requested::Auto,
                Some(name) => Requested::Tier(config.tier_by_name(name).expect("a configured tier")),
            };
            prop_assert_eq!(parsed.requested, expected);
        }
    }

    #[test]
    fn a_valid_chat_request_keeps_its_messages_and_flags(
        turns in vec(text(200), 1..6),
        stream in any::<bool>(),
        temperature in 0.0f64..=2.0,
    ) {
        let config = config();
        let messages: Vec<Value> = turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                json!({"role": role, "content": t})
            })
            .collect();
        let body = json!({
            "model": "auto", "messages": messages, "stream": stream, "temperature": temperature,
        });
        let bytes = serde_json::to_vec(&body).expect("serialisable");
        let parsed = ChatApi.parse(&bytes, &config).expect("a valid chat request parses");
        prop_assert_eq!(&parsed.chat.messages, &messages);
        prop_assert_eq!(parsed.chat.stream, stream);
        prop_assert_eq!(parsed.requested, Requested::Auto);
        // Numbers are kept as the JSON parser reads them (serde_json without
        // `float_roundtrip` may differ from the sent double in the last bit).
        let read = as_read(&bytes);
        prop_assert_eq!(parsed.chat.params.get("temperature"), read.get("temperature"));
        // The router scores the end of the conversation's user text, within MAX_QUERY_BYTES.
        let latest_user = &turns[(turns.len() - 1) / 2 * 2];
        let text = &parsed.routing_text;
        prop_assert!(text.len() <= MAX_QUERY, "{} bytes", text.len());
        prop_assert!(
            latest_user.ends_with(text.as_str()) || text.ends_with(latest_user.as_str()),
            "{text:?} vs the latest user turn {latest_user:?}"
        );
    }

    #[test]
    fn json_formatting_does_not_change_what_a_body_parses_to(value in json_value()) {
        let config = config();
        let compact = serde_json::to_vec(&value).expect("serialisable");
        let pretty = serde_json::to_vec_pretty(&value).expect("serialisable");
        prop_assert_eq!(QueryApi.parse(&compact, &config).ok(), QueryApi.parse(&pretty, &config).ok());
        prop_assert_eq!(ChatApi.parse(&compact, &config).ok(), ChatApi.parse(&pretty, &config).ok());
    }

    #[test]
    fn unknown_fields_of_a_chat_request_are_kept_as_sent(
        extra in btree_map("x_[a-z]{1,8}", json_value(), 0..4),
    ) {
        let config = config();
        let mut body = Map::new();
        body.insert("model".into(), json!("large"));
        body.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
        for (k, v) in &extra {
            body.insert(k.clone(), v.clone());
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).expect("serialisable");
        let parsed = ChatApi.parse(&bytes, &config).expect("unknown fields are not refused");
        let read = as_read(&bytes);
        for k in extra.keys() {
            prop_assert_eq!(parsed.chat.params.get(k), read.get(k));
        }
        prop_assert_eq!(parsed.requested, Requested::Tier(config.tier_by_name("large").expect("large")));
    }
}

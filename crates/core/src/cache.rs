//! The response cache's policy: which requests may be answered from the cache, and under
//! which key.
//!
//! A request is cacheable when CACHE_TTL_SECONDS is set, it is not streamed, and it is
//! deterministic: `temperature` 0, or opted in with `x-llm-mux-cache: on`.
//! `x-llm-mux-cache: off` or `Cache-Control: no-cache` / `no-store` bypass the cache. The
//! key is the SHA-256 of the normalised upstream request (the body the plan sends: model,
//! messages and parameters, serialised with sorted keys, without the stream flags) within
//! the key's scope (its key id; `shared` with CACHE_SCOPE=shared; `public` without keys),
//! written as a URL for the Workers Cache API. It must not do I/O: the shell reads and
//! writes the cache.

use sha2::{Digest, Sha256};

use crate::config::{CacheScope, Config};
use crate::plan::Plan;

/// What the cache stage does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// No cache configured, or the request is not cacheable (streamed, not
    /// deterministic): no header, no count.
    Off,
    /// The client asked to bypass it (`x-llm-mux-cache: bypass`).
    Bypass,
    /// Look up (and on a miss, store) under this URL.
    Key(String),
}

impl CacheUse {
    /// The `x-llm-mux-cache` value of an answer that did not come from the cache.
    pub fn miss_header(&self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Bypass => Some("bypass"),
            Self::Key(_) => Some("miss"),
        }
    }
}

/// The cache stage's decision for `plan`, from the request's `x-llm-mux-cache` and
/// `Cache-Control` headers. A streamed request is looked up under the key of the same
/// request unstreamed (and served as a synthetic stream on a hit, [`synthetic_stream`]);
/// it never stores (there is no whole answer to store).
pub fn decide(
    config: &Config,
    key_id: Option<&str>,
    plan: &Plan,
    opt: Option<&str>,
    cache_control: Option<&str>,
) -> CacheUse {
    if config.cost.cache_ttl_seconds == 0 {
        return CacheUse::Off;
    }
    let opt = opt.map(|v| v.trim().to_ascii_lowercase());
    let no_cache = cache_control.is_some_and(|v| {
        v.split(',').any(|d| {
            let d = d.trim().to_ascii_lowercase();
            d == "no-cache" || d == "no-store"
        })
    });
    if opt.as_deref() == Some("off") || no_cache {
        return CacheUse::Bypass;
    }
    let deterministic = plan
        .body
        .get("temperature")
        .and_then(serde_json::Value::as_f64)
        == Some(0.0);
    if !deterministic && opt.as_deref() != Some("on") {
        return CacheUse::Off;
    }
    CacheUse::Key(key_url(config, key_id, plan))
}

/// The cache key of `plan` in the scope of `key_id`, as a URL.
pub fn key_url(config: &Config, key_id: Option<&str>, plan: &Plan) -> String {
    let mut body = plan.body.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.remove("stream");
        fields.remove("stream_options");
    }
    let mut hash = Sha256::new();
    hash.update(plan.url.as_bytes());
    hash.update(b"\n");
    hash.update(crate::jsonwrite::text(&body).as_bytes());
    let scope = match (config.cost.cache_scope, key_id) {
        (CacheScope::Shared, _) => "shared",
        (CacheScope::Key, Some(id)) => id,
        (CacheScope::Key, None) => "public",
    };
    format!(
        "https://cache.llm-mux.invalid/{scope}/{}",
        crate::numfmt::hex(&hash.finalize())
    )
}

/// A cached whole answer (`body`: the `chat.completion` object) as an OpenAI-shaped
/// event stream: one chunk with the whole message (role, content, tool calls with their
/// indexes) and its finish reason, a usage-only chunk, then `[DONE]`. Relayed through the
/// OpenAI-compatible stream decoder, it reaches the client in the endpoint's own format.
pub fn synthetic_stream(body: &serde_json::Value) -> String {
    use serde_json::{Map, Value};
    let choice = body.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut delta = Map::new();
    delta.insert("role".into(), Value::from("assistant"));
    if let Some(content) = message.get("content").filter(|c| !c.is_null()) {
        delta.insert("content".into(), content.clone());
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let mut call = call.clone();
                if let Some(fields) = call.as_object_mut() {
                    fields.insert("index".into(), Value::from(i));
                }
                call
            })
            .collect();
        delta.insert("tool_calls".into(), Value::Array(indexed));
    }
    let field = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
    let head = |choices: Vec<Value>| {
        crate::object! {
            "id": field("id"),
            "object": "chat.completion.chunk",
            "created": field("created"),
            "model": field("model"),
            "choices": choices,
        }
    };
    let event = |text: &mut String, chunk: &Value| {
        text.push_str("data: ");
        text.push_str(&crate::jsonwrite::text(chunk));
        text.push_str("\n\n");
    };
    let first = head(vec![crate::object! {
        "index": 0,
        "delta": Value::Object(delta),
        "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
    }]);
    let mut text = String::new();
    event(&mut text, &first);
    if let Some(usage) = body.get("usage") {
        let mut last = head(Vec::new());
        last["usage"] = usage.clone();
        event(&mut text, &last);
    }
    text.push_str("data: [DONE]\n\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatRequest;
    use crate::config::testing::config;
    use crate::routing::Requested;

    fn plan_of(c: &Config, temperature: Option<f64>, stream: bool, text: &str) -> Plan {
        let mut r = ChatRequest::single_turn("auto", text, Some(50), stream);
        if let Some(t) = temperature {
            r.params.insert("temperature".into(), serde_json::json!(t));
        }
        crate::plan::plan(c, &r, Requested::Tier(0), text).unwrap()
    }

    #[test]
    fn only_deterministic_whole_requests_are_cached() {
        let c = config(&[("CACHE_TTL_SECONDS", "60")]);
        let p = plan_of(&c, Some(0.0), false, "hi");
        assert!(matches!(decide(&c, None, &p, None, None), CacheUse::Key(_)));
        // Not deterministic: off, unless opted in.
        let warm = plan_of(&c, Some(0.7), false, "hi");
        assert_eq!(decide(&c, None, &warm, None, None), CacheUse::Off);
        assert!(matches!(
            decide(&c, None, &warm, Some("on"), None),
            CacheUse::Key(_)
        ));
        // Bypassed on request.
        assert_eq!(decide(&c, None, &p, Some("off"), None), CacheUse::Bypass);
        assert_eq!(
            decide(&c, None, &p, None, Some("max-age=0, no-cache")),
            CacheUse::Bypass
        );
        assert_eq!(
            decide(&c, None, &p, None, Some("no-store")),
            CacheUse::Bypass
        );
        // A stream is looked up under the whole request's key; a cache without TTL is off.
        let streamed = plan_of(&c, Some(0.0), true, "hi");
        assert_eq!(
            decide(&c, None, &streamed, None, None),
            decide(&c, None, &p, None, None)
        );
        let off = config(&[]);
        assert_eq!(
            decide(
                &off,
                None,
                &plan_of(&off, Some(0.0), false, "hi"),
                Some("on"),
                None
            ),
            CacheUse::Off
        );
    }

    #[test]
    fn a_cached_answer_streams_as_openai_chunks() {
        let body = serde_json::json!({
            "id": "c1", "object": "chat.completion", "created": 7, "model": "m-1",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Hi",
                "tool_calls": [{"id": "abcdefghi", "type": "function",
                                "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        let text = synthetic_stream(&body);
        let events: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2], "[DONE]");
        let first: serde_json::Value = serde_json::from_str(events[0]).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(first["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
        // The OpenAI-compatible decoder reads it back with its usage.
        let mut decoder = crate::providers::BackendKind::OpenAi
            .provider()
            .stream_decoder(crate::providers::StreamOptions::default());
        for e in &events {
            decoder.on_event("", e);
        }
        let usage = decoder.usage().unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
    }

    #[test]
    fn keys_follow_the_request_and_the_scope() {
        let c = config(&[("CACHE_TTL_SECONDS", "60")]);
        let p = plan_of(&c, Some(0.0), false, "hi");
        let same = plan_of(&c, Some(0.0), false, "hi");
        let other = plan_of(&c, Some(0.0), false, "hello");
        assert_eq!(key_url(&c, Some("k1"), &p), key_url(&c, Some("k1"), &same));
        assert_ne!(key_url(&c, Some("k1"), &p), key_url(&c, Some("k1"), &other));
        // Another key's scope never shares an entry, unless configured shared.
        assert_ne!(key_url(&c, Some("k1"), &p), key_url(&c, Some("k2"), &p));
        assert!(key_url(&c, Some("k1"), &p).starts_with("https://cache.llm-mux.invalid/k1/"));
        assert!(key_url(&c, None, &p).contains("/public/"));
        let shared = config(&[("CACHE_TTL_SECONDS", "60"), ("CACHE_SCOPE", "shared")]);
        assert_eq!(
            key_url(&shared, Some("k1"), &p),
            key_url(&shared, Some("k2"), &p)
        );
        // The stream flag is not part of the key.
        let mut streamed = plan_of(&c, Some(0.0), false, "hi");
        streamed.body["stream"] = serde_json::json!(false);
        assert_eq!(key_url(&c, None, &p), key_url(&c, None, &streamed));
        // 64 hex digits of SHA-256.
        assert_eq!(key_url(&c, None, &p).rsplit('/').next().unwrap().len(), 64);
    }
}

//! Property tests of the streamed-answer decoding: the SSE parser
//! (`providers::sse::SseParser`) and the providers' stream decoders. Arbitrary bytes and
//! arbitrary events never panic; decoding does not depend on how the network chunks the
//! byte stream; well-formed events come out as they were written; the OpenAI-shaped
//! decoder (Mistral, OpenAI-compatible) and the Anthropic one count the streamed text and
//! keep the usage and model whatever the text holds.
//!
//! Bounded for CI: 512 cases per property (a few seconds in all).

// Helpers outside #[test] functions: a failed expectation there is a failed test too.
#![allow(clippy::expect_used)]

use llm_mux_core::providers::sse::{SseEvent, SseParser};
use llm_mux_core::providers::{BackendKind, Decoded, StreamOptions, Usage};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};

const BACKENDS: [BackendKind; 3] = [
    BackendKind::Mistral,
    BackendKind::OpenAi,
    BackendKind::Anthropic,
];

/// Every event of `bytes` fed in one piece, then `finish`.
fn parse_whole(bytes: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = parser.feed(bytes);
    events.extend(parser.finish());
    events
}

/// Every event of `bytes` fed in pieces cut at `cuts` (positions, any order), then `finish`.
fn parse_chunked(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        events.extend(parser.feed(&bytes[start..cut]));
        start = cut;
    }
    events.extend(parser.finish());
    events
}

/// Bytes that look like SSE often enough to reach every branch of the parser.
fn sse_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"{\"choices\":[{\"delta\":{\"content\":\"".to_vec()),
        vec(any::<u8>(), 0..12),
        ".{0,12}".prop_map(String::into_bytes),
    ];
    vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// A field value: any text without line breaks.
fn line_text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,30}"
}

/// An event as a server writes it: a name (maybe none) and one or more data lines.
fn event() -> impl Strategy<Value = (String, Vec<String>)> {
    ("[a-z_]{0,12}", vec(line_text(), 1..4))
}

/// The SSE text of `events`, with `\n` or `\r\n` line ends, and comments between events.
fn encode(events: &[(String, Vec<String>)], crlf: bool, comments: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for (name, lines) in events {
        if comments {
            out.push_str(&format!(": keep-alive{nl}"));
        }
        if !name.is_empty() {
            out.push_str(&format!("event: {name}{nl}"));
        }
        for line in lines {
            out.push_str(&format!("data: {line}{nl}"));
        }
        out.push_str(nl);
    }
    out.into_bytes()
}

/// Content pieces of a streamed answer: any text, including quotes, backslashes,
/// non-ASCII and the word "content" itself.
fn content_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,24}",
        1 => Just(String::from("\"content\": \"x\"")),
        1 => Just(String::from("\\\"")),
        1 => Just(String::from("héllo wörld ✓ 🎉")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parsing_arbitrary_bytes_never_panics_and_ignores_chunking(
        bytes in prop_oneof![vec(any::<u8>(), 0..400), sse_like_bytes()],
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let whole = parse_whole(&bytes);
        prop_assert_eq!(parse_chunked(&bytes, &cuts), whole.clone());
        // One byte at a time, the worst chunking a network can do.
        let every: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(parse_chunked(&bytes, &every), whole);
    }

    #[test]
    fn well_formed_events_come_out_as_written(
        events in vec(event(), 0..8),
        crlf in any::<bool>(),
        comments in any::<bool>(),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let bytes = encode(&events, crlf, comments);
        let expected: Vec<SseEvent> = events
            .iter()
            .map(|(name, lines)| SseEvent { event: name.clone(), data: lines.join("\n") })
            .collect();
        prop_assert_eq!(parse_chunked(&bytes, &cuts), expected);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_events(
        events in vec(
            (
                prop_oneof![
                    Just(String::new()),
                    prop::sample::select(vec![
                        "message_start", "content_block_start", "content_block_delta",
                        "message_delta", "message_stop", "error", "ping",
                    ]).prop_map(str::to_string),
                    ".{0,10}",
                ],
                prop_oneof![
                    ".{0,60}",
                    Just(String::from("[DONE]")),
                    any_json().prop_map(|v| v.to_string()),
                ],
            ),
            0..12,
        ),
        wants_usage in any::<bool>(),
    ) {
        for backend in BACKENDS {
            let mut decoder = backend.provider().stream_decoder(StreamOptions {
                client_wants_usage: wants_usage,
                created: 1,
            });
            for (name, data) in &events {
                if let Decoded::Chunks(chunks) = decoder.on_event(name, data) {
                    // What the decoder writes itself is JSON a client can parse.
                    for chunk in chunks {
                        prop_assert!(serde_json::from_str::<Value>(&chunk).is_ok(), "{backend:?}: {chunk}");
                    }
                }
            }
            let _ = (decoder.usage(), decoder.model(), decoder.completion_chars());
        }
    }

    #[test]
    fn openai_shaped_streams_are_counted_whatever_the_text_and_the_chunking(
        pieces in vec(content_piece(), 1..10),
        model in "[a-z0-9-]{1,20}",
        prompt_tokens in 0u64..100_000,
        completion_tokens in 0u64..100_000,
        cuts in vec(any::<usize>(), 0..12),
    ) {
        // The chunks as Mistral / an OpenAI-compatible server writes them.
        let last = pieces.len() - 1;
        let mut sse = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let mut chunk = json!({
                "id": "c", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": piece},
                             "finish_reason": if i == last { json!("stop") } else { Value::Null }}],
            });
            if i == last {
                chunk["usage"] = json!({"prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens});
            }
            sse.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
        }
        sse.extend_from_slice(b"data: [DONE]\n\n");

        for backend in [BackendKind::Mistral, BackendKind::OpenAi] {
            let mut decoder = backend.provider().stream_decoder(StreamOptions::default());
            let mut done = false;
            for event in parse_chunked(&sse, &cuts) {
                prop_assert!(!done, "{backend:?}: an event after [DONE]");
                done = decoder.on_event(&event.event, &event.data) == Decoded::Done;
            }
            prop_assert!(done, "{backend:?}: [DONE] seen");
            prop_assert_eq!(decoder.usage(), Some(Usage { prompt_tokens, completion_tokens }));
            prop_assert_eq!(decoder.model(), Some(model.as_str()));
            // The streamed text's length, for estimates when no usage comes. serde_json
            // writes the control characters below U+0020 without a short escape as
            // \u00XX, which the counter (it scans the JSON text without parsing it) counts
            // as 5 characters each: a bounded over-count, pinned here.
            let chars: usize = pieces.iter().map(|p| p.chars().count()).sum();
            let controls: usize = pieces
                .iter()
                .map(|p| p.chars().filter(|c| *c < ' ' && !"\n\r\t\u{8}\u{c}".contains(*c)).count())
                .sum();
            prop_assert_eq!(decoder.completion_chars(), chars + 4 * controls, "{:?}", pieces);
        }
    }

    #[test]
    fn anthropic_streams_become_openai_chunks_with_the_same_text(
        pieces in vec(content_piece(), 1..10),
        model in "[a-z0-9-]{1,20}",
        input_tokens in 0u64..100_000,
        output_tokens in 0u64..100_000,
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let mut events = vec![(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "model": model,
                   "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        )];
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in &pieces {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        events.push((
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                   "usage": {"output_tokens": output_tokens}}),
        ));
        events.push(("message_stop", json!({"type": "message_stop"})));
        let mut sse = Vec::new();
        for (name, data) in &events {
            sse.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
        }

        let mut decoder = BackendKind::Anthropic
            .provider()
            .stream_decoder(StreamOptions { client_wants_usage: true, created: 7 });
        let mut text = String::new();
        let mut done = false;
        for event in parse_chunked(&sse, &cuts) {
            match decoder.on_event(&event.event, &event.data) {
                Decoded::Chunks(chunks) => {
                    for chunk in chunks {
                        let chunk: Value = serde_json::from_str(&chunk).expect("chunks are JSON");
                        prop_assert_eq!(chunk["object"].as_str(), Some("chat.completion.chunk"));
                        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
                            text.push_str(t);
                        }
                    }
                }
                Decoded::Done => done = true,
                Decoded::Forward => prop_assert!(false, "Anthropic events are never OpenAI chunks"),
                Decoded::Malformed => prop_assert!(false, "every generated event is JSON"),
            }
        }
        prop_assert!(done, "message_stop ends the stream");
        prop_assert_eq!(&text, &pieces.concat());
        prop_assert_eq!(decoder.completion_chars(), pieces.concat().chars().count());
        prop_assert_eq!(decoder.model(), Some(model.as_str()));
        prop_assert_eq!(
            decoder.usage(),
            Some(Usage { prompt_tokens: input_tokens, completion_tokens: output_tokens })
        );
    }
}

/// Arbitrary JSON values, a few levels deep, with the keys the decoders look for.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "type", "message", "model", "usage", "choices", "delta", "content", "text",
            "index", "content_block", "id", "name", "input_tokens", "output_tokens",
            "prompt_tokens", "completion_tokens", "finish_reason", "stop_reason", "partial_json",
        ]).prop_map(str::to_string),
        1 => ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "text_delta",
            "input_json_delta",
            "tool_use",
            "text",
            "message_start",
            "content_block_delta",
            "message_delta",
            "end_turn",
            "stop",
        ])
        .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

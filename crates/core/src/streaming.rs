//! Streaming relay core: upstream SSE bytes -> client SSE bytes, keeping what metrics need
//! (usage, streamed text length, whether the stream ended properly). Pure; the worker's
//! stream adapter only feeds it bytes.

use serde_json::Value;

use crate::error::GatewayError;
use crate::providers::sse::{SseEvent, SseParser};
use crate::providers::{Decoded, StreamDecoder, Usage};

/// What the client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// OpenAI `chat.completion.chunk` events, then `data: [DONE]`.
    OpenAiChunks,
    /// `/query` events: `{"type": "delta", "content": ...}` per piece of answer (the final
    /// event is added by the handler when the stream ends).
    QueryDeltas,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream finished (it may still have sent no usage).
    UpstreamFinished,
    /// The upstream connection failed mid-stream.
    UpstreamFailed,
    /// The client went away before the end.
    ClientGone,
    /// No chunk came within STREAM_IDLE_TIMEOUT_MS.
    IdleTimeout,
    /// The stream ran longer than STREAM_MAX_DURATION_MS.
    DurationExceeded,
    /// The stream grew past MAX_UPSTREAM_RESPONSE_BYTES.
    TooLarge,
}

/// The error a failed stream ends with (its last event), or `None` when it did not fail.
pub fn stream_failure(end: StreamEnd, summary: &StreamSummary) -> Option<GatewayError> {
    if summary.relayed_error {
        // The upstream's own error event reached the client: one error is enough.
        return None;
    }
    let reason = summary.incomplete_reason(end).filter(|r| is_failure(r))?;
    let limit = match end {
        StreamEnd::IdleTimeout => "stalled (STREAM_IDLE_TIMEOUT_MS)",
        StreamEnd::DurationExceeded => "ran too long (STREAM_MAX_DURATION_MS)",
        StreamEnd::TooLarge => "grew too large (MAX_UPSTREAM_RESPONSE_BYTES)",
        _ => "broke off",
    };
    let message = format!(
        "the upstream stream {limit} after {} bytes; the answer is incomplete",
        summary.received_bytes
    );
    Some(GatewayError::StreamFailed { reason, message })
}

/// Incomplete-stream reasons that are failures: the client gets an error event in its
/// format instead of the normal end (OpenAI clients: no `[DONE]`).
pub fn is_failure(reason: &str) -> bool {
    matches!(
        reason,
        "upstream_cut" | "upstream_timeout" | "upstream_too_large"
    )
}

/// What is known about a stream when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    /// Usage, if the upstream sent it.
    pub usage: Option<Usage>,
    /// Characters of completion text relayed.
    pub completion_chars: usize,
    /// Model id the stream reported.
    pub model: Option<String>,
    /// Whether the upstream's end marker was seen.
    pub saw_done: bool,
    /// The answer text (kept for `/query` only).
    pub answer: String,
    /// Bytes received from the upstream.
    pub received_bytes: usize,
    /// Malformed events dropped.
    pub dropped_events: u64,
    /// The upstream's own error event was relayed (the client has its error already).
    pub relayed_error: bool,
}

impl StreamSummary {
    /// Metric label of an incomplete stream, `None` when it completed with usage.
    pub fn incomplete_reason(&self, end: StreamEnd) -> Option<&'static str> {
        match end {
            StreamEnd::ClientGone => Some("client_disconnected"),
            StreamEnd::UpstreamFailed => Some("upstream_cut"),
            StreamEnd::IdleTimeout | StreamEnd::DurationExceeded => Some("upstream_timeout"),
            StreamEnd::TooLarge => Some("upstream_too_large"),
            // Ended without its end marker and without usage: cut short.
            StreamEnd::UpstreamFinished if self.usage.is_none() && !self.saw_done => {
                Some("upstream_cut")
            }
            StreamEnd::UpstreamFinished if self.usage.is_none() => Some("no_usage"),
            StreamEnd::UpstreamFinished => None,
        }
    }
}

/// Relays one stream.
pub struct StreamMeter {
    parser: SseParser,
    decoder: Box<dyn StreamDecoder>,
    format: ClientFormat,
    saw_done: bool,
    answer: String,
    keep_answer: bool,
    received_bytes: usize,
    dropped_events: u64,
    relayed_error: bool,
}

impl StreamMeter {
    /// A relay decoding with `decoder` and writing `format`.
    pub fn new(decoder: Box<dyn StreamDecoder>, format: ClientFormat) -> Self {
        Self {
            parser: SseParser::default(),
            decoder,
            format,
            saw_done: false,
            answer: String::new(),
            keep_answer: false,
            received_bytes: 0,
            dropped_events: 0,
            relayed_error: false,
        }
    }

    /// Bytes received so far (checked against MAX_UPSTREAM_RESPONSE_BYTES by the relay).
    pub fn received_bytes(&self) -> usize {
        self.received_bytes
    }

    /// Also keeps the answer text of OpenAI chunks (a sampled request's, for its judge).
    pub fn keeping_answer(mut self) -> Self {
        self.keep_answer = true;
        self
    }

    /// Relays a network chunk: returns the bytes to send to the client (maybe none).
    pub fn on_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.received_bytes += bytes.len();
        let events = self.parser.feed(bytes);
        self.relay(events)
    }

    /// The upstream ended: flushes an unterminated last event.
    pub fn on_end(&mut self) -> Vec<u8> {
        let last = self.parser.finish();
        self.relay(last.into_iter().collect())
    }

    /// What is known now.
    pub fn summary(&self) -> StreamSummary {
        StreamSummary {
            usage: self.decoder.usage(),
            completion_chars: self.decoder.completion_chars(),
            model: self.decoder.model().map(str::to_string),
            saw_done: self.saw_done,
            answer: self.answer.clone(),
            received_bytes: self.received_bytes,
            dropped_events: self.dropped_events,
            relayed_error: self.relayed_error,
        }
    }

    fn relay(&mut self, events: Vec<SseEvent>) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            if self.saw_done {
                break;
            }
            match self.decoder.on_event(&event.event, &event.data) {
                Decoded::Forward => self.emit_chunk(&event.data, &mut out),
                Decoded::Chunks(chunks) => {
                    for chunk in &chunks {
                        self.emit_chunk(chunk, &mut out);
                    }
                }
                Decoded::Malformed => self.dropped_events += 1,
                Decoded::Done => {
                    self.saw_done = true;
                    if self.format == ClientFormat::OpenAiChunks {
                        out.extend_from_slice(b"data: [DONE]\n\n");
                    }
                }
            }
        }
        out
    }

    fn emit_chunk(&mut self, chunk: &str, out: &mut Vec<u8>) {
        if chunk.starts_with("{\"error\"") {
            self.relayed_error = true;
        }
        match self.format {
            ClientFormat::OpenAiChunks => {
                if self.keep_answer {
                    if let Ok(value) = serde_json::from_slice::<Value>(chunk.as_bytes()) {
                        if let Some(content) = delta_content(&value) {
                            self.answer.push_str(content);
                        }
                    }
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(chunk.as_bytes());
                out.extend_from_slice(b"\n\n");
            }
            ClientFormat::QueryDeltas => {
                let Ok(value) = serde_json::from_slice::<Value>(chunk.as_bytes()) else {
                    return;
                };
                let content = delta_content(&value).unwrap_or("");
                if !content.is_empty() {
                    self.answer.push_str(content);
                    out.extend_from_slice(&sse_data(
                        &crate::object! {"type": "delta", "content": content},
                    ));
                }
            }
        }
    }
}

/// The text of a chunk's first choice's delta.
fn delta_content(chunk: &Value) -> Option<&str> {
    chunk
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("delta"))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str)
}

/// One `data:` event carrying a JSON value.
pub fn sse_data(value: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(crate::jsonwrite::text(value).as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::anthropic::AnthropicStreamDecoder;
    use crate::providers::OpenAiChunkDecoder;

    const MISTRAL_STREAM: &str = include_str!("../tests/fixtures/mistral/stream.sse");

    fn relay_in_pieces(meter: &mut StreamMeter, input: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            out.extend(meter.on_bytes(chunk));
        }
        out.extend(meter.on_end());
        out
    }

    #[test]
    fn openai_chunks_pass_through_with_usage_kept() {
        for piece in [1, 7, 64, 4096] {
            let mut meter = StreamMeter::new(
                Box::new(OpenAiChunkDecoder::default()),
                ClientFormat::OpenAiChunks,
            );
            let out = relay_in_pieces(&mut meter, MISTRAL_STREAM.as_bytes(), piece);
            let text = String::from_utf8(out).unwrap();
            let datas: Vec<&str> = MISTRAL_STREAM
                .lines()
                .filter(|l| l.starts_with("data: "))
                .collect();
            let relayed: Vec<&str> = text.lines().filter(|l| l.starts_with("data: ")).collect();
            assert_eq!(datas, relayed, "piece {piece}");
            let s = meter.summary();
            assert!(s.saw_done);
            assert_eq!(
                s.usage,
                Some(Usage {
                    prompt_tokens: 10,
                    completion_tokens: 6
                })
            );
            assert_eq!(s.model.as_deref(), Some("mistral-small-2603"));
            assert_eq!(s.incomplete_reason(StreamEnd::UpstreamFinished), None);
        }
    }

    #[test]
    fn a_sampled_streams_answer_is_kept_and_relayed_unchanged() {
        let mut plain = StreamMeter::new(
            Box::new(OpenAiChunkDecoder::default()),
            ClientFormat::OpenAiChunks,
        );
        let mut keeping = StreamMeter::new(
            Box::new(OpenAiChunkDecoder::default()),
            ClientFormat::OpenAiChunks,
        )
        .keeping_answer();
        let a = relay_in_pieces(&mut plain, MISTRAL_STREAM.as_bytes(), 7);
        let b = relay_in_pieces(&mut keeping, MISTRAL_STREAM.as_bytes(), 7);
        assert_eq!(a, b);
        assert_eq!(plain.summary().answer, "");
        let kept = keeping.summary().answer;
        assert!(kept.contains("Paris"), "{kept}");
    }

    #[test]
    fn cut_stream_is_incomplete_with_estimated_chars() {
        // Cut 10 bytes into the event after the one that carries "Paris": that event is
        // incomplete JSON, dropped and counted, never relayed.
        let paris = MISTRAL_STREAM.find("Paris").unwrap();
        let next_event = paris + MISTRAL_STREAM[paris..].find("\n\n").unwrap() + 2;
        let cut = &MISTRAL_STREAM[..next_event + 10];
        let mut meter = StreamMeter::new(
            Box::new(OpenAiChunkDecoder::default()),
            ClientFormat::OpenAiChunks,
        );
        let out = String::from_utf8(relay_in_pieces(&mut meter, cut.as_bytes(), 5)).unwrap();
        assert!(out.ends_with("\n\n") && !out.contains("[DONE]"), "{out}");
        let s = meter.summary();
        assert_eq!(s.dropped_events, 1);
        assert_eq!(s.received_bytes, cut.len());
        assert_eq!(s.usage, None);
        assert!(!s.saw_done);
        assert!(s.completion_chars > 0);
        assert_eq!(
            s.incomplete_reason(StreamEnd::UpstreamFinished),
            Some("upstream_cut")
        );
        let done_without_usage = StreamSummary {
            saw_done: true,
            ..s.clone()
        };
        assert_eq!(
            done_without_usage.incomplete_reason(StreamEnd::UpstreamFinished),
            Some("no_usage")
        );
        assert_eq!(
            s.incomplete_reason(StreamEnd::ClientGone),
            Some("client_disconnected")
        );
    }

    #[test]
    fn query_format_emits_answer_deltas() {
        let mut meter = StreamMeter::new(
            Box::new(OpenAiChunkDecoder::default()),
            ClientFormat::QueryDeltas,
        );
        let out =
            String::from_utf8(relay_in_pieces(&mut meter, MISTRAL_STREAM.as_bytes(), 13)).unwrap();
        let deltas: Vec<Value> = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(deltas.iter().all(|d| d["type"] == "delta"));
        let answer: String = deltas
            .iter()
            .map(|d| d["content"].as_str().unwrap())
            .collect();
        assert_eq!(answer, "Paris is the capital.");
        assert_eq!(meter.summary().answer, answer);
        assert!(!out.contains("[DONE]"));
    }

    #[test]
    fn anthropic_events_become_openai_chunks() {
        let input = include_str!("../tests/fixtures/anthropic/stream.sse");
        let mut meter = StreamMeter::new(
            Box::<AnthropicStreamDecoder>::default(),
            ClientFormat::OpenAiChunks,
        );
        let out = String::from_utf8(relay_in_pieces(&mut meter, input.as_bytes(), 11)).unwrap();
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert!(!out.contains("event:"));
        let s = meter.summary();
        assert_eq!(
            s.usage,
            Some(Usage {
                prompt_tokens: 14,
                completion_tokens: 9
            })
        );
        assert!(out.contains("\"content\":\"Hello there\""));
    }
}

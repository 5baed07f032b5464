//! The worker side of streaming: pulls upstream bytes through the pure [`StreamMeter`] to
//! the client, and reports how the stream ended exactly once — at the upstream's end, when
//! a limit ends it (no chunk within STREAM_IDLE_TIMEOUT_MS, longer than
//! STREAM_MAX_DURATION_MS, larger than MAX_UPSTREAM_RESPONSE_BYTES; the upstream request is
//! then aborted), or when the client goes away (the runtime drops the stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use futures_util::stream::LocalBoxStream;
use futures_util::{Stream, StreamExt};
use worker::web_sys::AbortController;
use worker::Delay;

use crate::runtime;
use crate::streaming::{StreamEnd, StreamMeter, StreamSummary};

/// Called once when the stream ends, with when its first bytes went to the client (ms
/// since the epoch, if any did); returns the bytes to send last (maybe none).
pub type OnEnd = Box<dyn FnOnce(StreamSummary, StreamEnd, Option<u64>) -> Vec<u8>>;

/// The limits a relayed stream runs under.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Longest wait for the next chunk (STREAM_IDLE_TIMEOUT_MS).
    pub idle_ms: u64,
    /// When the stream must have ended (ms since the epoch; STREAM_MAX_DURATION_MS after
    /// the request arrived).
    pub deadline_ms: u64,
    /// Most bytes read from the upstream (MAX_UPSTREAM_RESPONSE_BYTES).
    pub max_bytes: usize,
}

/// Upstream bytes -> client bytes, metered.
pub struct MeteredStream {
    upstream: LocalBoxStream<'static, worker::Result<Vec<u8>>>,
    controller: AbortController,
    meter: StreamMeter,
    on_end: Option<OnEnd>,
    limits: StreamLimits,
    /// When the last chunk arrived (ms since the epoch).
    last_chunk_ms: u64,
    /// When the first bytes were relayed to the client (ms since the epoch).
    first_byte_ms: Option<u64>,
    /// A timer for the earliest moment a limit could expire, made anew each time the
    /// upstream has nothing: `Delay` wakes the task of its first poll only, and the runtime
    /// pulls a response body from a new task each time (the old one is dropped, which
    /// clears its timeout).
    timer: Option<Pin<Box<Delay>>>,
}

impl MeteredStream {
    /// Relays `upstream` through `meter`; `on_end` runs once at the end.
    pub fn new(
        upstream: LocalBoxStream<'static, worker::Result<Vec<u8>>>,
        controller: AbortController,
        meter: StreamMeter,
        limits: StreamLimits,
        on_end: OnEnd,
    ) -> Self {
        Self {
            upstream,
            controller,
            meter,
            on_end: Some(on_end),
            limits,
            last_chunk_ms: runtime::now_ms(),
            first_byte_ms: None,
            timer: None,
        }
    }

    fn end(&mut self, how: StreamEnd) -> Vec<u8> {
        if !matches!(how, StreamEnd::UpstreamFinished) {
            // Nothing more is read: the upstream request is not left running.
            self.controller.abort();
        }
        self.timer = None;
        let mut tail = self.meter.on_end();
        if let Some(on_end) = self.on_end.take() {
            tail.extend(on_end(self.meter.summary(), how, self.first_byte_ms));
        }
        tail
    }

    /// The limit that has expired by `now`, if any.
    fn expired(&self, now: u64) -> Option<StreamEnd> {
        if now >= self.limits.deadline_ms {
            Some(StreamEnd::DurationExceeded)
        } else if now.saturating_sub(self.last_chunk_ms) >= self.limits.idle_ms {
            Some(StreamEnd::IdleTimeout)
        } else {
            None
        }
    }
}

/// The last bytes of a stream as its final item (none when empty).
fn last(tail: Vec<u8>) -> Poll<Option<worker::Result<Vec<u8>>>> {
    Poll::Ready((!tail.is_empty()).then_some(Ok(tail)))
}

impl Stream for MeteredStream {
    type Item = worker::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.on_end.is_none() {
            return Poll::Ready(None);
        }
        loop {
            match this.upstream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.last_chunk_ms = runtime::now_ms();
                    if this.meter.received_bytes() + bytes.len() > this.limits.max_bytes {
                        return last(this.end(StreamEnd::TooLarge));
                    }
                    if let Some(how) = this.expired(this.last_chunk_ms) {
                        return last(this.end(how));
                    }
                    let out = this.meter.on_bytes(&bytes);
                    if !out.is_empty() {
                        this.first_byte_ms.get_or_insert(this.last_chunk_ms);
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    worker::console_error!("upstream stream failed: {e}");
                    return last(this.end(StreamEnd::UpstreamFailed));
                }
                Poll::Ready(None) => return last(this.end(StreamEnd::UpstreamFinished)),
                Poll::Pending => {
                    let now = runtime::now_ms();
                    if let Some(how) = this.expired(now) {
                        return last(this.end(how));
                    }
                    let due =
                        (this.last_chunk_ms + this.limits.idle_ms).min(this.limits.deadline_ms);
                    let timer =
                        this.timer
                            .insert(Box::pin(Delay::from(std::time::Duration::from_millis(
                                due.saturating_sub(now).max(1),
                            ))));
                    match timer.as_mut().poll(cx) {
                        // Fired: check the limits again (a chunk may have come meanwhile,
                        // then a new timer covers the rest of the idle period).
                        Poll::Ready(()) => this.timer = None,
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            self.controller.abort();
            on_end(
                self.meter.summary(),
                StreamEnd::ClientGone,
                self.first_byte_ms,
            );
        }
    }
}

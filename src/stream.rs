//! The worker side of streaming: pulls upstream bytes through the pure [`StreamMeter`] to
//! the client, and reports how the stream ended exactly once — at the upstream's end, when
//! a limit ends it (no chunk within STREAM_IDLE_TIMEOUT_MS, longer than
//! STREAM_MAX_DURATION_MS, larger than MAX_UPSTREAM_RESPONSE_BYTES; the upstream request is
//! then aborted), or when the client goes away (the runtime drops the stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

use futures_util::stream::LocalBoxStream;
use futures_util::{Stream, StreamExt};
use worker::js_sys;
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::JsCast;
use worker::web_sys::{self, AbortController};

use crate::runtime;
use crate::streaming::{StreamEnd, StreamMeter, StreamSummary};

/// Called once when the stream ends; returns the bytes to send last (maybe none).
pub type OnEnd = Box<dyn FnOnce(StreamSummary, StreamEnd) -> Vec<u8>>;

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
    /// One timer at a time, for the earliest moment a limit could expire; re-armed only
    /// when it fires before that moment (a chunk came in between), so a stream costs one
    /// timer per idle period rather than one per chunk.
    timer: Option<Timer>,
}

/// A one-shot timer that wakes whichever task polled it last. (`worker::Delay` wakes the
/// task of its first poll only; the runtime pulls a response body from a new task each
/// time, so that task is gone by the time the delay ends.) Cleared when dropped.
struct Timer {
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
    id: Option<i32>,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    fn new(ms: u64) -> Self {
        let fired = Rc::new(Cell::new(false));
        let waker: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
        let (f, w) = (fired.clone(), waker.clone());
        let callback = Closure::<dyn FnMut()>::new(move || {
            f.set(true);
            if let Some(waker) = w.borrow_mut().take() {
                waker.wake();
            }
        });
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let id = global
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                i32::try_from(ms).unwrap_or(i32::MAX),
            )
            .ok();
        Self {
            fired,
            waker,
            id,
            _callback: callback,
        }
    }

    fn poll(&self, cx: &Context<'_>) -> Poll<()> {
        if self.fired.get() {
            Poll::Ready(())
        } else {
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
            global.clear_timeout_with_handle(id);
        }
    }
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
            tail.extend(on_end(self.meter.summary(), how));
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
                    let timer = this.timer.get_or_insert_with(|| {
                        let due =
                            (this.last_chunk_ms + this.limits.idle_ms).min(this.limits.deadline_ms);
                        Timer::new(due.saturating_sub(now).max(1))
                    });
                    match timer.poll(cx) {
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
            on_end(self.meter.summary(), StreamEnd::ClientGone);
        }
    }
}

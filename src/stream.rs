//! The worker side of streaming: pulls upstream bytes through the pure [`StreamMeter`] to
//! the client, and reports how the stream ended exactly once — at the upstream's end, or
//! when the client goes away (the runtime drops the stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::LocalBoxStream;
use futures_util::{Stream, StreamExt};

use crate::streaming::{StreamEnd, StreamMeter, StreamSummary};

/// Called once when the stream ends; returns the bytes to send last (maybe none).
pub type OnEnd = Box<dyn FnOnce(StreamSummary, StreamEnd) -> Vec<u8>>;

/// Upstream bytes -> client bytes, metered.
pub struct MeteredStream {
    upstream: LocalBoxStream<'static, worker::Result<Vec<u8>>>,
    meter: StreamMeter,
    on_end: Option<OnEnd>,
}

impl MeteredStream {
    /// Relays `upstream` through `meter`; `on_end` runs once at the end.
    pub fn new(
        upstream: LocalBoxStream<'static, worker::Result<Vec<u8>>>,
        meter: StreamMeter,
        on_end: OnEnd,
    ) -> Self {
        Self {
            upstream,
            meter,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self, how: StreamEnd) -> Vec<u8> {
        let mut tail = self.meter.on_end();
        if let Some(on_end) = self.on_end.take() {
            tail.extend(on_end(self.meter.summary(), how));
        }
        tail
    }
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
                    let out = this.meter.on_bytes(&bytes);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    worker::console_error!("upstream stream failed: {e}");
                    let tail = this.end(StreamEnd::UpstreamFailed);
                    return Poll::Ready((!tail.is_empty()).then_some(Ok(tail)));
                }
                Poll::Ready(None) => {
                    let tail = this.end(StreamEnd::UpstreamFinished);
                    return Poll::Ready((!tail.is_empty()).then_some(Ok(tail)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.meter.summary(), StreamEnd::ClientGone);
        }
    }
}

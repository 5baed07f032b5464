//! Metrics shipping: this isolate's metrics events, batched (see
//! [`llm_mux_core::metrics::outbox`]) and sent to the metrics Durable Object after the
//! responses that caused them.
//!
//! It owns the isolate's outbox and the `ctx.wait_until` work that flushes it. It must not
//! delay a response: events are queued synchronously, and every send runs after the
//! response, in work the runtime keeps alive for it.

use worker::{Context, Env};

use crate::metrics::outbox::{Outbox, Push};
use crate::metrics::MetricsEvent;
use crate::metrics_store::MetricsClient;
use crate::runtime;

thread_local! {
    /// This isolate's metrics events not yet sent to the Durable Object.
    static OUTBOX: std::cell::RefCell<Outbox> = std::cell::RefCell::new(Outbox::default());
}

/// Records `event` in the metrics Durable Object after the response is sent: it joins the
/// isolate's batch, and this request's `wait_until` keeps the batch's flusher alive when
/// it is the first event of the batch.
pub fn record_after_response(env: &Env, ctx: &Context, event: MetricsEvent, window_ms: u64) {
    if let Some(flush) = enqueue(env, event, window_ms) {
        ctx.wait_until(flush);
    }
}

/// Queues `event`; returns the work the current request must keep alive, if any.
pub fn enqueue(
    env: &Env,
    event: MetricsEvent,
    window_ms: u64,
) -> Option<impl std::future::Future<Output = ()> + 'static> {
    let push = OUTBOX.with(|outbox| {
        outbox
            .borrow_mut()
            .push(event, runtime::now_ms(), window_ms)
    });
    let env = env.clone();
    match push {
        Push::Queued => None,
        Push::SendNow => {
            let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_now());
            Some(futures_util::future::Either::Left(async move {
                send_batch(&env, &batch).await;
            }))
        }
        Push::StartFlusher { window_ms } => Some(futures_util::future::Either::Right(async move {
            worker::Delay::from(std::time::Duration::from_millis(window_ms)).await;
            let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_batch());
            send_batch(&env, &batch).await;
        })),
    }
}

/// Sends this isolate's queued events now (before `/metrics` reads the aggregate). The
/// send runs in `ctx.wait_until`, so events of other requests taken from the queue are
/// still delivered if the reader goes away; the reader waits for it to finish.
pub async fn flush(env: &Env, ctx: &Context) {
    let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_now());
    if batch.is_empty() {
        return;
    }
    let (done, finished) = futures_channel::oneshot::channel::<()>();
    let env = env.clone();
    ctx.wait_until(async move {
        send_batch(&env, &batch).await;
        let _ = done.send(());
    });
    let _ = finished.await;
}

async fn send_batch(env: &Env, batch: &[MetricsEvent]) {
    if batch.is_empty() {
        return;
    }
    let sent = async { MetricsClient::connect(env)?.record(batch).await }.await;
    if let Err(e) = sent {
        worker::console_error!("metrics: {} events not recorded: {e}", batch.len());
    }
}

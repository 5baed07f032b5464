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
    /// Batches of this isolate on their way to the Durable Object.
    static IN_FLIGHT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// The metrics shard of this isolate: drawn at random once (METRICS_SHARDS).
    static SHARD: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
    /// METRICS_SHARDS, as configured.
    static SHARDS: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
    /// API requests of this isolate being served (their events not yet queued).
    static SERVING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// A graceful stop is under way ([`drain`]): events and settlements are sent at once.
    static DRAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The batch window in force: `window_ms`, or 0 (send at once) once a drain has begun.
pub fn window(window_ms: u64) -> u64 {
    if DRAINING.with(|d| d.get()) {
        0
    } else {
        window_ms
    }
}

/// Counts one unit in a per-isolate counter while it lives (also when the runtime cancels
/// the task that holds it).
pub struct Counted(&'static std::thread::LocalKey<std::cell::Cell<u32>>);

impl Counted {
    fn begin(counter: &'static std::thread::LocalKey<std::cell::Cell<u32>>) -> Self {
        counter.with(|n| n.set(n.get() + 1));
        Counted(counter)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// One API request being served, from its start until its metrics event is queued (for a
/// stream: when it ends or is dropped); [`drain`] waits for none to be left.
pub fn serving() -> Counted {
    Counted::begin(&SERVING)
}

/// Takes the shard count (METRICS_SHARDS) of this isolate's configuration.
pub fn configure(shards: u32) {
    SHARDS.with(|s| s.set(shards.max(1)));
}

/// The shard this isolate sends its batches to. Always the same one, so a retried batch
/// reaches the object that remembers its ids.
fn shard() -> u32 {
    SHARD.with(|shard| {
        let chosen = shard
            .get()
            .unwrap_or_else(|| (crate::random_u64() % u64::from(SHARDS.with(|s| s.get()))) as u32);
        shard.set(Some(chosen));
        chosen
    })
}

/// Longest a reader waits for this isolate's sends under way.
const SETTLE_WAIT_MS: u64 = 5_000;
/// How often a reader checks whether they have landed.
const SETTLE_POLL_MS: u64 = 5;

/// Records `event` in the metrics Durable Object after the response is sent: it joins the
/// isolate's batch, and this request's `wait_until` keeps the batch's flusher alive when
/// it is the first event of the batch.
pub fn record_after_response(env: &Env, ctx: &Context, event: MetricsEvent, window_ms: u64) {
    if let Some(flush) = enqueue(env, event, window_ms) {
        crate::runtime::after_response(ctx, flush);
    }
}

/// Queues `event`; returns the work the current request must keep alive, if any.
pub fn enqueue(
    env: &Env,
    event: MetricsEvent,
    window_ms: u64,
) -> Option<impl std::future::Future<Output = ()> + 'static> {
    let window_ms = window(window_ms);
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
            Some(futures_util::future::Either::Left(send_counted(env, batch)))
        }
        Push::StartFlusher { window_ms } => Some(futures_util::future::Either::Right(async move {
            worker::Delay::from(std::time::Duration::from_millis(window_ms)).await;
            let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_batch());
            send_batch(&env, &batch).await;
        })),
    }
}

/// Sends this isolate's queued events now and waits until every batch of this isolate
/// that is on its way has landed (before `/metrics` reads the aggregate): a client that
/// got its answer then reads its own request, also while an earlier batch (taken by a
/// flusher a moment before) is still in flight. The send runs in `ctx.wait_until`, so
/// events of other requests taken from the queue are delivered even if the reader goes
/// away. The wait is bounded (5 s).
pub async fn flush(env: &Env, ctx: &Context) {
    let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_now());
    if !batch.is_empty() {
        crate::runtime::after_response(ctx, send_counted(env.clone(), batch));
    }
    // Polled on this request's own timer: a promise settled by another request's task
    // would wake this one from that request's context, which the runtime takes for a hang.
    let started = runtime::now_ms();
    while IN_FLIGHT.with(|sends| sends.get() > 0)
        && runtime::now_ms().saturating_sub(started) < SETTLE_WAIT_MS
    {
        worker::Delay::from(std::time::Duration::from_millis(SETTLE_POLL_MS)).await;
    }
}

/// Longest a drain waits for the requests being served and the sends under way (a
/// container's stop timeout is 10 s by default).
const DRAIN_WAIT_MS: u64 = 8_000;
/// A drain answers no sooner than this: the process's stop signal follows the drain
/// request by a moment, and requests may still arrive until it does.
const DRAIN_HOLD_MS: u64 = 500;

/// A graceful stop (`POST /_llm-mux/drain` from scripts/selfhost/serve.sh, with the
/// per-process LLM_MUX_DRAIN_TOKEN, before it sends workerd its SIGTERM): from now on every
/// event and settlement is sent at once, and this returns once no API request is being
/// served, nothing is queued and no send is under way (at most [`DRAIN_WAIT_MS`]). workerd's
/// own drain waits for this request, but not for `waitUntil` work: a batch still waiting
/// for its window at the stop would be lost.
pub async fn drain(env: &Env, ctx: &Context) {
    DRAINING.with(|d| d.set(true));
    let started = runtime::now_ms();
    loop {
        crate::ledger_store::flush(env, ctx);
        flush(env, ctx).await;
        let elapsed = runtime::now_ms().saturating_sub(started);
        let idle = SERVING.with(|n| n.get()) == 0
            && IN_FLIGHT.with(|n| n.get()) == 0
            && OUTBOX.with(|o| o.borrow().is_empty())
            && crate::ledger_store::queued() == 0;
        if (idle && elapsed >= DRAIN_HOLD_MS) || elapsed >= DRAIN_WAIT_MS {
            return;
        }
        worker::Delay::from(std::time::Duration::from_millis(SETTLE_POLL_MS)).await;
    }
}

/// One send under way (metrics events or ledger settlements, which `/metrics` reads
/// too), counted from now until dropped.
pub fn send_guard() -> Counted {
    Counted::begin(&IN_FLIGHT)
}

/// Sends `batch`, counted as under way from now, before the returned task first runs
/// (`/metrics` and [`drain`] wait for it from the moment the events leave the queue).
fn send_counted(
    env: Env,
    batch: Vec<MetricsEvent>,
) -> impl std::future::Future<Output = ()> + 'static {
    let guard = send_guard();
    async move {
        deliver(&env, &batch).await;
        drop(guard);
    }
}

async fn send_batch(env: &Env, batch: &[MetricsEvent]) {
    if batch.is_empty() {
        return;
    }
    let _guard = send_guard();
    deliver(env, batch).await;
}

async fn deliver(env: &Env, batch: &[MetricsEvent]) {
    let sent = async { MetricsClient::connect(env, shard())?.record(batch).await }.await;
    if let Err(e) = sent {
        worker::console_error!("metrics: {} events not recorded: {e}", batch.len());
    }
}

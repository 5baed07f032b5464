//! Metrics events waiting in the isolate to be sent to the Durable Object in one batch.
//!
//! Sending every event on its own costs a Durable Object subrequest and a SQLite upsert
//! per request, the largest part of the gateway's CPU over a pass-through (BENCHMARKS.md).
//! Instead, the first event after a flush starts a *flusher*: a task kept alive by that
//! request's `ctx.wait_until`, which sleeps for the batch window and then sends everything
//! queued meanwhile in one call. Events that arrive while a flusher is waiting only join
//! the queue. Nothing waits on a timer that no request keeps alive, so an isolate is not
//! evicted with events in it while the runtime still honours `waitUntil`.
//!
//! Safety nets, all decided here and tested natively:
//! - a full batch ([`Outbox::MAX_BATCH`]) is sent at once by the request that filled it;
//! - a flusher that has not taken its batch long after its window (its request was
//!   cancelled) is replaced by the next event's request;
//! - `GET /metrics` takes the queue and sends it before reading, so a reader never misses
//!   this isolate's own events.
//!
//! Pure: the shell (handlers) owns the clock, the timer and the Durable Object call.

use super::MetricsEvent;

/// What the caller of [`Outbox::push`] must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Nothing: a flusher is waiting and will send the event.
    Queued,
    /// Start a flusher in this request's `wait_until`: sleep `window_ms`, then
    /// [`Outbox::take_batch`] and send it.
    StartFlusher {
        /// How long to wait before flushing.
        window_ms: u64,
    },
    /// Send [`Outbox::take_now`] now, in this request's `wait_until`.
    SendNow,
}

/// Whether a flusher is waiting for a queue's batch: the part of the batching policy that
/// the metrics outbox and the ledger's settlement queue (`src/ledger_store.rs`) share.
#[derive(Debug, Default)]
pub struct FlushWindow {
    /// When the waiting flusher started (ms since the epoch), if one is waiting.
    since_ms: Option<u64>,
}

impl FlushWindow {
    /// Whether the caller must start a flusher for an item queued at `now_ms`: none is
    /// waiting, or the one waiting is more than [`Outbox::STALE_AFTER_MS`] past its
    /// window (its request was cancelled) and is replaced.
    pub fn start(&mut self, now_ms: u64, window_ms: u64) -> bool {
        let alive = self.since_ms.is_some_and(|since| {
            now_ms.saturating_sub(since) <= window_ms + Outbox::STALE_AFTER_MS
        });
        if !alive {
            self.since_ms = Some(now_ms);
        }
        !alive
    }

    /// The flusher took its batch: the next item starts a new one.
    pub fn taken(&mut self) {
        self.since_ms = None;
    }
}

/// The queue of events of one isolate.
#[derive(Debug, Default)]
pub struct Outbox {
    events: Vec<MetricsEvent>,
    flusher: FlushWindow,
}

impl Outbox {
    /// Events sent at once rather than waiting for the window (bounds memory and the size
    /// of one Durable Object request).
    pub const MAX_BATCH: usize = 256;
    /// A flusher this late past its window is presumed dead (its request was cancelled).
    pub const STALE_AFTER_MS: u64 = 10_000;

    /// Queues `event` at `now_ms`; with `window_ms == 0` there is no batching.
    pub fn push(&mut self, event: MetricsEvent, now_ms: u64, window_ms: u64) -> Push {
        // A failure with nothing but a reason (and key) joins a queued one of the same
        // reason and key: floods of refused requests cost one event per batch.
        if let MetricsEvent::Failed {
            reason,
            key,
            fallback: None,
            cost: None,
            count,
            status: None,
            ..
        } = &event
        {
            let same = self.events.iter_mut().find_map(|queued| match queued {
                MetricsEvent::Failed {
                    reason: r,
                    key: k,
                    fallback: None,
                    cost: None,
                    count: c,
                    status: None,
                    ..
                } if r == reason && k == key => Some(c),
                _ => None,
            });
            if let Some(queued_count) = same {
                *queued_count += count;
                return Push::Queued;
            }
        }
        self.events.push(event);
        if window_ms == 0 || self.events.len() >= Self::MAX_BATCH {
            return Push::SendNow;
        }
        if self.flusher.start(now_ms, window_ms) {
            Push::StartFlusher { window_ms }
        } else {
            Push::Queued
        }
    }

    /// The flusher's batch: everything queued; the next event starts a new flusher.
    pub fn take_batch(&mut self) -> Vec<MetricsEvent> {
        self.flusher.taken();
        std::mem::take(&mut self.events)
    }

    /// Everything queued, for an immediate send; a waiting flusher keeps waiting (and
    /// finds less, or nothing, to send).
    pub fn take_now(&mut self) -> Vec<MetricsEvent> {
        std::mem::take(&mut self.events)
    }

    /// Events queued.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// No event queued.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure of its own reason (failures of one reason and key are coalesced).
    fn event(id: &str) -> MetricsEvent {
        MetricsEvent::Failed {
            id: id.into(),
            reason: id.into(),
            fallback: None,
            cost: None,
            key: None,
            count: 1,
            status: None,
        }
    }

    fn ids(events: &[MetricsEvent]) -> Vec<&str> {
        events.iter().map(MetricsEvent::id).collect()
    }

    #[test]
    fn failures_of_one_reason_and_key_are_counted_in_one_event() {
        let refused = |id: &str, reason: &str, key: Option<&str>| MetricsEvent::Failed {
            id: id.into(),
            reason: reason.into(),
            fallback: None,
            cost: None,
            key: key.map(str::to_string),
            count: 1,
            status: None,
        };
        let mut outbox = Outbox::default();
        for i in 0..1_000 {
            outbox.push(refused(&format!("u{i}"), "unauthorized", None), 1_000, 100);
            outbox.push(
                refused(&format!("l{i}"), "rate_limited", Some("k1")),
                1_000,
                100,
            );
        }
        outbox.push(refused("l-other", "rate_limited", Some("k2")), 1_000, 100);
        let batch = outbox.take_batch();
        let counts: Vec<(&str, u64)> = batch
            .iter()
            .map(|e| match e {
                MetricsEvent::Failed { id, count, .. } => (id.as_str(), *count),
                MetricsEvent::Completed { id, .. } => (id.as_str(), 0),
            })
            .collect();
        assert_eq!(counts, [("u0", 1_000), ("l0", 1_000), ("l-other", 1)]);
    }

    #[test]
    fn first_event_starts_a_flusher_later_ones_join_its_batch() {
        let mut outbox = Outbox::default();
        assert_eq!(
            outbox.push(event("a"), 1_000, 100),
            Push::StartFlusher { window_ms: 100 }
        );
        assert_eq!(outbox.push(event("b"), 1_050, 100), Push::Queued);
        assert_eq!(outbox.push(event("c"), 1_100, 100), Push::Queued);
        assert_eq!(ids(&outbox.take_batch()), ["a", "b", "c"]);
        assert!(outbox.is_empty());
        // after the flusher took its batch, the next event starts a new one
        assert_eq!(
            outbox.push(event("d"), 1_101, 100),
            Push::StartFlusher { window_ms: 100 }
        );
        assert_eq!(ids(&outbox.take_batch()), ["d"]);
    }

    #[test]
    fn no_window_means_every_event_is_sent_at_once() {
        let mut outbox = Outbox::default();
        assert_eq!(outbox.push(event("a"), 0, 0), Push::SendNow);
        assert_eq!(ids(&outbox.take_now()), ["a"]);
        assert_eq!(outbox.push(event("b"), 1, 0), Push::SendNow);
        assert_eq!(ids(&outbox.take_now()), ["b"]);
    }

    #[test]
    fn a_full_batch_is_sent_by_the_request_that_filled_it() {
        let mut outbox = Outbox::default();
        assert!(matches!(
            outbox.push(event("0"), 0, 1_000),
            Push::StartFlusher { .. }
        ));
        for i in 1..Outbox::MAX_BATCH - 1 {
            assert_eq!(outbox.push(event(&i.to_string()), 1, 1_000), Push::Queued);
        }
        assert_eq!(outbox.push(event("last"), 2, 1_000), Push::SendNow);
        let batch = outbox.take_now();
        assert_eq!(batch.len(), Outbox::MAX_BATCH);
        // the waiting flusher is still there: new events join it
        assert_eq!(outbox.push(event("x"), 3, 1_000), Push::Queued);
        assert_eq!(ids(&outbox.take_batch()), ["x"]);
    }

    #[test]
    fn a_stale_flusher_is_replaced() {
        let mut outbox = Outbox::default();
        assert!(matches!(
            outbox.push(event("a"), 0, 100),
            Push::StartFlusher { .. }
        ));
        // within window + grace: still trusted
        assert_eq!(
            outbox.push(event("b"), 100 + Outbox::STALE_AFTER_MS, 100),
            Push::Queued
        );
        // beyond it: the flusher's request is presumed gone, a new one takes over and
        // sends what the old one left
        assert_eq!(
            outbox.push(event("c"), 101 + Outbox::STALE_AFTER_MS, 100),
            Push::StartFlusher { window_ms: 100 }
        );
        assert_eq!(ids(&outbox.take_batch()), ["a", "b", "c"]);
    }

    #[test]
    fn a_reader_takes_the_queue_without_cancelling_the_flusher() {
        let mut outbox = Outbox::default();
        outbox.push(event("a"), 0, 100);
        outbox.push(event("b"), 1, 100);
        assert_eq!(outbox.len(), 2);
        assert_eq!(ids(&outbox.take_now()), ["a", "b"]);
        assert_eq!(outbox.push(event("c"), 2, 100), Push::Queued);
        assert_eq!(ids(&outbox.take_batch()), ["c"]);
        assert!(outbox.take_batch().is_empty());
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_flusher() {
        let mut outbox = Outbox::default();
        outbox.push(event("a"), 5_000, 100);
        assert_eq!(outbox.push(event("b"), 4_000, 100), Push::Queued);
    }

    #[test]
    fn length_and_emptiness_follow_the_queue() {
        let mut outbox = Outbox::default();
        assert!(outbox.is_empty());
        assert_eq!(outbox.len(), 0);
        outbox.push(event("a"), 0, 100);
        assert!(!outbox.is_empty());
        assert_eq!(outbox.len(), 1);
        outbox.push(event("b"), 1, 100);
        assert_eq!(outbox.len(), 2);
        assert_eq!(ids(&outbox.take_batch()), ["a", "b"]);
        assert!(outbox.is_empty());
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn the_batch_is_sent_at_exactly_max_batch_events() {
        let mut outbox = Outbox::default();
        for i in 0..Outbox::MAX_BATCH - 1 {
            assert_ne!(outbox.push(event(&i.to_string()), 0, 50), Push::SendNow);
        }
        assert_eq!(outbox.len(), Outbox::MAX_BATCH - 1);
        assert_eq!(outbox.push(event("full"), 0, 50), Push::SendNow);
        assert_eq!(outbox.take_now().len(), Outbox::MAX_BATCH);
    }
}

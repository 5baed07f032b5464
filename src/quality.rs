//! The isolate's side of quality control: the routing threshold it holds (the quality
//! store's, refreshed at most once a minute, never on a request's critical path), the
//! sampling decision, and handing sampled requests over to the quality store after the
//! response.
//!
//! With no `QUALITY_SAMPLE_RATE` and no target none of this runs: the request path is
//! what it was. It must not judge or estimate anything (the quality store and the core do).

use std::cell::Cell;

use worker::{Context, Env};

use llm_mux_core::config::Config;
use llm_mux_core::quality_state::{Threshold, ThresholdSource};
use llm_mux_core::shadow::ShadowJob;

use crate::quality_store::QualityClient;
use crate::runtime;

/// How old the isolate's threshold may get before it is refreshed (ms).
pub const REFRESH_MS: u64 = 60_000;

thread_local! {
    /// The controller's threshold as last read from the quality store, and when.
    static THRESHOLD: Cell<Option<(Threshold, u64)>> = const { Cell::new(None) };
    /// Whether a refresh is under way (one at a time per isolate).
    static REFRESHING: Cell<bool> = const { Cell::new(false) };
}

/// The threshold this isolate routes with: `None` (the configured one) unless a target is
/// set and the quality store's controller has moved it. Starts a refresh in the
/// background (`ctx.wait_until`) when the held value is older than [`REFRESH_MS`].
pub fn threshold(env: &Env, ctx: &Context, config: &Config) -> Option<f64> {
    config.quality.target?;
    let held = THRESHOLD.with(Cell::get);
    let now = runtime::now_ms();
    let stale = held.is_none_or(|(_, at)| now.saturating_sub(at) >= REFRESH_MS);
    if stale && !REFRESHING.with(Cell::get) {
        REFRESHING.with(|r| r.set(true));
        let env = env.clone();
        ctx.wait_until(async move {
            match async { QualityClient::connect(&env)?.snapshot().await }.await {
                Ok(snapshot) => {
                    if let Some(threshold) = snapshot.threshold() {
                        remember(threshold);
                    }
                }
                Err(e) => worker::console_error!("quality: threshold not refreshed: {e}"),
            }
            REFRESHING.with(|r| r.set(false));
        });
    }
    held.and_then(|(t, _)| (t.source == ThresholdSource::Controller).then_some(t.value))
}

/// Keeps `threshold` as this isolate's (a read of the quality state, e.g. by /metrics,
/// refreshes it too).
pub fn remember(threshold: Threshold) {
    THRESHOLD.with(|t| t.set(Some((threshold, runtime::now_ms()))));
}

/// Whether to sample this automatically routed request, and with which probability: a
/// uniform draw against `QUALITY_SAMPLE_RATE`.
pub fn sample(config: &Config) -> Option<f64> {
    let rate = config.quality.sample_rate;
    if rate <= 0.0 {
        return None;
    }
    let draw = (crate::random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (draw < rate).then_some(rate)
}

/// Hands a sampled request's job to the quality store after the response.
pub fn submit_after_response(env: &Env, ctx: &Context, job: ShadowJob) {
    let env = env.clone();
    ctx.wait_until(async move {
        let sent = async { QualityClient::connect(&env)?.submit(&job).await }.await;
        if let Err(e) = sent {
            worker::console_error!("quality: sample {} not handed over: {e}", job.id);
        }
    });
}

/// The random order of a sample's two answers before the judge.
pub fn served_first() -> bool {
    crate::random_u64() & 1 == 1
}

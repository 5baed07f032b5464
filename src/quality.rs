//! The isolate's side of quality control: what it applies (the quality store's threshold
//! and sampling policy, never older than a minute: refreshed in the background after 45 s,
//! and before routing only after the isolate was idle), the sampling decision, the batch of its traffic (score and costs of each
//! automatically routed request, sent with the refresh), and handing sampled requests over
//! to the quality store after the response.
//!
//! With no `QUALITY_SAMPLE_RATE` and no target none of this runs: the request path is
//! what it was. It must not judge, estimate or control anything (the quality store and the
//! core do).

use std::cell::{Cell, RefCell};

use worker::{Context, Env};

use llm_mux_core::config::Config;
use llm_mux_core::quality::ScoreHistogram;
use llm_mux_core::quality_state::{self as bridge, Published, Refresh, ThresholdSource};
use llm_mux_core::shadow::ShadowJob;

use crate::quality_store::QualityClient;
use crate::runtime;

thread_local! {
    /// What the quality store last told this isolate to apply, and when.
    static PUBLISHED: Cell<Option<(Published, u64)>> = const { Cell::new(None) };
    /// When the background refresh under way started (one at a time per isolate; one whose
    /// request was cancelled before it finished is replaced after 30 s).
    static REFRESHING_SINCE: Cell<Option<u64>> = const { Cell::new(None) };
    /// This isolate's automatically routed traffic since its last report.
    static TRAFFIC: RefCell<Option<ScoreHistogram>> = const { RefCell::new(None) };
}

/// What this isolate applies now: the store's last word, or the configuration's.
fn current(config: &Config) -> Published {
    PUBLISHED
        .with(Cell::get)
        .map_or_else(|| bridge::initial(config), |(p, _)| p)
}

/// The threshold this isolate routes with: `None` (the configured one) unless the quality
/// store's controller has moved it. What the isolate holds is refreshed in the background
/// (`ctx.wait_until`) once it is 45 s old and, when a target is set (the threshold may
/// move), before this request routes when it is a minute old or missing (after the isolate
/// was idle; bounded by [`INLINE_REFRESH_MS`]): a refresh sends the isolate's traffic batch
/// and keeps the store's answer. Sampling alone never makes a request wait.
pub async fn threshold(env: &Env, ctx: &Context, config: &Config) -> Option<f64> {
    if !config.quality.enabled() {
        return None;
    }
    let now = runtime::now_ms();
    let held = PUBLISHED.with(Cell::get);
    let age = held.map(|(_, at)| now.saturating_sub(at));
    let refreshing_for = REFRESHING_SINCE
        .with(Cell::get)
        .map(|since| now.saturating_sub(since));
    let may_wait = config.quality.target.is_some();
    let action = bridge::refresh(age, refreshing_for, may_wait);
    match action {
        Refresh::Keep => {}
        Refresh::Background => {
            REFRESHING_SINCE.with(|r| r.set(Some(now)));
            let report = report_traffic(env.clone());
            crate::runtime::after_response(ctx, async move {
                report.await;
                REFRESHING_SINCE.with(|r| r.set(None));
            });
        }
        Refresh::Now => {
            let report = report_traffic(env.clone());
            let timer = worker::Delay::from(std::time::Duration::from_millis(INLINE_REFRESH_MS));
            futures_util::pin_mut!(report);
            if let futures_util::future::Either::Right(_) =
                futures_util::future::select(report, timer).await
            {
                worker::console_error!("quality: refresh took over {INLINE_REFRESH_MS} ms");
            }
        }
    }
    let (published, _) = PUBLISHED.with(Cell::get)?;
    (published.source == ThresholdSource::Controller).then_some(published.threshold)
}

/// Longest a request waits for a refresh before it routes (ms); past that it routes with
/// what the isolate holds (the configuration's at first).
pub const INLINE_REFRESH_MS: u64 = 2_000;

/// Sends the isolate's traffic batch to the quality store and keeps its answer.
async fn report_traffic(env: Env) {
    let batch = TRAFFIC.with(|t| t.borrow_mut().take());
    let wire = bridge::traffic_wire(&batch.unwrap_or_default());
    match async { QualityClient::connect(&env)?.report_traffic(&wire).await }.await {
        Ok(Some(published)) => remember(published),
        Ok(None) => worker::console_error!("quality: unreadable answer to a traffic report"),
        Err(e) => worker::console_error!("quality: traffic not reported: {e}"),
    }
}

/// Keeps `published` as what this isolate applies (a read of the quality state by
/// /metrics refreshes it too).
pub fn remember(published: Published) {
    PUBLISHED.with(|p| p.set(Some((published, runtime::now_ms()))));
}

/// Whether to sample this automatically routed request (score `score`), and with which
/// probability: the store's sampling policy (stratified by score, lowered once the
/// estimate is tight), or `QUALITY_SAMPLE_RATE` for every request until it has spoken.
pub fn sample(config: &Config, score: f64) -> Option<f64> {
    if config.quality.sample_rate <= 0.0 {
        return None;
    }
    current(config).policy.decide(score, crate::random_u64())
}

/// Counts an automatically routed request in this isolate's traffic batch: its score and
/// what it costs (or would cost) on the lower and on the top tier.
pub fn record_traffic(config: &Config, score: f64, cost_lower_usd: f64, cost_top_usd: f64) {
    if !config.quality.enabled() {
        return;
    }
    TRAFFIC.with(|t| {
        t.borrow_mut()
            .get_or_insert_with(ScoreHistogram::default)
            .record(score, cost_lower_usd, cost_top_usd)
    });
}

/// Hands a sampled request's job to the quality store after the response.
pub fn submit_after_response(env: &Env, ctx: &Context, job: ShadowJob) {
    crate::runtime::after_response(ctx, submit(env.clone(), job));
}

/// Hands a job to the quality store (a failure is logged: the sample is lost, nothing else).
pub async fn submit(env: Env, job: ShadowJob) {
    let sent = async { QualityClient::connect(&env)?.submit(&job).await }.await;
    if let Err(e) = sent {
        worker::console_error!("quality: sample {} not handed over: {e}", job.id);
    }
}

/// The random order of a sample's two answers before the judge.
pub fn served_first() -> bool {
    crate::random_u64() & 1 == 1
}

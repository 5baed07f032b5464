//! The bridge between the gateway and the quality controller ([`crate::quality`]): the
//! controller's settings from the configuration, judged shadow samples in the controller's
//! form, the isolates' traffic batches in a compact wire form, and the `quality` block of
//! `/metrics`.
//!
//! It owns the shapes that cross the worker / Durable Object boundary and the `/metrics`
//! block's field names. It must not estimate or control anything itself (that is
//! `crate::quality`), do I/O or read the clock.

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, QualityTarget};
use crate::quality::{
    ControllerConfig, JudgedSample as ControllerSample, QualityReport, ScoreHistogram, ServedBy,
    Target,
};
use crate::shadow::JudgedSample;

pub use crate::quality::{Published, SamplingPolicy, ThresholdSource};

/// The controller's settings for `config`.
pub fn controller_config(config: &Config) -> ControllerConfig {
    let mut settings = ControllerConfig::new(config.routing_threshold);
    settings.target = config.quality.target.map(|t| match t {
        QualityTarget::Quality(q) => Target::QualityRetained(q),
        QualityTarget::LargeShare(s) => Target::LargeShare(s),
        QualityTarget::CostPer1k(c) => Target::CostPer1k(c),
    });
    settings.max_sample_rate = config.quality.sample_rate;
    settings.max_samples_per_hour =
        u32::try_from(config.quality.max_samples_per_hour).unwrap_or(u32::MAX);
    settings
}

/// What isolates apply before they first hear from the quality store: the configured
/// threshold, and `QUALITY_SAMPLE_RATE` for every request.
pub fn initial(config: &Config) -> Published {
    Published {
        threshold: config.routing_threshold,
        source: ThresholdSource::Configured,
        policy: SamplingPolicy::uniform(config.quality.sample_rate),
        version: 0,
    }
}

/// How old (ms) what an isolate applies may get before a refresh starts in the background.
pub const REFRESH_AFTER_MS: u64 = 45_000;
/// How old (ms) it may get at most: older, the request that finds it refreshes it before it
/// routes (so an isolate applies what the store decided at most a minute ago).
pub const MAX_AGE_MS: u64 = 60_000;
/// A background refresh unfinished after this long (ms) is taken for lost.
pub const LOST_REFRESH_MS: u64 = 30_000;

/// What a request does about the isolate's quality state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Use what is held.
    Keep,
    /// Use what is held, and refresh it after the response.
    Background,
    /// Refresh before routing (nothing held, or older than [`MAX_AGE_MS`]).
    Now,
}

/// The refresh rule: `age_ms` of what is held (`None`: nothing yet), how long ago the
/// background refresh under way started (`None`: none), and whether a request may wait for
/// a refresh (only when a target is set: without one the threshold never moves, and
/// sampling alone never makes a request wait).
pub fn refresh(age_ms: Option<u64>, refreshing_for_ms: Option<u64>, may_wait: bool) -> Refresh {
    let busy = refreshing_for_ms.is_some_and(|t| t < LOST_REFRESH_MS);
    let too_old = age_ms.is_none_or(|age| age >= MAX_AGE_MS);
    match age_ms {
        _ if too_old && may_wait => Refresh::Now,
        _ if busy => Refresh::Keep,
        Some(age) if age < REFRESH_AFTER_MS => Refresh::Keep,
        _ => Refresh::Background,
    }
}

/// A judged shadow sample in the controller's form.
pub fn controller_sample(sample: &JudgedSample) -> ControllerSample {
    ControllerSample {
        time_ms: sample.time_ms,
        score: sample.score,
        served: if sample.served_top {
            ServedBy::Top
        } else {
            ServedBy::Lower
        },
        grade_lower: sample.grade_lower(),
        grade_top: sample.grade_top(),
        probability: sample.sample_probability,
        serving_cost_usd: sample.served_cost_usd,
        extra_cost_usd: sample.other_cost_usd,
        judge_cost_usd: sample.judge_cost_usd,
    }
}

/// An isolate's traffic since its last report, as sent to the quality store: the non-empty
/// bins only (`[[bin, count, cost_lower_usd, cost_top_usd], ...]`), since most of the
/// histogram's 1,000 bins are empty in a minute of traffic.
pub fn traffic_wire(histogram: &ScoreHistogram) -> Value {
    let bins: Vec<Value> = (0..histogram.bins())
        .filter(|&b| histogram.count[b] > 0.0)
        .map(|b| {
            Value::Array(vec![
                Value::from(b),
                Value::from(histogram.count[b]),
                Value::from(histogram.cost_lower[b]),
                Value::from(histogram.cost_top[b]),
            ])
        })
        .collect();
    crate::object! {"bins": histogram.bins(), "traffic": bins}
}

/// The histogram of a [`traffic_wire`] body (bins out of range are ignored).
pub fn traffic_from_wire(body: &Value) -> Option<ScoreHistogram> {
    let bins = usize::try_from(body.get("bins")?.as_u64()?).ok()?;
    if bins == 0 || bins > 100_000 {
        return None;
    }
    let mut histogram = ScoreHistogram::new(bins);
    for row in body.get("traffic")?.as_array()? {
        let row = row.as_array()?;
        let bin = usize::try_from(row.first()?.as_u64()?).ok()?;
        let field = |i: usize| row.get(i).and_then(Value::as_f64).filter(|v| v.is_finite());
        if bin < bins {
            histogram.count[bin] += field(1)?.max(0.0);
            histogram.cost_lower[bin] += field(2)?.max(0.0);
            histogram.cost_top[bin] += field(3)?.max(0.0);
        }
    }
    Some(histogram)
}

/// What the quality store counts beside the controller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreCounts {
    /// Dropped samples by reason.
    pub failed: crate::named::Named<u64>,
    /// Samples refused by the hourly cap.
    pub capped: u64,
    /// Samples waiting to be judged.
    pub pending: u64,
    /// Spend on shadow and judge calls, judged or not, as the store booked it when it was
    /// spent (the controller's own figure counts a retried job's shadow call again with
    /// its sample).
    pub evaluation_cost_usd: f64,
}

/// The `quality` block of `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityBlock {
    /// The target value: `QUALITY_TARGET`, or the large share / cost per 1k (see
    /// `target_kind`); `null` without a target.
    pub target: Option<f64>,
    /// `quality_retained`, `large_share` or `cost_per_1k`; `null` without a target.
    pub target_kind: Option<&'static str>,
    /// Samples judged since the start.
    pub samples_judged: u64,
    /// Samples dropped (failed calls, unusable judgements, lost with a restart).
    pub samples_failed: u64,
    /// `samples_failed` by reason.
    pub samples_failed_by_reason: crate::named::Named<u64>,
    /// Sampled requests refused by `QUALITY_MAX_SAMPLES_PER_HOUR`.
    pub samples_capped: u64,
    /// Samples waiting to be judged.
    pub samples_pending: u64,
    /// Served answers' quality over the top tier's on the recent samples, weighted to the
    /// traffic's routing, at the threshold in force; `null` before any sample.
    pub estimated_quality_retained: Option<f64>,
    /// Its 95% confidence interval `[low, high]`.
    pub confidence_interval_95: Option<[f64; 2]>,
    /// The threshold isolates route with.
    pub threshold: f64,
    /// `configured` or `controller`.
    pub threshold_source: ThresholdSource,
    /// The sampling probability below the threshold now (the controller lowers it once
    /// its estimate is tight, and keeps the spend within its share).
    pub sampling_rate_below_threshold: f64,
    /// Spend on shadow and judge calls (also in the /metrics totals).
    pub evaluation_cost_usd: f64,
}

/// The `/metrics` block from the controller's report, its policy and the store's counts.
pub fn block(report: &QualityReport, published: &Published, counts: &StoreCounts) -> QualityBlock {
    let (target, target_kind) = match report.target {
        None => (None, None),
        Some(Target::QualityRetained(q)) => (Some(q), Some("quality_retained")),
        Some(Target::LargeShare(s)) => (Some(s), Some("large_share")),
        Some(Target::CostPer1k(c)) => (Some(c), Some("cost_per_1k")),
    };
    QualityBlock {
        target,
        target_kind,
        samples_judged: report.samples_judged,
        samples_failed: counts.failed.total(),
        samples_failed_by_reason: counts.failed.clone(),
        samples_capped: counts.capped,
        samples_pending: counts.pending,
        estimated_quality_retained: report.estimated_quality_retained,
        confidence_interval_95: report.confidence_interval_95,
        threshold: report.threshold,
        threshold_source: report.threshold_source,
        sampling_rate_below_threshold: published.policy.p_below,
        evaluation_cost_usd: counts.evaluation_cost_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;
    use crate::quality::QualityController;
    use serde_json::json;

    fn judged(served_top: bool, served: u8, other: u8) -> JudgedSample {
        JudgedSample {
            id: "x".into(),
            time_ms: 5,
            router: "learned".into(),
            score: 0.4,
            threshold: 0.5,
            served_tier: String::new(),
            other_tier: String::new(),
            served_top,
            grade_served: served,
            grade_other: other,
            sample_probability: 0.25,
            served_tokens: [1, 2],
            other_tokens: [3, 4],
            judge_tokens: [5, 6],
            served_cost_usd: 0.1,
            other_cost_usd: 0.2,
            judge_cost_usd: 0.3,
        }
    }

    #[test]
    fn isolates_refresh_in_the_background_and_never_route_on_state_older_than_a_minute() {
        assert_eq!(refresh(None, None, true), Refresh::Now);
        assert_eq!(refresh(Some(0), None, true), Refresh::Keep);
        assert_eq!(
            refresh(Some(REFRESH_AFTER_MS - 1), None, true),
            Refresh::Keep
        );
        assert_eq!(
            refresh(Some(REFRESH_AFTER_MS), None, true),
            Refresh::Background
        );
        // One background refresh at a time, unless it is lost.
        assert_eq!(
            refresh(Some(REFRESH_AFTER_MS), Some(10), true),
            Refresh::Keep
        );
        assert_eq!(
            refresh(Some(50_000), Some(LOST_REFRESH_MS), true),
            Refresh::Background
        );
        // Past a minute the request refreshes first, whatever runs in the background.
        assert_eq!(refresh(Some(MAX_AGE_MS), Some(10), true), Refresh::Now);
        assert_eq!(refresh(Some(10 * MAX_AGE_MS), None, true), Refresh::Now);
    }

    #[test]
    fn without_a_target_no_request_waits() {
        assert_eq!(refresh(None, None, false), Refresh::Background);
        assert_eq!(
            refresh(Some(10 * MAX_AGE_MS), None, false),
            Refresh::Background
        );
        assert_eq!(refresh(Some(MAX_AGE_MS), Some(10), false), Refresh::Keep);
        assert_eq!(
            refresh(None, Some(LOST_REFRESH_MS), false),
            Refresh::Background
        );
        assert_eq!(refresh(Some(0), None, false), Refresh::Keep);
    }

    #[test]
    fn settings_follow_the_configuration() {
        let c = config(&[
            ("ROUTING_THRESHOLD", "0.4"),
            ("QUALITY_SAMPLE_RATE", "0.02"),
            ("QUALITY_TARGET", "0.95"),
            ("QUALITY_MAX_SAMPLES_PER_HOUR", "60"),
        ]);
        let s = controller_config(&c);
        assert_eq!(s.configured_threshold, 0.4);
        assert_eq!(s.target, Some(Target::QualityRetained(0.95)));
        assert_eq!(s.max_sample_rate, 0.02);
        assert_eq!(s.max_samples_per_hour, 60);
        let p = initial(&c);
        assert_eq!(p.threshold, 0.4);
        assert_eq!(p.source, ThresholdSource::Configured);
        assert_eq!(p.policy.probability(0.9), 0.02);
        let c = config(&[("TARGET_COST_PER_1K", "0.5")]);
        assert_eq!(controller_config(&c).target, Some(Target::CostPer1k(0.5)));
        let c = config(&[("TARGET_LARGE_SHARE", "0.3")]);
        assert_eq!(controller_config(&c).target, Some(Target::LargeShare(0.3)));
    }

    #[test]
    fn samples_map_grades_to_lower_and_top() {
        let s = controller_sample(&judged(false, 4, 9));
        assert_eq!(
            (s.served, s.grade_lower, s.grade_top),
            (ServedBy::Lower, 4, 9)
        );
        assert_eq!(s.probability, 0.25);
        assert!((s.evaluation_cost_usd() - 0.5).abs() < 1e-12);
        assert_eq!(s.serving_cost_usd, 0.1);
        let s = controller_sample(&judged(true, 9, 4));
        assert_eq!(
            (s.served, s.grade_lower, s.grade_top),
            (ServedBy::Top, 4, 9)
        );
        assert!(s.is_valid());
    }

    #[test]
    fn traffic_round_trips_through_the_wire_form() {
        let mut h = ScoreHistogram::new(1000);
        h.record(0.1234, 0.001, 0.004);
        h.record(0.1234, 0.001, 0.004);
        h.record(0.9, 0.002, 0.008);
        let wire = traffic_wire(&h);
        assert_eq!(wire["traffic"].as_array().unwrap().len(), 2);
        let back = traffic_from_wire(&wire).unwrap();
        assert_eq!(back, h);
        assert!(traffic_from_wire(&json!({"bins": 0, "traffic": []})).is_none());
        assert!(traffic_from_wire(&json!({"bins": 10, "traffic": [["x"]]})).is_none());
        let ignored = traffic_from_wire(&json!({"bins": 10, "traffic": [[12, 1.0, 0.0, 0.0]]}));
        assert_eq!(ignored.unwrap().total(), 0.0);
    }

    #[test]
    fn the_block_names_the_target_and_the_counts() {
        let c = config(&[("QUALITY_TARGET", "0.9"), ("QUALITY_SAMPLE_RATE", "0.05")]);
        let settings = controller_config(&c);
        let mut controller = QualityController::new(&settings);
        controller.samples_judged = 7;
        let counts = StoreCounts {
            failed: crate::named::Named::from_pairs(&[("judge_unparseable", 2)]),
            capped: 3,
            pending: 1,
            evaluation_cost_usd: 0.5,
        };
        let b = block(
            &controller.report(&settings),
            &controller.published(),
            &counts,
        );
        assert_eq!(
            (b.target, b.target_kind),
            (Some(0.9), Some("quality_retained"))
        );
        assert_eq!(
            (b.samples_judged, b.samples_failed, b.samples_capped),
            (7, 2, 3)
        );
        assert_eq!(b.samples_pending, 1);
        assert_eq!(b.estimated_quality_retained, None);
        assert_eq!(b.threshold, c.routing_threshold);
        assert_eq!(b.threshold_source, ThresholdSource::Configured);
        assert_eq!(b.evaluation_cost_usd, 0.5);
        let text = serde_json::to_value(&b).unwrap();
        assert_eq!(text["threshold_source"], "configured");
        assert_eq!(text["confidence_interval_95"], Value::Null);
    }
}

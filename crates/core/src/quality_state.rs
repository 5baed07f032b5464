//! The deployment's quality state, as the quality store keeps it and /metrics reports it:
//! the estimate of quality retained from judged samples, its 95% interval, and the
//! threshold isolates route with (configured, or moved by the controller).
//!
//! It owns the shape of the `quality` block of /metrics and of the threshold hand-over to
//! isolates. It must not do I/O or read the clock (time comes in as `now_ms`).

use serde::{Deserialize, Serialize};

use crate::config::{Config, QualityTarget};
use crate::shadow::JudgedSample;

/// Where the routing threshold comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSource {
    /// `ROUTING_THRESHOLD` (or the router's default).
    Configured,
    /// The controller, holding the target.
    Controller,
}

/// The threshold isolates route with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The top tier's threshold.
    pub value: f64,
    /// Where it comes from.
    pub source: ThresholdSource,
}

/// The controller's persistent state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityState {
    /// The current threshold.
    pub threshold: f64,
    /// Whether the controller set it.
    pub moved: bool,
    /// Time of the last judged sample (ms), 0 before any.
    pub last_sample_ms: u64,
}

impl QualityState {
    /// The state of a deployment with no samples: the configured threshold.
    pub fn new(config: &Config) -> Self {
        Self {
            threshold: config.routing_threshold,
            moved: false,
            last_sample_ms: 0,
        }
    }

    /// Takes a judged sample into account.
    pub fn observe(&mut self, _config: &Config, sample: &JudgedSample, now_ms: u64) {
        self.last_sample_ms = self.last_sample_ms.max(sample.time_ms.min(now_ms));
    }

    /// Time passes (guard rails that depend on time).
    pub fn tick(&mut self, config: &Config, _now_ms: u64) {
        if config.quality.target.is_none() {
            self.threshold = config.routing_threshold;
            self.moved = false;
        }
    }

    /// The threshold isolates should route with now.
    pub fn threshold(&self, config: &Config, _now_ms: u64) -> Threshold {
        if self.moved && config.quality.target.is_some() {
            Threshold {
                value: self.threshold,
                source: ThresholdSource::Controller,
            }
        } else {
            Threshold {
                value: config.routing_threshold,
                source: ThresholdSource::Configured,
            }
        }
    }
}

/// The `quality` block of /metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The configured target (`QUALITY_TARGET`), if any.
    pub target: Option<f64>,
    /// `TARGET_LARGE_SHARE` or `TARGET_COST_PER_1K` when one of those is the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<String>,
    /// Samples judged.
    pub samples_judged: u64,
    /// Samples dropped (failed calls, unusable judgements).
    pub samples_failed: u64,
    /// `samples_failed` by reason (`shadow_call_failed`, `judge_call_failed`,
    /// `judge_unparseable`, `judge_out_of_range`).
    pub samples_failed_by_reason: std::collections::BTreeMap<String, u64>,
    /// Sampled requests refused by `QUALITY_MAX_SAMPLES_PER_HOUR`.
    pub samples_capped: u64,
    /// Samples waiting to be judged.
    pub samples_pending: u64,
    /// Served answers' grades over the top tier's, on the samples, weighted to the
    /// traffic's routing (inverse sampling probability). `None` before any sample.
    pub estimated_quality_retained: Option<f64>,
    /// 95% confidence interval of the estimate (`[low, high]`).
    pub confidence_interval_95: Option<[f64; 2]>,
    /// The threshold isolates route with.
    pub threshold: f64,
    /// `configured` or `controller`.
    pub threshold_source: ThresholdSource,
    /// Spend on shadow and judge calls.
    pub evaluation_cost_usd: f64,
}

/// Ratio estimate of quality retained with a delta-method 95% interval, weighted by inverse
/// sampling probability: sum w*served / sum w*top over the samples.
pub fn estimate(samples: &[JudgedSample]) -> Option<(f64, [f64; 2])> {
    let rows: Vec<(f64, f64, f64)> = samples
        .iter()
        .map(|s| {
            let w = if s.sample_probability > 0.0 {
                1.0 / s.sample_probability
            } else {
                1.0
            };
            (w, f64::from(s.grade_served), f64::from(s.grade_top()))
        })
        .collect();
    let total_w: f64 = rows.iter().map(|r| r.0).sum();
    if rows.is_empty() || total_w <= 0.0 {
        return None;
    }
    let mean_y = rows.iter().map(|r| r.0 * r.1).sum::<f64>() / total_w;
    let mean_x = rows.iter().map(|r| r.0 * r.2).sum::<f64>() / total_w;
    if mean_x <= 0.0 {
        return None;
    }
    let ratio = mean_y / mean_x;
    let n = rows.len() as f64;
    // Effective sample size of the weights (Kish), for the variance of weighted means.
    let sum_w2: f64 = rows.iter().map(|r| r.0 * r.0).sum();
    let n_eff = (total_w * total_w / sum_w2).max(1.0);
    let resid_var = if n > 1.0 {
        rows.iter()
            .map(|r| r.0 * (r.1 - ratio * r.2).powi(2))
            .sum::<f64>()
            / total_w
            * n
            / (n - 1.0)
    } else {
        f64::INFINITY
    };
    let se = (resid_var / n_eff).sqrt() / mean_x;
    let half = 1.96 * se;
    let low = if half.is_finite() { ratio - half } else { 0.0 };
    let high = if half.is_finite() {
        ratio + half
    } else {
        f64::INFINITY
    };
    Some((ratio, [low.max(0.0), high]))
}

/// The quality block from the state and the samples (the store fills in its counters:
/// failures, capped and pending samples).
pub fn report(
    config: &Config,
    state: &QualityState,
    samples: &[JudgedSample],
    now_ms: u64,
    evaluation_cost_usd: f64,
) -> QualityReport {
    let threshold = state.threshold(config, now_ms);
    let estimate = estimate(samples);
    let (target, target_kind) = match config.quality.target {
        None => (None, None),
        Some(QualityTarget::Quality(q)) => (Some(q), None),
        Some(QualityTarget::LargeShare(s)) => (Some(s), Some("large_share".to_string())),
        Some(QualityTarget::CostPer1k(c)) => (Some(c), Some("cost_per_1k".to_string())),
    };
    QualityReport {
        target,
        target_kind,
        samples_judged: samples.len() as u64,
        samples_failed: 0,
        samples_failed_by_reason: std::collections::BTreeMap::new(),
        samples_capped: 0,
        samples_pending: 0,
        estimated_quality_retained: estimate.map(|e| e.0),
        confidence_interval_95: estimate.map(|e| {
            let [low, high] = e.1;
            [low, if high.is_finite() { high } else { 1.0e9 }]
        }),
        threshold: threshold.value,
        threshold_source: threshold.source,
        evaluation_cost_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(served_top: bool, served: u8, other: u8, p: f64) -> JudgedSample {
        JudgedSample {
            id: "x".into(),
            time_ms: 0,
            router: "learned".into(),
            score: 0.5,
            threshold: 0.5,
            served_tier: String::new(),
            other_tier: String::new(),
            served_top,
            grade_served: served,
            grade_other: other,
            sample_probability: p,
            served_tokens: [0, 0],
            other_tokens: [0, 0],
            judge_tokens: [0, 0],
            served_cost_usd: 0.0,
            other_cost_usd: 0.0,
            judge_cost_usd: 0.0,
        }
    }

    #[test]
    fn the_estimate_is_the_weighted_ratio_of_served_to_top_grades() {
        assert_eq!(estimate(&[]), None);
        let samples = [sample(false, 5, 10, 0.5), sample(true, 10, 5, 0.5)];
        let (ratio, _) = estimate(&samples).unwrap();
        assert!((ratio - 15.0 / 20.0).abs() < 1e-12);
        // A sample drawn with half the probability weighs twice as much.
        let samples = [sample(false, 5, 10, 0.25), sample(true, 10, 5, 0.5)];
        let (ratio, [low, high]) = estimate(&samples).unwrap();
        assert!((ratio - (2.0 * 5.0 + 10.0) / (2.0 * 10.0 + 10.0)).abs() < 1e-12);
        assert!(low <= ratio && ratio <= high);
    }

    #[test]
    fn the_interval_covers_the_truth_at_about_its_rate() {
        // Synthetic traffic: the top answer grades 8, the lower one 8 or 4 (p = 0.25 each):
        // true quality retained (8*0.75 + 4*0.25) / 8 = 0.875 for lower-served requests.
        let mut rng = crate::hash::SplitMix64::new(7);
        let mut covered = 0;
        let trials = 400;
        for _ in 0..trials {
            let samples: Vec<JudgedSample> = (0..200)
                .map(|_| {
                    let u = rng.next_u64() % 4;
                    sample(false, if u == 0 { 4 } else { 8 }, 8, 0.02)
                })
                .collect();
            let (_, [low, high]) = estimate(&samples).unwrap();
            if low <= 0.875 && 0.875 <= high {
                covered += 1;
            }
        }
        let rate = f64::from(covered) / f64::from(trials);
        assert!((0.92..=0.98).contains(&rate), "coverage {rate}");
    }
}

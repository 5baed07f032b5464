//! The threshold controller: holds a quality, large-share or cost target by moving the
//! routing threshold, from judged samples and the traffic's score histogram.
//!
//! State machine, run on every [`QualityController::update`] (the worker's Durable Object
//! runs it about once a minute; the simulator every 60 simulated seconds):
//! - no target: the configured threshold (`ROUTING_THRESHOLD`), source `configured`;
//! - quality target: once at least `min_samples` samples are held, the lowest-cost
//!   threshold among those (scanning up from "everything to the top tier") whose estimated
//!   quality retained meets the target and whose lower confidence bound (`estimate - z *
//!   std_error`) meets the floor `target - floor_tolerance` (so it aims at the target itself
//!   once the interval is narrow, and keeps a margin while it is wide);
//!   if no sample arrived for `stale_after_ms`, the configured threshold comes back;
//! - large-share / cost-per-1k target: the threshold that meets it on the decayed traffic
//!   histogram (no samples needed);
//! - every move is bounded: at most `max_share_step` of the traffic changes tier per update;
//! - samples and traffic decay (half-lives), so the threshold follows drift.
//!
//! It also builds the sampling policy isolates apply ([`SamplingPolicy`]): the full rate
//! while the estimate is loose, `slow_rate_factor` of it (1 by default: no slowing) once the
//! 95% interval at the threshold is within `precision`; the evaluation-spend budget caps it. This module must not call models, read the clock or
//! do I/O; time is `now_ms`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jsonread::Fields;

use super::estimator::{decay_weight, Estimate, QualityCurve, Z95};
use super::histogram::{ScoreHistogram, DEFAULT_BINS};
use super::sample::JudgedSample;
use super::sampler::SamplingPolicy;

/// What the controller holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `QUALITY_TARGET`: estimated quality retained at least this, and its lower confidence
    /// bound at least this minus the controller's `floor_tolerance`.
    QualityRetained(f64),
    /// `TARGET_LARGE_SHARE`: at most this share of traffic to the top tier.
    LargeShare(f64),
    /// `TARGET_COST_PER_1K`: at most this many USD per 1,000 requests.
    CostPer1k(f64),
}

/// Where the threshold in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSource {
    /// `ROUTING_THRESHOLD` (no target, too few samples, or samples stopped arriving).
    Configured,
    /// Chosen by the controller.
    Controller,
}

impl ThresholdSource {
    /// Reads the name [`Serialize`] writes (`configured`, `controller`).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        match v.as_str() {
            Some("configured") => Ok(ThresholdSource::Configured),
            Some("controller") => Ok(ThresholdSource::Controller),
            _ => Err(String::from(
                "source: expected \"configured\" or \"controller\"",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ThresholdSource {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

/// Settings of the controller and the sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// The target, if any.
    pub target: Option<Target>,
    /// `ROUTING_THRESHOLD`: the starting point and the fallback.
    pub configured_threshold: f64,
    /// `QUALITY_SAMPLE_RATE`: the traffic's expected sampling rate at most (0 = off).
    pub max_sample_rate: f64,
    /// `QUALITY_MAX_SAMPLES_PER_HOUR`.
    pub max_samples_per_hour: u32,
    /// Samples held before the first move on a quality target.
    pub min_samples: usize,
    /// Most traffic share that may change tier in one update.
    pub max_share_step: f64,
    /// Half-life of a sample's weight.
    pub sample_half_life_ms: u64,
    /// Half-life of the traffic histogram.
    pub traffic_half_life_ms: u64,
    /// Without a new sample for this long, the configured threshold comes back.
    pub stale_after_ms: u64,
    /// z of the one-sided lower bound the quality target's floor is checked at.
    pub confidence_z: f64,
    /// How far below the target the lower bound may fall (the floor is `target -
    /// floor_tolerance`); the estimate itself must still meet the target. 0: the lower
    /// bound must meet the target itself.
    #[serde(default)]
    pub floor_tolerance: f64,
    /// Half-width of the 95% interval at the threshold below which sampling slows.
    pub precision: f64,
    /// Share of the full rate sampled once the estimate is within `precision`.
    pub slow_rate_factor: f64,
    /// Traffic share just above the threshold sampled at the full weight.
    pub band_share: f64,
    /// Relative weight of the rest of the top tier's traffic.
    pub far_weight: f64,
    /// A request's sampling probability is at most this times the rate.
    pub max_probability_factor: f64,
    /// Most samples kept (oldest dropped first).
    pub window: usize,
    /// Most evaluation spend as a share of what the traffic would cost on the top tier:
    /// the sampling rate is lowered to keep the recent samples' spend within it.
    pub max_evaluation_share: f64,
    /// Half-life of the fast traffic histogram that detects a shift in traffic.
    pub shift_half_life_ms: u64,
    /// Total-variation distance between the fast and the slow score distributions (over
    /// quantile groups) that counts as a shift.
    pub shift_distance: f64,
    /// Weight factor of samples taken before the last detected shift.
    pub pre_shift_weight: f64,
    /// Bins of the traffic histogram and of the candidate thresholds.
    pub bins: usize,
}

impl ControllerConfig {
    /// The defaults (see docs/quality.md) around a configured threshold.
    pub fn new(configured_threshold: f64) -> Self {
        ControllerConfig {
            target: None,
            configured_threshold,
            max_sample_rate: 0.0,
            max_samples_per_hour: 120,
            min_samples: 150,
            max_share_step: 0.05,
            sample_half_life_ms: 24 * 3_600_000,
            traffic_half_life_ms: 3_600_000,
            stale_after_ms: 6 * 3_600_000,
            confidence_z: 1.8,
            floor_tolerance: 0.01,
            precision: 0.02,
            slow_rate_factor: 1.0,
            band_share: 0.05,
            far_weight: 0.2,
            max_probability_factor: 2.0,
            window: 4000,
            max_evaluation_share: 0.028,
            shift_half_life_ms: 20 * 60_000,
            shift_distance: 0.08,
            pre_shift_weight: 0.0,
            bins: DEFAULT_BINS,
        }
    }
}

/// What isolates cache (refreshed within 60 s): the threshold and the sampling policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// Threshold in force.
    pub threshold: f64,
    /// Where it comes from.
    pub source: ThresholdSource,
    /// Which requests to sample.
    pub policy: SamplingPolicy,
    /// Increments on every update.
    pub version: u64,
}

/// The `quality` object of `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The target, if any.
    pub target: Option<Target>,
    /// Samples judged since the start.
    pub samples_judged: u64,
    /// Samples whose extra call or judge failed.
    pub samples_failed: u64,
    /// Estimated quality retained at the threshold in force (None before any sample).
    pub estimated_quality_retained: Option<f64>,
    /// Its 95% interval `[low, high]`.
    pub confidence_interval_95: Option<[f64; 2]>,
    /// Threshold in force.
    pub threshold: f64,
    /// Where it comes from.
    pub threshold_source: ThresholdSource,
    /// Evaluation spend so far (extra tier calls and judge calls), USD.
    pub evaluation_cost_usd: f64,
}

/// The controller's persistent state (serialisable: it lives in the Durable Object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityController {
    /// Threshold in force.
    pub threshold: f64,
    /// Where it comes from.
    pub source: ThresholdSource,
    /// Recent judged samples, oldest first.
    pub samples: VecDeque<JudgedSample>,
    /// Decayed histogram of all routed traffic.
    pub histogram: ScoreHistogram,
    /// The same with a short half-life: compared with `histogram` to detect a shift.
    pub recent: ScoreHistogram,
    /// Start of the current traffic regime (time of the last detected shift).
    pub epoch_start_ms: u64,
    /// Shifts detected so far.
    pub shifts: u64,
    /// Time of the last update.
    pub last_update_ms: Option<u64>,
    /// Time of the newest sample.
    pub last_sample_ms: Option<u64>,
    /// Samples judged since the start.
    pub samples_judged: u64,
    /// Samples that failed.
    pub samples_failed: u64,
    /// Evaluation spend so far, USD.
    pub evaluation_cost_usd: f64,
    /// The sampling policy in force.
    pub policy: SamplingPolicy,
    /// The estimate at the threshold in force, as of the last update.
    pub estimate: Option<Estimate>,
    /// Increments on every update.
    pub version: u64,
}

impl<'de> Deserialize<'de> for QualityController {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl QualityController {
    /// Reads a state as [`Serialize`] writes it; every field but the options (missing or
    /// `null`: `None`) is required, as the derived reader had it, so an older or damaged
    /// state is refused whole (the store starts a fresh controller then).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        let within = |field: &'static str| move |e: String| format!("{field}: {e}");
        Ok(QualityController {
            threshold: f.f64("threshold")?,
            source: ThresholdSource::from_value(f.get("source")?)?,
            samples: f
                .array("samples")?
                .iter()
                .map(JudgedSample::from_value)
                .collect::<Result<_, _>>()
                .map_err(within("samples"))?,
            histogram: ScoreHistogram::from_value(f.get("histogram")?)
                .map_err(within("histogram"))?,
            recent: ScoreHistogram::from_value(f.get("recent")?).map_err(within("recent"))?,
            epoch_start_ms: f.u64("epoch_start_ms")?,
            shifts: f.u64("shifts")?,
            last_update_ms: f.opt_u64("last_update_ms")?,
            last_sample_ms: f.opt_u64("last_sample_ms")?,
            samples_judged: f.u64("samples_judged")?,
            samples_failed: f.u64("samples_failed")?,
            evaluation_cost_usd: f.f64("evaluation_cost_usd")?,
            policy: SamplingPolicy::from_value(f.get("policy")?).map_err(within("policy"))?,
            estimate: f
                .opt("estimate")
                .map(Estimate::from_value)
                .transpose()
                .map_err(within("estimate"))?,
            version: f.u64("version")?,
        })
    }

    /// A fresh controller at the configured threshold.
    pub fn new(cfg: &ControllerConfig) -> Self {
        QualityController {
            threshold: cfg.configured_threshold,
            source: ThresholdSource::Configured,
            samples: VecDeque::new(),
            histogram: ScoreHistogram::new(cfg.bins),
            recent: ScoreHistogram::new(cfg.bins),
            epoch_start_ms: 0,
            shifts: 0,
            last_update_ms: None,
            last_sample_ms: None,
            samples_judged: 0,
            samples_failed: 0,
            evaluation_cost_usd: 0.0,
            policy: SamplingPolicy::uniform(cfg.max_sample_rate),
            estimate: None,
            version: 0,
        }
    }

    /// Counts one automatically routed request (the worker batches these per isolate and
    /// merges them with [`QualityController::merge_traffic`]).
    pub fn record_traffic(&mut self, score: f64, cost_lower_usd: f64, cost_top_usd: f64) {
        self.histogram.record(score, cost_lower_usd, cost_top_usd);
        self.recent.record(score, cost_lower_usd, cost_top_usd);
    }

    /// Adds an isolate's traffic histogram.
    pub fn merge_traffic(&mut self, batch: &ScoreHistogram) {
        self.histogram.merge(batch);
        self.recent.merge(batch);
    }

    /// Adds a judged sample (invalid ones count as failed) and its evaluation spend.
    pub fn record_sample(&mut self, sample: JudgedSample, cfg: &ControllerConfig) {
        self.evaluation_cost_usd += sample.evaluation_cost_usd().max(0.0);
        if !sample.is_valid() {
            self.samples_failed += 1;
            return;
        }
        self.samples_judged += 1;
        self.last_sample_ms = Some(self.last_sample_ms.unwrap_or(0).max(sample.time_ms));
        self.samples.push_back(sample);
        while self.samples.len() > cfg.window.max(1) {
            self.samples.pop_front();
        }
    }

    /// A sample whose extra call or judge failed, with what it spent.
    pub fn record_failure(&mut self, spent_usd: f64) {
        self.samples_failed += 1;
        self.evaluation_cost_usd += spent_usd.max(0.0);
    }

    /// What isolates should apply.
    pub fn published(&self) -> Published {
        Published {
            threshold: self.threshold,
            source: self.source,
            policy: self.policy,
            version: self.version,
        }
    }

    /// The `/metrics` `quality` object.
    pub fn report(&self, cfg: &ControllerConfig) -> QualityReport {
        QualityReport {
            target: cfg.target,
            samples_judged: self.samples_judged,
            samples_failed: self.samples_failed,
            estimated_quality_retained: self.estimate.map(|e| e.quality_retained),
            confidence_interval_95: self.estimate.map(|e| e.interval95()),
            threshold: self.threshold,
            threshold_source: self.source,
            evaluation_cost_usd: self.evaluation_cost_usd,
        }
    }

    /// The curve of estimates over candidate thresholds from the samples held.
    pub fn curve(&self, now_ms: u64, cfg: &ControllerConfig) -> Option<QualityCurve> {
        let held: Vec<JudgedSample> = self.samples.iter().copied().collect();
        QualityCurve::from_samples_since(
            &held,
            now_ms,
            cfg.sample_half_life_ms,
            self.histogram.bins(),
            self.epoch_start_ms,
            cfg.pre_shift_weight,
        )
    }

    /// One control step at `now_ms`: decays the traffic, drops faded samples, re-estimates,
    /// moves the threshold (bounded) and rebuilds the sampling policy.
    pub fn update(&mut self, now_ms: u64, cfg: &ControllerConfig) -> Published {
        if let Some(last) = self.last_update_ms {
            self.histogram
                .decay(decay_weight(now_ms, last, cfg.traffic_half_life_ms));
            self.recent
                .decay(decay_weight(now_ms, last, cfg.shift_half_life_ms));
        }
        if shift_distance(&self.histogram, &self.recent) > cfg.shift_distance {
            // The traffic changed: price thresholds on the new traffic, and let the samples
            // of the old traffic weigh little.
            self.histogram = self.recent.clone();
            self.epoch_start_ms = now_ms;
            self.shifts += 1;
        }
        self.last_update_ms = Some(now_ms);
        // Samples weighing under 1/1024 of a new one no longer matter.
        if cfg.sample_half_life_ms > 0 {
            let horizon = cfg.sample_half_life_ms.saturating_mul(10);
            while self
                .samples
                .front()
                .is_some_and(|s| now_ms.saturating_sub(s.time_ms) > horizon)
            {
                self.samples.pop_front();
            }
        }
        let curve = self.curve(now_ms, cfg);
        let desired = self.desired_edge(now_ms, cfg, curve.as_ref());
        match desired {
            None => {
                self.threshold = cfg.configured_threshold;
                self.source = ThresholdSource::Configured;
            }
            Some(k) => {
                let k = self.bounded_step(k, cfg.max_share_step);
                self.threshold = self.histogram.edge(k);
                self.source = ThresholdSource::Controller;
            }
        }
        let k_now = self.histogram.edge_index(self.threshold);
        self.estimate = curve.as_ref().map(|c| c.at(k_now));
        let tight = self.estimate.is_some_and(|e| {
            self.samples.len() >= cfg.min_samples && Z95 * e.std_error <= cfg.precision
        });
        let mut rate = if tight {
            cfg.max_sample_rate * cfg.slow_rate_factor
        } else {
            cfg.max_sample_rate
        };
        // Keep the evaluation spend within its share of the always-top-tier cost: the
        // recent samples' mean spend against the traffic's mean top-tier cost. After a
        // shift, once a few samples of the new traffic are in, only they price a sample
        // (the old traffic's samples may cost much less or much more).
        let total = self.histogram.total();
        let in_epoch = self
            .samples
            .iter()
            .filter(|s| s.time_ms >= self.epoch_start_ms)
            .count();
        let (spend, n) = if in_epoch >= SPEND_MIN_SAMPLES {
            self.samples
                .iter()
                .filter(|s| s.time_ms >= self.epoch_start_ms)
                .fold((0.0, 0usize), |(c, n), s| {
                    (c + s.evaluation_cost_usd(), n + 1)
                })
        } else {
            let c: f64 = self.samples.iter().map(|s| s.evaluation_cost_usd()).sum();
            (c, self.samples.len())
        };
        if total > 0.0 && n > 0 && spend > 0.0 {
            let top_cost = self.histogram.cost_top.iter().sum::<f64>() / total;
            let per_sample = spend / n as f64;
            rate = rate.min(cfg.max_evaluation_share * top_cost / per_sample);
        }
        self.policy = SamplingPolicy::stratified(
            self.threshold,
            &self.histogram,
            rate,
            cfg.band_share,
            cfg.far_weight,
            cfg.max_sample_rate * cfg.max_probability_factor,
        );
        self.version += 1;
        self.published()
    }

    /// The bin edge the target asks for, or None for the configured threshold.
    fn desired_edge(
        &self,
        now_ms: u64,
        cfg: &ControllerConfig,
        curve: Option<&QualityCurve>,
    ) -> Option<usize> {
        let target = cfg.target?;
        let points = self.histogram.operating_points();
        let has_traffic = self.histogram.total() > 0.0;
        match target {
            Target::QualityRetained(q) => {
                let fresh = self
                    .last_sample_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) <= cfg.stale_after_ms);
                if !fresh {
                    return None;
                }
                let curve = curve?;
                if curve.samples < cfg.min_samples {
                    // Too few samples: hold where we are (the configured threshold at
                    // first).
                    return match self.source {
                        ThresholdSource::Configured => None,
                        ThresholdSource::Controller => {
                            Some(self.histogram.edge_index(self.threshold))
                        }
                    };
                }
                // Feasible: every edge from 0 (all top tier) up to the first one whose
                // estimate misses the target or whose lower bound misses the floor; the
                // cheapest of them.
                let mut best = 0usize;
                let mut best_cost = f64::INFINITY;
                for (k, point) in points.iter().enumerate() {
                    let e = curve.at(k);
                    if e.quality_retained < q || e.lower(cfg.confidence_z) < q - cfg.floor_tolerance
                    {
                        break;
                    }
                    let cost = if has_traffic { point.1 } else { -(k as f64) };
                    if cost <= best_cost {
                        best = k;
                        best_cost = cost;
                    }
                }
                Some(best)
            }
            Target::LargeShare(s) => {
                if !has_traffic {
                    return None;
                }
                points.iter().position(|p| p.0 <= s + 1e-12)
            }
            Target::CostPer1k(c) => {
                if !has_traffic {
                    return None;
                }
                points
                    .iter()
                    .position(|p| p.1 * 1000.0 <= c + 1e-12)
                    .or(Some(points.len().saturating_sub(1)))
            }
        }
    }

    /// From the threshold in force toward edge `k`, moving at most `max_share` of the
    /// traffic across tiers (always at least one bin).
    fn bounded_step(&self, k: usize, max_share: f64) -> usize {
        let h = &self.histogram;
        let total = h.total();
        let cur = h.edge_index(self.threshold);
        if total <= 0.0 || k == cur {
            return k;
        }
        let mut moved = 0.0;
        let mut at = cur;
        while at != k {
            let bin = if k > at { at } else { at - 1 };
            let next = moved + h.count[bin] / total;
            if next > max_share && at != cur {
                break;
            }
            moved = next;
            at = if k > at { at + 1 } else { at - 1 };
            if moved > max_share {
                break;
            }
        }
        at
    }
}

/// Samples of the current traffic (since the last shift) that price a sample for the
/// evaluation-spend budget; with fewer, all held samples do.
const SPEND_MIN_SAMPLES: usize = 20;

/// Groups of the slow histogram's traffic for the shift test.
const SHIFT_GROUPS: usize = 20;
/// Least (decayed) requests in each histogram before a shift can be detected.
const SHIFT_MIN_TRAFFIC: f64 = 300.0;

/// Total-variation distance between two histograms' score distributions over
/// [`SHIFT_GROUPS`] groups of about equal traffic in `slow` (0 with too little traffic).
pub fn shift_distance(slow: &ScoreHistogram, fast: &ScoreHistogram) -> f64 {
    let (ts, tf) = (slow.total(), fast.total());
    if ts < SHIFT_MIN_TRAFFIC || tf < SHIFT_MIN_TRAFFIC || slow.bins() != fast.bins() {
        return 0.0;
    }
    let mut distance = 0.0;
    let (mut gs, mut gf, mut cum) = (0.0, 0.0, 0.0);
    let mut next_edge = 1.0 / SHIFT_GROUPS as f64;
    for b in 0..slow.bins() {
        gs += slow.count[b] / ts;
        gf += fast.count[b] / tf;
        cum += slow.count[b] / ts;
        if cum >= next_edge - 1e-12 || b + 1 == slow.bins() {
            distance += (gs - gf).abs();
            gs = 0.0;
            gf = 0.0;
            while next_edge <= cum + 1e-12 {
                next_edge += 1.0 / SHIFT_GROUPS as f64;
            }
        }
    }
    distance / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SplitMix64;
    use crate::quality::estimator::Estimate;
    use crate::quality::sample::ServedBy;

    const HOUR: u64 = 3_600_000;

    fn uniform(rng: &mut SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn cfg(target: Option<Target>) -> ControllerConfig {
        let mut c = ControllerConfig::new(0.5);
        c.target = target;
        c.max_sample_rate = 0.05;
        c.max_evaluation_share = 1.0;
        c.bins = 100;
        c
    }

    /// Synthetic traffic: score uniform; the lower tier loses `gap(score)` of the time.
    struct World {
        rng: SplitMix64,
        gap: fn(f64) -> f64,
    }

    impl World {
        fn step(&mut self, ctl: &mut QualityController, c: &ControllerConfig, t: u64) {
            let s = uniform(&mut self.rng);
            ctl.record_traffic(s, 1.0, 3.0);
            let r = self.rng.next_u64();
            if let Some(p) = ctl.policy.decide(s, r) {
                let lower_right = uniform(&mut self.rng) >= (self.gap)(s);
                ctl.record_sample(
                    JudgedSample {
                        time_ms: t,
                        score: s,
                        served: if s < ctl.threshold {
                            ServedBy::Lower
                        } else {
                            ServedBy::Top
                        },
                        grade_lower: if lower_right { 10 } else { 1 },
                        grade_top: 10,
                        probability: p,
                        serving_cost_usd: 1.0,
                        extra_cost_usd: 3.0,
                        judge_cost_usd: 1.0,
                    },
                    c,
                );
            }
        }

        /// `minutes` of 60 requests a minute, one update a minute.
        fn run(
            &mut self,
            ctl: &mut QualityController,
            c: &ControllerConfig,
            from: u64,
            minutes: u64,
        ) {
            for m in 0..minutes {
                for i in 0..60 {
                    self.step(ctl, c, from + m * 60_000 + i * 1000);
                }
                ctl.update(from + (m + 1) * 60_000, c);
            }
        }
    }

    /// Quality retained at threshold t when the lower tier loses gap(s) of the time and
    /// the top tier is always right: 1 - integral_0^t gap.
    fn true_q(gap: fn(f64) -> f64, t: f64) -> f64 {
        let n = 10_000;
        1.0 - (0..n)
            .map(|i| (i as f64 + 0.5) / n as f64)
            .filter(|&s| s < t)
            .map(gap)
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn no_target_keeps_the_configured_threshold() {
        let c = cfg(None);
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(1),
            gap: |s| s * 0.3,
        };
        w.run(&mut ctl, &c, 0, 300);
        assert_eq!(ctl.threshold, 0.5);
        assert_eq!(ctl.source, ThresholdSource::Configured);
        let r = ctl.report(&c);
        assert!(r.samples_judged > 100);
        assert!(r.estimated_quality_retained.is_some());
        assert!(r.evaluation_cost_usd > 0.0);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"threshold_source\":\"configured\""));
    }

    #[test]
    fn holds_a_quality_target_with_guard_rails() {
        let gap: fn(f64) -> f64 = |s| 0.4 * s;
        let c = cfg(Some(Target::QualityRetained(0.9)));
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(2),
            gap,
        };
        // Before min_samples: no move.
        w.run(&mut ctl, &c, 0, 20);
        assert!(ctl.samples.len() < c.min_samples);
        assert_eq!(ctl.threshold, 0.5);
        assert_eq!(ctl.source, ThresholdSource::Configured);
        // Then moves, each step bounded by max_share_step of (uniform) traffic.
        let mut prev = ctl.threshold;
        for m in 20..400 {
            w.run(&mut ctl, &c, m * 60_000, 1);
            assert!((ctl.threshold - prev).abs() <= c.max_share_step + 0.011);
            prev = ctl.threshold;
        }
        assert_eq!(ctl.source, ThresholdSource::Controller);
        // True optimum: 1 - 0.2 t^2 = 0.9 -> t = 0.707; the lower bound makes it lower.
        let q = true_q(gap, ctl.threshold);
        assert!(
            (0.88..=0.95).contains(&q),
            "threshold {} quality {q}",
            ctl.threshold
        );
        assert!(ctl.threshold > 0.5);
        // Samples stop arriving: the configured threshold comes back.
        let quiet = 400 * 60_000 + c.stale_after_ms + 60_000;
        let p = ctl.update(quiet, &c);
        assert_eq!(p.threshold, 0.5);
        assert_eq!(p.source, ThresholdSource::Configured);
        // State round-trips through JSON (Durable Object storage).
        let text = serde_json::to_string(&ctl).unwrap();
        let back: QualityController = serde_json::from_str(&text).unwrap();
        assert_eq!(back.samples.len(), ctl.samples.len());
        assert_eq!(back.threshold, ctl.threshold);
        // Field for field: what was read writes the same JSON.
        let read: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), read);
    }

    fn small_state() -> QualityController {
        let mut ctl = QualityController::new(&cfg(None));
        ctl.histogram = ScoreHistogram::new(4);
        ctl.histogram.record(0.3, 0.25, 0.5);
        ctl.recent = ctl.histogram.clone();
        for (i, served) in [ServedBy::Lower, ServedBy::Top].into_iter().enumerate() {
            ctl.samples.push_back(JudgedSample {
                time_ms: 1_000 + i as u64,
                score: 0.25,
                served,
                grade_lower: 3,
                grade_top: 9,
                probability: 0.5,
                serving_cost_usd: 0.125,
                extra_cost_usd: 0.5,
                judge_cost_usd: 0.0625,
            });
        }
        ctl.source = ThresholdSource::Controller;
        ctl.last_update_ms = Some(60_000);
        ctl.estimate = Some(Estimate {
            quality_retained: 0.875,
            std_error: 0.03125,
        });
        ctl.version = 7;
        ctl
    }

    #[test]
    fn state_reads_back_as_written_and_refuses_damaged_fields() {
        let ctl = small_state();
        let text = serde_json::to_string(&ctl).unwrap();
        assert_eq!(
            serde_json::from_str::<QualityController>(&text).unwrap(),
            ctl
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        // The options may be missing or null.
        let mut options = value.clone();
        let o = options.as_object_mut().unwrap();
        o.remove("estimate");
        o.remove("last_update_ms");
        o.insert("last_sample_ms".into(), Value::Null);
        let back = QualityController::from_value(&options).unwrap();
        assert_eq!(
            (back.estimate, back.last_update_ms, back.last_sample_ms),
            (None, None, None)
        );
        // The rest is required, with its type; nested errors name the field they are in.
        for field in [
            "threshold",
            "source",
            "samples",
            "histogram",
            "recent",
            "epoch_start_ms",
            "shifts",
            "samples_judged",
            "samples_failed",
            "evaluation_cost_usd",
            "policy",
            "version",
        ] {
            let mut missing = value.clone();
            missing.as_object_mut().unwrap().remove(field);
            let e = QualityController::from_value(&missing).unwrap_err();
            assert!(e.contains(&format!("`{field}`")), "{e}");
            let mut wrong = value.clone();
            wrong[field] = Value::from("x");
            let e = QualityController::from_value(&wrong).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        for (pointer, bad, needle) in [
            ("/samples/1/served", Value::from("middle"), "served"),
            ("/samples/0/grade_top", Value::from(256), "grade_top"),
            ("/samples/0/score", Value::Null, "score"),
            ("/histogram/count/2", Value::Null, "count"),
            ("/policy/p_far", Value::from(true), "p_far"),
            ("/estimate/std_error", Value::from("0.1"), "std_error"),
            ("/last_sample_ms", Value::from(-5), "last_sample_ms"),
            ("/source", Value::from("Configured"), "source"),
        ] {
            let mut broken = value.clone();
            *broken.pointer_mut(pointer).unwrap() = bad;
            let e = serde_json::from_value::<QualityController>(broken)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{pointer}: {e}");
        }
        assert!(serde_json::from_str::<QualityController>("[1]").is_err());
        // The parts read alone as well.
        for source in [ThresholdSource::Configured, ThresholdSource::Controller] {
            let text = serde_json::to_string(&source).unwrap();
            assert_eq!(
                serde_json::from_str::<ThresholdSource>(&text).unwrap(),
                source
            );
        }
        let policy = ctl.policy;
        let text = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            serde_json::from_str::<SamplingPolicy>(&text).unwrap(),
            policy
        );
        let sample = ctl.samples[1];
        let text = serde_json::to_string(&sample).unwrap();
        assert_eq!(serde_json::from_str::<JudgedSample>(&text).unwrap(), sample);
        let text = serde_json::to_string(&ctl.histogram).unwrap();
        assert_eq!(
            serde_json::from_str::<ScoreHistogram>(&text).unwrap(),
            ctl.histogram
        );
    }

    /// The chosen edge: the estimate meets the target and the lower bound meets the floor
    /// there, and the next edge up fails one of the two.
    fn check_choice(ctl: &QualityController, c: &ControllerConfig, now: u64) -> usize {
        let curve = ctl.curve(now, c).unwrap();
        let k = ctl.desired_edge(now, c, Some(&curve)).unwrap();
        let Some(Target::QualityRetained(q)) = c.target else {
            unreachable!()
        };
        let ok = |e: Estimate| {
            e.quality_retained >= q && e.lower(c.confidence_z) >= q - c.floor_tolerance
        };
        assert!((0..=k).all(|j| ok(curve.at(j))), "edge {k}");
        assert!(k == c.bins || !ok(curve.at(k + 1)), "edge {k}");
        k
    }

    #[test]
    fn aims_at_the_target_once_the_interval_is_narrow() {
        let gap: fn(f64) -> f64 = |s| 0.4 * s;
        let mut c = cfg(Some(Target::QualityRetained(0.9)));
        c.max_sample_rate = 0.5;
        c.max_probability_factor = 2.0;
        c.window = 100_000;
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(11),
            gap,
        };
        // Wide interval (a few hundred samples): the floor binds, a margin above it.
        w.run(&mut ctl, &c, 0, 10);
        let now = 10 * 60_000;
        let k = check_choice(&ctl, &c, now);
        let e = ctl.curve(now, &c).unwrap().at(k);
        assert!(e.std_error > 0.01, "{e:?}");
        assert!(e.quality_retained > 0.9 + 0.005, "{e:?}");
        // Narrow interval (tens of thousands of samples): the estimate is at the target, and
        // the true quality of the chosen threshold within a point of it.
        w.run(&mut ctl, &c, now, 400);
        let now = 410 * 60_000;
        let k = check_choice(&ctl, &c, now);
        let e = ctl.curve(now, &c).unwrap().at(k);
        assert!(c.confidence_z * e.std_error < c.floor_tolerance, "{e:?}");
        let q = true_q(gap, k as f64 / c.bins as f64);
        assert!((0.89..=0.91).contains(&q), "edge {k}: {q}");
        // Without the tolerance the lower bound itself must meet the target: a lower
        // (more conservative) threshold.
        let mut strict = c.clone();
        strict.floor_tolerance = 0.0;
        let k_strict = check_choice(&ctl, &strict, now);
        assert!(k_strict < k, "{k_strict} vs {k}");
    }

    #[test]
    fn follows_drift() {
        let c = cfg(Some(Target::QualityRetained(0.9)));
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(3),
            gap: |s| 0.2 * s,
        };
        w.run(&mut ctl, &c, 0, 600);
        let before = ctl.threshold;
        assert!(before > 0.8, "easy traffic: high threshold, got {before}");
        // The lower tier gets much worse: the threshold must come down.
        w.gap = |s| 0.6 * s;
        w.run(&mut ctl, &c, 600 * 60_000, 24 * 60);
        let q = true_q(w.gap, ctl.threshold);
        assert!(ctl.threshold < before - 0.2, "threshold {}", ctl.threshold);
        assert!(q >= 0.88, "quality {q}");
        let _ = HOUR;
    }

    #[test]
    fn a_shift_in_traffic_discounts_old_samples() {
        let c = cfg(Some(Target::QualityRetained(0.9)));
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(6),
            gap: |s| 0.2 * s,
        };
        w.run(&mut ctl, &c, 0, 300);
        assert_eq!(ctl.shifts, 0);
        // New traffic: scores squeezed into [0, 0.5), the lower tier much worse.
        let mut rng = SplitMix64::new(9);
        for m in 300..420u64 {
            for i in 0..60 {
                let s = 0.5 * uniform(&mut rng);
                ctl.record_traffic(s, 1.0, 3.0);
                let _ = i;
            }
            ctl.update((m + 1) * 60_000, &c);
        }
        assert_eq!(ctl.shifts, 1);
        assert!(ctl.epoch_start_ms > 300 * 60_000);
        assert!(shift_distance(&ctl.histogram, &ctl.recent) < c.shift_distance);
        let mut empty = ScoreHistogram::new(100);
        assert_eq!(shift_distance(&ctl.histogram, &empty), 0.0);
        empty.merge(&ctl.histogram);
        assert!(shift_distance(&ctl.histogram, &empty) < 1e-9);
    }

    #[test]
    fn share_and_cost_targets_need_no_samples() {
        let mut c = cfg(Some(Target::LargeShare(0.3)));
        c.max_sample_rate = 0.0;
        c.max_share_step = 1.0;
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(4),
            gap: |_| 0.0,
        };
        w.run(&mut ctl, &c, 0, 30);
        assert_eq!(ctl.samples_judged, 0);
        assert!((ctl.threshold - 0.7).abs() < 0.03, "{}", ctl.threshold);
        // 1 USD lower, 3 top: 2000 per 1k = half of the traffic on top.
        c.target = Some(Target::CostPer1k(2000.0));
        ctl.update(31 * 60_000, &c);
        assert!((ctl.threshold - 0.5).abs() < 0.03, "{}", ctl.threshold);
        c.target = Some(Target::CostPer1k(1.0));
        ctl.update(32 * 60_000, &c);
        assert_eq!(ctl.threshold, 1.0);
        // The step bound: one update moves at most max_share_step of the traffic.
        c.max_share_step = 0.1;
        c.target = Some(Target::LargeShare(1.0));
        ctl.update(33 * 60_000, &c);
        assert!((ctl.threshold - 0.9).abs() < 0.03, "{}", ctl.threshold);
    }

    #[test]
    fn sampling_slows_once_the_estimate_is_tight() {
        let mut c = cfg(None);
        c.precision = 0.05;
        c.slow_rate_factor = 0.5;
        let mut ctl = QualityController::new(&c);
        let mut w = World {
            rng: SplitMix64::new(5),
            gap: |s| 0.3 * s,
        };
        w.run(&mut ctl, &c, 0, 10);
        let early = ctl.policy.expected_rate(&ctl.histogram);
        w.run(&mut ctl, &c, 10 * 60_000, 600);
        let late = ctl.policy.expected_rate(&ctl.histogram);
        assert!((early - 0.05).abs() < 1e-6, "{early}");
        assert!((late - 0.025).abs() < 1e-6, "{late}");
        // The evaluation-spend budget: a sample costs 4, a request 3 on the top tier, so a
        // 1% budget allows 0.75% of requests.
        let mut tight = c.clone();
        tight.max_evaluation_share = 0.01;
        ctl.update(611 * 60_000, &tight);
        let budgeted = ctl.policy.expected_rate(&ctl.histogram);
        assert!((budgeted - 0.0075).abs() < 1e-6, "{budgeted}");
        // After a shift, the new traffic's samples price a sample once there are enough of
        // them: here they cost 8 each instead of 4, so the 1% budget allows 0.375%.
        let mut shifted = ctl.clone();
        shifted.epoch_start_ms = 611 * 60_000;
        for i in 0..SPEND_MIN_SAMPLES as u64 {
            shifted.record_sample(
                JudgedSample {
                    time_ms: 611 * 60_000 + i,
                    extra_cost_usd: 7.0,
                    ..ctl.samples[0]
                },
                &tight,
            );
        }
        shifted.update(612 * 60_000, &tight);
        let repriced = shifted.policy.expected_rate(&shifted.histogram);
        assert!((repriced - 0.00375).abs() < 1e-6, "{repriced}");
        let mut bad = ctl.clone();
        bad.record_sample(
            JudgedSample {
                grade_top: 0,
                ..ctl.samples[0]
            },
            &c,
        );
        assert_eq!(bad.samples_failed, 1);
        bad.record_failure(2.0);
        assert_eq!(bad.samples_failed, 2);
    }
}

//! Quality retained at every candidate threshold, with a 95% interval, from judged samples.
//!
//! Quality retained at threshold `t` is the quality of what routing at `t` serves over the
//! quality of always serving the top tier: `1 - D(t) / L`, where `D(t)` is the traffic's
//! summed paired difference `q_top - q_lower` over requests scored below `t` (those the
//! lower tier serves) and `L` the traffic's summed top-tier quality. Both are estimated
//! from the samples with weights `w = decay / p`: `p` the probability the sample was drawn
//! with (inverse-probability weights make stratified sampling unbiased) and `decay =
//! 2^(-age / half_life)` (recent samples weigh more, so the estimate follows drift). Every
//! sample is paired (both tiers answered it), so the lower tier's and the top tier's grades
//! of the same prompt are compared directly, which removes the between-prompt variance.
//!
//! The interval is the delta method on the ratio (linearised variance
//! `sum w^2 (y - R g)^2 / (sum w g)^2` with `y = d 1{score < t}`, `g = q_top`), computed for
//! all candidate thresholds at once from per-bin sums. Its coverage is checked on synthetic
//! data in the tests. This module must not choose thresholds or sampling rates.

use serde::{Deserialize, Serialize};

use super::histogram::bin_of;
use super::sample::{grade_to_quality, JudgedSample};

/// z of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The estimate at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Estimated quality retained.
    pub quality_retained: f64,
    /// Its standard error (delta method).
    pub std_error: f64,
}

impl<'de> Deserialize<'de> for Estimate {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl Estimate {
    /// Reads an estimate as [`Serialize`] writes it.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        let f = crate::jsonread::Fields::of(v)?;
        Ok(Estimate {
            quality_retained: f.f64("quality_retained")?,
            std_error: f.f64("std_error")?,
        })
    }

    /// The two-sided 95% interval `[low, high]`.
    pub fn interval95(&self) -> [f64; 2] {
        [
            self.quality_retained - Z95 * self.std_error,
            self.quality_retained + Z95 * self.std_error,
        ]
    }

    /// The lower bound `estimate - z * std_error`.
    pub fn lower(&self, z: f64) -> f64 {
        self.quality_retained - z * self.std_error
    }
}

/// Estimates at every bin edge of a `bins`-bin grid over [0, 1] (edge `k` is threshold
/// `k / bins`; element `k` of [`QualityCurve::estimates`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityCurve {
    /// Estimate when routing at edge k, k = 0..=bins.
    pub estimates: Vec<Estimate>,
    /// Raw number of usable samples.
    pub samples: usize,
    /// Kish's effective sample size of the weights, `(sum w)^2 / sum w^2`.
    pub effective_samples: f64,
}

impl QualityCurve {
    /// Builds the curve from samples at time `now_ms` with recency half-life
    /// `half_life_ms` (0 = no decay). None without usable samples or when the top tier's
    /// estimated quality is 0.
    pub fn from_samples(
        samples: &[JudgedSample],
        now_ms: u64,
        half_life_ms: u64,
        bins: usize,
    ) -> Option<QualityCurve> {
        Self::from_samples_since(samples, now_ms, half_life_ms, bins, 0, 1.0)
    }

    /// [`QualityCurve::from_samples`], with the weight of samples taken before
    /// `epoch_start_ms` (a detected shift in traffic) multiplied by `pre_epoch_factor`.
    pub fn from_samples_since(
        samples: &[JudgedSample],
        now_ms: u64,
        half_life_ms: u64,
        bins: usize,
        epoch_start_ms: u64,
        pre_epoch_factor: f64,
    ) -> Option<QualityCurve> {
        let bins = bins.max(1);
        // Per-bin sums of w d, w^2 d^2, w^2 d g.
        let mut a = vec![0.0; bins];
        let mut s2 = vec![0.0; bins];
        let mut s3 = vec![0.0; bins];
        let (mut g_sum, mut t_sum, mut w_sum, mut w2_sum) = (0.0, 0.0, 0.0, 0.0);
        let mut n = 0usize;
        for s in samples.iter().filter(|s| s.is_valid()) {
            let epoch = if s.time_ms < epoch_start_ms {
                pre_epoch_factor
            } else {
                1.0
            };
            let w = epoch * decay_weight(now_ms, s.time_ms, half_life_ms) / s.probability;
            if !(w.is_finite() && w > 0.0) {
                continue;
            }
            let g = grade_to_quality(s.grade_top);
            let d = g - grade_to_quality(s.grade_lower);
            let b = bin_of(s.score, bins);
            a[b] += w * d;
            s2[b] += w * w * d * d;
            s3[b] += w * w * d * g;
            g_sum += w * g;
            t_sum += w * w * g * g;
            w_sum += w;
            w2_sum += w * w;
            n += 1;
        }
        if n == 0 || g_sum <= 0.0 {
            return None;
        }
        let mut estimates = Vec::with_capacity(bins + 1);
        let (mut ca, mut cs2, mut cs3) = (0.0, 0.0, 0.0);
        for k in 0..=bins {
            if k > 0 {
                ca += a[k - 1];
                cs2 += s2[k - 1];
                cs3 += s3[k - 1];
            }
            let r = ca / g_sum;
            let var = ((cs2 - 2.0 * r * cs3 + r * r * t_sum) / (g_sum * g_sum)).max(0.0);
            estimates.push(Estimate {
                quality_retained: 1.0 - r,
                std_error: var.sqrt(),
            });
        }
        Some(QualityCurve {
            estimates,
            samples: n,
            effective_samples: w_sum * w_sum / w2_sum,
        })
    }

    /// The estimate at edge `k` (clamped to the grid).
    pub fn at(&self, k: usize) -> Estimate {
        let last = self.estimates.len().saturating_sub(1);
        self.estimates
            .get(k.min(last))
            .copied()
            .unwrap_or(Estimate {
                quality_retained: 1.0,
                std_error: 0.0,
            })
    }
}

/// `2^(-(now - then) / half_life)`; 1 without decay or for samples from the future.
pub fn decay_weight(now_ms: u64, then_ms: u64, half_life_ms: u64) -> f64 {
    if half_life_ms == 0 || then_ms >= now_ms {
        return 1.0;
    }
    (-((now_ms - then_ms) as f64 / half_life_ms as f64) * std::f64::consts::LN_2).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SplitMix64;
    use crate::quality::sample::ServedBy;

    fn uniform(rng: &mut SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A synthetic population: score uniform; the top tier right with probability 0.8,
    /// the lower tier right with probability 0.85 - 0.5 * score (worse on hard prompts).
    fn prompt(rng: &mut SplitMix64) -> (f64, u8, u8) {
        let s = uniform(rng);
        let top = if uniform(rng) < 0.8 { 10 } else { 1 };
        let low = if uniform(rng) < 0.85 - 0.5 * s { 10 } else { 1 };
        (s, low, top)
    }

    fn sample(score: f64, low: u8, top: u8, p: f64, t: u64) -> JudgedSample {
        JudgedSample {
            time_ms: t,
            score,
            served: ServedBy::Lower,
            grade_lower: low,
            grade_top: top,
            probability: p,
            serving_cost_usd: 0.0,
            extra_cost_usd: 0.0,
            judge_cost_usd: 0.0,
        }
    }

    #[test]
    fn exact_on_a_census() {
        let s = [
            sample(0.1, 1, 10, 1.0, 0),
            sample(0.2, 10, 10, 1.0, 0),
            sample(0.8, 1, 10, 1.0, 0),
            sample(0.9, 10, 1, 1.0, 0),
        ];
        let c = QualityCurve::from_samples(&s, 0, 0, 10).unwrap();
        assert_eq!(c.samples, 4);
        // L = 3 (top tier right on three prompts).
        assert!((c.at(0).quality_retained - 1.0).abs() < 1e-12);
        assert!((c.at(5).quality_retained - (1.0 - 1.0 / 3.0)).abs() < 1e-12);
        assert!((c.at(10).quality_retained - (1.0 - 1.0 / 3.0)).abs() < 1e-12);
        assert!((c.at(9).quality_retained - (1.0 - 2.0 / 3.0)).abs() < 1e-12);
        assert!(QualityCurve::from_samples(&[], 0, 0, 10).is_none());
        let all_bad = [sample(0.5, 1, 1, 1.0, 0)];
        assert!(QualityCurve::from_samples(&all_bad, 0, 0, 10).is_none());
        assert!((decay_weight(2000, 1000, 1000) - 0.5).abs() < 1e-12);
        assert_eq!(decay_weight(1000, 2000, 1000), 1.0);
    }

    /// The 95% interval covers the population's quality retained in about 95% of repeated
    /// samples, for uniform and for stratified (inverse-probability weighted) sampling.
    #[test]
    fn interval_covers_the_truth_at_its_stated_rate() {
        let mut rng = SplitMix64::new(7);
        let population: Vec<(f64, u8, u8)> = (0..20_000).map(|_| prompt(&mut rng)).collect();
        let bins = 20;
        let truth = |k: usize| {
            let t = k as f64 / bins as f64;
            let l: f64 = population.iter().map(|p| grade_to_quality(p.2)).sum();
            let d: f64 = population
                .iter()
                .filter(|p| p.0 < t)
                .map(|p| grade_to_quality(p.2) - grade_to_quality(p.1))
                .sum();
            1.0 - d / l
        };
        for stratified in [false, true] {
            let trials = 400;
            let mut covered = [0usize; 3];
            let edges = [6usize, 10, 14];
            for _ in 0..trials {
                let mut s = Vec::new();
                for p in &population {
                    // 2% on average; stratified: 4% below 0.5, 1% above... and 0.5 weight.
                    let prob = if !stratified {
                        0.02
                    } else if p.0 < 0.5 {
                        0.03
                    } else {
                        0.01
                    };
                    if uniform(&mut rng) < prob {
                        s.push(sample(p.0, p.1, p.2, prob, 0));
                    }
                }
                let c = QualityCurve::from_samples(&s, 0, 0, bins).unwrap();
                for (j, &k) in edges.iter().enumerate() {
                    let [lo, hi] = c.at(k).interval95();
                    if (lo..=hi).contains(&truth(k)) {
                        covered[j] += 1;
                    }
                }
            }
            for c in covered {
                let rate = c as f64 / trials as f64;
                // 400 trials: the binomial SD at 95% is 1.1 points.
                assert!(
                    (0.92..=0.98).contains(&rate),
                    "stratified {stratified}: coverage {rate}"
                );
            }
        }
    }

    #[test]
    fn recent_samples_weigh_more() {
        // Old samples say the lower tier is as good; recent ones say it is useless.
        let mut s = Vec::new();
        for i in 0..100 {
            s.push(sample(0.2, 10, 10, 1.0, i));
            s.push(sample(0.2, 1, 10, 1.0, 100_000 + i));
        }
        let c = QualityCurve::from_samples(&s, 100_100, 10_000, 10).unwrap();
        assert!(c.at(10).quality_retained < 0.01);
        let flat = QualityCurve::from_samples(&s, 100_100, 0, 10).unwrap();
        assert!((flat.at(10).quality_retained - 0.5).abs() < 1e-9);
        assert!(c.effective_samples < flat.effective_samples);
    }
}

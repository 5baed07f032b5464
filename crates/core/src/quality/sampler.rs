//! Which requests to sample: a stratified probability by score, and the hourly cap.
//!
//! Samples are drawn where they inform the decision: every request the lower tier serves
//! (its paired difference is exactly what quality retained loses) and the top-tier band just
//! above the threshold (what a higher threshold would lose) get the full rate, the rest of
//! the top tier's traffic a fraction of it (kept above zero so that the inverse-probability
//! weights stay unbiased everywhere). The policy is a small `Copy` value the controller
//! computes and isolates cache; [`SamplingPolicy::decide`] is the per-request call: a few
//! comparisons, no allocation, deterministic given the caller's random `u64`.
//!
//! This module must not estimate quality or move the threshold.

use serde::{Deserialize, Serialize};

use super::histogram::ScoreHistogram;

/// The sampling probability of a request by where its score falls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SamplingPolicy {
    /// The routing threshold the policy was built for.
    pub threshold: f64,
    /// Upper end of the band above the threshold sampled at `p_near`.
    pub near_high: f64,
    /// Probability below the threshold (lower tier serves).
    pub p_below: f64,
    /// Probability in `[threshold, near_high)`.
    pub p_near: f64,
    /// Probability at or above `near_high`.
    pub p_far: f64,
}

impl<'de> Deserialize<'de> for SamplingPolicy {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl SamplingPolicy {
    /// Reads a policy as [`Serialize`] writes it (every field required).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        let f = crate::jsonread::Fields::of(v)?;
        Ok(SamplingPolicy {
            threshold: f.f64("threshold")?,
            near_high: f.f64("near_high")?,
            p_below: f.f64("p_below")?,
            p_near: f.f64("p_near")?,
            p_far: f.f64("p_far")?,
        })
    }

    /// Samples nothing (quality sampling off).
    pub const OFF: SamplingPolicy = SamplingPolicy {
        threshold: 0.0,
        near_high: 0.0,
        p_below: 0.0,
        p_near: 0.0,
        p_far: 0.0,
    };

    /// The same probability everywhere.
    pub fn uniform(rate: f64) -> SamplingPolicy {
        let r = clamp01(rate);
        SamplingPolicy {
            threshold: 0.0,
            near_high: 0.0,
            p_below: r,
            p_near: r,
            p_far: r,
        }
    }

    /// A stratified policy for routing at `threshold` on the traffic in `hist`: full
    /// weight below the threshold and in the band of `band_share` of traffic above it,
    /// `far_weight` above that, scaled so that the traffic's expected sampling rate is
    /// `rate`, and no request's probability above `max_probability`. Without traffic in
    /// the histogram: `rate` everywhere.
    pub fn stratified(
        threshold: f64,
        hist: &ScoreHistogram,
        rate: f64,
        band_share: f64,
        far_weight: f64,
        max_probability: f64,
    ) -> SamplingPolicy {
        let rate = clamp01(rate);
        let total = hist.total();
        if total <= 0.0 || rate <= 0.0 {
            return SamplingPolicy {
                threshold,
                ..SamplingPolicy::uniform(rate)
            };
        }
        let k0 = hist.edge_index(threshold);
        let below = hist.share_between(0, k0);
        // Walk up from the threshold until the band holds band_share of the traffic.
        let mut k1 = k0;
        let mut band = 0.0;
        while k1 < hist.bins() && band < band_share - 1e-9 {
            band += hist.count[k1] / total;
            k1 += 1;
        }
        let far = (1.0 - below - band).max(0.0);
        let fw = clamp01(far_weight);
        let mean_weight = below + band + fw * far;
        let scale = if mean_weight > 0.0 {
            rate / mean_weight
        } else {
            rate
        };
        let cap = clamp01(max_probability).max(rate);
        SamplingPolicy {
            threshold,
            near_high: hist.edge(k1),
            p_below: (scale).min(cap),
            p_near: (scale).min(cap),
            p_far: (scale * fw).min(cap),
        }
    }

    /// The probability of sampling a request with this score.
    #[inline]
    pub fn probability(&self, score: f64) -> f64 {
        if score < self.threshold {
            self.p_below
        } else if score < self.near_high {
            self.p_near
        } else {
            self.p_far
        }
    }

    /// Whether to sample a request, given a uniformly random `u64` from the caller: the
    /// probability it was drawn with (to store with the sample) if yes.
    #[inline]
    pub fn decide(&self, score: f64, random: u64) -> Option<f64> {
        let p = self.probability(score);
        // 53 random bits as a uniform number in [0, 1).
        let u = (random >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        (p > 0.0 && u < p).then_some(p)
    }

    /// The expected sampling rate of the traffic in `hist` under this policy.
    pub fn expected_rate(&self, hist: &ScoreHistogram) -> f64 {
        let total = hist.total();
        if total <= 0.0 {
            return self.p_below;
        }
        (0..hist.bins())
            .map(|b| hist.count[b] * self.probability((b as f64 + 0.5) / hist.bins() as f64))
            .sum::<f64>()
            / total
    }
}

/// A per-hour cap on samples (`QUALITY_MAX_SAMPLES_PER_HOUR`): the count of samples taken
/// in the current clock hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HourlyCap {
    /// The clock hour (`now_ms / 3_600_000`) of `used`.
    pub hour: u64,
    /// Samples taken in that hour.
    pub used: u32,
}

impl HourlyCap {
    /// Takes one sample from this hour's allowance of `cap`; false when it is spent.
    #[inline]
    pub fn try_take(&mut self, now_ms: u64, cap: u32) -> bool {
        let hour = now_ms / 3_600_000;
        if hour != self.hour {
            self.hour = hour;
            self.used = 0;
        }
        if self.used >= cap {
            return false;
        }
        self.used += 1;
        true
    }
}

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SplitMix64;

    #[test]
    fn stratified_rates_average_to_the_rate() {
        let mut h = ScoreHistogram::new(100);
        for i in 0..1000 {
            h.record(f64::from(i) / 1000.0, 1.0, 2.0);
        }
        let p = SamplingPolicy::stratified(0.5, &h, 0.02, 0.1, 0.25, 1.0);
        assert!((p.expected_rate(&h) - 0.02).abs() < 1e-9);
        assert!((p.near_high - 0.6).abs() < 1e-9);
        assert_eq!(p.probability(0.1), p.p_below);
        assert_eq!(p.probability(0.55), p.p_near);
        assert_eq!(p.probability(0.9), p.p_far);
        assert!((p.p_far - 0.25 * p.p_below).abs() < 1e-12);
        assert!(p.p_below > 0.02);
        // A cap on a request's probability.
        let capped = SamplingPolicy::stratified(0.5, &h, 0.02, 0.1, 0.0, 0.021);
        assert!(capped.p_below <= 0.021);
        // Without traffic: uniform.
        let empty = SamplingPolicy::stratified(0.5, &ScoreHistogram::new(10), 0.02, 0.1, 0.2, 1.0);
        assert_eq!(empty.probability(0.9), 0.02);
        assert_eq!(SamplingPolicy::OFF.decide(0.3, 0), None);
    }

    #[test]
    fn decide_is_deterministic_and_hits_its_rate() {
        let p = SamplingPolicy::uniform(0.1);
        let mut rng = SplitMix64::new(3);
        let hits = (0..100_000)
            .filter(|_| p.decide(0.4, rng.next_u64()).is_some())
            .count();
        assert!((9_500..10_500).contains(&hits));
        assert_eq!(p.decide(0.4, 0), Some(0.1));
        assert_eq!(p.decide(0.4, u64::MAX), None);
        assert_eq!(SamplingPolicy::uniform(f64::NAN).p_below, 0.0);
    }

    #[test]
    fn hourly_cap() {
        let mut c = HourlyCap::default();
        assert!(c.try_take(0, 2) && c.try_take(10, 2));
        assert!(!c.try_take(20, 2));
        assert!(c.try_take(3_600_000, 2));
        assert!(!HourlyCap::default().try_take(0, 0));
    }
}

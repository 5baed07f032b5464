//! A decayed histogram of every routed request's score, with the cost each request would
//! have had at either tier: what the controller needs to price a candidate threshold (its
//! large share and expected cost) without a sample.
//!
//! It owns the bins (equal width over [0, 1]) and their arithmetic: recording a request in
//! O(1), merging isolates' histograms, decaying old traffic, and the share and cost of
//! routing at a bin edge. It must not estimate quality (samples do that).

use serde::{Deserialize, Serialize};

/// Default number of bins: 0.001 wide, fine enough for the learned router, whose scores
/// crowd around its threshold (a 0.03 range of scores holds a third of the traffic).
pub const DEFAULT_BINS: usize = 1000;

/// Traffic by score bin: decayed request counts and the summed cost of each request at
/// the lower tier and at the top tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreHistogram {
    /// Decayed number of requests per bin.
    pub count: Vec<f64>,
    /// Decayed sum of each request's cost (USD) if served by the lower tier.
    pub cost_lower: Vec<f64>,
    /// Decayed sum of each request's cost (USD) if served by the top tier.
    pub cost_top: Vec<f64>,
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        Self::new(DEFAULT_BINS)
    }
}

impl<'de> Deserialize<'de> for ScoreHistogram {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl ScoreHistogram {
    /// Reads a histogram as [`Serialize`] writes it: three arrays of numbers (of any
    /// length, as the derived reader took them).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        use crate::jsonread::{f64_array, Fields};
        let f = Fields::of(v)?;
        Ok(ScoreHistogram {
            count: f64_array(f.get("count")?, "count")?,
            cost_lower: f64_array(f.get("cost_lower")?, "cost_lower")?,
            cost_top: f64_array(f.get("cost_top")?, "cost_top")?,
        })
    }

    /// An empty histogram of `bins` equal bins over [0, 1] (at least 1).
    pub fn new(bins: usize) -> Self {
        let bins = bins.max(1);
        ScoreHistogram {
            count: vec![0.0; bins],
            cost_lower: vec![0.0; bins],
            cost_top: vec![0.0; bins],
        }
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.count.len()
    }

    /// The bin of a score: `floor(score * bins)`, clamped. A request goes to the top tier
    /// at candidate threshold `edge(k)` iff its bin is >= k.
    #[inline]
    pub fn bin_of(&self, score: f64) -> usize {
        bin_of(score, self.bins())
    }

    /// The threshold at bin edge `k` (0 = everything top tier, `bins` = 1.0).
    pub fn edge(&self, k: usize) -> f64 {
        k.min(self.bins()) as f64 / self.bins() as f64
    }

    /// The first bin edge at or above a threshold: routing at `t` sends bins >= this to
    /// the top tier (exact for thresholds on bin edges).
    pub fn edge_index(&self, threshold: f64) -> usize {
        if threshold.is_nan() {
            return self.bins();
        }
        let x = (threshold.clamp(0.0, 1.0) * self.bins() as f64).ceil();
        (x as usize).min(self.bins())
    }

    /// Counts one routed request. O(1), no allocation.
    #[inline]
    pub fn record(&mut self, score: f64, cost_lower_usd: f64, cost_top_usd: f64) {
        let b = self.bin_of(score);
        self.count[b] += 1.0;
        self.cost_lower[b] += finite_or_zero(cost_lower_usd);
        self.cost_top[b] += finite_or_zero(cost_top_usd);
    }

    /// Adds another histogram (e.g. an isolate's counts since its last flush). Histograms
    /// of different sizes are re-binned by bin centre.
    pub fn merge(&mut self, other: &ScoreHistogram) {
        let same = other.bins() == self.bins();
        for j in 0..other.bins() {
            let b = if same {
                j
            } else {
                self.bin_of((j as f64 + 0.5) / other.bins() as f64)
            };
            self.count[b] += other.count[j];
            self.cost_lower[b] += other.cost_lower[j];
            self.cost_top[b] += other.cost_top[j];
        }
    }

    /// Multiplies every count and cost by `factor` in [0, 1] (old traffic fades).
    pub fn decay(&mut self, factor: f64) {
        let f = if factor.is_finite() {
            factor.clamp(0.0, 1.0)
        } else {
            1.0
        };
        for v in self
            .count
            .iter_mut()
            .chain(self.cost_lower.iter_mut())
            .chain(self.cost_top.iter_mut())
        {
            *v *= f;
        }
    }

    /// Empties the histogram.
    pub fn clear(&mut self) {
        self.decay(0.0);
    }

    /// Decayed number of requests.
    pub fn total(&self) -> f64 {
        self.count.iter().sum()
    }

    /// Share of traffic and mean cost per request (USD) when routing at every bin edge:
    /// element `k` is routing at `edge(k)`. Empty traffic gives shares of 0 and costs of 0.
    pub fn operating_points(&self) -> Vec<(f64, f64)> {
        let total = self.total();
        let mut out = vec![(0.0, 0.0); self.bins() + 1];
        if total <= 0.0 {
            return out;
        }
        // Routing at edge(k): bins < k lower tier, bins >= k top tier.
        let mut top_count: f64 = total;
        let mut cost: f64 = self.cost_top.iter().sum();
        out[0] = (1.0, cost / total);
        for (b, slot) in out.iter_mut().skip(1).enumerate() {
            top_count -= self.count[b];
            cost += self.cost_lower[b] - self.cost_top[b];
            *slot = ((top_count / total).clamp(0.0, 1.0), cost.max(0.0) / total);
        }
        out
    }

    /// Share of traffic whose score lies in bins `[from, to)`.
    pub fn share_between(&self, from: usize, to: usize) -> f64 {
        let total = self.total();
        if total <= 0.0 {
            return 0.0;
        }
        let (a, b) = (from.min(to), from.max(to).min(self.bins()));
        self.count[a.min(b)..b].iter().sum::<f64>() / total
    }
}

/// `floor(score * bins)` clamped to the bins (NaN goes to bin 0).
#[inline]
pub fn bin_of(score: f64, bins: usize) -> usize {
    let bins = bins.max(1);
    if score.is_nan() || score <= 0.0 {
        return 0;
    }
    ((score * bins as f64) as usize).min(bins - 1)
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_costs_merge_and_decay() {
        let mut h = ScoreHistogram::new(10);
        assert_eq!(h.operating_points()[3], (0.0, 0.0));
        h.record(0.05, 1.0, 3.0);
        h.record(0.55, 1.0, 3.0);
        h.record(0.95, 1.0, 3.0);
        h.record(1.0, 1.0, 3.0);
        h.record(f64::NAN, f64::NAN, 3.0);
        assert_eq!(h.bin_of(1.0), 9);
        assert_eq!(h.bin_of(-1.0), 0);
        let p = h.operating_points();
        assert_eq!(p[0], (1.0, 3.0));
        // At 0.5: bins 0 (two requests) lower, bins 5, 9 (three) top.
        assert!((p[5].0 - 0.6).abs() < 1e-12);
        assert!((p[5].1 - (1.0 + 0.0 + 9.0) / 5.0).abs() < 1e-12);
        assert_eq!(p[10].0, 0.0);
        assert_eq!(h.edge_index(0.5), 5);
        assert_eq!(h.edge_index(0.51), 6);
        assert_eq!(h.edge_index(f64::NAN), 10);
        assert!((h.share_between(5, 10) - 0.6).abs() < 1e-12);
        let mut g = ScoreHistogram::new(20);
        g.merge(&h);
        assert_eq!(g.total(), 5.0);
        assert_eq!(g.count[19], 2.0);
        h.decay(0.5);
        assert_eq!(h.total(), 2.5);
        h.decay(f64::NAN);
        assert_eq!(h.total(), 2.5);
        h.clear();
        assert_eq!(h.total(), 0.0);
    }
}

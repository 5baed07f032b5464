//! The RouteLLM metrics of a router on priced prompts, as described in
//! `shared/data/routing-eval/README.md`.
//!
//! A router gives each prompt a score (higher = more complex = large model); the top share
//! `p` of prompts goes to the large model. From that follow the quality curve, PGR, APGR,
//! CPT(x), and the large share and cost savings at a given share of the large model's
//! quality; also the operating point of a fixed threshold and the baselines' scores
//! (random, prompt length, oracle).
//!
//! Ties are split in expectation: prompts with equal scores form a group, and taking `j` of a
//! group of `m` adds `j/m` of the group's total quality and cost change. So the result never
//! depends on file order, and a constant score is exactly the expected value of random routing.
//!
//! Pure functions of items and scores: this module must not read files, compute a router's
//! scores, or choose thresholds (see [`crate::calibration`]).

use serde::Serialize;

use crate::data::{EvalRecord, Item};

/// Expected quality and cost when the `k` highest-scored prompts go large, for k = 0..=n.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Mean quality at k large calls (index k), length n + 1.
    pub quality: Vec<f64>,
    /// Total cost in USD at k large calls, length n + 1.
    pub cost: Vec<f64>,
}

impl Curve {
    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.quality.len().saturating_sub(1)
    }

    /// True when built from no prompts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// PGR at k large calls; 0 when both models have the same quality.
    pub fn pgr(&self, k: usize) -> f64 {
        let n = self.len();
        let gap = self.quality[n] - self.quality[0];
        if gap.abs() < 1e-12 {
            0.0
        } else {
            (self.quality[k] - self.quality[0]) / gap
        }
    }
}

/// Indices of `scores` sorted by descending score, ties by index (grouping makes order moot).
pub(crate) fn order_desc(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// Builds the expected quality/cost curve of a router; `scores[i]` belongs to `items[i]`.
///
/// Returns an error if the lengths differ or a score is NaN.
pub fn curve(items: &[Item], scores: &[f64]) -> Result<Curve, String> {
    if items.len() != scores.len() {
        return Err(format!("{} items but {} scores", items.len(), scores.len()));
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(String::from("a router score is NaN"));
    }
    let n = items.len();
    let order = order_desc(scores);
    let mut quality = Vec::with_capacity(n + 1);
    let mut cost = Vec::with_capacity(n + 1);
    let mut q: f64 = items.iter().map(|it| it.quality_small).sum();
    let mut c: f64 = items.iter().map(|it| it.cost_small).sum();
    let denom = n.max(1) as f64;
    quality.push(q / denom);
    cost.push(c);
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let group = &order[start..end];
        let m = group.len() as f64;
        let dq: f64 = group
            .iter()
            .map(|&i| items[i].quality_large - items[i].quality_small)
            .sum::<f64>()
            / m;
        let dc: f64 = group
            .iter()
            .map(|&i| items[i].cost_large - items[i].cost_small)
            .sum::<f64>()
            / m;
        let (q0, c0) = (q, c);
        for j in 1..=group.len() {
            // Recompute from the group start to avoid drift over long tie groups.
            q = q0 + dq * j as f64;
            c = c0 + dc * j as f64;
            quality.push(q / denom);
            cost.push(c);
        }
        start = end;
    }
    Ok(Curve { quality, cost })
}

/// A routing operating point: what share goes large and what it yields.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// Share of prompts sent to the large model.
    pub large_share: f64,
    /// Mean quality.
    pub quality: f64,
    /// quality / quality of always-large.
    pub quality_retained: f64,
    /// PGR at this point.
    pub pgr: f64,
    /// 1 - cost / cost of always-large.
    pub savings: f64,
    /// USD per 1,000 queries.
    pub cost_per_1k: f64,
}

/// The operating point when the `k` highest-scored prompts go large.
pub fn point_at(curve: &Curve, k: usize) -> OperatingPoint {
    let n = curve.len();
    let q1 = curve.quality[n];
    let c1 = curve.cost[n];
    OperatingPoint {
        large_share: if n == 0 { 0.0 } else { k as f64 / n as f64 },
        quality: curve.quality[k],
        quality_retained: if q1 > 0.0 { curve.quality[k] / q1 } else { 1.0 },
        pgr: curve.pgr(k),
        savings: if c1 > 0.0 {
            1.0 - curve.cost[k] / c1
        } else {
            0.0
        },
        cost_per_1k: if n == 0 {
            0.0
        } else {
            curve.cost[k] / n as f64 * 1000.0
        },
    }
}

/// The metrics of one router on one set of prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterMetrics {
    /// Router name.
    pub router: String,
    /// Number of prompts.
    pub prompts: usize,
    /// Mean quality of always-small, quality(0).
    pub quality_small: f64,
    /// Mean quality of always-large, quality(1).
    pub quality_large: f64,
    /// Mean PGR over k = 0..=n large calls (every prompt boundary).
    pub apgr: f64,
    /// Smallest large share with PGR >= 0.5 (None if never reached).
    pub cpt50: Option<f64>,
    /// Smallest large share with PGR >= 0.8.
    pub cpt80: Option<f64>,
    /// Smallest large share keeping 95% of always-large quality.
    pub at95: Option<OperatingPoint>,
    /// Smallest large share keeping 98% of always-large quality.
    pub at98: Option<OperatingPoint>,
}

/// Smallest large share with PGR >= x.
pub fn cpt(curve: &Curve, x: f64) -> Option<f64> {
    let n = curve.len();
    (0..=n)
        .find(|&k| curve.pgr(k) >= x - 1e-12)
        .map(|k| if n == 0 { 0.0 } else { k as f64 / n as f64 })
}

/// Mean PGR over all prompt boundaries k = 0..=n.
pub fn apgr(curve: &Curve) -> f64 {
    let n = curve.len();
    (0..=n).map(|k| curve.pgr(k)).sum::<f64>() / (n + 1) as f64
}

/// Smallest k whose quality is at least `retained` of always-large quality.
pub fn at_quality(curve: &Curve, retained: f64) -> Option<OperatingPoint> {
    let n = curve.len();
    let target = retained * curve.quality[n];
    (0..=n)
        .find(|&k| curve.quality[k] >= target - 1e-12)
        .map(|k| point_at(curve, k))
}

/// All metrics of a router from its scores.
pub fn evaluate(router: &str, items: &[Item], scores: &[f64]) -> Result<RouterMetrics, String> {
    let c = curve(items, scores)?;
    let n = c.len();
    Ok(RouterMetrics {
        router: router.to_string(),
        prompts: n,
        quality_small: c.quality[0],
        quality_large: c.quality[n],
        apgr: apgr(&c),
        cpt50: cpt(&c, 0.5),
        cpt80: cpt(&c, 0.8),
        at95: at_quality(&c, 0.95),
        at98: at_quality(&c, 0.98),
    })
}

/// Baseline scores: a constant (random routing in expectation, thanks to tie splitting).
pub fn random_scores(n: usize) -> Vec<f64> {
    vec![0.0; n]
}

/// Baseline scores: prompt length in characters (longer goes large).
pub fn length_scores(records: &[EvalRecord]) -> Vec<f64> {
    records
        .iter()
        .map(|r| r.prompt.chars().count() as f64)
        .collect()
}

/// Oracle scores: 1 where the large model beats the small one, 0 on a tie, -1 where the
/// small one is better.
pub fn oracle_scores(records: &[EvalRecord]) -> Vec<f64> {
    records
        .iter()
        .map(|r| {
            let d = r.large.score - r.small.score;
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Routing by a fixed threshold: large iff `score >= threshold` (no tie splitting).
pub fn at_threshold(items: &[Item], scores: &[f64], threshold: f64) -> OperatingPoint {
    let n = items.len();
    let (mut k, mut q, mut c, mut q1, mut c1) = (0usize, 0.0, 0.0, 0.0, 0.0);
    for (it, &s) in items.iter().zip(scores) {
        q1 += it.quality_large;
        c1 += it.cost_large;
        if s >= threshold {
            k += 1;
            q += it.quality_large;
            c += it.cost_large;
        } else {
            q += it.quality_small;
            c += it.cost_small;
        }
    }
    let q0: f64 = items.iter().map(|it| it.quality_small).sum();
    let denom = n.max(1) as f64;
    let gap = q1 - q0;
    OperatingPoint {
        large_share: k as f64 / denom,
        quality: q / denom,
        quality_retained: if q1 > 0.0 { q / q1 } else { 1.0 },
        pgr: if gap.abs() < 1e-12 {
            0.0
        } else {
            (q - q0) / gap
        },
        savings: if c1 > 0.0 { 1.0 - c / c1 } else { 0.0 },
        cost_per_1k: c / denom * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{close, tiny};

    #[test]
    fn perfect_router_by_hand() {
        let items = tiny();
        let m = evaluate("perfect", &items, &[3.0, 2.0, 1.0, 0.0]).unwrap();
        // quality(k): 0.5, 0.75, 1.0, 1.0, 0.75 -> PGR 0, 1, 2, 2, 1 -> APGR 6/5.
        assert!(close(m.apgr, 1.2));
        assert_eq!(m.cpt50, Some(0.25));
        assert_eq!(m.cpt80, Some(0.25));
        let p = m.at95.unwrap();
        // 0.95 * 0.75 = 0.7125 -> k = 1.
        assert!(close(p.large_share, 0.25));
        // cost(1) = 3+1+1+1 = 6, always-large = 12 -> savings 0.5.
        assert!(close(p.savings, 0.5));
    }

    #[test]
    fn reversed_router_by_hand() {
        let items = tiny();
        let m = evaluate("worst", &items, &[0.0, 1.0, 2.0, 3.0]).unwrap();
        // order 3,2,1,0: quality 0.5, 0.25, 0.25, 0.5, 0.75 -> PGR 0,-1,-1,0,1 -> APGR -0.2.
        assert!(close(m.apgr, -0.2));
        assert_eq!(m.cpt50, Some(1.0));
        assert!(close(m.at95.unwrap().large_share, 1.0));
    }

    #[test]
    fn ties_are_split_in_expectation() {
        let items = tiny();
        // Constant score: linear curve from 0.5 to 0.75 -> PGR k/4 -> APGR 0.5.
        let m = evaluate("random", &items, &random_scores(4)).unwrap();
        assert!(close(m.apgr, 0.5));
        assert_eq!(m.cpt50, Some(0.5));
        // File order must not matter: permuting items and scores together changes nothing.
        let items2 = vec![items[3], items[1], items[2], items[0]];
        let m2 = evaluate("random", &items2, &random_scores(4)).unwrap();
        assert_eq!(m.apgr, m2.apgr);
        // Partial tie: #0 alone on top, the others tied.
        let c = curve(&items, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        // after #0: 0.75; the tied group {1,2,3} has mean gain (1+0-1)/3 = 0 per prompt.
        assert!(close(c.quality[1], 0.75));
        assert!(close(c.quality[2], 0.75));
        assert!(close(c.quality[4], 0.75));
    }
}

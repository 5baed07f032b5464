//! Threshold calibration: the score threshold at which a router meets a target (a share of
//! large calls, a share of always-large quality, or a cost budget), like RouteLLM's
//! `calibrate_threshold`.
//!
//! Routing at a threshold is exact (`score >= threshold`), not in expectation. This module
//! must not compute scores or decide which data to calibrate on (dev vs out-of-fold is the
//! caller's choice).

use serde::Serialize;

use crate::data::Item;
use crate::metrics::{order_desc, OperatingPoint};

/// What a threshold must achieve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibrationTarget {
    /// At most this share of prompts goes large (the largest such share).
    LargeShare(f64),
    /// At least this share of always-large quality, with the fewest large calls.
    QualityRetained(f64),
    /// At most this many USD per 1,000 queries, with the best quality.
    MaxCostPer1k(f64),
}

/// A calibrated threshold and what it yields on the calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// Route large iff score >= threshold. Infinite when nothing should go large.
    pub threshold: f64,
    /// The result of that threshold on the calibration data.
    pub point: OperatingPoint,
}

/// Candidate thresholds: midpoints between consecutive distinct scores (robust to tiny
/// score changes), plus "all large" and "none large".
fn candidate_thresholds(scores: &[f64]) -> Vec<f64> {
    let mut distinct: Vec<f64> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
    distinct.sort_by(|a, b| b.total_cmp(a));
    distinct.dedup();
    let mut out = vec![f64::INFINITY];
    for w in distinct.windows(2) {
        out.push((w[0] + w[1]) / 2.0);
    }
    if let Some(&lowest) = distinct.last() {
        out.push(lowest);
    }
    out
}

/// Finds the threshold that meets a target, like RouteLLM's `calibrate_threshold`.
///
/// Thresholds are tried from high (nothing large) to low (everything large); routing at a
/// threshold is exact (`score >= threshold`), not in expectation.
pub fn calibrate(
    items: &[Item],
    scores: &[f64],
    target: CalibrationTarget,
) -> Result<Calibration, String> {
    if items.len() != scores.len() || items.is_empty() {
        return Err(String::from(
            "calibration needs one score per prompt, and prompts",
        ));
    }
    // One sorted pass: cumulative quality/cost as the threshold drops past each group.
    let order = order_desc(scores);
    let candidates = candidate_thresholds(scores);
    let n = items.len();
    let denom = n as f64;
    let q1: f64 = items.iter().map(|it| it.quality_large).sum();
    let c1: f64 = items.iter().map(|it| it.cost_large).sum();
    let q0: f64 = items.iter().map(|it| it.quality_small).sum();
    let mut points = Vec::with_capacity(candidates.len());
    let (mut k, mut q, mut c) = (
        0usize,
        q0,
        items.iter().map(|it| it.cost_small).sum::<f64>(),
    );
    for &t in &candidates {
        while k < n && scores[order[k]] >= t {
            let it = &items[order[k]];
            q += it.quality_large - it.quality_small;
            c += it.cost_large - it.cost_small;
            k += 1;
        }
        let gap = q1 - q0;
        points.push(Calibration {
            threshold: t,
            point: OperatingPoint {
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
            },
        });
    }
    let found = match target {
        CalibrationTarget::LargeShare(x) => points
            .iter()
            .rev()
            .find(|p| p.point.large_share <= x + 1e-12)
            .copied(),
        CalibrationTarget::QualityRetained(x) => points
            .iter()
            .find(|p| p.point.quality_retained >= x - 1e-12)
            .copied(),
        CalibrationTarget::MaxCostPer1k(x) => points
            .iter()
            .filter(|p| p.point.cost_per_1k <= x + 1e-12)
            .max_by(|a, b| {
                a.point
                    .quality
                    .total_cmp(&b.point.quality)
                    .then(b.point.cost_per_1k.total_cmp(&a.point.cost_per_1k))
            })
            .copied(),
    };
    found.ok_or_else(|| format!("no threshold meets {target:?} on this data"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{EvalRecord, ModelOutcome};
    use crate::metrics::{at_threshold, evaluate, oracle_scores};
    use crate::test_fixtures::{close, tiny};

    #[test]
    fn oracle_and_threshold_calibration() {
        let items = tiny();
        let recs: Vec<EvalRecord> = items
            .iter()
            .enumerate()
            .map(|(i, it)| EvalRecord {
                id: format!("x-{i}"),
                benchmark: String::from("x"),
                category: String::from("c"),
                split: String::from("dev"),
                prompt: "p".repeat(i + 1),
                small: ModelOutcome {
                    model: String::from("s"),
                    score: it.quality_small,
                    output_chars: None,
                },
                large: ModelOutcome {
                    model: String::from("l"),
                    score: it.quality_large,
                    output_chars: Some(8),
                },
            })
            .collect();
        let oracle = oracle_scores(&recs);
        assert_eq!(oracle, vec![1.0, 1.0, 0.0, -1.0]);
        let m = evaluate("oracle", &items, &oracle).unwrap();
        // The ends of the curve are always-small and always-large quality.
        assert!(close(m.quality_small, 0.5) && close(m.quality_large, 0.75));
        assert!(m.apgr > 1.0);
        let cal = calibrate(&items, &oracle, CalibrationTarget::QualityRetained(0.95)).unwrap();
        // Both large-wins prompts are needed: threshold between 1 and 0.
        assert!(close(cal.threshold, 0.5));
        assert!(close(cal.point.large_share, 0.5));
        assert!(close(cal.point.quality, 1.0));
        let none = calibrate(&items, &oracle, CalibrationTarget::LargeShare(0.0)).unwrap();
        assert!(none.threshold.is_infinite() && none.point.large_share == 0.0);
        let all = calibrate(&items, &oracle, CalibrationTarget::LargeShare(1.0)).unwrap();
        assert_eq!(all.point.large_share, 1.0);
        // Budget of 1.5 USD per query = 1500 per 1k: (3+3+1+1)/4 = 2 too much; 1 large = 1.5.
        let b = calibrate(&items, &oracle, CalibrationTarget::MaxCostPer1k(1500.0)).unwrap();
        assert!(close(b.point.large_share, 0.0) || close(b.point.cost_per_1k, 1500.0));
        assert!(b.point.cost_per_1k <= 1500.0 + 1e-9);
        assert!(calibrate(&items, &oracle, CalibrationTarget::MaxCostPer1k(1.0)).is_err());
        let p = at_threshold(&items, &oracle, 0.5);
        assert_eq!(p, cal.point);
    }
}

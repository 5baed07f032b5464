//! Tuning the heuristic router's feature weights on dev: a deterministic, sign-constrained
//! coordinate ascent on APGR around a hand-set prior, and printing the result as Rust.
//!
//! It must not touch the test split (the CLI refuses it) and does not write the weights into
//! the core: `weights_as_rust` prints them for a person to paste into `scoring.rs`.

use llm_mux_core::scoring::{Features, Weights, FEATURE_COUNT, FEATURE_NAMES};

use crate::data::Item;
use crate::metrics::{apgr, curve};

/// Settings of the weight search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneOptions {
    /// Strength of the pull towards the starting weights (per squared weight change).
    pub regularization: f64,
    /// Coordinate steps tried, largest first.
    pub steps: [f64; 5],
    /// Maximum number of full passes over the weights.
    pub max_rounds: usize,
    /// Allowed range of each feature weight, in [`FEATURE_NAMES`] order.
    pub bounds: [(f64, f64); FEATURE_COUNT],
    /// Share of the objective's APGR taken as the mean of the per-benchmark APGRs (ranking
    /// within each benchmark) instead of the APGR of all prompts pooled (0 = pooled only).
    pub per_benchmark: f64,
}

/// Sign constraints from what each feature means, so the fit cannot learn that, say,
/// code or reasoning cues make a query easier because of quirks of three benchmarks.
pub const DEFAULT_BOUNDS: [(f64, f64); FEATURE_COUNT] = [
    (0.05, 0.6),  // length
    (0.05, 0.6),  // reasoning
    (0.05, 0.6),  // comparison
    (0.05, 0.6),  // code
    (0.05, 0.6),  // math
    (0.05, 0.6),  // multi_part
    (0.0, 0.4),   // constraints
    (-0.4, 0.1),  // creative
    (0.05, 0.6),  // technical
    (-0.3, 0.3),  // vocabulary
    (-0.4, 0.0),  // multiple_choice
    (-0.6, -0.1), // simple
];

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            regularization: 0.1,
            steps: [0.2, 0.1, 0.05, 0.02, 0.01],
            max_rounds: 40,
            bounds: DEFAULT_BOUNDS,
            per_benchmark: 0.0,
        }
    }
}

/// Hand-set starting point of the tuning and centre of its regularization: the weights
/// written down from what each feature means, before looking at outcomes.
pub fn prior_weights() -> Weights {
    Weights {
        bias: 0.10,
        length: 0.35,
        reasoning: 0.25,
        comparison: 0.15,
        code: 0.25,
        math: 0.15,
        multi_part: 0.15,
        constraints: 0.10,
        creative: -0.05,
        technical: 0.20,
        vocabulary: 0.10,
        multiple_choice: -0.05,
        simple: -0.30,
    }
}

/// Result of tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneResult {
    /// The tuned weights (bias set so that scores fill [0,1], see [`tune_weights`]).
    pub weights: Weights,
    /// APGR of the start weights on the tuning data.
    pub start_apgr: f64,
    /// APGR of the tuned weights on the tuning data.
    pub apgr: f64,
    /// Objective value: APGR minus the regularization penalty.
    pub objective: f64,
    /// Full passes made.
    pub rounds: usize,
}

/// APGR of a weight vector over pre-extracted features (ranking by the unclamped score).
pub fn apgr_of_weights(items: &[Item], features: &[Features], weights: &Weights) -> f64 {
    let scores: Vec<f64> = features.iter().map(|f| weights.linear(f)).collect();
    curve(items, &scores).map(|c| apgr(&c)).unwrap_or(0.0)
}

/// Deterministic coordinate ascent on the feature weights.
///
/// Objective: APGR over all tuning prompts minus `regularization * sum((w - w_start)^2)`,
/// with each weight kept inside `options.bounds` (a constrained MAP fit around the prior).
/// The penalty keeps features that the data barely exercises (code, creative writing,
/// greetings are rare in MMLU/GSM8K/MT-Bench) near their hand-set prior instead of letting
/// them drift on noise, and it anchors the scale (APGR alone is invariant to scaling all
/// weights). Each pass tries, for every weight in order, `+step` and `-step` for each step
/// size and keeps the best strict improvement. Afterwards the bias is set so the 1st
/// percentile of tuning scores sits at 0.05 (the bias does not change the ranking).
pub fn tune_weights(
    items: &[Item],
    features: &[Features],
    start: &Weights,
    options: &TuneOptions,
) -> TuneResult {
    tune_weights_by_group(items, features, &vec![0; items.len()], start, options)
}

/// [`tune_weights`] where `groups[i]` is the benchmark of prompt `i`, used when
/// `options.per_benchmark > 0`.
pub fn tune_weights_by_group(
    items: &[Item],
    features: &[Features],
    groups: &[usize],
    start: &Weights,
    options: &TuneOptions,
) -> TuneResult {
    let prior = start.feature_weights();
    let group_count = groups.iter().max().map_or(0, |g| g + 1);
    let by_group: Vec<(Vec<Item>, Vec<Features>)> = (0..group_count)
        .map(|g| {
            let idx: Vec<usize> = (0..items.len()).filter(|&i| groups[i] == g).collect();
            (
                idx.iter().map(|&i| items[i]).collect(),
                idx.iter().map(|&i| features[i]).collect(),
            )
        })
        .filter(|(it, _): &(Vec<Item>, Vec<Features>)| !it.is_empty())
        .collect();
    let objective = |w: &[f64; FEATURE_COUNT]| {
        let weights = Weights::from_parts(start.bias, *w);
        let penalty: f64 = w
            .iter()
            .zip(prior.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let pooled = apgr_of_weights(items, features, &weights);
        let fit = if options.per_benchmark > 0.0 && !by_group.is_empty() {
            let mean = by_group
                .iter()
                .map(|(it, f)| apgr_of_weights(it, f, &weights))
                .sum::<f64>()
                / by_group.len() as f64;
            (1.0 - options.per_benchmark) * pooled + options.per_benchmark * mean
        } else {
            pooled
        };
        fit - options.regularization * penalty
    };
    let mut w = prior;
    let mut best = objective(&w);
    let start_apgr = apgr_of_weights(items, features, start);
    let mut rounds = 0;
    while rounds < options.max_rounds {
        rounds += 1;
        let mut improved = false;
        for i in 0..FEATURE_COUNT {
            let mut best_here = (best, w[i]);
            for &step in &options.steps {
                let (lo, hi) = options.bounds[i];
                for cand in [w[i] + step, w[i] - step] {
                    let cand = cand.clamp(lo, hi);
                    if cand == w[i] {
                        continue;
                    }
                    let mut trial = w;
                    trial[i] = cand;
                    let v = objective(&trial);
                    if v > best_here.0 + 1e-9 {
                        best_here = (v, cand);
                    }
                }
            }
            if best_here.1 != w[i] {
                w[i] = best_here.1;
                best = best_here.0;
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
    // Round to 3 decimals for readable code, then place the bias.
    for x in w.iter_mut() {
        *x = (*x * 1000.0).round() / 1000.0;
    }
    let mut raw: Vec<f64> = features
        .iter()
        .map(|f| Weights::from_parts(0.0, w).linear(f))
        .collect();
    raw.sort_by(f64::total_cmp);
    let p01 = raw.get(raw.len() / 100).copied().unwrap_or(0.0);
    let bias = ((0.05 - p01) * 1000.0).round() / 1000.0;
    let weights = Weights::from_parts(bias, w);
    let apgr_final = apgr_of_weights(items, features, &weights);
    TuneResult {
        weights,
        start_apgr,
        apgr: apgr_final,
        objective: best,
        rounds,
    }
}

/// Rust source of `impl Default for Weights` for the given weights.
pub fn weights_as_rust(w: &Weights) -> String {
    let mut s = String::from("Weights {\n");
    s.push_str(&format!("    bias: {},\n", fmt_weight(w.bias)));
    for (name, v) in FEATURE_NAMES.iter().zip(w.feature_weights()) {
        s.push_str(&format!("    {name}: {},\n", fmt_weight(v)));
    }
    s.push('}');
    s
}

fn fmt_weight(v: f64) -> String {
    let s = format!("{v:.3}");
    if s == "-0.000" {
        String::from("0.000")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::tiny;

    #[test]
    fn tuning_finds_a_signal() {
        // Feature "reasoning" marks exactly the prompts where large wins.
        let items = tiny();
        let mk = |r: f64| Features {
            reasoning: r,
            ..Features::default()
        };
        let feats = vec![mk(1.0), mk(1.0), mk(0.0), mk(0.0)];
        let start = Weights::from_parts(0.0, [0.0; FEATURE_COUNT]);
        let options = TuneOptions {
            bounds: [(-1.0, 1.0); FEATURE_COUNT],
            ..TuneOptions::default()
        };
        let res = tune_weights(&items, &feats, &start, &options);
        assert!(res.weights.reasoning > 0.0);
        assert!(res.apgr > res.start_apgr);
        assert!(weights_as_rust(&res.weights).contains("reasoning: "));
    }

    #[test]
    fn prior_is_inside_the_bounds() {
        for (w, (lo, hi)) in prior_weights().feature_weights().iter().zip(DEFAULT_BOUNDS) {
            assert!(lo <= *w && *w <= hi);
        }
    }
}

//! Offline evaluation of a router on per-prompt outcomes of a small and a large model.
//!
//! Implements the RouteLLM metrics described in `shared/data/routing-eval/README.md`: a
//! router gives each prompt a score (higher = more complex = large model); the top share `p`
//! of prompts goes to the large model. From that follow the quality curve, PGR, APGR,
//! CPT(x), and the large share and cost savings at a given share of the large model's quality.
//!
//! Ties are split in expectation: prompts with equal scores form a group, and taking `j` of a
//! group of `m` adds `j/m` of the group's total quality and cost change. So the result never
//! depends on file order, and a constant score is exactly the expected value of random routing.
//!
//! Everything here is pure; reading files is the CLI's job (`src/bin/llm-mux-eval.rs`).

use serde::{Deserialize, Serialize};

use llm_mux_core::pricing::ModelPrice;
use llm_mux_core::scoring::{Features, Weights, FEATURE_COUNT, FEATURE_NAMES};

/// Output tokens assumed when the data has no output length (MMLU answers are a letter).
pub const DEFAULT_OUTPUT_TOKENS: f64 = 5.0;

/// One model's outcome on one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOutcome {
    /// Model that answered.
    pub model: String,
    /// Quality score in [0,1].
    pub score: f64,
    /// Length of the model's answer in characters, if known.
    pub output_chars: Option<u64>,
}

/// One line of a routing-eval JSONL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Unique id, e.g. `mmlu-12`.
    pub id: String,
    /// Benchmark name: `mmlu`, `gsm8k`, `mt_bench`.
    pub benchmark: String,
    /// Category within the benchmark.
    pub category: String,
    /// `dev` or `test`.
    pub split: String,
    /// The prompt text.
    pub prompt: String,
    /// Outcome of the small model.
    pub small: ModelOutcome,
    /// Outcome of the large model.
    pub large: ModelOutcome,
}

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Tuning data.
    Dev,
    /// Held-out data for reporting.
    Test,
    /// Both.
    All,
}

impl Split {
    /// Parses `dev`, `test` or `all`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "dev" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            "all" => Ok(Split::All),
            other => Err(format!(
                "unknown split {other:?} (expected dev, test or all)"
            )),
        }
    }

    /// Whether a record's split belongs to this selection.
    pub fn contains(self, split: &str) -> bool {
        match self {
            Split::Dev => split == "dev",
            Split::Test => split == "test",
            Split::All => true,
        }
    }

    /// Name as written in the data.
    pub fn name(self) -> &'static str {
        match self {
            Split::Dev => "dev",
            Split::Test => "test",
            Split::All => "all",
        }
    }
}

/// Parses JSONL text (blank lines skipped); `source` names the input in error messages.
pub fn parse_jsonl(text: &str, source: &str) -> Result<Vec<EvalRecord>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: EvalRecord = serde_json::from_str(line)
            .map_err(|e| format!("{source}:{}: invalid record: {e}", i + 1))?;
        for (side, o) in [("small", &rec.small), ("large", &rec.large)] {
            if !o.score.is_finite() {
                return Err(format!("{source}:{}: {side}.score is not finite", i + 1));
            }
        }
        out.push(rec);
    }
    Ok(out)
}

/// Keeps the records of a split and, if given, of one benchmark.
pub fn filter_records(
    records: Vec<EvalRecord>,
    split: Split,
    benchmark: Option<&str>,
) -> Vec<EvalRecord> {
    records
        .into_iter()
        .filter(|r| split.contains(&r.split) && benchmark.is_none_or(|b| r.benchmark == b))
        .collect()
}

/// Quality and cost of one prompt under each model: what the metrics need.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Item {
    /// Quality if routed to the small model.
    pub quality_small: f64,
    /// Quality if routed to the large model.
    pub quality_large: f64,
    /// USD if routed to the small model.
    pub cost_small: f64,
    /// USD if routed to the large model.
    pub cost_large: f64,
}

/// Estimated tokens of a text length: chars / 4.
pub fn tokens_from_chars(chars: u64) -> f64 {
    chars as f64 / 4.0
}

/// USD for one call at `price` with fractional token estimates.
fn call_cost(price: &ModelPrice, tokens_in: f64, tokens_out: f64) -> f64 {
    (tokens_in * price.input + tokens_out * price.output) / 1_000_000.0
}

/// Builds an [`Item`]: tokens ~ chars/4 for prompt and output, 5 output tokens if unknown.
pub fn item_from_record(rec: &EvalRecord, small: &ModelPrice, large: &ModelPrice) -> Item {
    let tokens_in = tokens_from_chars(rec.prompt.chars().count() as u64);
    let out = |o: &ModelOutcome| {
        o.output_chars
            .map(tokens_from_chars)
            .unwrap_or(DEFAULT_OUTPUT_TOKENS)
    };
    Item {
        quality_small: rec.small.score,
        quality_large: rec.large.score,
        cost_small: call_cost(small, tokens_in, out(&rec.small)),
        cost_large: call_cost(large, tokens_in, out(&rec.large)),
    }
}

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
fn order_desc(scores: &[f64]) -> Vec<usize> {
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

fn point_at(curve: &Curve, k: usize) -> OperatingPoint {
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
    let prior = start.feature_weights();
    let objective = |w: &[f64; FEATURE_COUNT]| {
        let weights = Weights::from_parts(start.bias, *w);
        let penalty: f64 = w
            .iter()
            .zip(prior.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        apgr_of_weights(items, features, &weights) - options.regularization * penalty
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

/// One line of a quality-vs-large-share plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSeries {
    /// Legend label.
    pub name: String,
    /// SVG colour, e.g. `#1f77b4`.
    pub color: &'static str,
    /// Drawn dashed (baselines).
    pub dashed: bool,
    /// (large share in [0,1], mean quality) points, by increasing share.
    pub points: Vec<(f64, f64)>,
    /// An operating point to mark with a dot (e.g. the router at its default threshold).
    pub marker: Option<(f64, f64)>,
}

/// At most `max_points` (large share, quality) points of a curve, always with both ends.
pub fn curve_points(curve: &Curve, max_points: usize) -> Vec<(f64, f64)> {
    let n = curve.len();
    if n == 0 {
        return vec![(0.0, curve.quality.first().copied().unwrap_or(0.0))];
    }
    let steps = max_points.clamp(2, n + 1) - 1;
    let mut out: Vec<(f64, f64)> = (0..=steps)
        .map(|s| {
            let k = (s * n + steps / 2) / steps;
            (k as f64 / n as f64, curve.quality[k])
        })
        .collect();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A hand-written SVG line chart of quality against the share of large-model calls, with a
/// dotted horizontal reference line (e.g. 95% of always-large quality) if given.
pub fn quality_share_svg(
    title: &str,
    series: &[PlotSeries],
    reference: Option<(f64, &str)>,
) -> String {
    let (w, h) = (640.0, 420.0);
    let (left, right, top, bottom) = (60.0, 170.0, 36.0, 48.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(reference.map(|r| r.0));
    let (mut lo, mut hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    // Round the y range out to 0.05 steps.
    let lo = (lo / 0.05).floor() * 0.05;
    let mut hi = (hi / 0.05).ceil() * 0.05;
    if hi - lo < 0.05 {
        hi = lo + 0.05;
    }
    let x_of = |x: f64| left + x.clamp(0.0, 1.0) * pw;
    let y_of = |y: f64| top + (1.0 - (y - lo) / (hi - lo)) * ph;
    let mut s = String::new();
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    ));
    s.push_str(&format!(
        "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        xml_escape(title)
    ));
    // Grid and axes.
    for i in 0..=10 {
        let x = x_of(f64::from(i) / 10.0);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}%</text>\n",
            top + ph,
            top + ph + 16.0,
            i * 10
        ));
    }
    let y_steps = ((hi - lo) / 0.05).round() as usize;
    for i in 0..=y_steps {
        let v = lo + 0.05 * i as f64;
        let y = y_of(v);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>\n",
            left + pw,
            left - 6.0,
            y + 4.0
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">share of calls to the large model</text>\n<text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">mean quality</text>\n",
        left + pw / 2.0,
        h - 10.0,
        top + ph / 2.0
    ));
    if let Some((y, label)) = reference {
        let yy = y_of(y);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#888\" stroke-dasharray=\"2 3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\" text-anchor=\"end\">{}</text>\n",
            left + pw,
            left + pw - 4.0,
            yy - 4.0,
            xml_escape(label)
        ));
    }
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
            .collect();
        let dash = if ser.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            ser.color,
            pts.join(" ")
        ));
        if let Some((x, y)) = ser.marker {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"/>\n",
                x_of(x),
                y_of(y),
                ser.color
            ));
        }
        let ly = top + 10.0 + 20.0 * i as f64;
        let lx = left + pw + 12.0;
        s.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            lx + 22.0,
            ser.color,
            lx + 28.0,
            ly + 4.0,
            xml_escape(&ser.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(qs: f64, ql: f64) -> Item {
        Item {
            quality_small: qs,
            quality_large: ql,
            cost_small: 1.0,
            cost_large: 3.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    // Four prompts: large wins on #0 and #1, ties on #2, small wins on #3.
    // quality(0) = (0+0+1+1)/4 = 0.5, quality(1) = (1+1+1+0)/4 = 0.75, gap 0.25.
    fn tiny() -> Vec<Item> {
        vec![
            item(0.0, 1.0),
            item(0.0, 1.0),
            item(1.0, 1.0),
            item(1.0, 0.0),
        ]
    }

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

    #[test]
    fn costs_from_chars() {
        let price_s = ModelPrice {
            input: 0.15,
            output: 0.60,
        };
        let price_l = ModelPrice {
            input: 0.5,
            output: 1.5,
        };
        let line = r#"{"id":"a","benchmark":"mmlu","category":"c","split":"test","prompt":"abcdefgh","small":{"model":"s","score":1.0,"output_chars":null},"large":{"model":"l","score":0.0,"output_chars":40}}"#;
        let recs = parse_jsonl(line, "t").unwrap();
        let it = item_from_record(&recs[0], &price_s, &price_l);
        assert!(close(it.cost_small, (2.0 * 0.15 + 5.0 * 0.60) / 1e6));
        assert!(close(it.cost_large, (2.0 * 0.5 + 10.0 * 1.5) / 1e6));
        assert_eq!(filter_records(recs.clone(), Split::Dev, None).len(), 0);
        assert_eq!(
            filter_records(recs.clone(), Split::Test, Some("mmlu")).len(),
            1
        );
        assert_eq!(filter_records(recs, Split::All, Some("gsm8k")).len(), 0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(parse_jsonl("{not json}", "f").is_err());
        assert!(parse_jsonl("\n\n", "f").unwrap().is_empty());
        assert!(Split::parse("train").is_err());
        assert!(curve(&tiny(), &[1.0]).is_err());
        assert!(curve(&tiny(), &[1.0, f64::NAN, 0.0, 0.0]).is_err());
        assert!(calibrate(&[], &[], CalibrationTarget::LargeShare(0.5)).is_err());
    }

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
}

#[cfg(test)]
mod plot_tests {
    use super::*;

    #[test]
    fn curve_points_keep_the_ends_and_the_svg_is_well_formed() {
        let items: Vec<Item> = (0..1000)
            .map(|i| Item {
                quality_small: f64::from(i % 2),
                quality_large: 1.0,
                cost_small: 1.0,
                cost_large: 2.0,
            })
            .collect();
        let scores: Vec<f64> = (0..1000).map(|i| f64::from(-(i % 2))).collect();
        let c = curve(&items, &scores).unwrap();
        let pts = curve_points(&c, 101);
        assert_eq!(pts.len(), 101);
        assert_eq!(pts[0], (0.0, 0.5));
        assert_eq!(pts[100], (1.0, 1.0));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
        let tiny = curve(&items[..3], &scores[..3]).unwrap();
        assert_eq!(curve_points(&tiny, 200).len(), 4);
        let svg = quality_share_svg(
            "a <b> & c",
            &[PlotSeries {
                name: String::from("router"),
                color: "#123456",
                dashed: false,
                points: pts,
                marker: Some((0.5, 1.0)),
            }],
            Some((0.95, "95%")),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = quality_share_svg("empty", &[], None);
        assert!(empty.contains("</svg>"));
    }
}

#[cfg(test)]
mod prior_tests {
    use super::*;

    #[test]
    fn prior_is_inside_the_bounds() {
        for (w, (lo, hi)) in prior_weights().feature_weights().iter().zip(DEFAULT_BOUNDS) {
            assert!(lo <= *w && *w <= hi);
        }
    }
}

//! Offline training of the learned router: featurize, fit a logistic model with AdaGrad,
//! cross-validate, quantize and write the weights file that `llm_mux_core::learned` reads.
//!
//! Everything is deterministic: a fixed-seed shuffle (SplitMix64), fixed iteration order,
//! single thread, so the same data and settings give the same bytes. The features and the
//! file layout are the core's ([`learned::visit_ngrams`], [`learned::dense_inputs`],
//! [`learned::HEADER_LEN`]): this module must not define features of its own, and must not
//! choose settings or thresholds (see [`crate::selection`]) or read and write files.

use llm_mux_core::hash::{fnv1a64, SplitMix64};
use llm_mux_core::learned::{
    self, sigmoid, visit_ngrams, Group, NgramConfig, DENSE_COUNT, HEADER_LEN, MAGIC,
};
use llm_mux_core::scoring::Weights;

/// What the model learns to predict from the two models' quality scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `(1 + quality_large - quality_small) / 2`: the expected quality gain, as a probability.
    Gain,
    /// 1 if the large model is strictly better, else 0.
    LargeWins,
}

impl Target {
    /// The training label in [0,1].
    pub fn label(self, quality_small: f64, quality_large: f64) -> f64 {
        let gap = (quality_large - quality_small).clamp(-1.0, 1.0);
        match self {
            Target::Gain => (1.0 + gap) / 2.0,
            Target::LargeWins => f64::from(u8::from(gap > 0.0)),
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// Hashing settings.
    pub ngrams: NgramConfig,
    /// L2 penalty on the table weights (applied when a weight is touched).
    pub l2: f64,
    /// L2 penalty on the dense (heuristic) weights.
    pub l2_dense: f64,
    /// Stage 1: passes fitting the bias and dense (heuristic) weights alone.
    pub dense_epochs: usize,
    /// AdaGrad learning rate of stage 1.
    pub learning_rate: f64,
    /// Stage 2: passes fitting the n-gram table on top of the frozen stage-1 model.
    pub epochs: usize,
    /// AdaGrad learning rate of the table.
    pub table_learning_rate: f64,
    /// What to learn.
    pub target: Target,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// Fit one bias per benchmark (a fixed effect) instead of one shared bias, so the
    /// features learn which prompts gain *within* a benchmark rather than which benchmark a
    /// prompt comes from; the shipped bias is their mean weighted by rows.
    pub group_bias: bool,
    /// Per-benchmark reweighting: an example of a benchmark with `n_b` of the `n` rows of
    /// `B` benchmarks weighs `(n / (B * n_b))^balance` (0 = none, 1 = every benchmark
    /// weighs the same in total).
    pub balance: f64,
    /// Weights of the heuristic score among the dense inputs (the shipped ones by default;
    /// leave-one-benchmark-out passes weights tuned without the held-out benchmark).
    pub heuristic: Weights,
    /// Starting value and centre of the L2 pull (`l2_dense`) of the heuristic-score input's
    /// weight; the feature weights start at and are pulled towards 0. 0 = the plain fit.
    pub dense_prior: f64,
    /// Keep each dense weight on the side of zero its meaning gives it (the signs of
    /// [`crate::tuning::DEFAULT_BOUNDS`]; the heuristic score's weight >= 0).
    pub sign_constrained: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            ngrams: NgramConfig {
                bits: 13,
                word_max_n: 2,
                char_min_n: 3,
                char_max_n: 3,
            },
            l2: 1e-3,
            l2_dense: 1e-4,
            dense_epochs: 30,
            learning_rate: 0.1,
            epochs: 5,
            table_learning_rate: 0.01,
            target: Target::Gain,
            seed: 20_240_601,
            group_bias: false,
            balance: 0.0,
            heuristic: Weights::default(),
            dense_prior: 0.0,
            sign_constrained: true,
        }
    }
}

/// One training prompt: sparse table inputs (bucket, value), dense inputs and label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Distinct buckets with their summed values, sorted by bucket.
    pub sparse: Vec<(u32, f32)>,
    /// [`learned::dense_inputs`] of the prompt.
    pub dense: [f64; DENSE_COUNT],
    /// Label in [0,1].
    pub label: f64,
    /// Index of the prompt's benchmark (for [`TrainConfig::group_bias`] and
    /// [`TrainConfig::balance`]); 0 when there is one.
    pub group: usize,
}

/// Sparse inputs exactly as [`learned::LearnedModel::logits`] uses them: each occurrence of
/// a word n-gram adds `1/sqrt(word n-grams)`, each char n-gram `1/sqrt(char n-grams)`.
pub fn sparse_inputs(text: &str, ngrams: &NgramConfig) -> Vec<(u32, f32)> {
    let mut words = Vec::new();
    let mut chars = Vec::new();
    visit_ngrams(text, ngrams, |g, b| match g {
        Group::Word => words.push(b as u32),
        Group::Char => chars.push(b as u32),
    });
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(words.len() + chars.len());
    for list in [&words, &chars] {
        if list.is_empty() {
            continue;
        }
        let v = 1.0 / (list.len() as f64).sqrt();
        out.extend(list.iter().map(|&b| (b, v as f32)));
    }
    out.sort_by_key(|&(b, _)| b);
    let mut merged: Vec<(u32, f32)> = Vec::with_capacity(out.len());
    for (b, v) in out {
        match merged.last_mut() {
            Some(last) if last.0 == b => last.1 += v,
            _ => merged.push((b, v)),
        }
    }
    merged
}

/// Builds an example from a prompt and the two models' quality scores.
pub fn example(text: &str, quality_small: f64, quality_large: f64, cfg: &TrainConfig) -> Example {
    Example {
        sparse: sparse_inputs(text, &cfg.ngrams),
        dense: learned::dense_inputs_with(text, &cfg.heuristic),
        label: cfg.target.label(quality_small, quality_large),
        group: 0,
    }
}

/// A trained model in full precision.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatModel {
    /// Hashing settings.
    pub ngrams: NgramConfig,
    /// Constant log-odds.
    pub bias: f64,
    /// Dense weights.
    pub dense: [f64; DENSE_COUNT],
    /// `2^bits` table weights.
    pub table: Vec<f64>,
}

impl FloatModel {
    /// Log-odds of an example.
    pub fn logit(&self, ex: &Example) -> f64 {
        let mut z = self.bias;
        for (w, x) in self.dense.iter().zip(ex.dense) {
            z += w * x;
        }
        for &(b, v) in &ex.sparse {
            z += self.table[b as usize] * f64::from(v);
        }
        z
    }
}

/// Allowed range of each dense weight under [`TrainConfig::sign_constrained`]: the sign
/// of the heuristic's bounds per feature, then the heuristic score (non-negative).
const DENSE_SIGNS: [(f64, f64); DENSE_COUNT] = {
    let b = crate::tuning::DEFAULT_BOUNDS;
    let mut out = [(f64::NEG_INFINITY, f64::INFINITY); DENSE_COUNT];
    let mut i = 0;
    while i < b.len() {
        if b[i].0 >= 0.0 {
            out[i].0 = 0.0;
        }
        if b[i].1 <= 0.0 {
            out[i].1 = 0.0;
        }
        i += 1;
    }
    out[DENSE_COUNT - 1].0 = 0.0;
    out
};

/// A draw in `0..n` from the shuffle's generator (modulo: the tiny bias is irrelevant here,
/// and changing the draw would change every trained model).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Fits the model on `examples[i]` for `i` in `subset` (in that order before shuffling).
///
/// Logistic loss with soft labels and AdaGrad per weight, in two stages, each pass in a
/// fresh seeded shuffle: first the bias and dense (heuristic) weights alone, then the n-gram
/// table alone on top of them, with L2 applied to the table weights an example touches.
/// The table so only learns what the heuristic's features do not already explain.
pub fn fit(examples: &[Example], subset: &[usize], cfg: &TrainConfig) -> FloatModel {
    let size = 1usize << cfg.ngrams.bits;
    let mut model = FloatModel {
        ngrams: cfg.ngrams,
        bias: 0.0,
        dense: [0.0; DENSE_COUNT],
        table: vec![0.0; size],
    };
    let mut centre = [0.0f64; DENSE_COUNT];
    centre[DENSE_COUNT - 1] = cfg.dense_prior;
    model.dense = centre;
    let mut g_table = vec![0.0f64; size];
    let mut g_dense = [0.0f64; DENSE_COUNT];
    let groups = subset
        .iter()
        .map(|&i| examples[i].group + 1)
        .max()
        .unwrap_or(1);
    let mut counts = vec![0usize; groups];
    for &i in subset {
        counts[examples[i].group] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f64;
    let weights: Vec<f64> = counts
        .iter()
        .map(|&c| {
            if c == 0 || cfg.balance == 0.0 {
                1.0
            } else {
                (subset.len() as f64 / (present * c as f64)).powf(cfg.balance)
            }
        })
        .collect();
    let mut g_bias = vec![0.0f64; groups];
    let mut biases = vec![0.0f64; groups];
    let group_of = |ex: &Example| if cfg.group_bias { ex.group } else { 0 };
    const EPS: f64 = 1e-8;
    let mut rng = SplitMix64::new(cfg.seed);
    let mut order: Vec<usize> = subset.to_vec();
    for epoch in 0..cfg.dense_epochs + cfg.epochs {
        let dense_stage = epoch < cfg.dense_epochs;
        for i in (1..order.len()).rev() {
            let j = below(&mut rng, i + 1);
            order.swap(i, j);
        }
        for &i in &order {
            let ex = &examples[i];
            let k = group_of(ex);
            model.bias = biases[k];
            let g = (sigmoid(model.logit(ex)) - ex.label) * weights[ex.group];
            if dense_stage {
                let lr = cfg.learning_rate;
                g_bias[k] += g * g;
                biases[k] -= lr * g / (g_bias[k].sqrt() + EPS);
                let dense = model.dense.iter_mut().zip(&mut g_dense).zip(ex.dense);
                for (((w, acc), x), c) in dense.zip(centre) {
                    let grad = g * x + cfg.l2_dense * (*w - c);
                    *acc += grad * grad;
                    *w -= lr * grad / (acc.sqrt() + EPS);
                }
                if cfg.sign_constrained {
                    for (w, (lo, hi)) in model.dense.iter_mut().zip(DENSE_SIGNS) {
                        *w = w.clamp(lo, hi);
                    }
                }
            } else {
                let lr = cfg.table_learning_rate;
                for &(b, v) in &ex.sparse {
                    let b = b as usize;
                    let grad = g * f64::from(v) + cfg.l2 * model.table[b];
                    g_table[b] += grad * grad;
                    model.table[b] -= lr * grad / (g_table[b].sqrt() + EPS);
                }
            }
        }
    }
    model.bias = if cfg.group_bias {
        let total: usize = counts.iter().sum();
        counts
            .iter()
            .zip(&biases)
            .map(|(&c, b)| c as f64 * b)
            .sum::<f64>()
            / total.max(1) as f64
    } else {
        biases[0]
    };
    model
}

/// Out-of-fold log-odds: for each fold, fit on the other folds and predict this one.
/// `fold_of[i]` is the fold of example `i`, in `0..folds`.
pub fn out_of_fold(
    examples: &[Example],
    fold_of: &[usize],
    folds: usize,
    cfg: &TrainConfig,
) -> Vec<f64> {
    let mut out = vec![0.0; examples.len()];
    for k in 0..folds {
        let train: Vec<usize> = (0..examples.len()).filter(|&i| fold_of[i] != k).collect();
        let model = fit(examples, &train, cfg);
        for i in (0..examples.len()).filter(|&i| fold_of[i] == k) {
            out[i] = model.logit(&examples[i]);
        }
    }
    out
}

/// Deterministic fold of a record id (FNV-1a of the id, modulo `folds`).
pub fn fold_of_id(id: &str, folds: usize) -> usize {
    (fnv1a64(id.as_bytes()) % folds.max(1) as u64) as usize
}

/// Serializes a model: magic, bits, word_max_n, char_min_n, char_max_n, then f64 LE
/// bias, scale, threshold, dense weights, then `2^bits` i8 weights (weight = i8 * scale).
///
/// The scale maps the largest absolute table weight to 127.
pub fn write_model(model: &FloatModel, threshold: f64) -> Vec<u8> {
    let max = model.table.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut out = Vec::with_capacity(HEADER_LEN + model.table.len());
    out.extend_from_slice(MAGIC);
    let n = model.ngrams;
    out.extend_from_slice(&[n.bits, n.word_max_n, n.char_min_n, n.char_max_n]);
    for v in [model.bias, scale, threshold] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in model.dense {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for w in &model.table {
        let q = (w / scale).round().clamp(-127.0, 127.0) as i8;
        out.push(q as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_mux_core::learned::LearnedModel;

    fn small_cfg() -> TrainConfig {
        TrainConfig {
            ngrams: NgramConfig {
                bits: 10,
                word_max_n: 2,
                char_min_n: 3,
                char_max_n: 4,
            },
            epochs: 20,
            table_learning_rate: 0.5,
            dense_epochs: 5,
            ..TrainConfig::default()
        }
    }

    fn toy(cfg: &TrainConfig) -> Vec<Example> {
        let texts = [
            ("prove the theorem about primes", 0.0, 1.0),
            ("derive the proof of the lemma", 0.0, 1.0),
            ("prove this inequality holds", 0.0, 1.0),
            ("hello there friend", 1.0, 1.0),
            ("hi how are you", 1.0, 1.0),
            ("hello and good morning", 1.0, 0.0),
        ];
        texts
            .iter()
            .map(|&(t, s, l)| example(t, s, l, cfg))
            .collect()
    }

    #[test]
    fn labels() {
        assert_eq!(Target::Gain.label(0.0, 1.0), 1.0);
        assert_eq!(Target::Gain.label(1.0, 1.0), 0.5);
        assert_eq!(Target::Gain.label(1.0, 0.0), 0.0);
        assert_eq!(Target::LargeWins.label(0.2, 0.3), 1.0);
        assert_eq!(Target::LargeWins.label(0.3, 0.3), 0.0);
    }

    #[test]
    fn fit_learns_a_toy_signal_deterministically() {
        let cfg = small_cfg();
        let ex = toy(&cfg);
        let all: Vec<usize> = (0..ex.len()).collect();
        let m = fit(&ex, &all, &cfg);
        assert_eq!(m, fit(&ex, &all, &cfg));
        let hard = example("prove the lemma", 0.0, 1.0, &cfg);
        let easy = example("hello friend", 1.0, 1.0, &cfg);
        assert!(m.logit(&hard) > m.logit(&easy));
    }

    #[test]
    fn sign_constraints_hold_after_fitting() {
        // Labels that would pull the "simple" weight positive and "reasoning" negative.
        let cfg = TrainConfig {
            epochs: 0,
            ..small_cfg()
        };
        let ex: Vec<Example> = [
            ("hello thanks", 0.0, 1.0),
            ("hi there", 0.0, 1.0),
            ("explain why and prove it", 1.0, 0.0),
            ("analyze and justify the reasoning", 1.0, 0.0),
        ]
        .iter()
        .map(|&(t, s, l)| example(t, s, l, &cfg))
        .collect();
        let all: Vec<usize> = (0..ex.len()).collect();
        let m = fit(&ex, &all, &cfg);
        for (w, (lo, hi)) in m.dense.iter().zip(DENSE_SIGNS) {
            assert!(lo <= *w && *w <= hi, "{w} outside {lo}..{hi}");
        }
        let free = fit(
            &ex,
            &all,
            &TrainConfig {
                sign_constrained: false,
                ..cfg
            },
        );
        assert_ne!(free.dense, m.dense);
    }

    #[test]
    fn written_model_scores_like_the_float_model() {
        let cfg = small_cfg();
        let ex = toy(&cfg);
        let all: Vec<usize> = (0..ex.len()).collect();
        let m = fit(&ex, &all, &cfg);
        let bytes = write_model(&m, 0.55);
        let q = LearnedModel::from_bytes(&bytes).unwrap();
        assert_eq!(q.threshold, 0.55);
        for (t, e) in ["prove the theorem", "hello there", ""]
            .iter()
            .map(|t| (t, example(t, 0.0, 0.0, &cfg)))
        {
            let exact = m.logit(&e);
            let quantized = q.logits(t).total();
            assert!(
                (exact - quantized).abs() < 0.05,
                "{t}: {exact} vs {quantized}"
            );
        }
    }

    #[test]
    fn folds_are_stable_and_cover_all() {
        assert_eq!(fold_of_id("mmlu-1", 5), fold_of_id("mmlu-1", 5));
        let mut seen = [false; 5];
        for i in 0..100 {
            seen[fold_of_id(&format!("x-{i}"), 5)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let cfg = small_cfg();
        let ex = toy(&cfg);
        let folds: Vec<usize> = (0..ex.len()).map(|i| i % 2).collect();
        let oof = out_of_fold(&ex, &folds, 2, &cfg);
        assert_eq!(oof.len(), ex.len());
        assert!(oof.iter().all(|z| z.is_finite()));
    }
}

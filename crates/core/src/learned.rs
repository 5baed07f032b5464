//! Learned router: a logistic model over hashed word and character n-grams plus the
//! heuristic's features, trained offline on the `dev` split and shipped inside the worker.
//!
//! The score is `sigmoid(bias + heuristic part + word part + char part)`:
//! - heuristic part: a weight per [`scoring::FEATURE_NAMES`] feature and one for the
//!   heuristic score itself;
//! - word part: word unigrams (and bigrams) hashed into a shared table of `2^bits` i8
//!   weights, summed over occurrences and divided by the square root of their number;
//! - char part: character n-grams of the normalized text (lowercase, digits folded to `0`,
//!   whitespace runs to one space), hashed into the same table, normalized the same way.
//!
//! It estimates how much better the large model answers than the small one (trained on the
//! target `(1 + quality_large - quality_small) / 2`), so a higher score means "route large".
//! The weights (`data/learned_router.bin`) are read in place from the embedded bytes, once
//! (no copy, no allocation per request).
//!
//! This module owns what scoring at run time needs: the weights file format ([`MAGIC`],
//! [`HEADER_LEN`], [`LearnedModel::from_bytes`]), the features ([`visit_ngrams`],
//! [`dense_inputs`]) and the score. It must not train: fitting and writing the weights file
//! are offline work in the `llm-mux-eval` crate (`llm_mux_eval::training`), which uses the
//! public items here so that training and scoring share one definition of the features.
//! See `docs/routing-eval.md` for how the model was fit and how it does.

use std::sync::OnceLock;

use crate::hash::{fnv1a64_step, FNV1A64_OFFSET};
use crate::scoring::{self, ComplexityScore, FeatureContribution, Weights, FEATURE_COUNT};

/// Score at or above which a query goes to the large tier with the learned router.
///
/// Calibrated by `llm-mux-eval train` on out-of-fold dev scores (5-fold cross-validation
/// within `dev`): the fewest large calls keeping 95% of always-large quality. Stored in the
/// weights file too; a test checks that both agree.
pub const DEFAULT_THRESHOLD: f64 = 0.5550;

/// The shipped weights (layout: see [`HEADER_LEN`]; written by `llm_mux_eval::training`).
const EMBEDDED_MODEL: &[u8] = include_bytes!("../../../data/learned_router.bin");

/// Number of dense inputs: the heuristic's features plus the heuristic score.
pub const DENSE_COUNT: usize = FEATURE_COUNT + 1;

/// Names of the parts reported in [`ComplexityScore::features`], in order.
pub const PART_NAMES: [&str; 4] = [
    "learned_prior",
    "heuristic_features",
    "word_ngrams",
    "char_ngrams",
];

/// File magic and format version of the weights file.
pub const MAGIC: &[u8; 5] = b"LMXR\x01";

/// Bytes before the weight table: magic, 4 settings bytes (bits, word_max_n, char_min_n,
/// char_max_n), then 3 + DENSE_COUNT little-endian f64s (bias, scale, threshold, the dense
/// weights). The table of `2^bits` i8 weights follows (weight = i8 * scale).
pub const HEADER_LEN: usize = MAGIC.len() + 4 + 8 * (3 + DENSE_COUNT);

/// How text is cut into hashed n-grams (stored in the weights file header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgramConfig {
    /// The table has `2^bits` weights (8..=24).
    pub bits: u8,
    /// Longest word n-gram (0 = no words, 1 = unigrams, 2 = + bigrams, 3 = + trigrams).
    pub word_max_n: u8,
    /// Shortest character n-gram (0 = no character n-grams).
    pub char_min_n: u8,
    /// Longest character n-gram (at most 7).
    pub char_max_n: u8,
}

impl NgramConfig {
    /// Checks the ranges the hashing code relies on.
    pub fn validate(&self) -> Result<(), String> {
        if !(8..=24).contains(&self.bits) {
            return Err(format!("bits must be in 8..=24, got {}", self.bits));
        }
        if self.word_max_n > 3 {
            return Err(format!("word_max_n must be <= 3, got {}", self.word_max_n));
        }
        if self.char_max_n > 7 || self.char_min_n > self.char_max_n {
            return Err(format!(
                "char n-gram range {}..={} is not within 1..=7",
                self.char_min_n, self.char_max_n
            ));
        }
        Ok(())
    }
}

/// Where an n-gram comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Word n-grams.
    Word,
    /// Character n-grams.
    Char,
}

/// murmur3's 64-bit finalizer: spreads every input bit over the output.
#[inline(always)]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline(always)]
fn bucket(h: u64, bits: u8) -> usize {
    (mix(h) >> (64 - u32::from(bits))) as usize
}

/// Lowercase ASCII, digits folded to `0`; other bytes unchanged.
#[inline(always)]
fn fold(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b'0'
    } else {
        b.to_ascii_lowercase()
    }
}

const WORD_SALT: [u64; 4] = [
    0,
    0x51_7cc1_b727_220a,
    0x2f6b_5bd6_5c0c_96e5,
    0x6a09_e667_f3bc_c908,
];

/// Calls `f(group, bucket)` for every word and character n-gram of `text`, in text order.
///
/// The single definition of the features, shared by scoring and training.
pub fn visit_ngrams(text: &str, cfg: &NgramConfig, mut f: impl FnMut(Group, usize)) {
    let bytes = text.as_bytes();
    let bits = cfg.bits;
    if cfg.word_max_n > 0 {
        // Words: runs of ASCII letters/digits or non-ASCII bytes.
        let max_n = usize::from(cfg.word_max_n);
        let mut recent = [0u64; 3]; // hashes of the last words, most recent first
        let mut seen = 0usize;
        let mut h = FNV1A64_OFFSET;
        let mut in_word = false;
        for &b in bytes.iter().chain(std::iter::once(&b' ')) {
            if b.is_ascii_alphanumeric() || b >= 0x80 {
                h = fnv1a64_step(h, fold(b));
                in_word = true;
                continue;
            }
            if !in_word {
                continue;
            }
            recent = [h, recent[0], recent[1]];
            seen += 1;
            for n in 1..=max_n.min(seen) {
                let mut acc = WORD_SALT[n];
                for &w in &recent[..n] {
                    acc = (acc.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                }
                f(Group::Word, bucket(acc, bits));
            }
            h = FNV1A64_OFFSET;
            in_word = false;
        }
    }
    if cfg.char_min_n > 0 {
        // Characters of the normalized text, with a space before and after. The last
        // 8 characters live in one register; an n-gram (n <= 7, see `validate`) is its
        // low n bytes, salted by n. Masks and salts per n are computed once.
        let (lo, hi) = (
            usize::from(cfg.char_min_n),
            usize::from(cfg.char_max_n.min(7)),
        );
        let mut keys = [(0u64, 0u64); 8];
        for (n, key) in keys.iter_mut().enumerate().take(hi + 1).skip(lo) {
            *key = ((1u64 << (8 * n)) - 1, (0xa0 + n as u64) << 56);
        }
        let keys = &keys[lo..=hi];
        let mut reg: u64 = u64::from(b' ');
        let mut len: usize = 1;
        let mut last_space = true;
        let bytes_then_space = bytes.iter().copied().chain(std::iter::once(b' '));
        for b in bytes_then_space {
            let c = if b.is_ascii_whitespace() {
                b' '
            } else {
                fold(b)
            };
            if c == b' ' {
                if last_space {
                    continue;
                }
                last_space = true;
            } else {
                last_space = false;
            }
            reg = (reg << 8) | u64::from(c);
            len += 1;
            let ready = (len + 1).saturating_sub(lo);
            for &(mask, salt) in keys.iter().take(ready) {
                f(Group::Char, bucket((reg & mask) ^ salt, bits));
            }
        }
    }
}

/// The heuristic's inputs to the learned model: its features and its (clamped) score.
pub fn dense_inputs(text: &str) -> [f64; DENSE_COUNT] {
    dense_inputs_with(text, &Weights::default())
}

/// [`dense_inputs`] with the heuristic score computed with `weights` (offline evaluation
/// uses it to keep weights tuned on other data out of a measurement).
pub fn dense_inputs_with(text: &str, weights: &Weights) -> [f64; DENSE_COUNT] {
    let features = scoring::extract_features(text);
    let values = features.values();
    let mut out = [0.0; DENSE_COUNT];
    out[..FEATURE_COUNT].copy_from_slice(&values);
    let h = weights.linear(&features);
    out[FEATURE_COUNT] = if h.is_finite() {
        h.clamp(0.0, 1.0)
    } else {
        0.0
    };
    out
}

/// A learned model read from its file bytes (weights stay in place).
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedModel<'a> {
    /// N-gram settings.
    pub ngrams: NgramConfig,
    /// Constant log-odds.
    pub bias: f64,
    /// One i8 step in the table is worth this much log-odds.
    pub scale: f64,
    /// Threshold calibrated with the model (mirrors [`DEFAULT_THRESHOLD`]).
    pub threshold: f64,
    /// Weights of [`dense_inputs`].
    pub dense: [f64; DENSE_COUNT],
    /// `2^bits` quantized weights (i8 stored as bytes).
    table: &'a [u8],
}

/// The log-odds of a query split by source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logits {
    /// Constant part.
    pub bias: f64,
    /// Heuristic features and score.
    pub heuristic: f64,
    /// Word n-grams.
    pub words: f64,
    /// Character n-grams.
    pub chars: f64,
}

impl Logits {
    /// Sum of all parts.
    pub fn total(&self) -> f64 {
        self.bias + self.heuristic + self.words + self.chars
    }
}

fn read_f64(bytes: &[u8], at: usize) -> Result<f64, String> {
    let b: [u8; 8] = bytes
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .ok_or("truncated header")?;
    let v = f64::from_le_bytes(b);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("header value at byte {at} is not finite"))
    }
}

/// Logistic function, safe for any finite input.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl<'a> LearnedModel<'a> {
    /// Parses and validates a weights file.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(String::from(
                "not a learned-router weights file (bad magic)",
            ));
        }
        let m = MAGIC.len();
        let ngrams = NgramConfig {
            bits: bytes[m],
            word_max_n: bytes[m + 1],
            char_min_n: bytes[m + 2],
            char_max_n: bytes[m + 3],
        };
        ngrams.validate()?;
        let mut at = m + 4;
        let mut next = || {
            let v = read_f64(bytes, at);
            at += 8;
            v
        };
        let bias = next()?;
        let scale = next()?;
        let threshold = next()?;
        let mut dense = [0.0; DENSE_COUNT];
        for d in dense.iter_mut() {
            *d = next()?;
        }
        let table = &bytes[HEADER_LEN..];
        if table.len() != 1usize << ngrams.bits {
            return Err(format!(
                "weight table has {} bytes, expected 2^{}",
                table.len(),
                ngrams.bits
            ));
        }
        Ok(LearnedModel {
            ngrams,
            bias,
            scale,
            threshold,
            dense,
            table,
        })
    }

    /// Log-odds of a query, by part.
    pub fn logits(&self, text: &str) -> Logits {
        self.logits_with(text, &Weights::default())
    }

    /// [`Self::logits`] with the heuristic-score input computed with `weights`.
    pub fn logits_with(&self, text: &str, weights: &Weights) -> Logits {
        let dense_in = dense_inputs_with(text, weights);
        let heuristic: f64 = self.dense.iter().zip(dense_in).map(|(w, x)| w * x).sum();
        let (mut word_sum, mut word_n, mut char_sum, mut char_n) = (0i64, 0u64, 0i64, 0u64);
        let table = self.table;
        visit_ngrams(text, &self.ngrams, |group, b| {
            let w = i64::from(table.get(b).map_or(0, |&x| x as i8));
            match group {
                Group::Word => {
                    word_sum += w;
                    word_n += 1;
                }
                Group::Char => {
                    char_sum += w;
                    char_n += 1;
                }
            }
        });
        let part = |sum: i64, n: u64| {
            if n == 0 {
                0.0
            } else {
                self.scale * sum as f64 / (n as f64).sqrt()
            }
        };
        Logits {
            bias: self.bias,
            heuristic,
            words: part(word_sum, word_n),
            chars: part(char_sum, char_n),
        }
    }

    /// Score in [0,1] with the parts' contributions (see [`score`]).
    pub fn score(&self, text: &str) -> ComplexityScore {
        let l = self.logits(text);
        let parts = [l.heuristic, l.words, l.chars];
        // Exact Shapley values of the three parts for v(S) = sigmoid(bias + sum over S):
        // the contributions add up to score - sigmoid(bias), whatever their signs.
        let value = |mask: usize| {
            let mut z = l.bias;
            for (i, p) in parts.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    z += p;
                }
            }
            sigmoid(z)
        };
        let base = sigmoid(l.bias);
        let mut features = Vec::with_capacity(PART_NAMES.len());
        features.push(FeatureContribution {
            name: PART_NAMES[0],
            value: base,
            contribution: base,
        });
        for i in 0..3 {
            let mut phi = 0.0;
            for mask in 0..8usize {
                if mask & (1 << i) != 0 {
                    continue;
                }
                let weight = if mask.count_ones() == 1 {
                    1.0 / 6.0
                } else {
                    1.0 / 3.0
                };
                phi += weight * (value(mask | (1 << i)) - value(mask));
            }
            features.push(FeatureContribution {
                name: PART_NAMES[i + 1],
                value: sigmoid(l.bias + parts[i]),
                contribution: phi,
            });
        }
        let z = l.total();
        ComplexityScore {
            score: if z.is_finite() { sigmoid(z) } else { 0.0 },
            features,
        }
    }
}

static MODEL: OnceLock<Result<LearnedModel<'static>, String>> = OnceLock::new();

/// The shipped model, parsed on first use.
pub fn model() -> Result<&'static LearnedModel<'static>, &'static str> {
    MODEL
        .get_or_init(|| LearnedModel::from_bytes(EMBEDDED_MODEL))
        .as_ref()
        .map_err(String::as_str)
}

/// Scores a query with the shipped model: `score` in [0,1] (higher = route large) and
/// [`PART_NAMES`] as `features`, where `value` is the score from the prior and that part
/// alone and `contribution` its exact Shapley share, so the contributions sum to `score`.
///
/// If the embedded weights were unreadable (a test guards against it), this falls back to
/// the heuristic's [`scoring::score`] rather than failing the request.
pub fn score(text: &str) -> ComplexityScore {
    match model() {
        Ok(m) => m.score(text),
        Err(_) => scoring::score(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_weights_load_and_match_the_threshold_constant() {
        let m = model().unwrap();
        assert_eq!(m.table.len(), 1 << m.ngrams.bits);
        assert!(
            (m.threshold - DEFAULT_THRESHOLD).abs() < 5e-5,
            "file {} vs const {}",
            m.threshold,
            DEFAULT_THRESHOLD
        );
        assert!(m.scale > 0.0);
    }

    #[test]
    fn deterministic_in_range_and_contributions_sum_to_score() {
        for t in [
            "",
            "hi",
            "Prove that there are infinitely many primes.",
            "```rust\nfn main() { println!(\"x\"); }\n```",
            "Which of the following is true?\nA. one\nB. two\nC. three\nD. four\nAnswer:",
        ] {
            let a = score(t);
            assert_eq!(a, score(t));
            assert!((0.0..=1.0).contains(&a.score), "{t}: {}", a.score);
            assert_eq!(a.features.len(), PART_NAMES.len());
            let sum: f64 = a.features.iter().map(|f| f.contribution).sum();
            assert!((sum - a.score).abs() < 1e-9, "{t}: {sum} vs {}", a.score);
            for (f, name) in a.features.iter().zip(PART_NAMES) {
                assert_eq!(f.name, name);
                assert!((0.0..=1.0).contains(&f.value));
            }
        }
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let inputs = [
            String::new(),
            " ".repeat(10),
            "é".repeat(3),
            "日本語のテキストを説明してください".to_string(),
            "🦀🦀🦀 emoji ```".to_string(),
            "a\u{0}b\u{7f}".to_string(),
            "9".repeat(5000),
            "why ".repeat(50_000),
        ];
        for t in &inputs {
            let s = score(t);
            assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score));
        }
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert!(LearnedModel::from_bytes(b"").is_err());
        assert!(LearnedModel::from_bytes(b"LMXR\x01").is_err());
        let good = EMBEDDED_MODEL.to_vec();
        assert!(LearnedModel::from_bytes(&good[..good.len() - 1]).is_err());
        let mut bad_bits = good.clone();
        bad_bits[MAGIC.len()] = 40;
        assert!(LearnedModel::from_bytes(&bad_bits).is_err());
        let mut nan = good.clone();
        nan[MAGIC.len() + 4..MAGIC.len() + 12].copy_from_slice(&f64::NAN.to_le_bytes());
        assert!(LearnedModel::from_bytes(&nan).is_err());
        let mut wrong_magic = good;
        wrong_magic[0] = b'X';
        assert!(LearnedModel::from_bytes(&wrong_magic).is_err());
    }

    #[test]
    fn ngrams_are_normalized_and_counted() {
        let cfg = NgramConfig {
            bits: 16,
            word_max_n: 2,
            char_min_n: 3,
            char_max_n: 4,
        };
        let collect = |t: &str| {
            let mut v = Vec::new();
            visit_ngrams(t, &cfg, |g, b| v.push((g, b)));
            v
        };
        // Case, digits and whitespace runs are folded.
        assert_eq!(collect("Hello  World 12"), collect("hello world\n\t34"));
        let v = collect("ab cd");
        let words = v.iter().filter(|(g, _)| *g == Group::Word).count();
        // 2 unigrams + 1 bigram.
        assert_eq!(words, 3);
        // " ab cd " has 7 chars: 5 trigrams and 4 four-grams.
        assert_eq!(v.len() - words, 9);
        assert!(v.iter().all(|&(_, b)| b < 1 << 16));
        assert!(collect("").is_empty());
        assert!(cfg.validate().is_ok());
        assert!(NgramConfig { bits: 4, ..cfg }.validate().is_err());
        assert!(NgramConfig {
            char_min_n: 5,
            ..cfg
        }
        .validate()
        .is_err());
    }

    #[test]
    fn sigmoid_is_stable() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(1000.0) <= 1.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-12);
    }
}

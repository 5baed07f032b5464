//! The evaluation data: routing-eval records and splits, JSONL parsing, and each prompt's
//! priced outcome under the small and the large model ([`Item`]), gathered in a [`Dataset`].
//!
//! It owns the record format and how prompts are priced (tokens ~ chars / 4 at the embedded
//! price table). It must not read files (the CLI reads them and hands over the text) and
//! must not score or rank prompts (routers and metrics do).

use serde::{Deserialize, Serialize};

use llm_mux_core::pricing::{ModelPrice, PriceTable};
use llm_mux_core::scoring::{self, Features};

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

/// The prices of the small and the large model from the embedded price table.
pub fn prices(small_model: &str, large_model: &str) -> Result<(ModelPrice, ModelPrice), String> {
    let table = PriceTable::embedded();
    let find = |m: &str| {
        table
            .lookup(m, m)
            .ok_or_else(|| format!("model {m:?} is not in the embedded price table"))
    };
    Ok((find(small_model)?, find(large_model)?))
}

/// Records of the selected split and benchmark, with their priced items and the heuristic's
/// features (`items[i]` and `features[i]` belong to `records[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The selected records, in input order.
    pub records: Vec<EvalRecord>,
    /// Quality and cost of each record under each model.
    pub items: Vec<Item>,
    /// The heuristic's features of each prompt.
    pub features: Vec<Features>,
    /// Price of the small model.
    pub small_price: ModelPrice,
    /// Price of the large model.
    pub large_price: ModelPrice,
}

impl Dataset {
    /// Keeps the records of `split` (and `benchmark`, if given), prices them for the two
    /// models and extracts their features. An empty selection or an unknown model is an error.
    pub fn select(
        records: Vec<EvalRecord>,
        split: Split,
        benchmark: Option<&str>,
        small_model: &str,
        large_model: &str,
    ) -> Result<Self, String> {
        let records = filter_records(records, split, benchmark);
        if records.is_empty() {
            return Err(format!(
                "no records for split {}{}",
                split.name(),
                benchmark
                    .map(|b| format!(" and benchmark {b}"))
                    .unwrap_or_default()
            ));
        }
        let (small_price, large_price) = prices(small_model, large_model)?;
        let items = records
            .iter()
            .map(|r| item_from_record(r, &small_price, &large_price))
            .collect();
        let features = records
            .iter()
            .map(|r| scoring::extract_features(&r.prompt))
            .collect();
        Ok(Dataset {
            records,
            items,
            features,
            small_price,
            large_price,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::{calibrate, CalibrationTarget};
    use crate::metrics::curve;
    use crate::test_fixtures::{close, tiny};

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
}

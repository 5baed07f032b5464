//! Choosing the learned router's settings and threshold on dev, by 5-fold cross-validation
//! within dev: the settings grid, out-of-fold scores, the pick by out-of-fold APGR, the
//! threshold keeping 95% of always-large quality, and the final fit on all of dev.
//!
//! It decides with [`crate::training`] (fitting) and [`crate::metrics`] /
//! [`crate::calibration`] (judging); it must not see the test split (the CLI passes dev
//! only), print, or write files: progress goes to the caller's callback.

use llm_mux_core::learned::{self, NgramConfig};
use llm_mux_core::scoring::Weights;

use crate::calibration::{self, CalibrationTarget};
use crate::data::{Dataset, EvalRecord, Item};
use crate::metrics::{self, OperatingPoint, RouterMetrics};
use crate::report::opt_pct;
use crate::training::{self, Example, Target, TrainConfig};

/// Number of cross-validation folds within dev.
pub const FOLDS: usize = 5;

/// The fold of each record (by its id, see [`training::fold_of_id`]).
pub fn folds(records: &[EvalRecord]) -> Vec<usize> {
    records
        .iter()
        .map(|r| training::fold_of_id(&r.id, FOLDS))
        .collect()
}

/// Training examples of the records under `cfg`'s features and target.
/// Each example's `group` is the index of its benchmark among the sorted names.
pub fn examples(records: &[EvalRecord], cfg: &TrainConfig) -> Vec<Example> {
    let mut names: Vec<&str> = records.iter().map(|r| r.benchmark.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    records
        .iter()
        .map(|r| {
            let mut ex = training::example(&r.prompt, r.small.score, r.large.score, cfg);
            ex.group = names.binary_search(&r.benchmark.as_str()).unwrap_or(0);
            ex
        })
        .collect()
}

/// Scores of the learned router on `data` from models that did not see the prompt.
pub fn learned_out_of_fold(data: &Dataset, cfg: &TrainConfig) -> Vec<f64> {
    let folds = folds(&data.records);
    let examples = examples(&data.records, cfg);
    training::out_of_fold(&examples, &folds, FOLDS, cfg)
        .into_iter()
        .map(learned::sigmoid)
        .collect()
}

/// The settings `train` compares by 5-fold cross-validation on dev (in this order; the
/// first best wins ties). The first entry, `base`, is what `--quick` uses.
pub fn train_grid(base: TrainConfig) -> Vec<TrainConfig> {
    let mut grid = Vec::new();
    let mut ngram_options = vec![base.ngrams];
    if base.ngrams.char_min_n > 0 {
        ngram_options.push(NgramConfig {
            char_min_n: 0,
            char_max_n: 0,
            ..base.ngrams
        });
    }
    // The base value of each setting first, so the first entry is `base` itself.
    fn base_first<T: Copy + PartialEq>(base: T, options: &[T]) -> Vec<T> {
        let mut out = vec![base];
        out.extend(options.iter().copied().filter(|&o| o != base));
        out
    }
    for ngrams in ngram_options {
        for table_learning_rate in base_first(base.table_learning_rate, &[0.01, 0.003, 0.03]) {
            for l2 in base_first(base.l2, &[1e-2, 1e-3]) {
                for epochs in base_first(base.epochs, &[5, 2]) {
                    grid.push(TrainConfig {
                        ngrams,
                        l2,
                        epochs,
                        table_learning_rate,
                        ..base
                    });
                }
            }
        }
    }
    // The heuristic's features alone (no n-gram table), for comparison.
    grid.push(TrainConfig { epochs: 0, ..base });
    grid
}

/// One line describing training settings.
pub fn describe(cfg: &TrainConfig) -> String {
    let n = cfg.ngrams;
    let chars = if n.char_min_n == 0 {
        String::from("none")
    } else {
        format!("{}-{}", n.char_min_n, n.char_max_n)
    };
    format!(
        "bits {} words 1-{} chars {} dense epochs {} lr {}{}; table epochs {} lr {} l2 {:e}; target {:?}",
        n.bits,
        n.word_max_n,
        chars,
        cfg.dense_epochs,
        cfg.learning_rate,
        if cfg.sign_constrained { " signs" } else { "" },
        cfg.epochs,
        cfg.table_learning_rate,
        cfg.l2,
        cfg.target
    )
}

/// Pooled and per-benchmark APGR of scores.
pub fn apgr_by_benchmark(
    records: &[EvalRecord],
    items: &[Item],
    scores: &[f64],
) -> Result<(RouterMetrics, Vec<(String, f64)>), String> {
    let all = metrics::evaluate("learned", items, scores)?;
    let mut names: Vec<&str> = records.iter().map(|r| r.benchmark.as_str()).collect();
    names.sort();
    names.dedup();
    let mut per = Vec::new();
    for name in names {
        let idx: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].benchmark == name)
            .collect();
        let it: Vec<Item> = idx.iter().map(|&i| items[i]).collect();
        let sc: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
        per.push((name.to_string(), metrics::evaluate(name, &it, &sc)?.apgr));
    }
    Ok((all, per))
}

/// The out-of-fold result of one grid entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GridResult {
    /// The settings.
    pub config: TrainConfig,
    /// Metrics of the out-of-fold scores over all of dev.
    pub all: RouterMetrics,
    /// Out-of-fold APGR per benchmark, by name.
    pub per_benchmark: Vec<(String, f64)>,
}

impl GridResult {
    /// The row of the `train` table: settings, OOF APGR, per benchmark, share and savings
    /// at 95% quality.
    pub fn table_row(&self) -> String {
        let per_text: Vec<String> = self
            .per_benchmark
            .iter()
            .map(|(n, a)| format!("{n} {a:.3}"))
            .collect();
        format!(
            "| {} | {:.4} | {} | {} | {} |",
            describe(&self.config),
            self.all.apgr,
            per_text.join(", "),
            opt_pct(self.all.at95.map(|p| p.large_share)),
            opt_pct(self.all.at95.map(|p| p.savings)),
        )
    }
}

/// The header of the `train` table (two lines, without a final newline).
pub const TABLE_HEADER: &str =
    "| settings | OOF APGR | per benchmark | share @95% | savings @95% |\n|---|---|---|---|---|";

/// The settings chosen by [`select`], with their out-of-fold scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The winning settings.
    pub config: TrainConfig,
    /// Their out-of-fold APGR on dev.
    pub apgr: f64,
    /// Their out-of-fold scores (probabilities), one per dev record.
    pub oof: Vec<f64>,
    /// The last featurized examples and the settings they were built with, reused by
    /// [`fit_final`] when they match the winner's features.
    examples: Vec<Example>,
    featurized: Option<(NgramConfig, Target, Weights)>,
}

/// Cross-validates every entry of `grid` on `data` (folds from [`folds`]) and keeps the
/// first with the best out-of-fold APGR; `on_result` sees each entry's result as it is done.
pub fn select(
    data: &Dataset,
    folds: &[usize],
    grid: &[TrainConfig],
    mut on_result: impl FnMut(&GridResult),
) -> Result<Selection, String> {
    let mut best: Option<(f64, TrainConfig, Vec<f64>)> = None;
    let mut examples: Vec<Example> = Vec::new();
    let mut featurized: Option<(NgramConfig, Target, Weights)> = None;
    for cfg in grid {
        if featurized != Some((cfg.ngrams, cfg.target, cfg.heuristic)) {
            examples = self::examples(&data.records, cfg);
            featurized = Some((cfg.ngrams, cfg.target, cfg.heuristic));
        }
        let oof: Vec<f64> = training::out_of_fold(&examples, folds, FOLDS, cfg)
            .into_iter()
            .map(learned::sigmoid)
            .collect();
        let (all, per) = apgr_by_benchmark(&data.records, &data.items, &oof)?;
        let apgr = all.apgr;
        on_result(&GridResult {
            config: *cfg,
            all,
            per_benchmark: per,
        });
        if best.as_ref().is_none_or(|b| apgr > b.0 + 1e-12) {
            best = Some((apgr, *cfg, oof));
        }
    }
    let (apgr, config, oof) = best.ok_or("empty grid")?;
    Ok(Selection {
        config,
        apgr,
        oof,
        examples,
        featurized,
    })
}

/// The threshold keeping 95% of always-large quality on out-of-fold scores (how the final
/// model will score unseen prompts), rounded to 4 decimals, and what it yields there.
pub fn threshold_at_95(items: &[Item], oof: &[f64]) -> Result<(f64, OperatingPoint), String> {
    let cal = calibration::calibrate(items, oof, CalibrationTarget::QualityRetained(0.95))?;
    let threshold = (cal.threshold * 10_000.0).round() / 10_000.0;
    Ok((threshold, metrics::at_threshold(items, oof, threshold)))
}

/// Fits the chosen settings on all of `data` and returns the weights file with `threshold`.
pub fn fit_final(data: &Dataset, selection: Selection, threshold: f64) -> Vec<u8> {
    let cfg = selection.config;
    let examples = if selection.featurized == Some((cfg.ngrams, cfg.target, cfg.heuristic)) {
        selection.examples
    } else {
        examples(&data.records, &cfg)
    };
    let all: Vec<usize> = (0..examples.len()).collect();
    let model = training::fit(&examples, &all, &cfg);
    training::write_model(&model, threshold)
}

/// Non-zero weights in a weights file's table.
pub fn nonzero_weights(bytes: &[u8]) -> usize {
    bytes
        .get(learned::HEADER_LEN..)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b != 0)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_starts_with_the_base_and_ends_with_the_dense_only_model() {
        let base = TrainConfig::default();
        let grid = train_grid(base);
        assert_eq!(grid[0], base);
        assert_eq!(grid.len(), 25);
        assert_eq!(grid.last().map(|c| c.epochs), Some(0));
        assert_eq!(
            describe(&base),
            "bits 13 words 1-2 chars 3-3 dense epochs 30 lr 0.1 signs; table epochs 5 lr 0.01 l2 1e-3; target Gain"
        );
        let no_chars = TrainConfig {
            ngrams: NgramConfig {
                char_min_n: 0,
                char_max_n: 0,
                ..base.ngrams
            },
            ..base
        };
        assert_eq!(train_grid(no_chars).len(), 13);
    }
}

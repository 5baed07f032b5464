//! Leave-one-benchmark-out (LOBO) evaluation: how the routers do on a kind of prompt they
//! were never fit or calibrated on.
//!
//! For each benchmark `B` of the data: the heuristic's weights are tuned, the learned
//! router is selected and trained (the `train` procedure) and every router's threshold is
//! calibrated for 95% quality retained, all on the *dev* rows of the *other* benchmarks
//! only; then each router is measured on `B`'s *test* rows: APGR, large share and savings
//! at 95% quality (the best any threshold could do), and what the calibrated threshold
//! actually gives there (large share, quality retained, savings: threshold misfire shows
//! here). Also what the calibrated *share* would give if it were applied as a quantile of
//! `B`'s scores instead of as an absolute score. The random, prompt-length and oracle
//! baselines get the same treatment.
//!
//! The split of rows is [`plan`]; it is the only place that decides which rows fit and
//! which rows evaluate, and the tests check that no row of `B` is ever fit on. This module
//! must not print or write files (the CLI does); progress goes to a callback.

use std::fmt::Write as _;

use serde::Serialize;

use llm_mux_core::learned::{self, LearnedModel};
use llm_mux_core::scoring::{self, Weights};

use crate::calibration::{self, CalibrationTarget};
use crate::data::{Dataset, EvalRecord, Item, Split};
use crate::metrics::{self, OperatingPoint};
use crate::report::{opt_pct, pct};
use crate::selection;
use crate::training::TrainConfig;
use crate::tuning::{self, TuneOptions};

/// Quality retained that every threshold is calibrated for.
pub const TARGET_QUALITY: f64 = 0.95;

/// Which rows fit and which rows evaluate when one benchmark is held out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// The held-out benchmark.
    pub held_out: String,
    /// Indices (into the records given to [`plan`]) of the dev rows of the other benchmarks.
    pub fit: Vec<usize>,
    /// Indices of the held-out benchmark's test rows.
    pub eval: Vec<usize>,
}

/// One fold per benchmark (sorted by name): fit on the other benchmarks' dev rows, evaluate
/// on the held-out benchmark's `eval_split` rows (test for reporting; dev to make choices
/// without looking at test). Needs at least two benchmarks.
pub fn plan(records: &[EvalRecord], eval_split: Split) -> Result<Vec<Fold>, String> {
    let mut names: Vec<&str> = records.iter().map(|r| r.benchmark.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() < 2 {
        return Err(String::from(
            "leave-one-benchmark-out needs at least two benchmarks",
        ));
    }
    let mut folds = Vec::with_capacity(names.len());
    for name in names {
        let fit: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].benchmark != name && Split::Dev.contains(&records[i].split))
            .collect();
        let eval: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].benchmark == name && eval_split.contains(&records[i].split))
            .collect();
        if fit.is_empty() || eval.is_empty() {
            return Err(format!(
                "holding out {name}: {} dev rows of the others, {} {} rows of {name}",
                fit.len(),
                eval_split.name(),
                eval.len()
            ));
        }
        folds.push(Fold {
            held_out: name.to_string(),
            fit,
            eval,
        });
    }
    Ok(folds)
}

/// Settings of a LOBO run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoboOptions {
    /// The learned router's base settings (the first grid entry).
    pub train: TrainConfig,
    /// Only the base settings, no grid search (like `train --quick`).
    pub quick: bool,
    /// The heuristic's weight search.
    pub tune: TuneOptions,
    /// Rows of the held-out benchmark to measure on: `Test` to report, `Dev` to make
    /// choices (never `All`: its dev rows would be measured twice).
    pub eval_split: Split,
}

impl Default for LoboOptions {
    fn default() -> Self {
        LoboOptions {
            train: TrainConfig::default(),
            quick: false,
            tune: TuneOptions::default(),
            eval_split: Split::Test,
        }
    }
}

/// One router (or baseline) on one held-out benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoboRow {
    /// Router or baseline name.
    pub router: String,
    /// APGR on the held-out test rows.
    pub apgr: f64,
    /// The best any threshold could do there: fewest large calls keeping 95% quality.
    pub at95: Option<OperatingPoint>,
    /// Threshold calibrated on the fit rows (`None` for random: it has a share, not a score).
    pub threshold: Option<f64>,
    /// What the calibration gave on the fit rows.
    pub fit_point: OperatingPoint,
    /// What the calibrated threshold (for random: the calibrated share) gives on the held-out
    /// rows.
    pub calibrated: OperatingPoint,
    /// What the calibrated large share gives on the held-out rows when applied as a quantile
    /// of their scores (ties split in expectation).
    pub at_fit_share: OperatingPoint,
    /// The strictest threshold: calibrated for 95% on each fit benchmark alone, the lowest
    /// of those (`None` for random).
    pub strict_threshold: Option<f64>,
    /// What the strictest threshold gives on the held-out rows (for random: the largest of
    /// the per-benchmark shares).
    pub strict: OperatingPoint,
}

/// All routers on one held-out benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoboBenchmark {
    /// The held-out benchmark.
    pub held_out: String,
    /// Dev rows fit and calibrated on (other benchmarks).
    pub fit_rows: usize,
    /// Benchmarks the fit rows come from.
    pub fit_benchmarks: Vec<String>,
    /// Test rows of the held-out benchmark.
    pub eval_rows: usize,
    /// Mean quality of always-small / always-large on the held-out rows.
    pub quality_small: f64,
    /// Mean quality of always-large on the held-out rows.
    pub quality_large: f64,
    /// The learned router's chosen settings.
    pub learned_settings: String,
    /// The routers, then random, length and oracle.
    pub rows: Vec<LoboRow>,
}

/// The whole LOBO result, as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoboReport {
    /// Small model name.
    pub small_model: String,
    /// Large model name.
    pub large_model: String,
    /// Whether the learned router skipped the grid search.
    pub quick: bool,
    /// Split of the held-out benchmark measured on.
    pub eval_split: String,
    /// One entry per held-out benchmark.
    pub benchmarks: Vec<LoboBenchmark>,
}

/// The operating point when the top `share` of prompts by score goes large (ties split in
/// expectation, like the curve).
fn point_at_share(items: &[Item], scores: &[f64], share: f64) -> Result<OperatingPoint, String> {
    let c = metrics::curve(items, scores)?;
    let n = c.len();
    let k = ((share * n as f64).round() as usize).min(n);
    Ok(metrics::point_at(&c, k))
}

/// Scores of the routers under test on some prompts, made by a fit on other prompts.
struct Fitted {
    name: &'static str,
    fit_scores: Vec<f64>,
    eval_scores: Vec<f64>,
}

fn row(
    name: &str,
    fit: &Dataset,
    eval: &Dataset,
    fit_scores: &[f64],
    eval_scores: &[f64],
    threshold_routing: bool,
) -> Result<LoboRow, String> {
    let m = metrics::evaluate(name, &eval.items, eval_scores)?;
    // Per fit benchmark: its own threshold (or share, for random) for 95% quality.
    let mut names: Vec<&str> = fit.records.iter().map(|r| r.benchmark.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut strict_threshold = f64::INFINITY;
    let mut strict_share = 0.0f64;
    for name in names {
        let idx: Vec<usize> = (0..fit.records.len())
            .filter(|&i| fit.records[i].benchmark == name)
            .collect();
        let items: Vec<Item> = idx.iter().map(|&i| fit.items[i]).collect();
        let scores: Vec<f64> = idx.iter().map(|&i| fit_scores[i]).collect();
        if threshold_routing {
            let target = CalibrationTarget::QualityRetained(TARGET_QUALITY);
            let cal = calibration::calibrate(&items, &scores, target)?;
            strict_threshold = strict_threshold.min(cal.threshold);
        } else if let Some(p) = metrics::evaluate(name, &items, &scores)?.at95 {
            strict_share = strict_share.max(p.large_share);
        }
    }
    let (strict_threshold, strict) = if threshold_routing {
        (
            Some(strict_threshold),
            metrics::at_threshold(&eval.items, eval_scores, strict_threshold),
        )
    } else {
        (
            None,
            point_at_share(&eval.items, eval_scores, strict_share)?,
        )
    };
    let (threshold, fit_point, calibrated, at_fit_share) = if threshold_routing {
        let target = CalibrationTarget::QualityRetained(TARGET_QUALITY);
        let cal = calibration::calibrate(&fit.items, fit_scores, target)?;
        let at_fit_share = point_at_share(&eval.items, eval_scores, cal.point.large_share)?;
        (
            Some(cal.threshold),
            cal.point,
            metrics::at_threshold(&eval.items, eval_scores, cal.threshold),
            at_fit_share,
        )
    } else {
        // Random routing has no score to threshold: calibrate the share it sends large
        // (in expectation) on the fit rows and send that share of the held-out rows.
        let fit_point = metrics::evaluate(name, &fit.items, fit_scores)?
            .at95
            .ok_or("no share keeps 95% quality on the fit rows")?;
        let p = point_at_share(&eval.items, eval_scores, fit_point.large_share)?;
        (None, fit_point, p, p)
    };
    Ok(LoboRow {
        router: name.to_string(),
        apgr: m.apgr,
        at95: m.at95,
        threshold,
        fit_point,
        calibrated,
        at_fit_share,
        strict_threshold,
        strict,
    })
}

/// The heuristic with weights tuned on `fit` (from the hand-set prior, like `tune`); scores
/// clamped like the worker's. Also returns the weights.
fn heuristic(fit: &Dataset, eval: &Dataset, options: &TuneOptions) -> (Fitted, Weights) {
    let mut names: Vec<&str> = fit.records.iter().map(|r| r.benchmark.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let groups: Vec<usize> = fit
        .records
        .iter()
        .map(|r| names.binary_search(&r.benchmark.as_str()).unwrap_or(0))
        .collect();
    let res = tuning::tune_weights_by_group(
        &fit.items,
        &fit.features,
        &groups,
        &tuning::prior_weights(),
        options,
    );
    let score = |d: &Dataset, w: &Weights| -> Vec<f64> {
        d.features
            .iter()
            .map(|f| scoring::score_features(f, w).score)
            .collect()
    };
    (
        Fitted {
            name: "heuristic",
            fit_scores: score(fit, &res.weights),
            eval_scores: score(eval, &res.weights),
        },
        res.weights,
    )
}

/// The learned router trained on `fit` exactly like `train` (grid by 5-fold CV unless
/// `quick`, threshold-calibration scores out-of-fold, final fit on all of `fit`), then
/// written, read back and scored like the worker scores it, except that its heuristic-score
/// input uses `heuristic`, the weights tuned on `fit` (the shipped ones saw every benchmark).
fn learned(
    fit: &Dataset,
    eval: &Dataset,
    options: &LoboOptions,
    heuristic: Weights,
) -> Result<(Fitted, String), String> {
    let folds = selection::folds(&fit.records);
    let grid = selection::train_grid(TrainConfig {
        heuristic,
        ..options.train
    });
    let grid = if options.quick { &grid[..1] } else { &grid[..] };
    let chosen = selection::select(fit, &folds, grid, |_| {})?;
    let settings = selection::describe(&chosen.config);
    let oof = chosen.oof.clone();
    let bytes = selection::fit_final(fit, chosen, 0.5);
    let model = LearnedModel::from_bytes(&bytes)?;
    let eval_scores = eval
        .records
        .iter()
        .map(|r| learned::sigmoid(model.logits_with(&r.prompt, &heuristic).total()))
        .collect();
    Ok((
        Fitted {
            name: "learned",
            fit_scores: oof,
            eval_scores,
        },
        settings,
    ))
}

fn subset(
    records: &[EvalRecord],
    idx: &[usize],
    split: Split,
    small_model: &str,
    large_model: &str,
) -> Result<Dataset, String> {
    let recs: Vec<EvalRecord> = idx.iter().map(|&i| records[i].clone()).collect();
    Dataset::select(recs, split, None, small_model, large_model)
}

/// Runs the leave-one-benchmark-out evaluation over `records` (dev and test rows of at
/// least two benchmarks); `progress` hears about each step.
pub fn run(
    records: &[EvalRecord],
    small_model: &str,
    large_model: &str,
    options: &LoboOptions,
    mut progress: impl FnMut(&str),
) -> Result<LoboReport, String> {
    let mut benchmarks = Vec::new();
    if options.eval_split == Split::All {
        return Err(String::from(
            "lobo measures on the test or the dev split, not both",
        ));
    }
    for fold in plan(records, options.eval_split)? {
        let fit = subset(records, &fold.fit, Split::Dev, small_model, large_model)?;
        let eval = subset(
            records,
            &fold.eval,
            options.eval_split,
            small_model,
            large_model,
        )?;
        progress(&format!(
            "holding out {}: fitting on {} dev rows, evaluating on {} {} rows",
            fold.held_out,
            fit.records.len(),
            eval.records.len(),
            options.eval_split.name()
        ));
        let mut fit_benchmarks: Vec<String> =
            fit.records.iter().map(|r| r.benchmark.clone()).collect();
        fit_benchmarks.sort();
        fit_benchmarks.dedup();
        let (h, tuned) = heuristic(&fit, &eval, &options.tune);
        let (l, learned_settings) = learned(&fit, &eval, options, tuned)?;
        progress(&format!("  learned: {learned_settings}"));
        let mut rows = Vec::new();
        for f in [h, l] {
            rows.push(row(
                f.name,
                &fit,
                &eval,
                &f.fit_scores,
                &f.eval_scores,
                true,
            )?);
        }
        rows.push(row(
            "random",
            &fit,
            &eval,
            &metrics::random_scores(fit.items.len()),
            &metrics::random_scores(eval.items.len()),
            false,
        )?);
        for (name, scorer) in [
            (
                "length",
                metrics::length_scores as fn(&[EvalRecord]) -> Vec<f64>,
            ),
            ("oracle", metrics::oracle_scores),
        ] {
            rows.push(row(
                name,
                &fit,
                &eval,
                &scorer(&fit.records),
                &scorer(&eval.records),
                true,
            )?);
        }
        let n = eval.items.len().max(1) as f64;
        benchmarks.push(LoboBenchmark {
            held_out: fold.held_out,
            fit_rows: fit.records.len(),
            fit_benchmarks,
            eval_rows: eval.records.len(),
            quality_small: eval.items.iter().map(|i| i.quality_small).sum::<f64>() / n,
            quality_large: eval.items.iter().map(|i| i.quality_large).sum::<f64>() / n,
            learned_settings,
            rows,
        });
    }
    Ok(LoboReport {
        small_model: small_model.to_string(),
        large_model: large_model.to_string(),
        quick: options.quick,
        eval_split: options.eval_split.name().to_string(),
        benchmarks,
    })
}

/// The LOBO report as Markdown: a summary of held-out APGR, then one table per held-out
/// benchmark.
pub fn markdown(report: &LoboReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Leave-one-benchmark-out: tuned, trained and calibrated (95% quality) on the dev rows \
         of the other benchmarks; measured on the held-out benchmark's {} rows.\n",
        report.eval_split
    );
    // Summary: APGR per held-out benchmark.
    s.push_str("| held-out APGR |");
    for b in &report.benchmarks {
        let _ = write!(s, " {} |", b.held_out);
    }
    s.push_str("\n|---|");
    for _ in &report.benchmarks {
        s.push_str("---|");
    }
    s.push('\n');
    let names: Vec<String> = report
        .benchmarks
        .first()
        .map(|b| b.rows.iter().map(|r| r.router.clone()).collect())
        .unwrap_or_default();
    for name in &names {
        let _ = write!(s, "| {name} |");
        for b in &report.benchmarks {
            let v = b.rows.iter().find(|r| &r.router == name).map(|r| r.apgr);
            match v {
                Some(a) => {
                    let _ = write!(s, " {a:.3} |");
                }
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s.push('\n');
    for b in &report.benchmarks {
        let _ = writeln!(
            s,
            "### held out: {} ({} {} prompts; quality small {:.3}, large {:.3}; fit on {} dev prompts of {})\n",
            b.held_out,
            b.eval_rows,
            report.eval_split,
            b.quality_small,
            b.quality_large,
            b.fit_rows,
            b.fit_benchmarks.join(", ")
        );
        s.push_str(
            "| router | APGR | large share @95% | savings @95% | calibrated threshold | large share at it | quality retained at it | savings at it | quality retained at the fit's share | strictest per-benchmark threshold: large share, quality retained, savings |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &b.rows {
            let threshold = match r.threshold {
                Some(t) if t.is_finite() => format!("{t:.4}"),
                Some(_) => String::from("none large"),
                None => format!("share {}", pct(r.fit_point.large_share)),
            };
            let _ = writeln!(
                s,
                "| {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {}, {}, {} |",
                r.router,
                r.apgr,
                opt_pct(r.at95.map(|p| p.large_share)),
                opt_pct(r.at95.map(|p| p.savings)),
                threshold,
                pct(r.calibrated.large_share),
                pct(r.calibrated.quality_retained),
                pct(r.calibrated.savings),
                pct(r.at_fit_share.quality_retained),
                pct(r.strict.large_share),
                pct(r.strict.quality_retained),
                pct(r.strict.savings),
            );
        }
        let _ = writeln!(s, "\nlearned settings: {}\n", b.learned_settings);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ModelOutcome;

    fn rec(id: &str, benchmark: &str, split: &str, prompt: &str, s: f64, l: f64) -> EvalRecord {
        let o = |score: f64| ModelOutcome {
            model: String::from("m"),
            score,
            output_chars: Some(40),
        };
        EvalRecord {
            id: id.to_string(),
            benchmark: benchmark.to_string(),
            category: String::from("c"),
            split: split.to_string(),
            prompt: prompt.to_string(),
            small: o(s),
            large: o(l),
        }
    }

    fn toy() -> Vec<EvalRecord> {
        let mut out = Vec::new();
        let prompts = [
            (
                "Prove that the sum of two odd integers is even, step by step.",
                0.0,
                1.0,
            ),
            (
                "Explain why the sky is blue and derive the scattering law.",
                0.0,
                1.0,
            ),
            ("Hello there!", 1.0, 1.0),
            ("What is the capital of France?", 1.0, 1.0),
            (
                "Compare merge sort and quicksort; analyze their complexity.",
                0.0,
                1.0,
            ),
            ("Thanks!", 1.0, 0.0),
        ];
        for b in ["alpha", "beta", "gamma"] {
            for (i, (p, s, l)) in prompts.iter().enumerate() {
                for split in ["dev", "test"] {
                    out.push(rec(&format!("{b}-{split}-{i}"), b, split, p, *s, *l));
                }
            }
        }
        out
    }

    #[test]
    fn held_out_rows_are_never_fit_on() {
        let records = toy();
        let folds = plan(&records, Split::Test).unwrap();
        // Measuring on dev rows: still never the held-out benchmark's rows in the fit.
        for f in plan(&records, Split::Dev).unwrap() {
            assert!(f.fit.iter().all(|&i| records[i].benchmark != f.held_out));
            assert!(f.eval.iter().all(|&i| records[i].split == "dev"));
        }
        assert_eq!(
            folds
                .iter()
                .map(|f| f.held_out.as_str())
                .collect::<Vec<_>>(),
            ["alpha", "beta", "gamma"]
        );
        for f in &folds {
            // No row of the held-out benchmark (dev or test) is fit or calibrated on,
            // fit rows are dev rows only, evaluated rows are the held-out test rows only.
            assert!(f.fit.iter().all(|&i| records[i].benchmark != f.held_out));
            assert!(f.fit.iter().all(|&i| records[i].split == "dev"));
            assert!(f
                .eval
                .iter()
                .all(|&i| records[i].benchmark == f.held_out && records[i].split == "test"));
            // And every dev row of the other benchmarks is used, every held-out test row too.
            assert_eq!(f.fit.len(), 12);
            assert_eq!(f.eval.len(), 6);
            assert!(f.fit.iter().all(|i| !f.eval.contains(i)));
        }
    }

    #[test]
    fn one_benchmark_or_an_empty_side_is_an_error() {
        let records: Vec<EvalRecord> = toy()
            .into_iter()
            .filter(|r| r.benchmark == "alpha")
            .collect();
        assert!(plan(&records, Split::Test).is_err());
        let no_test: Vec<EvalRecord> = toy()
            .into_iter()
            .filter(|r| r.benchmark != "beta" || r.split == "dev")
            .collect();
        assert!(plan(&no_test, Split::Test).is_err());
    }

    #[test]
    fn run_reports_every_router_and_baseline_per_held_out_benchmark() {
        let records = toy();
        let options = LoboOptions {
            quick: true,
            train: TrainConfig {
                ngrams: learned::NgramConfig {
                    bits: 10,
                    ..TrainConfig::default().ngrams
                },
                dense_epochs: 2,
                epochs: 1,
                ..TrainConfig::default()
            },
            ..LoboOptions::default()
        };
        let mut steps = 0;
        let report = run(
            &records,
            "mistral-small-latest",
            "mistral-large-latest",
            &options,
            |_| steps += 1,
        )
        .unwrap();
        assert!(steps >= 3);
        assert_eq!(report.benchmarks.len(), 3);
        for b in &report.benchmarks {
            assert_eq!(b.eval_rows, 6);
            assert_eq!(b.fit_rows, 12);
            assert!(!b.fit_benchmarks.contains(&b.held_out));
            let names: Vec<&str> = b.rows.iter().map(|r| r.router.as_str()).collect();
            assert_eq!(
                names,
                ["heuristic", "learned", "random", "length", "oracle"]
            );
            let random = &b.rows[2];
            assert!((random.apgr - 0.5).abs() < 1e-9);
            assert!(random.threshold.is_none());
            // Same data in every benchmark: the oracle's calibrated threshold transfers.
            let oracle = &b.rows[4];
            assert!(oracle.calibrated.quality_retained >= TARGET_QUALITY - 1e-9);
        }
        let md = markdown(&report);
        assert!(md.contains("| held-out APGR | alpha | beta | gamma |"));
        assert!(md.contains("### held out: gamma"));
    }
}

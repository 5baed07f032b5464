//! `llm-mux-eval`: offline evaluation, tuning, training and threshold calibration of the
//! routers (the heuristic `scoring` and the learned `learned` model).
//!
//! Native-only tool; arguments are parsed with `std::env::args` to keep dependencies lean.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use llm_mux_core::learned;
use llm_mux_core::pricing::{ModelPrice, PriceTable};
use llm_mux_core::scoring::{self, Features, Weights};
use llm_mux_eval::eval::{
    self, CalibrationTarget, EvalRecord, Item, OperatingPoint, PlotSeries, RouterMetrics, Split,
    TuneOptions,
};
use llm_mux_eval::training as train;

const USAGE: &str = "\
usage:
  llm-mux-eval report    [--split test] [--benchmark NAME] [--json OUT] [--markdown OUT] [--svg OUT]
                         [--threshold T] [--learned-threshold T] [--small-model M] [--large-model M] PATH...
  llm-mux-eval tune      [--split dev] [--regularization R] [--small-model M] [--large-model M] PATH...
  llm-mux-eval train     [--out data/learned_router.bin] [--quick] [--bits N] [--chars MIN-MAX|none]
                         [--seed N] PATH...
  llm-mux-eval calibrate (--target-large-share X | --target-quality X | --max-cost-per-1k USD)
                         [--router heuristic|learned] [--split dev] [--benchmark NAME]
                         [--small-model M] [--large-model M] PATH...
  llm-mux-eval speed
PATH is a routing-eval JSONL file or a directory of them (all *.jsonl).
report evaluates both routers at their default thresholds (override with --threshold for the
heuristic, --learned-threshold for the learned one) and the random, length and oracle baselines.
train fits the learned router on the dev split only (5-fold CV within dev picks the settings
from a fixed grid; --quick skips the grid) and writes the weights file. --bits, --chars
and --seed replace the default table size, character n-gram range and shuffle seed (for
size trade-off and noise studies).
calibrate --router learned on dev scores each prompt out-of-fold (the model was trained on dev).
Models are priced from the embedded price table (default mistral-small-latest / mistral-large-latest).";

/// Which router to score with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Router {
    /// `scoring::score` (hand-built features, tuned linear weights).
    Heuristic,
    /// `learned::score` (hashed n-grams + heuristic features, logistic).
    Learned,
}

impl Router {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "heuristic" => Ok(Router::Heuristic),
            "learned" => Ok(Router::Learned),
            other => Err(format!(
                "unknown router {other:?} (expected heuristic or learned)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Router::Heuristic => "heuristic",
            Router::Learned => "learned",
        }
    }

    fn default_threshold(self) -> f64 {
        match self {
            Router::Heuristic => scoring::DEFAULT_THRESHOLD,
            Router::Learned => learned::DEFAULT_THRESHOLD,
        }
    }

    /// Scores of the router as the worker computes them.
    fn scores(self, data: &Dataset) -> Vec<f64> {
        match self {
            Router::Heuristic => heuristic_scores(&data.features),
            Router::Learned => data
                .records
                .iter()
                .map(|r| learned::score(&r.prompt).score)
                .collect(),
        }
    }
}

/// Parsed command line.
struct Args {
    command: String,
    split: Option<Split>,
    benchmark: Option<String>,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    out: Option<PathBuf>,
    quick: bool,
    bits: Option<u8>,
    chars: Option<(u8, u8)>,
    seed: Option<u64>,
    router: Router,
    threshold: Option<f64>,
    learned_threshold: Option<f64>,
    small_model: String,
    large_model: String,
    regularization: Option<f64>,
    target: Option<CalibrationTarget>,
    paths: Vec<PathBuf>,
}

fn parse_number(flag: &str, value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{flag} expects a number, got {value:?}"))
}

/// `MIN-MAX` (e.g. `3-5`) or `none` (no character n-grams).
fn parse_char_range(v: &str) -> Result<(u8, u8), String> {
    if v == "none" {
        return Ok((0, 0));
    }
    let bad = || format!("--chars expects MIN-MAX or none, got {v:?}");
    let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
    let lo = lo.parse::<u8>().map_err(|_| bad())?;
    let hi = hi.parse::<u8>().map_err(|_| bad())?;
    if lo == 0 {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut it = raw.iter();
    let command = it.next().cloned().ok_or("missing subcommand")?;
    if !matches!(
        command.as_str(),
        "report" | "tune" | "train" | "calibrate" | "speed"
    ) {
        return Err(format!("unknown subcommand {command:?}"));
    }
    let mut args = Args {
        command,
        split: None,
        benchmark: None,
        json: None,
        markdown: None,
        svg: None,
        out: None,
        quick: false,
        bits: None,
        chars: None,
        seed: None,
        router: Router::Heuristic,
        threshold: None,
        learned_threshold: None,
        small_model: String::from("mistral-small-latest"),
        large_model: String::from("mistral-large-latest"),
        regularization: None,
        target: None,
        paths: Vec::new(),
    };
    while let Some(a) = it.next() {
        if !a.starts_with("--") {
            args.paths.push(PathBuf::from(a));
            continue;
        }
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} expects a value"))
        };
        match a.as_str() {
            "--split" => args.split = Some(Split::parse(&value()?)?),
            "--benchmark" => args.benchmark = Some(value()?),
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--markdown" => args.markdown = Some(PathBuf::from(value()?)),
            "--svg" => args.svg = Some(PathBuf::from(value()?)),
            "--out" => args.out = Some(PathBuf::from(value()?)),
            "--quick" => args.quick = true,
            "--bits" => {
                let v = value()?;
                args.bits = Some(
                    v.parse::<u8>()
                        .map_err(|_| format!("--bits expects an integer, got {v:?}"))?,
                );
            }
            "--chars" => args.chars = Some(parse_char_range(&value()?)?),
            "--seed" => {
                let v = value()?;
                args.seed = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("--seed expects an integer, got {v:?}"))?,
                );
            }
            "--router" => args.router = Router::parse(&value()?)?,
            "--threshold" => args.threshold = Some(parse_number(a, &value()?)?),
            "--learned-threshold" => args.learned_threshold = Some(parse_number(a, &value()?)?),
            "--small-model" => args.small_model = value()?,
            "--large-model" => args.large_model = value()?,
            "--regularization" => args.regularization = Some(parse_number(a, &value()?)?),
            "--target-large-share" | "--target-quality" | "--max-cost-per-1k" => {
                if args.target.is_some() {
                    return Err(String::from("give exactly one calibration target"));
                }
                let v = parse_number(a, &value()?)?;
                let fraction = a != "--max-cost-per-1k";
                if (fraction && !(0.0..=1.0).contains(&v)) || v < 0.0 {
                    return Err(format!(
                        "{a} must be in [0,1] (or >= 0 for a cost), got {v}"
                    ));
                }
                args.target = Some(match a.as_str() {
                    "--target-large-share" => CalibrationTarget::LargeShare(v),
                    "--target-quality" => CalibrationTarget::QualityRetained(v),
                    _ => CalibrationTarget::MaxCostPer1k(v),
                });
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.command != "speed" && args.paths.is_empty() {
        return Err(String::from("no data PATH given"));
    }
    if args.command == "calibrate" && args.target.is_none() {
        return Err(String::from(
            "calibrate needs --target-large-share, --target-quality or --max-cost-per-1k",
        ));
    }
    Ok(args)
}

/// Reads a JSONL file, or every `*.jsonl` in a directory (sorted by name).
fn load_path(path: &Path) -> Result<Vec<EvalRecord>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries {
            let p = entry
                .map_err(|e| format!("{}: {e}", path.display()))?
                .path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(format!("{}: no *.jsonl files", path.display()));
        }
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.extend(eval::parse_jsonl(&text, &f.display().to_string())?);
    }
    Ok(out)
}

/// Records of the selected split and benchmark, with their priced items and features.
struct Dataset {
    records: Vec<EvalRecord>,
    items: Vec<Item>,
    features: Vec<Features>,
}

fn load_dataset(args: &Args, default_split: Split) -> Result<Dataset, String> {
    let mut records = Vec::new();
    for p in &args.paths {
        records.extend(load_path(p)?);
    }
    let split = args.split.unwrap_or(default_split);
    let records = eval::filter_records(records, split, args.benchmark.as_deref());
    if records.is_empty() {
        return Err(format!(
            "no records for split {}{}",
            split.name(),
            args.benchmark
                .as_deref()
                .map(|b| format!(" and benchmark {b}"))
                .unwrap_or_default()
        ));
    }
    let (small, large) = prices(args)?;
    let items = records
        .iter()
        .map(|r| eval::item_from_record(r, &small, &large))
        .collect();
    let features = records
        .iter()
        .map(|r| scoring::extract_features(&r.prompt))
        .collect();
    Ok(Dataset {
        records,
        items,
        features,
    })
}

fn prices(args: &Args) -> Result<(ModelPrice, ModelPrice), String> {
    let table = PriceTable::embedded();
    let find = |m: &str| {
        table
            .lookup(m, m)
            .ok_or_else(|| format!("model {m:?} is not in the embedded price table"))
    };
    Ok((find(&args.small_model)?, find(&args.large_model)?))
}

/// The heuristic's scores (calibrated default weights, clamped like in the worker).
fn heuristic_scores(features: &[Features]) -> Vec<f64> {
    let w = Weights::default();
    features
        .iter()
        .map(|f| scoring::score_features(f, &w).score)
        .collect()
}

/// A router at a fixed threshold.
#[derive(serde::Serialize)]
struct ThresholdResult {
    router: String,
    threshold: f64,
    point: OperatingPoint,
}

#[derive(serde::Serialize)]
struct BenchmarkReport {
    benchmark: String,
    routers: Vec<RouterMetrics>,
    /// Each learned/heuristic router at its default (or given) threshold.
    at_threshold: Vec<ThresholdResult>,
    /// Always-large at its cost, for the "10k requests" comparison.
    always_large: OperatingPoint,
}

#[derive(serde::Serialize)]
struct Report {
    split: String,
    small_model: String,
    large_model: String,
    small_price: ModelPrice,
    large_price: ModelPrice,
    price_table_as_of: String,
    benchmarks: Vec<BenchmarkReport>,
}

/// The routers compared in `report`, with their scores and thresholds.
struct RouterScores {
    router: Router,
    threshold: f64,
    scores: Vec<f64>,
}

fn report_for(
    name: &str,
    records: &[EvalRecord],
    items: &[Item],
    routers: &[(Router, f64, Vec<f64>)],
) -> Result<BenchmarkReport, String> {
    let mut metrics = Vec::new();
    let mut at_threshold = Vec::new();
    for (router, threshold, scores) in routers {
        metrics.push(eval::evaluate(router.name(), items, scores)?);
        at_threshold.push(ThresholdResult {
            router: router.name().to_string(),
            threshold: *threshold,
            point: eval::at_threshold(items, scores, *threshold),
        });
    }
    metrics.push(eval::evaluate(
        "random",
        items,
        &eval::random_scores(items.len()),
    )?);
    metrics.push(eval::evaluate(
        "length",
        items,
        &eval::length_scores(records),
    )?);
    metrics.push(eval::evaluate(
        "oracle",
        items,
        &eval::oracle_scores(records),
    )?);
    Ok(BenchmarkReport {
        benchmark: name.to_string(),
        routers: metrics,
        at_threshold,
        always_large: eval::at_threshold(items, &eval::random_scores(items.len()), 0.0),
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| String::from("-"))
}

fn markdown(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Split `{}`; prices {} {}/{} and {} {}/{} USD per 1M in/out tokens (table {}).\n",
        report.split,
        report.small_model,
        report.small_price.input,
        report.small_price.output,
        report.large_model,
        report.large_price.input,
        report.large_price.output,
        report.price_table_as_of
    );
    for b in &report.benchmarks {
        let first = b.routers.first();
        let _ = writeln!(
            s,
            "### {} ({} prompts; quality small {:.3}, large {:.3})\n",
            b.benchmark,
            first.map(|r| r.prompts).unwrap_or(0),
            first.map(|r| r.quality_small).unwrap_or(0.0),
            first.map(|r| r.quality_large).unwrap_or(0.0),
        );
        s.push_str(
            "| router | APGR | CPT(50%) | CPT(80%) | large share @95% | savings @95% | large share @98% | savings @98% |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for r in &b.routers {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {} | {} | {} | {} | {} | {} |",
                r.router,
                r.apgr,
                opt_pct(r.cpt50),
                opt_pct(r.cpt80),
                opt_pct(r.at95.map(|p| p.large_share)),
                opt_pct(r.at95.map(|p| p.savings)),
                opt_pct(r.at98.map(|p| p.large_share)),
                opt_pct(r.at98.map(|p| p.savings)),
            );
        }
        s.push_str(
            "\n| at default threshold | threshold | large share | quality | quality retained | PGR | savings | USD per 10k requests |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        let al = &b.always_large;
        let _ = writeln!(
            s,
            "| always large | - | 100.0% | {:.3} | 100.0% | 1.000 | 0.0% | {:.3} |",
            al.quality,
            al.cost_per_1k * 10.0
        );
        for t in &b.at_threshold {
            let p = &t.point;
            let _ = writeln!(
                s,
                "| {} | {:.4} | {} | {:.3} | {} | {:.3} | {} | {:.3} |",
                t.router,
                t.threshold,
                pct(p.large_share),
                p.quality,
                pct(p.quality_retained),
                p.pgr,
                pct(p.savings),
                p.cost_per_1k * 10.0
            );
        }
        s.push('\n');
    }
    s
}

const ROUTER_COLORS: [&str; 2] = ["#1f77b4", "#d62728"];

/// The quality-vs-large-share chart of one benchmark (or all).
fn plot(
    title: &str,
    records: &[EvalRecord],
    items: &[Item],
    routers: &[(Router, f64, Vec<f64>)],
) -> Result<String, String> {
    let mut series = Vec::new();
    for (i, (router, threshold, scores)) in routers.iter().enumerate() {
        let c = eval::curve(items, scores)?;
        let p = eval::at_threshold(items, scores, *threshold);
        series.push(PlotSeries {
            name: router.name().to_string(),
            color: ROUTER_COLORS[i % ROUTER_COLORS.len()],
            dashed: false,
            points: eval::curve_points(&c, 400),
            marker: Some((p.large_share, p.quality)),
        });
    }
    let baselines: [(&str, &'static str, Vec<f64>); 3] = [
        ("prompt length", "#2ca02c", eval::length_scores(records)),
        ("random", "#7f7f7f", eval::random_scores(items.len())),
        ("oracle", "#000000", eval::oracle_scores(records)),
    ];
    for (name, color, scores) in baselines {
        let c = eval::curve(items, &scores)?;
        series.push(PlotSeries {
            name: name.to_string(),
            color,
            dashed: true,
            points: eval::curve_points(&c, 400),
            marker: None,
        });
    }
    let n = items.len().max(1) as f64;
    let q1 = items.iter().map(|it| it.quality_large).sum::<f64>() / n;
    Ok(eval::quality_share_svg(
        title,
        &series,
        Some((0.95 * q1, "95% of always-large")),
    ))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn cmd_report(args: &Args) -> Result<(), String> {
    let data = load_dataset(args, Split::Test)?;
    let split = args.split.unwrap_or(Split::Test);
    let routers: Vec<RouterScores> = [
        (Router::Heuristic, args.threshold),
        (Router::Learned, args.learned_threshold),
    ]
    .into_iter()
    .map(|(router, t)| RouterScores {
        router,
        threshold: t.unwrap_or(router.default_threshold()),
        scores: router.scores(&data),
    })
    .collect();
    let (small_price, large_price) = prices(args)?;
    let mut names: Vec<String> = data.records.iter().map(|r| r.benchmark.clone()).collect();
    names.sort();
    names.dedup();
    let mut groups: Vec<(String, Vec<usize>)> = names
        .iter()
        .map(|name| {
            let idx = (0..data.records.len())
                .filter(|&i| &data.records[i].benchmark == name)
                .collect();
            (name.clone(), idx)
        })
        .collect();
    if names.len() > 1 {
        groups.push((String::from("all"), (0..data.records.len()).collect()));
    }
    let mut benchmarks = Vec::new();
    for (name, idx) in &groups {
        let recs: Vec<EvalRecord> = idx.iter().map(|&i| data.records[i].clone()).collect();
        let items: Vec<Item> = idx.iter().map(|&i| data.items[i]).collect();
        let rs: Vec<(Router, f64, Vec<f64>)> = routers
            .iter()
            .map(|r| {
                (
                    r.router,
                    r.threshold,
                    idx.iter().map(|&i| r.scores[i]).collect(),
                )
            })
            .collect();
        benchmarks.push(report_for(name, &recs, &items, &rs)?);
        if let Some(svg_path) = &args.svg {
            let path = if name == "all" || names.len() == 1 {
                svg_path.clone()
            } else {
                let stem = svg_path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                svg_path.with_file_name(format!("{stem}-{name}.svg"))
            };
            let title = format!(
                "{} ({} split, {} prompts): quality vs share of large calls",
                if name == "all" {
                    "all benchmarks"
                } else {
                    name
                },
                split.name(),
                items.len()
            );
            write_file(&path, &plot(&title, &recs, &items, &rs)?)?;
            eprintln!("wrote {}", path.display());
        }
    }
    let report = Report {
        split: split.name().to_string(),
        small_model: args.small_model.clone(),
        large_model: args.large_model.clone(),
        small_price,
        large_price,
        price_table_as_of: PriceTable::embedded().as_of,
        benchmarks,
    };
    let md = markdown(&report);
    print!("{md}");
    if let Some(p) = &args.markdown {
        write_file(p, &md)?;
    }
    if let Some(p) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        write_file(p, &json)?;
    }
    Ok(())
}

fn cmd_tune(args: &Args) -> Result<(), String> {
    let split = args.split.unwrap_or(Split::Dev);
    if split != Split::Dev {
        return Err(String::from(
            "tune only runs on --split dev: the test split is for reporting",
        ));
    }
    let data = load_dataset(args, Split::Dev)?;
    let mut options = TuneOptions::default();
    if let Some(r) = args.regularization {
        options.regularization = r;
    }
    let start = eval::prior_weights();
    let started = Instant::now();
    let res = eval::tune_weights(&data.items, &data.features, &start, &options);
    let tuned_scores: Vec<f64> = data
        .features
        .iter()
        .map(|f| scoring::score_features(f, &res.weights).score)
        .collect();
    let clamped = eval::evaluate("tuned", &data.items, &tuned_scores)?;
    println!(
        "// tuned on {} dev prompts in {:.1}s, {} rounds, regularization {}",
        data.items.len(),
        started.elapsed().as_secs_f64(),
        res.rounds,
        options.regularization
    );
    println!(
        "// dev APGR: start {:.4} -> tuned {:.4} (clamped scores {:.4}); objective {:.4}",
        res.start_apgr, res.apgr, clamped.apgr, res.objective
    );
    println!("{}", eval::weights_as_rust(&res.weights));
    Ok(())
}

fn cmd_calibrate(args: &Args) -> Result<(), String> {
    let split = args.split.unwrap_or(Split::Dev);
    if split == Split::Test {
        eprintln!("warning: calibrating on the test split; report numbers will be optimistic");
    }
    let data = load_dataset(args, Split::Dev)?;
    let target = args.target.ok_or("missing calibration target")?;
    let scores = if args.router == Router::Learned && split == Split::Dev {
        // The shipped model was trained on dev: its dev scores are in-sample and far too
        // confident. Score each dev prompt with a model that did not see it instead.
        eprintln!(
            "note: dev is the learned router's training split; using out-of-fold scores \
             ({FOLDS}-fold retraining with the default settings, as `train` does)"
        );
        learned_out_of_fold(&data, &base_config(args)?)
    } else {
        args.router.scores(&data)
    };
    let cal = eval::calibrate(&data.items, &scores, target)?;
    let p = cal.point;
    println!(
        "router {}, target {target:?} on {} {} prompts",
        args.router.name(),
        data.items.len(),
        split.name()
    );
    println!("threshold = {:.6}", cal.threshold);
    println!(
        "large share {}, quality {:.4} ({} of always-large), PGR {:.3}, savings {}, {:.4} USD per 1k queries",
        pct(p.large_share),
        p.quality,
        pct(p.quality_retained),
        p.pgr,
        pct(p.savings),
        p.cost_per_1k
    );
    Ok(())
}

/// Scores of the learned router on `data` from models that did not see the prompt.
fn learned_out_of_fold(data: &Dataset, cfg: &train::TrainConfig) -> Vec<f64> {
    let folds: Vec<usize> = data
        .records
        .iter()
        .map(|r| train::fold_of_id(&r.id, FOLDS))
        .collect();
    let examples: Vec<train::Example> = data
        .records
        .iter()
        .map(|r| train::example(&r.prompt, r.small.score, r.large.score, cfg))
        .collect();
    train::out_of_fold(&examples, &folds, FOLDS, cfg)
        .into_iter()
        .map(learned::sigmoid)
        .collect()
}

/// The default training settings with the command line's `--bits` / `--chars` applied.
fn base_config(args: &Args) -> Result<train::TrainConfig, String> {
    let mut cfg = train::TrainConfig::default();
    if let Some(bits) = args.bits {
        cfg.ngrams.bits = bits;
    }
    if let Some((lo, hi)) = args.chars {
        cfg.ngrams.char_min_n = lo;
        cfg.ngrams.char_max_n = hi;
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    cfg.ngrams.validate()?;
    Ok(cfg)
}

/// Number of cross-validation folds within dev.
const FOLDS: usize = 5;

/// The settings `train` compares by 5-fold cross-validation on dev (in this order; the
/// first best wins ties). The first entry, `base`, is what `--quick` uses.
fn train_grid(base: train::TrainConfig) -> Vec<train::TrainConfig> {
    use learned::NgramConfig;
    use train::TrainConfig;
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

fn describe(cfg: &train::TrainConfig) -> String {
    let n = cfg.ngrams;
    let chars = if n.char_min_n == 0 {
        String::from("none")
    } else {
        format!("{}-{}", n.char_min_n, n.char_max_n)
    };
    format!(
        "bits {} words 1-{} chars {} dense epochs {} lr {}; table epochs {} lr {} l2 {:e}; target {:?}",
        n.bits,
        n.word_max_n,
        chars,
        cfg.dense_epochs,
        cfg.learning_rate,
        cfg.epochs,
        cfg.table_learning_rate,
        cfg.l2,
        cfg.target
    )
}

/// Pooled and per-benchmark APGR of scores.
fn apgr_by_benchmark(
    records: &[EvalRecord],
    items: &[Item],
    scores: &[f64],
) -> Result<(RouterMetrics, Vec<(String, f64)>), String> {
    let all = eval::evaluate("learned", items, scores)?;
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
        per.push((name.to_string(), eval::evaluate(name, &it, &sc)?.apgr));
    }
    Ok((all, per))
}

fn cmd_train(args: &Args) -> Result<(), String> {
    if args.split.is_some_and(|s| s != Split::Dev) {
        return Err(String::from(
            "train only uses --split dev: the test split is for reporting",
        ));
    }
    let data = load_dataset(args, Split::Dev)?;
    let started = Instant::now();
    let folds: Vec<usize> = data
        .records
        .iter()
        .map(|r| train::fold_of_id(&r.id, FOLDS))
        .collect();
    let grid = train_grid(base_config(args)?);
    let grid = if args.quick { &grid[..1] } else { &grid[..] };
    let heuristic = eval::evaluate("heuristic", &data.items, &heuristic_scores(&data.features))?;
    println!(
        "dev: {} prompts, {FOLDS}-fold CV; heuristic dev APGR {:.4} (in-sample: it was tuned on dev)",
        data.records.len(),
        heuristic.apgr
    );
    println!("| settings | OOF APGR | per benchmark | share @95% | savings @95% |");
    println!("|---|---|---|---|---|");
    let mut best: Option<(f64, train::TrainConfig, Vec<f64>)> = None;
    let mut examples: Vec<train::Example> = Vec::new();
    let mut featurized: Option<(learned::NgramConfig, train::Target)> = None;
    for cfg in grid {
        if featurized != Some((cfg.ngrams, cfg.target)) {
            examples = data
                .records
                .iter()
                .map(|r| train::example(&r.prompt, r.small.score, r.large.score, cfg))
                .collect();
            featurized = Some((cfg.ngrams, cfg.target));
        }
        let oof: Vec<f64> = train::out_of_fold(&examples, &folds, FOLDS, cfg)
            .into_iter()
            .map(learned::sigmoid)
            .collect();
        let (all, per) = apgr_by_benchmark(&data.records, &data.items, &oof)?;
        let per_text: Vec<String> = per.iter().map(|(n, a)| format!("{n} {a:.3}")).collect();
        println!(
            "| {} | {:.4} | {} | {} | {} |",
            describe(cfg),
            all.apgr,
            per_text.join(", "),
            opt_pct(all.at95.map(|p| p.large_share)),
            opt_pct(all.at95.map(|p| p.savings)),
        );
        if best.as_ref().is_none_or(|b| all.apgr > b.0 + 1e-12) {
            best = Some((all.apgr, *cfg, oof));
        }
    }
    let (best_apgr, cfg, oof) = best.ok_or("empty grid")?;
    println!("\nchosen: {} (OOF APGR {best_apgr:.4})", describe(&cfg));
    // Threshold from out-of-fold scores: how the final model will score unseen prompts.
    let cal = eval::calibrate(&data.items, &oof, CalibrationTarget::QualityRetained(0.95))?;
    let threshold = (cal.threshold * 10_000.0).round() / 10_000.0;
    let p = eval::at_threshold(&data.items, &oof, threshold);
    println!(
        "threshold for 95% quality on OOF dev scores: {threshold:.4} -> large share {}, quality retained {}, savings {}",
        pct(p.large_share),
        pct(p.quality_retained),
        pct(p.savings)
    );
    if featurized != Some((cfg.ngrams, cfg.target)) {
        examples = data
            .records
            .iter()
            .map(|r| train::example(&r.prompt, r.small.score, r.large.score, &cfg))
            .collect();
    }
    let all: Vec<usize> = (0..examples.len()).collect();
    let model = train::fit(&examples, &all, &cfg);
    let bytes = train::write_model(&model, threshold);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/learned_router.bin"));
    std::fs::write(&out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    let nonzero = bytes[learned::HEADER_LEN..]
        .iter()
        .filter(|&&b| b != 0)
        .count();
    println!(
        "wrote {} ({} bytes, {} non-zero weights) in {:.1}s",
        out.display(),
        bytes.len(),
        nonzero,
        started.elapsed().as_secs_f64()
    );
    println!("set in src/learned.rs: pub const DEFAULT_THRESHOLD: f64 = {threshold:.4};");
    Ok(())
}

fn speed_text(size: usize) -> String {
    let paragraph = "Explain step by step why the integral of 1/x from 1 to e equals 1, then \
        compare it with the sum of 1/k for k = 1..n; write a Python function `def h(n): \
        return sum(1/k for k in range(1, n+1))` and analyze its complexity. ";
    let mut text = String::new();
    while text.len() < size {
        text.push_str(paragraph);
    }
    let mut cut = size;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

fn cmd_speed() -> Result<(), String> {
    // Load the model outside the timed loop (the worker loads it once per isolate).
    learned::model().map_err(|e| format!("learned model: {e}"))?;
    println!("| router | input | ns per query | ns per KB |");
    println!("|---|---|---|---|");
    type ScoreFn = fn(&str) -> scoring::ComplexityScore;
    let routers: [(&str, ScoreFn); 2] =
        [("heuristic", scoring::score), ("learned", learned::score)];
    for (name, score) in routers {
        for size in [100usize, 1024, 8 * 1024, 32 * 1024] {
            let text = speed_text(size);
            let iterations = (20_000_000 / size).clamp(200, 200_000);
            let mut sink = 0.0;
            // Warm up, then time.
            for _ in 0..iterations / 10 {
                sink += score(std::hint::black_box(&text)).score;
            }
            let start = Instant::now();
            for _ in 0..iterations {
                sink += score(std::hint::black_box(&text)).score;
            }
            let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
            std::hint::black_box(sink);
            println!(
                "| {name} | {} B | {:.0} | {:.0} |",
                size,
                ns,
                ns / (size as f64 / 1024.0)
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.is_empty() || raw.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return if raw.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let args = match parse_args(&raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "report" => cmd_report(&args),
        "tune" => cmd_tune(&args),
        "calibrate" => cmd_calibrate(&args),
        "train" => cmd_train(&args),
        _ => cmd_speed(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

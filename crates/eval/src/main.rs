//! `llm-mux-eval`: offline evaluation, tuning, training and threshold calibration of the
//! routers (the heuristic `scoring` and the learned `learned` model).
//!
//! The command line only: it parses arguments (with `std::env::args`, to keep dependencies
//! lean), reads the data files, calls the `llm_mux_eval` library, prints and writes its
//! results. Computing anything belongs in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use llm_mux_core::quality::{ControllerConfig, Target};
use llm_mux_core::routing::DEFAULT_ROUTER;
use llm_mux_core::scoring;
use llm_mux_eval::calibration::{self, CalibrationTarget};
use llm_mux_eval::data::{self, Dataset, EvalRecord, Split};
use llm_mux_eval::lobo::{self, LoboOptions};
use llm_mux_eval::plots::{trajectory_svg, TrajectoryPoint};
use llm_mux_eval::report::{self, pct, RouterScores};
use llm_mux_eval::routers::{heuristic_scores, Router};
use llm_mux_eval::selection::{self, FOLDS};
use llm_mux_eval::simulate::{self, SimRouter};
use llm_mux_eval::training::TrainConfig;
use llm_mux_eval::tuning::{self, TuneOptions};
use llm_mux_eval::{metrics, speed};

const USAGE: &str = "\
usage:
  llm-mux-eval report    [--split test] [--benchmark NAME] [--json OUT] [--markdown OUT] [--svg OUT]
                         [--threshold T] [--learned-threshold T] [--small-model M] [--large-model M] PATH...
  llm-mux-eval tune      [--split dev] [--regularization R] [--small-model M] [--large-model M] PATH...
  llm-mux-eval train     [--out data/learned_router.bin] [--quick] [--bits N] [--chars MIN-MAX|none]
                         [--seed N] [--group-bias] [--balance X] [--table-epochs N]
                         [--l2 X] [--l2-dense X] [--dense-prior X] [--no-signs] PATH...
  (lobo also takes tune's --regularization R and --per-benchmark X: share of the
   heuristic's tuning objective that is the mean per-benchmark APGR)
  llm-mux-eval calibrate (--target-large-share X | --target-quality X | --max-cost-per-1k USD)
                         [--router heuristic|learned] [--split dev] [--benchmark NAME]
                         [--small-model M] [--large-model M] PATH...
  llm-mux-eval simulate  [--router learned|heuristic|length] [--split dev|test|all]
                         [--target-quality Q | --target-large-share S | --target-cost-per-1k USD]
                         [--sample-rate R] [--requests N] [--seeds K] [--judge-noise SD]
                         [--controller JSON] [--json OUT] [--svg OUT] PATH [--then PATH ...]
  llm-mux-eval lobo      [--quick] [--split test|dev] [train's options] [--json OUT] [--markdown OUT] [--small-model M] [--large-model M] PATH...
  llm-mux-eval speed
PATH is a routing-eval JSONL file or a directory of them (all *.jsonl).
report evaluates both routers at their default thresholds (override with --threshold for the
heuristic, --learned-threshold for the learned one) and the random, length and oracle baselines.
train fits the learned router on the dev split only (5-fold CV within dev picks the settings
from a fixed grid; --quick skips the grid) and writes the weights file. --bits, --chars
and --seed replace the default table size, character n-gram range and shuffle seed (for
size trade-off and noise studies).
lobo holds out each benchmark in turn: tunes, trains (the train procedure; --quick: base
settings only) and calibrates on the other benchmarks' dev rows, reports on its test rows
(--split dev: on its dev rows, to compare changes without looking at test).
calibrate --router learned on dev scores each prompt out-of-fold (the model was trained on dev).
simulate streams prompts drawn at random from PATH (then from each --then PATH: a shift in
traffic), N requests per phase (default 50000), through the core's quality sampler, estimator
and controller, with the recorded outcomes as the judge's grades; defaults: split test, sample
rate 0.02, 20 seeds, no judge noise; --controller '{\"confidence_z\":1.28}' overrides controller
settings (ControllerConfig's fields) for experiments.
Models are priced from the embedded price table (default mistral-small-latest / mistral-large-latest).";

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
    group_bias: bool,
    no_signs: bool,
    balance: Option<f64>,
    table_epochs: Option<usize>,
    l2: Option<f64>,
    l2_dense: Option<f64>,
    dense_prior: Option<f64>,
    per_benchmark: Option<f64>,
    router: Router,
    threshold: Option<f64>,
    learned_threshold: Option<f64>,
    small_model: String,
    large_model: String,
    regularization: Option<f64>,
    target: Option<CalibrationTarget>,
    paths: Vec<PathBuf>,
    router_name: Option<String>,
    then_paths: Vec<PathBuf>,
    sample_rate: f64,
    requests: usize,
    seeds: u64,
    judge_noise: f64,
    controller: Option<String>,
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
        "report" | "tune" | "train" | "calibrate" | "simulate" | "lobo" | "speed"
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
        group_bias: false,
        no_signs: false,
        balance: None,
        table_epochs: None,
        l2: None,
        l2_dense: None,
        dense_prior: None,
        per_benchmark: None,
        router: Router::Heuristic,
        threshold: None,
        learned_threshold: None,
        small_model: String::from("mistral-small-latest"),
        large_model: String::from("mistral-large-latest"),
        regularization: None,
        target: None,
        paths: Vec::new(),
        router_name: None,
        then_paths: Vec::new(),
        sample_rate: 0.02,
        requests: 50_000,
        seeds: 20,
        judge_noise: 0.0,
        controller: None,
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
            "--group-bias" => args.group_bias = true,
            "--no-signs" => args.no_signs = true,
            "--balance" => args.balance = Some(parse_number(a, &value()?)?),
            "--l2" => args.l2 = Some(parse_number(a, &value()?)?),
            "--l2-dense" => args.l2_dense = Some(parse_number(a, &value()?)?),
            "--dense-prior" => args.dense_prior = Some(parse_number(a, &value()?)?),
            "--per-benchmark" => args.per_benchmark = Some(parse_number(a, &value()?)?),
            "--table-epochs" => {
                let v = value()?;
                args.table_epochs = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--table-epochs expects an integer, got {v:?}"))?,
                );
            }
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
            "--router" => {
                let v = value()?;
                if args.command == "simulate" {
                    SimRouter::parse(&v)?;
                } else {
                    args.router = Router::parse(&v)?;
                }
                args.router_name = Some(v);
            }
            "--then" => args.then_paths.push(PathBuf::from(value()?)),
            "--sample-rate" => {
                let v = parse_number(a, &value()?)?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("--sample-rate must be in [0,1], got {v}"));
                }
                args.sample_rate = v;
            }
            "--controller" => args.controller = Some(value()?),
            "--judge-noise" => {
                let v = parse_number(a, &value()?)?;
                if v < 0.0 {
                    return Err(format!("--judge-noise must be >= 0, got {v}"));
                }
                args.judge_noise = v;
            }
            "--requests" | "--seeds" => {
                let v = value()?;
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{a} expects a positive integer, got {v:?}"))?;
                if a == "--requests" {
                    args.requests = usize::try_from(n).map_err(|e| e.to_string())?;
                } else {
                    args.seeds = n;
                }
            }
            "--threshold" => args.threshold = Some(parse_number(a, &value()?)?),
            "--learned-threshold" => args.learned_threshold = Some(parse_number(a, &value()?)?),
            "--small-model" => args.small_model = value()?,
            "--large-model" => args.large_model = value()?,
            "--regularization" => args.regularization = Some(parse_number(a, &value()?)?),
            "--target-large-share"
            | "--target-quality"
            | "--max-cost-per-1k"
            | "--target-cost-per-1k" => {
                if args.target.is_some() {
                    return Err(String::from("give exactly one calibration target"));
                }
                let v = parse_number(a, &value()?)?;
                let fraction = a == "--target-large-share" || a == "--target-quality";
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
    if args.command != "simulate" && !args.then_paths.is_empty() {
        return Err(String::from("--then is an option of simulate"));
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
        out.extend(data::parse_jsonl(&text, &f.display().to_string())?);
    }
    Ok(out)
}

fn load_dataset(args: &Args, default_split: Split) -> Result<Dataset, String> {
    let mut records = Vec::new();
    for p in &args.paths {
        records.extend(load_path(p)?);
    }
    Dataset::select(
        records,
        args.split.unwrap_or(default_split),
        args.benchmark.as_deref(),
        &args.small_model,
        &args.large_model,
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn cmd_report(args: &Args) -> Result<(), String> {
    let data = load_dataset(args, Split::Test)?;
    let split = args.split.unwrap_or(Split::Test);
    let routers = [
        RouterScores::new(Router::Heuristic, &data, args.threshold),
        RouterScores::new(Router::Learned, &data, args.learned_threshold),
    ];
    let (report, charts) = report::build(
        &data,
        split,
        &args.small_model,
        &args.large_model,
        &routers,
        args.svg.is_some(),
    )?;
    if let Some(svg_path) = &args.svg {
        for chart in &charts {
            let path = report::chart_path(svg_path, chart);
            write_file(&path, &chart.svg)?;
            eprintln!("wrote {}", path.display());
        }
    }
    let md = report::markdown(&report);
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
    let start = tuning::prior_weights();
    let started = Instant::now();
    let res = tuning::tune_weights(&data.items, &data.features, &start, &options);
    let tuned_scores: Vec<f64> = data
        .features
        .iter()
        .map(|f| scoring::score_features(f, &res.weights).score)
        .collect();
    let clamped = metrics::evaluate("tuned", &data.items, &tuned_scores)?;
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
    println!("{}", tuning::weights_as_rust(&res.weights));
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
        selection::learned_out_of_fold(&data, &base_config(args)?)
    } else {
        args.router.scores(&data)
    };
    let cal = calibration::calibrate(&data.items, &scores, target)?;
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

/// The default training settings with the command line's `--bits` / `--chars` applied.
fn base_config(args: &Args) -> Result<TrainConfig, String> {
    let mut cfg = TrainConfig::default();
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
    cfg.group_bias |= args.group_bias;
    cfg.sign_constrained &= !args.no_signs;
    if let Some(b) = args.balance {
        cfg.balance = b;
    }
    if let Some(e) = args.table_epochs {
        cfg.epochs = e;
    }
    if let Some(v) = args.l2 {
        cfg.l2 = v;
    }
    if let Some(v) = args.l2_dense {
        cfg.l2_dense = v;
    }
    if let Some(v) = args.dense_prior {
        cfg.dense_prior = v;
    }
    cfg.ngrams.validate()?;
    Ok(cfg)
}

fn cmd_train(args: &Args) -> Result<(), String> {
    if args.split.is_some_and(|s| s != Split::Dev) {
        return Err(String::from(
            "train only uses --split dev: the test split is for reporting",
        ));
    }
    let data = load_dataset(args, Split::Dev)?;
    let started = Instant::now();
    let folds = selection::folds(&data.records);
    let grid = selection::train_grid(base_config(args)?);
    let grid = if args.quick { &grid[..1] } else { &grid[..] };
    let heuristic = metrics::evaluate("heuristic", &data.items, &heuristic_scores(&data.features))?;
    println!(
        "dev: {} prompts, {FOLDS}-fold CV; heuristic dev APGR {:.4} (in-sample: it was tuned on dev)",
        data.records.len(),
        heuristic.apgr
    );
    println!("{}", selection::TABLE_HEADER);
    let chosen = selection::select(&data, &folds, grid, |r| println!("{}", r.table_row()))?;
    println!(
        "\nchosen: {} (OOF APGR {:.4})",
        selection::describe(&chosen.config),
        chosen.apgr
    );
    let (threshold, p) = selection::threshold_at_95(&data.items, &chosen.oof)?;
    println!(
        "threshold for 95% quality on OOF dev scores: {threshold:.4} -> large share {}, quality retained {}, savings {}",
        pct(p.large_share),
        pct(p.quality_retained),
        pct(p.savings)
    );
    let bytes = selection::fit_final(&data, chosen, threshold);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/learned_router.bin"));
    std::fs::write(&out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "wrote {} ({} bytes, {} non-zero weights) in {:.1}s",
        out.display(),
        bytes.len(),
        selection::nonzero_weights(&bytes),
        started.elapsed().as_secs_f64()
    );
    println!(
        "set in crates/core/src/learned.rs: pub const DEFAULT_THRESHOLD: f64 = {threshold:.4};"
    );
    Ok(())
}

fn cmd_simulate(args: &Args) -> Result<(), String> {
    let split = args.split.unwrap_or(Split::Test);
    let router = SimRouter::parse(args.router_name.as_deref().unwrap_or(DEFAULT_ROUTER.name()))?;
    let mut sources: Vec<Vec<PathBuf>> = vec![args.paths.clone()];
    sources.extend(args.then_paths.iter().map(|p| vec![p.clone()]));
    let mut phases = Vec::new();
    for paths in &sources {
        let mut records = Vec::new();
        for p in paths {
            records.extend(load_path(p)?);
        }
        let data = Dataset::select(
            records,
            split,
            args.benchmark.as_deref(),
            &args.small_model,
            &args.large_model,
        )?;
        let scores = router.scores(&data);
        let name = paths
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("+");
        phases.push(simulate::Phase::new(&name, &data, &scores));
    }
    let mut config = ControllerConfig::new(router.default_threshold());
    config.max_sample_rate = args.sample_rate;
    config.target = args.target.map(|t| match t {
        CalibrationTarget::QualityRetained(q) => Target::QualityRetained(q),
        CalibrationTarget::LargeShare(s) => Target::LargeShare(s),
        CalibrationTarget::MaxCostPer1k(c) => Target::CostPer1k(c),
    });
    if let Some(patch) = &args.controller {
        config = simulate::patch_config(&config, patch)?;
    }
    let opts = simulate::SimOptions {
        config,
        requests: args.requests,
        seeds: args.seeds,
        judge_noise: args.judge_noise,
    };
    let started = Instant::now();
    let runs = simulate::simulate(&phases, &opts, 2);
    eprintln!(
        "simulated {} seed(s) in {:.1}s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    let sim = simulate::Simulation {
        router: router.name().to_string(),
        split: split.name().to_string(),
        target: opts.config.target,
        sample_rate: args.sample_rate,
        requests: args.requests,
        judge_noise: args.judge_noise,
        phase_names: phases.iter().map(|p| p.name.clone()).collect(),
        best_fixed: simulate::best_fixed(&phases, opts.config.target),
        configured_fixed: simulate::fixed_at(&phases, router.default_threshold()),
        runs,
    };
    print!("{}", simulate::table(&sim));
    if let Some(p) = &args.json {
        let json = serde_json::to_string_pretty(&sim).map_err(|e| e.to_string())?;
        write_file(p, &json)?;
        eprintln!("wrote {}", p.display());
    }
    if let (Some(p), Some(run)) = (&args.svg, sim.runs.first()) {
        let points: Vec<TrajectoryPoint> = run
            .trace
            .iter()
            .map(|t| TrajectoryPoint {
                x: t.request as f64,
                threshold: t.threshold,
                estimated: t.estimated,
                interval: t.interval,
                true_quality: t.true_quality,
            })
            .collect();
        let starts: Vec<f64> = (1..phases.len())
            .map(|i| (i * args.requests) as f64)
            .collect();
        let target = match opts.config.target {
            Some(Target::QualityRetained(q)) => Some(q),
            _ => None,
        };
        let title = format!(
            "{} router, {}: threshold and quality retained (seed 0)",
            router.name(),
            sim.phase_names.join(" -> ")
        );
        write_file(p, &trajectory_svg(&title, &points, target, &starts))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn cmd_lobo(args: &Args) -> Result<(), String> {
    if args.benchmark.is_some() {
        return Err(String::from(
            "lobo chooses its rows itself (dev of the others, test of the held-out one)",
        ));
    }
    let mut records = Vec::new();
    for p in &args.paths {
        records.extend(load_path(p)?);
    }
    let options = LoboOptions {
        train: base_config(args)?,
        quick: args.quick,
        eval_split: args.split.unwrap_or(Split::Test),
        tune: TuneOptions {
            per_benchmark: args.per_benchmark.unwrap_or(0.0),
            regularization: args
                .regularization
                .unwrap_or(TuneOptions::default().regularization),
            ..TuneOptions::default()
        },
    };
    let started = Instant::now();
    let report = lobo::run(
        &records,
        &args.small_model,
        &args.large_model,
        &options,
        |line| eprintln!("{line}"),
    )?;
    eprintln!("lobo done in {:.1}s", started.elapsed().as_secs_f64());
    let md = lobo::markdown(&report);
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

fn cmd_speed() -> Result<(), String> {
    speed::run(|line| println!("{line}"))
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
        "simulate" => cmd_simulate(&args),
        "lobo" => cmd_lobo(&args),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args, String> {
        let raw: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&raw)
    }

    #[test]
    fn command_lines() {
        assert_eq!(parse_char_range("3-5"), Ok((3, 5)));
        assert_eq!(parse_char_range("none"), Ok((0, 0)));
        assert!(parse_char_range("0-3").is_err() && parse_char_range("3").is_err());
        let a = args("calibrate --router learned --target-quality 0.95 --split dev d").unwrap();
        assert_eq!(a.router, Router::Learned);
        assert_eq!(a.target, Some(CalibrationTarget::QualityRetained(0.95)));
        assert_eq!(a.split, Some(Split::Dev));
        assert_eq!(a.paths, [PathBuf::from("d")]);
        assert!(args("calibrate d").is_err());
        assert!(args("calibrate --target-quality 2 d").is_err());
        assert!(args("calibrate --target-quality 0.9 --max-cost-per-1k 1 d").is_err());
        assert!(args("report").is_err());
        assert!(args("report --bits").is_err());
        assert!(args("fly d").is_err());
        assert!(args("speed").is_ok());
        let s = args("simulate --router length --target-cost-per-1k 0.05 --sample-rate 0.01 --requests 10 --seeds 2 --judge-noise 1 a --then b --then c").unwrap();
        assert_eq!(s.router_name.as_deref(), Some("length"));
        assert_eq!(s.then_paths.len(), 2);
        assert_eq!(
            (s.requests, s.seeds, s.sample_rate, s.judge_noise),
            (10, 2, 0.01, 1.0)
        );
        assert_eq!(s.target, Some(CalibrationTarget::MaxCostPer1k(0.05)));
        assert!(args("simulate --router oracle a").is_err());
        let c = args("simulate --controller {} a").unwrap();
        assert_eq!(c.controller.as_deref(), Some("{}"));
        assert!(args("simulate --sample-rate 2 a").is_err());
        assert!(args("simulate --requests 0 a").is_err());
        assert!(args("report --then b a").is_err());
        assert!(args("lobo --quick d").unwrap().quick);
    }
}

//! `llm-mux-eval`: offline evaluation, tuning and threshold calibration of the router.
//!
//! Native-only tool; arguments are parsed with `std::env::args` to keep dependencies lean.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use llm_mux::eval::{self, CalibrationTarget, EvalRecord, Item, RouterMetrics, Split, TuneOptions};
use llm_mux::pricing::{ModelPrice, PriceTable};
use llm_mux::scoring::{self, Features, Weights, DEFAULT_THRESHOLD};

const USAGE: &str = "\
usage:
  llm-mux-eval report    [--split test] [--benchmark NAME] [--json OUT] [--markdown OUT]
                         [--threshold T] [--small-model M] [--large-model M] PATH...
  llm-mux-eval tune      [--split dev] [--regularization R] [--small-model M] [--large-model M] PATH...
  llm-mux-eval calibrate (--target-large-share X | --target-quality X | --max-cost-per-1k USD)
                         [--split dev] [--benchmark NAME] [--small-model M] [--large-model M] PATH...
  llm-mux-eval speed
PATH is a routing-eval JSONL file or a directory of them (all *.jsonl).
Models are priced from the embedded price table (default mistral-small-latest / mistral-large-latest).";

/// Parsed command line.
struct Args {
    command: String,
    split: Option<Split>,
    benchmark: Option<String>,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    threshold: Option<f64>,
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

fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut it = raw.iter();
    let command = it.next().cloned().ok_or("missing subcommand")?;
    if !matches!(command.as_str(), "report" | "tune" | "calibrate" | "speed") {
        return Err(format!("unknown subcommand {command:?}"));
    }
    let mut args = Args {
        command,
        split: None,
        benchmark: None,
        json: None,
        markdown: None,
        threshold: None,
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
            "--threshold" => args.threshold = Some(parse_number(a, &value()?)?),
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

#[derive(serde::Serialize)]
struct BenchmarkReport {
    benchmark: String,
    routers: Vec<RouterMetrics>,
    /// The heuristic at DEFAULT_THRESHOLD (or --threshold).
    threshold: f64,
    at_threshold: eval::OperatingPoint,
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

fn report_for(
    name: &str,
    records: &[EvalRecord],
    items: &[Item],
    heuristic: &[f64],
    threshold: f64,
) -> Result<BenchmarkReport, String> {
    let routers = vec![
        eval::evaluate("heuristic", items, heuristic)?,
        eval::evaluate("random", items, &eval::random_scores(items.len()))?,
        eval::evaluate("length", items, &eval::length_scores(records))?,
        eval::evaluate("oracle", items, &eval::oracle_scores(records))?,
    ];
    Ok(BenchmarkReport {
        benchmark: name.to_string(),
        routers,
        threshold,
        at_threshold: eval::at_threshold(items, heuristic, threshold),
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
        let p = &b.at_threshold;
        let _ = writeln!(
            s,
            "\nHeuristic at threshold {:.4}: large share {}, quality retained {}, PGR {:.3}, savings {}, {:.4} USD per 1k queries.\n",
            b.threshold,
            pct(p.large_share),
            pct(p.quality_retained),
            p.pgr,
            pct(p.savings),
            p.cost_per_1k
        );
    }
    s
}

fn cmd_report(args: &Args) -> Result<(), String> {
    let data = load_dataset(args, Split::Test)?;
    let threshold = args.threshold.unwrap_or(DEFAULT_THRESHOLD);
    let heuristic = heuristic_scores(&data.features);
    let (small_price, large_price) = prices(args)?;
    let mut benchmarks = Vec::new();
    let mut names: Vec<String> = data.records.iter().map(|r| r.benchmark.clone()).collect();
    names.sort();
    names.dedup();
    for name in &names {
        let idx: Vec<usize> = (0..data.records.len())
            .filter(|&i| &data.records[i].benchmark == name)
            .collect();
        let recs: Vec<EvalRecord> = idx.iter().map(|&i| data.records[i].clone()).collect();
        let items: Vec<Item> = idx.iter().map(|&i| data.items[i]).collect();
        let h: Vec<f64> = idx.iter().map(|&i| heuristic[i]).collect();
        benchmarks.push(report_for(name, &recs, &items, &h, threshold)?);
    }
    if names.len() > 1 {
        benchmarks.push(report_for(
            "all",
            &data.records,
            &data.items,
            &heuristic,
            threshold,
        )?);
    }
    let report = Report {
        split: args.split.unwrap_or(Split::Test).name().to_string(),
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
        std::fs::write(p, &md).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(p, json).map_err(|e| format!("{}: {e}", p.display()))?;
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
    let scores = heuristic_scores(&data.features);
    let cal = eval::calibrate(&data.items, &scores, target)?;
    let p = cal.point;
    println!(
        "target {target:?} on {} {} prompts",
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

fn cmd_speed() -> Result<(), String> {
    let paragraph = "Explain step by step why the integral of 1/x from 1 to e equals 1, then \
        compare it with the sum of 1/k for k = 1..n; write a Python function `def h(n): \
        return sum(1/k for k in range(1, n+1))` and analyze its complexity. ";
    println!("| input | ns per query | ns per KB |");
    println!("|---|---|---|");
    for size in [100usize, 1024, 8 * 1024, 32 * 1024] {
        let mut text = String::new();
        while text.len() < size {
            text.push_str(paragraph);
        }
        let mut cut = size;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        let iterations = (20_000_000 / size).clamp(200, 200_000);
        let mut sink = 0.0;
        // Warm up, then time.
        for _ in 0..iterations / 10 {
            sink += scoring::score(std::hint::black_box(&text)).score;
        }
        let start = Instant::now();
        for _ in 0..iterations {
            sink += scoring::score(std::hint::black_box(&text)).score;
        }
        let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
        std::hint::black_box(sink);
        println!(
            "| {} B | {:.0} | {:.0} |",
            size,
            ns,
            ns / (size as f64 / 1024.0)
        );
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

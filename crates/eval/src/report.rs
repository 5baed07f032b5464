//! The `report` command's content: every router and baseline on each benchmark (and all
//! together), as a serializable [`Report`], its Markdown tables, and one quality-vs-share
//! chart per benchmark.
//!
//! It assembles results from [`crate::metrics`] and [`crate::plots`]; it must not compute
//! metrics of its own, choose thresholds, or write files (the CLI writes what it returns).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use llm_mux_core::pricing::{ModelPrice, PriceTable};

use crate::data::{Dataset, EvalRecord, Item, Split};
use crate::metrics::{self, OperatingPoint, RouterMetrics};
use crate::plots::{self, PlotSeries};
use crate::routers::Router;

/// A router at a fixed threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    /// Router name.
    pub router: String,
    /// The threshold routed at.
    pub threshold: f64,
    /// What routing at it yields.
    pub point: OperatingPoint,
}

/// The results on one benchmark (or `all`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchmarkReport {
    /// Benchmark name, or `all`.
    pub benchmark: String,
    /// The routers' metrics, then the random, length and oracle baselines'.
    pub routers: Vec<RouterMetrics>,
    /// Each learned/heuristic router at its default (or given) threshold.
    pub at_threshold: Vec<ThresholdResult>,
    /// Always-large at its cost, for the "10k requests" comparison.
    pub always_large: OperatingPoint,
}

/// The whole report, as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Split evaluated.
    pub split: String,
    /// Small model name.
    pub small_model: String,
    /// Large model name.
    pub large_model: String,
    /// Small model's price.
    pub small_price: ModelPrice,
    /// Large model's price.
    pub large_price: ModelPrice,
    /// Date of the embedded price table.
    pub price_table_as_of: String,
    /// Per benchmark, then `all` when there are several.
    pub benchmarks: Vec<BenchmarkReport>,
}

/// A router compared in the report, with its threshold and its scores (`scores[i]` for the
/// `i`-th prompt).
#[derive(Debug, Clone, PartialEq)]
pub struct RouterScores {
    /// Which router.
    pub router: Router,
    /// Threshold for the "at default threshold" table and the chart's marker.
    pub threshold: f64,
    /// Scores of the prompts.
    pub scores: Vec<f64>,
}

impl RouterScores {
    /// The router's scores on `data`, at `threshold` or its default one.
    pub fn new(router: Router, data: &Dataset, threshold: Option<f64>) -> Self {
        RouterScores {
            router,
            threshold: threshold.unwrap_or(router.default_threshold()),
            scores: router.scores(data),
        }
    }

    fn subset(&self, idx: &[usize]) -> RouterScores {
        RouterScores {
            router: self.router,
            threshold: self.threshold,
            scores: idx.iter().map(|&i| self.scores[i]).collect(),
        }
    }
}

/// One benchmark's chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The benchmark it shows; `None` when it goes to the base path (the `all` chart, or
    /// the only benchmark), else it goes to `<stem>-<benchmark>.svg` (see [`chart_path`]).
    pub benchmark: Option<String>,
    /// The SVG document.
    pub svg: String,
}

/// Where a chart goes, given the `--svg` base path.
pub fn chart_path(base: &Path, chart: &Chart) -> PathBuf {
    match &chart.benchmark {
        None => base.to_path_buf(),
        Some(name) => {
            let stem = base
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            base.with_file_name(format!("{stem}-{name}.svg"))
        }
    }
}

/// The report of `routers` on `data` (a `split` selection priced for the two models), per
/// benchmark and, when there are several, all together; with the charts if `charts`.
pub fn build(
    data: &Dataset,
    split: Split,
    small_model: &str,
    large_model: &str,
    routers: &[RouterScores],
    charts: bool,
) -> Result<(Report, Vec<Chart>), String> {
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
    let mut out_charts = Vec::new();
    for (name, idx) in &groups {
        let recs: Vec<EvalRecord> = idx.iter().map(|&i| data.records[i].clone()).collect();
        let items: Vec<Item> = idx.iter().map(|&i| data.items[i]).collect();
        let rs: Vec<RouterScores> = routers.iter().map(|r| r.subset(idx)).collect();
        benchmarks.push(benchmark_report(name, &recs, &items, &rs)?);
        if charts {
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
            out_charts.push(Chart {
                benchmark: if name == "all" || names.len() == 1 {
                    None
                } else {
                    Some(name.clone())
                },
                svg: chart(&title, &recs, &items, &rs)?,
            });
        }
    }
    let report = Report {
        split: split.name().to_string(),
        small_model: small_model.to_string(),
        large_model: large_model.to_string(),
        small_price: data.small_price,
        large_price: data.large_price,
        price_table_as_of: PriceTable::embedded().as_of,
        benchmarks,
    };
    Ok((report, out_charts))
}

/// The routers and the random, length and oracle baselines on one group of prompts.
fn benchmark_report(
    name: &str,
    records: &[EvalRecord],
    items: &[Item],
    routers: &[RouterScores],
) -> Result<BenchmarkReport, String> {
    let mut rows = Vec::new();
    let mut at_threshold = Vec::new();
    for r in routers {
        rows.push(metrics::evaluate(r.router.name(), items, &r.scores)?);
        at_threshold.push(ThresholdResult {
            router: r.router.name().to_string(),
            threshold: r.threshold,
            point: metrics::at_threshold(items, &r.scores, r.threshold),
        });
    }
    rows.push(metrics::evaluate(
        "random",
        items,
        &metrics::random_scores(items.len()),
    )?);
    rows.push(metrics::evaluate(
        "length",
        items,
        &metrics::length_scores(records),
    )?);
    rows.push(metrics::evaluate(
        "oracle",
        items,
        &metrics::oracle_scores(records),
    )?);
    Ok(BenchmarkReport {
        benchmark: name.to_string(),
        routers: rows,
        at_threshold,
        always_large: metrics::at_threshold(items, &metrics::random_scores(items.len()), 0.0),
    })
}

/// A share as a percentage with one decimal, e.g. `43.4%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// [`pct`], or `-` when there is no value.
pub fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| String::from("-"))
}

/// The report as Markdown: per benchmark, the routers' metrics table and the table at the
/// default thresholds.
pub fn markdown(report: &Report) -> String {
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
fn chart(
    title: &str,
    records: &[EvalRecord],
    items: &[Item],
    routers: &[RouterScores],
) -> Result<String, String> {
    let mut series = Vec::new();
    for (i, r) in routers.iter().enumerate() {
        let c = metrics::curve(items, &r.scores)?;
        let p = metrics::at_threshold(items, &r.scores, r.threshold);
        series.push(PlotSeries {
            name: r.router.name().to_string(),
            color: ROUTER_COLORS[i % ROUTER_COLORS.len()],
            dashed: false,
            points: plots::curve_points(&c, 400),
            marker: Some((p.large_share, p.quality)),
        });
    }
    let baselines: [(&str, &'static str, Vec<f64>); 3] = [
        ("prompt length", "#2ca02c", metrics::length_scores(records)),
        ("random", "#7f7f7f", metrics::random_scores(items.len())),
        ("oracle", "#000000", metrics::oracle_scores(records)),
    ];
    for (name, color, scores) in baselines {
        let c = metrics::curve(items, &scores)?;
        series.push(PlotSeries {
            name: name.to_string(),
            color,
            dashed: true,
            points: plots::curve_points(&c, 400),
            marker: None,
        });
    }
    let n = items.len().max(1) as f64;
    let q1 = items.iter().map(|it| it.quality_large).sum::<f64>() / n;
    Ok(plots::quality_share_svg(
        title,
        &series,
        Some((0.95 * q1, "95% of always-large")),
    ))
}

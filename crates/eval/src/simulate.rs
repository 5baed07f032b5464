//! The `simulate` command: routing-eval prompts streamed as traffic through the core's
//! quality estimator, sampler and controller (`llm_mux_core::quality`, the code the worker
//! runs), with each prompt's recorded outcomes standing in for the judge's grades.
//!
//! One simulated request arrives per second; the controller updates every 60 requests and
//! isolates apply what it published at the previous update. A sampled request costs the
//! other tier's call plus a judge call by the top tier (input: a fixed instruction, the
//! prompt and both answers; output: the two grades). Grades are `1 + 9 * score` plus the
//! optional Gaussian judge noise, rounded and clamped to 1..10.
//!
//! It owns the traffic draw, the bookkeeping of what was served and spent, the hindsight
//! baselines (best fixed threshold on the true outcomes, the configured threshold) and
//! the results' shape. It must not estimate or control anything itself (the core does),
//! read files, or print.

use serde::Serialize;

use llm_mux_core::hash::{fnv1a64, SplitMix64};
use llm_mux_core::judge;
use llm_mux_core::quality::sample::quality_to_grade;
use llm_mux_core::quality::{
    ControllerConfig, HourlyCap, JudgedSample, QualityController, ServedBy, Target,
};

use crate::data::{tokens_from_chars, Dataset, DEFAULT_OUTPUT_TOKENS};
use crate::routers::Router;

/// Tokens of the judge's fixed instruction (the grading rubric, the answer format and the
/// labels around the texts): the worker's own judge prompt (`judge::overhead_chars`).
pub fn judge_instruction_tokens() -> f64 {
    tokens_from_chars(judge::overhead_chars() as u64)
}
/// Tokens of the judge's answer (the two grades as compact JSON).
pub const JUDGE_OUTPUT_TOKENS: f64 = 20.0;
/// Simulated requests between two controller updates (one request per second: a minute).
pub const UPDATE_EVERY: usize = 60;
/// Simulated milliseconds between two requests.
pub const MS_PER_REQUEST: u64 = 1000;
/// Requests between two trajectory points.
pub const TRACE_EVERY: usize = 500;

/// Which router scores the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimRouter {
    /// One of the worker's routers.
    Core(Router),
    /// Prompt length: `chars / (chars + 1000)` (a reference).
    Length,
}

impl SimRouter {
    /// Parses `learned`, `heuristic` or `length`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "length" => Ok(SimRouter::Length),
            other => Router::parse(other).map(SimRouter::Core).map_err(|_| {
                format!("unknown router {other:?} (expected learned, heuristic or length)")
            }),
        }
    }

    /// Name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SimRouter::Core(r) => r.name(),
            SimRouter::Length => "length",
        }
    }

    /// The threshold the gateway would start from (`ROUTING_THRESHOLD`).
    pub fn default_threshold(self) -> f64 {
        match self {
            SimRouter::Core(r) => r.default_threshold(),
            // 600 characters.
            SimRouter::Length => 0.375,
        }
    }

    /// Scores of a dataset's prompts.
    pub fn scores(self, data: &Dataset) -> Vec<f64> {
        match self {
            SimRouter::Core(r) => r.scores(data),
            SimRouter::Length => data
                .records
                .iter()
                .map(|r| {
                    let c = r.prompt.chars().count() as f64;
                    c / (c + 1000.0)
                })
                .collect(),
        }
    }
}

/// One prompt as traffic: its score, outcomes and costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prompt {
    /// Router score.
    pub score: f64,
    /// Recorded quality of the lower (small) tier's answer, [0, 1].
    pub quality_lower: f64,
    /// Recorded quality of the top (large) tier's answer.
    pub quality_top: f64,
    /// USD if the lower tier serves.
    pub cost_lower: f64,
    /// USD if the top tier serves.
    pub cost_top: f64,
    /// USD of the judge call.
    pub cost_judge: f64,
}

/// The prompts of one phase of traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Label (the file).
    pub name: String,
    /// The prompts drawn from.
    pub prompts: Vec<Prompt>,
}

impl Phase {
    /// Builds a phase from a dataset and a router's scores of it.
    pub fn new(name: &str, data: &Dataset, scores: &[f64]) -> Phase {
        let prompts = data
            .records
            .iter()
            .zip(&data.items)
            .zip(scores)
            .map(|((rec, item), &score)| {
                let out = |chars: Option<u64>| {
                    chars
                        .map(tokens_from_chars)
                        .unwrap_or(DEFAULT_OUTPUT_TOKENS)
                };
                let tokens_in = judge_instruction_tokens()
                    + tokens_from_chars(rec.prompt.chars().count() as u64)
                    + out(rec.small.output_chars)
                    + out(rec.large.output_chars);
                Prompt {
                    score,
                    quality_lower: item.quality_small,
                    quality_top: item.quality_large,
                    cost_lower: item.cost_small,
                    cost_top: item.cost_large,
                    cost_judge: (tokens_in * data.large_price.input
                        + JUDGE_OUTPUT_TOKENS * data.large_price.output)
                        / 1_000_000.0,
                }
            })
            .collect();
        Phase {
            name: name.to_string(),
            prompts,
        }
    }

    /// True quality retained and large share of routing this phase's population at `t`.
    pub fn at_threshold(&self, t: f64) -> (f64, f64) {
        let (mut q, mut l, mut n) = (0.0, 0.0, 0usize);
        for p in &self.prompts {
            if p.score >= t {
                q += p.quality_top;
                n += 1;
            } else {
                q += p.quality_lower;
            }
            l += p.quality_top;
        }
        let share = n as f64 / self.prompts.len().max(1) as f64;
        (if l > 0.0 { q / l } else { 1.0 }, share)
    }
}

/// Settings of a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Controller and sampler settings (target, rate, guard rails).
    pub config: ControllerConfig,
    /// Requests per phase.
    pub requests: usize,
    /// Number of seeds (runs).
    pub seeds: u64,
    /// SD of the judge's noise in grade points.
    pub judge_noise: f64,
}

/// Figures of a run or of one of its phases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Phase label (empty for a whole run).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Quality of what was served over always-top quality, on the recorded outcomes, over
    /// the last half of each phase.
    pub true_quality_retained: f64,
    /// The estimator's figure at the threshold in force, averaged over the same updates.
    pub estimated_quality_retained: Option<f64>,
    /// The estimate's standard error, averaged over the same updates.
    pub estimated_std_error: Option<f64>,
    /// Share of requests served by the top tier.
    pub large_share: f64,
    /// 1 - serving spend / always-top-tier cost (before evaluation spend).
    pub savings: f64,
    /// 1 - (serving + evaluation spend) / always-top-tier cost.
    pub net_savings: f64,
    /// Evaluation spend / always-top-tier cost.
    pub evaluation_cost_share: f64,
    /// Judged samples.
    pub samples: u64,
    /// Threshold in force at the end.
    pub final_threshold: f64,
    /// Shifts in traffic the controller detected.
    pub shifts_detected: u64,
}

/// A point of a run's trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TracePoint {
    /// Requests so far.
    pub request: usize,
    /// Threshold in force.
    pub threshold: f64,
    /// Estimated quality retained at it (None before samples).
    pub estimated: Option<f64>,
    /// 95% interval of the estimate.
    pub interval: Option<[f64; 2]>,
    /// True quality retained of that threshold on the phase's prompts.
    pub true_quality: f64,
}

/// One seed's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Seed.
    pub seed: u64,
    /// Whole-run figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Per phase.
    pub phases: Vec<Figures>,
    /// Trajectory (only in memory; for the plot).
    #[serde(skip)]
    pub trace: Vec<TracePoint>,
}

/// A fixed threshold's figures on the expected traffic (every prompt of a phase weighted
/// by `requests / phase size`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fixed {
    /// The threshold.
    pub threshold: f64,
    /// Quality retained on the true outcomes.
    pub true_quality_retained: f64,
    /// Share of requests to the top tier.
    pub large_share: f64,
    /// Savings (no evaluation spend: equal to `net_savings`).
    pub savings: f64,
    /// Savings net of evaluation spend (none).
    pub net_savings: f64,
}

/// Sums of served quality/cost for a set of requests.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    requests: u64,
    top_served: u64,
    quality_served: f64,
    quality_top: f64,
    cost_served: f64,
    cost_top: f64,
    eval_cost: f64,
    samples: u64,
    // Last half of the phase.
    q_served_late: f64,
    q_top_late: f64,
    est_sum: f64,
    se_sum: f64,
    est_n: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.top_served += o.top_served;
        self.quality_served += o.quality_served;
        self.quality_top += o.quality_top;
        self.cost_served += o.cost_served;
        self.cost_top += o.cost_top;
        self.eval_cost += o.eval_cost;
        self.samples += o.samples;
        self.q_served_late += o.q_served_late;
        self.q_top_late += o.q_top_late;
        self.est_sum += o.est_sum;
        self.se_sum += o.se_sum;
        self.est_n += o.est_n;
    }

    fn figures(&self, name: &str, final_threshold: f64, shifts: u64) -> Figures {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Figures {
            name: name.to_string(),
            true_quality_retained: if self.q_top_late > 0.0 {
                self.q_served_late / self.q_top_late
            } else {
                1.0
            },
            estimated_quality_retained: (self.est_n > 0).then(|| self.est_sum / self.est_n as f64),
            estimated_std_error: (self.est_n > 0).then(|| self.se_sum / self.est_n as f64),
            large_share: ratio(self.top_served as f64, self.requests as f64),
            savings: 1.0 - ratio(self.cost_served, self.cost_top),
            net_savings: 1.0 - ratio(self.cost_served + self.eval_cost, self.cost_top),
            evaluation_cost_share: ratio(self.eval_cost, self.cost_top),
            samples: self.samples,
            final_threshold,
            shifts_detected: shifts,
        }
    }
}

fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = uniform(rng).max(1e-300);
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Runs one seed over the phases.
pub fn run(phases: &[Phase], opts: &SimOptions, seed: u64) -> Run {
    let cfg = &opts.config;
    let mut rng = SplitMix64::new(fnv1a64(&seed.to_le_bytes()));
    let mut ctl = QualityController::new(cfg);
    let mut published = ctl.published();
    let mut cap = HourlyCap::default();
    let mut total = Tally::default();
    let mut per_phase = Vec::with_capacity(phases.len());
    let mut trace = Vec::new();
    let mut t_ms: u64 = 0;
    let mut global = 0usize;
    for phase in phases {
        let mut tally = Tally::default();
        let shifts_before = ctl.shifts;
        if phase.prompts.is_empty() {
            per_phase.push(tally.figures(&phase.name, published.threshold, 0));
            continue;
        }
        for i in 0..opts.requests {
            t_ms += MS_PER_REQUEST;
            global += 1;
            let late = 2 * i >= opts.requests;
            let p = phase.prompts[(rng.next_u64() % phase.prompts.len() as u64) as usize];
            let top = p.score >= published.threshold;
            let (q_served, cost_served) = if top {
                (p.quality_top, p.cost_top)
            } else {
                (p.quality_lower, p.cost_lower)
            };
            tally.requests += 1;
            tally.top_served += u64::from(top);
            tally.quality_served += q_served;
            tally.quality_top += p.quality_top;
            tally.cost_served += cost_served;
            tally.cost_top += p.cost_top;
            if late {
                tally.q_served_late += q_served;
                tally.q_top_late += p.quality_top;
            }
            ctl.record_traffic(p.score, p.cost_lower, p.cost_top);
            let r = rng.next_u64();
            if let Some(prob) = published.policy.decide(p.score, r) {
                if cap.try_take(t_ms, cfg.max_samples_per_hour) {
                    let noise = opts.judge_noise.max(0.0);
                    let grade_lower = quality_to_grade(p.quality_lower, noise * gaussian(&mut rng));
                    let grade_top = quality_to_grade(p.quality_top, noise * gaussian(&mut rng));
                    let extra = if top { p.cost_lower } else { p.cost_top };
                    let sample = JudgedSample {
                        time_ms: t_ms,
                        score: p.score,
                        served: if top { ServedBy::Top } else { ServedBy::Lower },
                        grade_lower,
                        grade_top,
                        probability: prob,
                        serving_cost_usd: cost_served,
                        extra_cost_usd: extra,
                        judge_cost_usd: p.cost_judge,
                    };
                    tally.eval_cost += sample.evaluation_cost_usd();
                    tally.samples += 1;
                    ctl.record_sample(sample, cfg);
                }
            }
            if (i + 1).is_multiple_of(UPDATE_EVERY) {
                published = ctl.update(t_ms, cfg);
                if late {
                    if let Some(e) = ctl.estimate {
                        tally.est_sum += e.quality_retained;
                        tally.se_sum += e.std_error;
                        tally.est_n += 1;
                    }
                }
            }
            if global.is_multiple_of(TRACE_EVERY) {
                trace.push(TracePoint {
                    request: global,
                    threshold: published.threshold,
                    estimated: ctl.estimate.map(|e| e.quality_retained),
                    interval: ctl.estimate.map(|e| e.interval95()),
                    true_quality: phase.at_threshold(published.threshold).0,
                });
            }
        }
        total.add(&tally);
        per_phase.push(tally.figures(&phase.name, published.threshold, ctl.shifts - shifts_before));
    }
    Run {
        seed,
        figures: total.figures("", published.threshold, ctl.shifts),
        phases: per_phase,
        trace,
    }
}

/// `config` with the fields of the JSON object `patch` replaced (`--controller`, for
/// experiments: e.g. `{"confidence_z": 1.28}`).
pub fn patch_config(config: &ControllerConfig, patch: &str) -> Result<ControllerConfig, String> {
    let mut v = serde_json::to_value(config).map_err(|e| e.to_string())?;
    let p: serde_json::Value =
        serde_json::from_str(patch).map_err(|e| format!("--controller: {e}"))?;
    let fields = p
        .as_object()
        .ok_or_else(|| String::from("--controller: expected a JSON object"))?;
    for (k, x) in fields {
        if v.get(k).is_none() {
            return Err(format!("--controller: unknown setting {k:?}"));
        }
        v[k] = x.clone();
    }
    serde_json::from_value(v).map_err(|e| format!("--controller: {e}"))
}

/// Figures of a fixed threshold on the expected traffic.
pub fn fixed_at(phases: &[Phase], threshold: f64) -> Fixed {
    let (mut q, mut l, mut c, mut c1, mut top, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for ph in phases.iter().filter(|p| !p.prompts.is_empty()) {
        let w = 1.0 / ph.prompts.len() as f64;
        for p in &ph.prompts {
            let is_top = p.score >= threshold;
            q += w * if is_top {
                p.quality_top
            } else {
                p.quality_lower
            };
            c += w * if is_top { p.cost_top } else { p.cost_lower };
            top += w * f64::from(u8::from(is_top));
            l += w * p.quality_top;
            c1 += w * p.cost_top;
            n += w;
        }
    }
    let savings = if c1 > 0.0 { 1.0 - c / c1 } else { 0.0 };
    Fixed {
        threshold,
        true_quality_retained: if l > 0.0 { q / l } else { 1.0 },
        large_share: if n > 0.0 { top / n } else { 0.0 },
        savings,
        net_savings: savings,
    }
}

/// The fixed threshold that, in hindsight, meets the target on the true outcomes of the
/// expected traffic at the lowest cost (None without a target, or if none meets it).
pub fn best_fixed(phases: &[Phase], target: Option<Target>) -> Option<Fixed> {
    let target = target?;
    let mut scores: Vec<f64> = phases
        .iter()
        .flat_map(|p| p.prompts.iter().map(|x| x.score))
        .collect();
    scores.sort_by(|a, b| a.total_cmp(b));
    scores.dedup();
    // Candidates: each distinct score (route it and above to the top tier), and "none".
    let mut candidates = scores;
    candidates.push(f64::INFINITY);
    let mut best: Option<Fixed> = None;
    let points = sweep(phases, &candidates);
    for f in points {
        let ok = match target {
            Target::QualityRetained(q) => f.true_quality_retained >= q - 1e-12,
            Target::LargeShare(s) => f.large_share <= s + 1e-12,
            Target::CostPer1k(usd) => {
                let always_top = always_top_per_request(phases);
                (1.0 - f.savings) * always_top * 1000.0 <= usd + 1e-12
            }
        };
        // A quality target: the cheapest threshold meeting it; a share or cost budget: the
        // best quality within it (then the cheapest).
        let better = |b: Fixed| match target {
            Target::QualityRetained(_) => f.savings > b.savings,
            _ => {
                f.true_quality_retained > b.true_quality_retained + 1e-12
                    || (f.true_quality_retained >= b.true_quality_retained - 1e-12
                        && f.savings > b.savings)
            }
        };
        if ok && best.is_none_or(better) {
            best = Some(f);
        }
    }
    best
}

fn always_top_per_request(phases: &[Phase]) -> f64 {
    let mut c = 0.0;
    let mut n = 0.0;
    for ph in phases.iter().filter(|p| !p.prompts.is_empty()) {
        c += ph.prompts.iter().map(|p| p.cost_top).sum::<f64>() / ph.prompts.len() as f64;
        n += 1.0;
    }
    if n > 0.0 {
        c / n
    } else {
        0.0
    }
}

/// [`fixed_at`] for ascending candidate thresholds in one sorted pass.
fn sweep(phases: &[Phase], candidates: &[f64]) -> Vec<Fixed> {
    // (score, weight, dq, dc, q_top, c_top) sorted by score.
    let mut rows: Vec<(f64, f64, f64, f64)> = Vec::new();
    let (mut q, mut l, mut c, mut c1, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for ph in phases.iter().filter(|p| !p.prompts.is_empty()) {
        let w = 1.0 / ph.prompts.len() as f64;
        for p in &ph.prompts {
            rows.push((
                p.score,
                w,
                w * (p.quality_top - p.quality_lower),
                w * (p.cost_top - p.cost_lower),
            ));
            q += w * p.quality_top;
            l += w * p.quality_top;
            c += w * p.cost_top;
            c1 += w * p.cost_top;
            n += w;
        }
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::with_capacity(candidates.len());
    let mut j = 0;
    let mut top = n;
    for &t in candidates {
        while j < rows.len() && rows[j].0 < t {
            top -= rows[j].1;
            q -= rows[j].2;
            c -= rows[j].3;
            j += 1;
        }
        let savings = if c1 > 0.0 { 1.0 - c / c1 } else { 0.0 };
        out.push(Fixed {
            threshold: t,
            true_quality_retained: if l > 0.0 { q / l } else { 1.0 },
            large_share: if n > 0.0 { (top / n).max(0.0) } else { 0.0 },
            savings,
            net_savings: savings,
        });
    }
    out
}

/// The median of some numbers (0 for none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The whole result of `simulate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    /// Router.
    pub router: String,
    /// Split.
    pub split: String,
    /// Target, if any.
    pub target: Option<Target>,
    /// Sample rate.
    pub sample_rate: f64,
    /// Requests per phase.
    pub requests: usize,
    /// Judge noise SD.
    pub judge_noise: f64,
    /// Phase names.
    pub phase_names: Vec<String>,
    /// One run per seed.
    pub runs: Vec<Run>,
    /// Best fixed threshold in hindsight.
    pub best_fixed: Option<Fixed>,
    /// The configured threshold's figures.
    pub configured_fixed: Fixed,
}

/// Runs all seeds (on up to `threads` threads).
pub fn simulate(phases: &[Phase], opts: &SimOptions, threads: usize) -> Vec<Run> {
    let seeds: Vec<u64> = (0..opts.seeds).collect();
    let threads = threads.max(1);
    let mut runs: Vec<Run> = Vec::with_capacity(seeds.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let seeds = &seeds;
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(w)
                        .step_by(threads)
                        .map(|&s| run(phases, opts, s))
                        .collect::<Vec<Run>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(mut r) = h.join() {
                runs.append(&mut r);
            }
        }
    });
    runs.sort_by_key(|r| r.seed);
    runs
}

/// The summary table (markdown) against the targets of issue 10.
pub fn table(sim: &Simulation) -> String {
    let runs = &sim.runs;
    let col = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let tq = col(&|r| r.figures.true_quality_retained);
    let eq = col(&|r| r.figures.estimated_quality_retained.unwrap_or(f64::NAN));
    let sav = col(&|r| r.figures.savings);
    let net = col(&|r| r.figures.net_savings);
    let ev = col(&|r| r.figures.evaluation_cost_share);
    let share = col(&|r| r.figures.large_share);
    let samples = col(&|r| r.figures.samples as f64);
    let mut s = String::new();
    s.push_str(&format!(
        "router {}, split {}, target {:?}, sample rate {}, {} requests x {} phase(s), {} seeds, judge noise {}\n\n",
        sim.router, sim.split, sim.target, sim.sample_rate, sim.requests, sim.phase_names.len(), runs.len(), sim.judge_noise
    ));
    s.push_str("| figure | min | median | max |\n|---|---|---|---|\n");
    let mut row = |name: &str, v: &[f64], pctf: bool| {
        let mn = v
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::INFINITY, f64::min);
        let mx = v
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let f = |x: f64| {
            if pctf {
                format!("{:.1}%", 100.0 * x)
            } else {
                format!("{x:.0}")
            }
        };
        s.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            f(mn),
            f(median(v)),
            f(mx)
        ));
    };
    row("true quality retained (2nd half of phases)", &tq, true);
    row("estimated quality retained", &eq, true);
    row("large share", &share, true);
    row("savings before evaluation spend", &sav, true);
    row("evaluation spend / always-top cost", &ev, true);
    row("net savings", &net, true);
    row("samples judged", &samples, false);
    for (i, name) in sim.phase_names.iter().enumerate() {
        if sim.phase_names.len() < 2 {
            break;
        }
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.phases.get(i).map(|p| p.true_quality_retained))
            .collect();
        row(
            &format!("phase {} ({name}) true quality, 2nd half", i + 1),
            &v,
            true,
        );
    }
    s.push('\n');
    if let Some(b) = sim.best_fixed {
        s.push_str(&format!(
            "best fixed threshold in hindsight: {:.4} -> quality {:.1}%, large share {:.1}%, savings {:.1}%\n",
            b.threshold, 100.0 * b.true_quality_retained, 100.0 * b.large_share, 100.0 * b.savings
        ));
    }
    let c = sim.configured_fixed;
    s.push_str(&format!(
        "configured threshold: {:.4} -> quality {:.1}%, large share {:.1}%, savings {:.1}%\n",
        c.threshold,
        100.0 * c.true_quality_retained,
        100.0 * c.large_share,
        100.0 * c.savings
    ));
    if let Some(Target::QualityRetained(q)) = sim.target {
        s.push_str("\n| target | measured | met |\n|---|---|---|\n");
        let ok = tq.iter().filter(|&&x| x >= q - 0.01 - 1e-12).count();
        let need = (runs.len() * 19).div_ceil(20);
        s.push_str(&format!(
            "| true quality retained >= {:.2} in >= 19/20 of seeds | {ok}/{} | {} |\n",
            q - 0.01,
            runs.len(),
            yes(ok >= need)
        ));
        if let Some(b) = sim.best_fixed {
            let ratio = if b.savings > 0.0 {
                median(&sav) / b.savings
            } else {
                0.0
            };
            s.push_str(&format!(
                "| median savings before evaluation >= 70% of best fixed ({:.1}%) | {:.1}% ({:.0}% of best) | {} |\n",
                100.0 * b.savings,
                100.0 * median(&sav),
                100.0 * ratio,
                yes(ratio >= 0.7)
            ));
        }
        s.push_str(&format!(
            "| median evaluation spend <= 3% of always-top cost | {:.2}% (net savings {:.1}%) | {} |\n",
            100.0 * median(&ev),
            100.0 * median(&net),
            yes(median(&ev) <= 0.03)
        ));
        if sim.phase_names.len() > 1 {
            let within = runs
                .iter()
                .filter(|r| {
                    r.phases
                        .iter()
                        .all(|p| (p.true_quality_retained - q).abs() <= 0.01 + 1e-12)
                })
                .count();
            s.push_str(&format!(
                "| every phase's 2nd half within 1 point of {q:.2} | {within}/{} seeds | {} |\n",
                runs.len(),
                yes(within == runs.len())
            ));
        }
    }
    s
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase() -> Phase {
        let p = |score: f64, ql: f64, qt: f64| Prompt {
            score,
            quality_lower: ql,
            quality_top: qt,
            cost_lower: 1.0,
            cost_top: 3.0,
            cost_judge: 2.0,
        };
        Phase {
            name: String::from("t"),
            prompts: vec![
                p(0.1, 1.0, 1.0),
                p(0.4, 0.0, 1.0),
                p(0.6, 0.0, 1.0),
                p(0.9, 1.0, 0.0),
            ],
        }
    }

    fn opts(rate: f64, target: Option<Target>) -> SimOptions {
        let mut config = ControllerConfig::new(0.5);
        config.max_sample_rate = rate;
        config.target = target;
        config.max_evaluation_share = 10.0;
        config.bins = 10;
        SimOptions {
            config,
            requests: 6000,
            seeds: 2,
            judge_noise: 0.0,
        }
    }

    #[test]
    fn without_sampling_a_run_is_the_configured_fixed_threshold() {
        let ph = [phase()];
        let fixed = fixed_at(&ph, 0.5);
        // Top tier: the prompts at 0.6 and 0.9; quality (1 + 0 + 1 + 0) / 3.
        assert!((fixed.large_share - 0.5).abs() < 1e-12);
        assert!((fixed.true_quality_retained - 2.0 / 3.0).abs() < 1e-12);
        assert!((fixed.savings - (1.0 - 8.0 / 12.0)).abs() < 1e-12);
        let r = run(&ph, &opts(0.0, None), 1);
        let f = &r.figures;
        assert_eq!(f.samples, 0);
        assert_eq!(f.evaluation_cost_share, 0.0);
        assert_eq!(f.savings, f.net_savings);
        assert!((f.large_share - 0.5).abs() < 0.03);
        assert!((f.savings - fixed.savings).abs() < 0.03);
        assert!((f.true_quality_retained - fixed.true_quality_retained).abs() < 0.05);
        assert_eq!(r.phases.len(), 1);
        assert_eq!(r.trace.len(), 6000 / TRACE_EVERY);
    }

    #[test]
    fn evaluation_spend_is_counted_per_sample() {
        let ph = [phase()];
        let r = run(&ph, &opts(0.05, None), 2);
        let f = &r.figures;
        assert!(f.samples > 100);
        // A sample costs the judge (2) plus the other tier: 3 below the threshold, 1 above;
        // the always-top cost is 3 per request.
        let per_request = f.evaluation_cost_share * 3.0;
        let per_sample = per_request * 6000.0 / f.samples as f64;
        assert!((3.0..=5.0).contains(&per_sample), "{per_sample}");
        assert!((f.net_savings - (f.savings - f.evaluation_cost_share)).abs() < 1e-12);
        assert!(f.estimated_quality_retained.is_some());
    }

    #[test]
    fn best_fixed_meets_the_target_in_hindsight() {
        let ph = [phase()];
        let b = best_fixed(&ph, Some(Target::QualityRetained(0.99))).unwrap();
        // Only the prompt at 0.1 can go to the lower tier without loss (the one at 0.9
        // could too, but a threshold above it sends 0.4 and 0.6 lower as well).
        assert!(b.true_quality_retained >= 0.99);
        assert!((b.large_share - 0.75).abs() < 1e-12, "{b:?}");
        assert!(best_fixed(&ph, None).is_none());
        // Within a 25% share, all-lower (2/3) beats sending the prompt at 0.9 up (1/3).
        let s = best_fixed(&ph, Some(Target::LargeShare(0.25))).unwrap();
        assert!(s.large_share <= 0.25);
        assert!((s.true_quality_retained - 2.0 / 3.0).abs() < 1e-12);
        let runs = simulate(&ph, &opts(0.02, Some(Target::QualityRetained(0.6))), 2);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].seed, 0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        let base = ControllerConfig::new(0.5);
        let patched = patch_config(&base, r#"{"confidence_z": 1.0, "window": 10}"#).unwrap();
        assert_eq!(patched.confidence_z, 1.0);
        assert_eq!(patched.window, 10);
        assert_eq!(patched.min_samples, base.min_samples);
        assert!(patch_config(&base, r#"{"no_such_setting": 1}"#).is_err());
        assert!(patch_config(&base, "[1]").is_err());
        assert_eq!(median(&[]), 0.0);
    }
}

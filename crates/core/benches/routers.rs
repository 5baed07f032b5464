//! Native cost of the scorer and of every router the worker ships, per query, for queries of
//! 100 B, 1 KB, 8 KB and 32 KB. Dependency-free (std only) so that it adds nothing to the
//! build of the tests; run with `cargo bench --bench routers` (or `make bench`).
//!
//! Method: for each case the iteration count is calibrated so that one sample takes about
//! 10 ms; then 31 rounds each take one sample of every case (so that bursts of load from
//! other processes spread over all cases), and the median, fastest and slowest time per
//! query are reported. `BENCH_JSON=path` also writes the results as JSON for
//! scripts/bench.sh. `BENCH_QUICK=1` shortens the run (fewer, shorter samples).
//!
//! Adding a router is one line in `routers()`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use llm_mux_core::config::Config;
use llm_mux_core::routing::{self, Requested};
use llm_mux_core::scoring;

/// Query sizes in bytes.
const SIZES: [usize; 4] = [100, 1024, 8 * 1024, 32 * 1024];

/// Mixed text the queries are cut from: prose, a question, code, maths, a list and a
/// multiple-choice block, so that every branch of the scorer's scanner runs.
const TEXT: &str = "Explain why the following function is slow and compare two ways to fix it, \
step by step. Make sure the answer has at most 200 words and uses bullet points.\n\
```python\ndef total_price(items):\n    result = 0\n    for item in items:\n        \
result = result + item.price * item.quantity  # O(n)\n    return result\n```\n\
1. Measure it first.\n2. Then rewrite the loop with sum() and a generator.\n\
- Consider the trade-off between clarity and speed.\n\
If 3x + 5 = 20, what is x? Calculate the integral of x^2 from 0 to 3 and give 15% of it.\n\
Which statement about the plaintiff's negligence claim is correct?\n\
A. The defendant owed no duty of care.\nB. The statute of limitations has expired.\n\
C. Causation was not established.\nD. None of the above.\n\
Hello! Thanks for your help, and please translate the summary into French afterwards. \
Café, naïve, résumé: accented words count as words too. \u{4f60}\u{597d}\u{3002}\n";

/// A query of exactly `len` bytes (cut at a character boundary at or below `len`, then
/// padded with spaces), made of repetitions of [`TEXT`].
fn query_of(len: usize) -> String {
    let mut s = String::with_capacity(len + TEXT.len());
    while s.len() < len {
        s.push_str(TEXT);
    }
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    while s.len() < len {
        s.push(' ');
    }
    s
}

/// One router as the worker runs it: query text -> something that depends on the decision.
struct Router {
    name: &'static str,
    run: Box<dyn Fn(&str) -> f64>,
}

/// Every router the worker ships (plus the scorer's parts, to see where time goes).
/// Adding one is one entry here.
fn routers() -> Vec<Router> {
    let mut routers = vec![
        Router {
            name: "features (scanner only)",
            run: Box::new(|q| scoring::extract_features(q).length),
        },
        Router {
            name: "heuristic scorer",
            run: Box::new(|q| scoring::score(q).score),
        },
    ];
    // What the worker does per request: score, then the tier policy of the default
    // configuration (the one wrangler.toml ships).
    match Config::from_lookup(|_| None) {
        Ok(config) => routers.push(Router {
            name: "heuristic router (score + tier policy)",
            run: Box::new(move |q| {
                let s = scoring::score(q);
                let d = routing::decide(s.score, &s.features, &config.policies, Requested::Auto);
                d.tier as f64
            }),
        }),
        Err(e) => eprintln!("default configuration does not load ({e:?}); router row skipped"),
    }
    routers.push(Router {
        name: "learned scorer",
        run: Box::new(|q| llm_mux_core::learned::score(q).score),
    });
    routers
}

struct Measurement {
    router: &'static str,
    bytes: usize,
    median_ns: f64,
    min_ns: f64,
    max_ns: f64,
}

/// Iterations of `router` on `query` that take about `sample_time`.
fn calibrate(router: &Router, query: &str, sample_time: Duration) -> u64 {
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            black_box((router.run)(black_box(query)));
        }
        let elapsed = t.elapsed();
        if elapsed >= sample_time / 4 || iters >= 1 << 30 {
            let per = elapsed.as_secs_f64() / iters as f64;
            return ((sample_time.as_secs_f64() / per.max(1e-9)) as u64).max(1);
        }
        iters *= 2;
    }
}

/// Nanoseconds per call of one sample of `iters` calls.
fn sample(router: &Router, query: &str, iters: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        black_box((router.run)(black_box(query)));
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let quick = smoke || std::env::var_os("BENCH_QUICK").is_some();
    let (samples, sample_time) = if quick {
        (5, Duration::from_millis(if smoke { 1 } else { 10 }))
    } else {
        (31, Duration::from_millis(10))
    };
    let queries: Vec<String> = SIZES.iter().map(|&n| query_of(n)).collect();
    // Samples are taken in rounds over all cases, so that a burst of load from other
    // processes hits every case alike rather than a few cases entirely.
    let routers = routers();
    let cases: Vec<(&Router, &String)> = routers
        .iter()
        .flat_map(|r| queries.iter().map(move |q| (r, q)))
        .collect();
    let iters: Vec<u64> = cases
        .iter()
        .map(|(r, q)| calibrate(r, q, sample_time))
        .collect();
    let mut per_case: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); cases.len()];
    for _ in 0..samples {
        for (k, (r, q)) in cases.iter().enumerate() {
            per_case[k].push(sample(r, q, iters[k]));
        }
    }
    let mut results = Vec::new();
    println!("| router | query | median per query | fastest | slowest | per KB (median) |");
    println!("|---|---|---|---|---|---|");
    for ((r, q), mut xs) in cases.iter().zip(per_case) {
        xs.sort_by(f64::total_cmp);
        let m = Measurement {
            router: r.name,
            bytes: q.len(),
            median_ns: xs[xs.len() / 2],
            min_ns: xs[0],
            max_ns: xs[xs.len() - 1],
        };
        println!(
            "| {} | {} B | {:.2} us | {:.2} us | {:.2} us | {:.2} us |",
            m.router,
            m.bytes,
            m.median_ns / 1e3,
            m.min_ns / 1e3,
            m.max_ns / 1e3,
            m.median_ns / 1e3 / (m.bytes as f64 / 1024.0)
        );
        results.push(m);
    }
    if let Some(path) = std::env::var_os("BENCH_JSON") {
        let rows: Vec<String> = results
            .iter()
            .map(|m| {
                format!(
                    "{{\"router\":\"{}\",\"bytes\":{},\"median_ns\":{:.1},\"min_ns\":{:.1},\"max_ns\":{:.1}}}",
                    m.router, m.bytes, m.median_ns, m.min_ns, m.max_ns
                )
            })
            .collect();
        let json = format!("[\n{}\n]\n", rows.join(",\n"));
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("cannot write {path:?}: {e}");
            std::process::exit(1);
        }
    }
}

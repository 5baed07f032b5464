//! The Prometheus writer (`metrics::prometheus`) against the reference parser: writes a
//! sample exposition (counters, gauges, a histogram, awkward label values and help text)
//! to the target directory and runs `tests/prometheus/parse_check.py` on it with the
//! project's virtualenv (`.venv`, from `scripts/setup.sh`). Without that Python, or
//! without `prometheus_client` in it, the test says it skipped.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use llm_mux_core::metrics::prometheus::Exposition;
use llm_mux_core::metrics::sketch::LatencySketch;

fn sample_exposition() -> String {
    let mut latency = LatencySketch::new();
    for ms in [12, 80, 95, 240, 260, 900, 1_500, 30_000] {
        latency.add_ms(ms);
    }
    let mut e = Exposition::new();
    e.counter(
        "llm_mux_requests_total",
        "Requests answered, by model and outcome.",
    )
    .sample_u64(
        "llm_mux_requests_total",
        &[("model", "mistral-small"), ("outcome", "ok")],
        1_234,
    )
    .sample_u64(
        "llm_mux_requests_total",
        &[("model", "mistral-large"), ("outcome", "error")],
        7,
    )
    .sample_u64(
        "llm_mux_requests_total",
        &[
            ("model", "a \"quoted\\\" name\nwith a line feed"),
            ("outcome", "ok"),
        ],
        1,
    )
    .counter(
        "llm_mux_cost_usd_total",
        "Upstream cost in US dollars.\nA second line \\ with a backslash.",
    )
    .sample("llm_mux_cost_usd_total", &[], 0.003_125)
    .gauge(
        "llm_mux_latency_p95_ms",
        "p95 latency from the sketch (within 1%).",
    )
    .sample(
        "llm_mux_latency_p95_ms",
        &[],
        latency.quantile(0.95).expect("non-empty"),
    )
    .gauge(
        "llm_mux_quality_estimate",
        "Estimated quality; NaN when unknown.",
    )
    .sample("llm_mux_quality_estimate", &[("tier", "small")], f64::NAN)
    .sample("llm_mux_quality_estimate", &[("tier", "large")], 1e-7)
    .histogram("llm_mux_latency_ms", "Upstream latency in milliseconds.")
    .histogram_sample(
        "llm_mux_latency_ms",
        &[("tier", "small")],
        &[(100.0, 3), (250.0, 1), (1_000.0, 2), (2_500.0, 1)],
        latency.sum(),
        latency.count(),
    )
    .histogram_sample(
        "llm_mux_latency_ms",
        &[("tier", "large")],
        &[(100.0, 0), (0.5e4, 0)],
        0.0,
        0,
    );
    e.into_string()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_reference_parser_reads_the_exposition() {
    let text = sample_exposition();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus_exposition.txt");
    std::fs::write(&path, &text).expect("write the sample exposition");

    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    let importable = python.exists()
        && Command::new(&python)
            .args(["-c", "import prometheus_client"])
            .output()
            .is_ok_and(|out| out.status.success());
    if !importable {
        eprintln!(
            "skipped: {} with prometheus_client not found (run scripts/setup.sh); exposition at {}",
            python.display(),
            path.display()
        );
        return;
    }
    let out = Command::new(&python)
        .arg(root.join("tests/prometheus/parse_check.py"))
        .arg(&path)
        .args([
            "llm_mux_requests",
            "llm_mux_cost_usd",
            "llm_mux_latency_p95_ms",
            "llm_mux_quality_estimate",
            "llm_mux_latency_ms",
        ])
        .output()
        .expect("run parse_check.py");
    assert!(
        out.status.success(),
        "parse_check.py rejected the exposition:\n{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("histogram llm_mux_latency_ms: 12 samples"),
        "{report}"
    );

    // The check is not vacuous: it rejects unparsable text and a non-cumulative histogram.
    for (name, bad) in [
        ("unparsable", "m{model=\"unterminated} 1\n"),
        (
            "not cumulative",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
        ),
    ] {
        let bad_path = path.with_file_name("prometheus_bad.txt");
        std::fs::write(&bad_path, bad).expect("write the bad exposition");
        let status = Command::new(&python)
            .arg(root.join("tests/prometheus/parse_check.py"))
            .arg(&bad_path)
            .output()
            .expect("run parse_check.py")
            .status;
        assert!(!status.success(), "{name}: accepted");
    }
}

//! `/metrics` in the Prometheus text exposition format (0.0.4): the aggregate's counters
//! by tier, model and outcome, costs, tokens and the latency histogram, and which format
//! a request's `Accept` header asks for.
//!
//! It owns the metric names, help texts and labels. It must not read anything but the
//! aggregate (no key appears: only tier, model, outcome and direction labels).

use super::aggregate::{Aggregate, LATENCY_BUCKETS_MS};
use super::prometheus::Exposition;

/// The aggregate as Prometheus text; `evaluation_cost_usd` is the quality sampling spend.
pub fn prometheus(a: &Aggregate, evaluation_cost_usd: f64) -> String {
    let mut e = Exposition::new();
    let name = "llm_mux_requests_total";
    e.counter(
        name,
        "Requests by tier, model and outcome: ok, an incomplete stream's reason, or a failure's (tier and model empty).",
    );
    for (key, n) in &a.series.0 {
        let mut parts = key.splitn(3, '|');
        let (tier, model, outcome) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        e.sample_u64(
            name,
            &[("tier", tier), ("model", model), ("outcome", outcome)],
            *n,
        );
    }
    let name = "llm_mux_cost_usd_total";
    e.counter(
        name,
        "Upstream cost in USD by tier and model (evaluation spend apart).",
    );
    for (key, usd) in &a.cost_by.0 {
        let (tier, model) = key.split_once('|').unwrap_or((key, ""));
        e.sample(name, &[("tier", tier), ("model", model)], *usd);
    }
    let name = "llm_mux_cost_if_always_large_usd_total";
    e.counter(
        name,
        "What the same tokens would have cost on the top tier, in USD.",
    );
    e.sample(name, &[], a.cost_if_always_large_usd);
    let name = "llm_mux_evaluation_cost_usd_total";
    e.counter(name, "Spend on judged shadow samples, in USD.");
    e.sample(name, &[], evaluation_cost_usd);
    let name = "llm_mux_tokens_total";
    e.counter(
        name,
        "Tokens by direction (in: prompt, out: completion) and tier.",
    );
    for (key, n) in &a.tokens_by.0 {
        let (direction, tier) = key.split_once('|').unwrap_or((key, ""));
        e.sample_u64(name, &[("direction", direction), ("tier", tier)], *n);
    }
    let name = "llm_mux_request_duration_ms";
    e.histogram(
        name,
        "Latency of completed requests in milliseconds, by tier.",
    );
    let mut tiers: Vec<&str> = a
        .latency_by
        .0
        .iter()
        .filter_map(|(k, _)| k.split_once('|').map(|(t, _)| t))
        .collect();
    tiers.dedup();
    for tier in tiers {
        let at = |suffix: &str| a.latency_by[format!("{tier}|{suffix}").as_str()];
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
            .iter()
            .enumerate()
            .map(|(i, &bound)| (bound as f64, at(&i.to_string())))
            .collect();
        let count =
            buckets.iter().map(|(_, n)| n).sum::<u64>() + at(&LATENCY_BUCKETS_MS.len().to_string());
        e.histogram_sample(name, &[("tier", tier)], &buckets, at("sum") as f64, count);
    }
    for (name, help, n) in [
        (
            "llm_mux_cache_hits_total",
            "Answers served from the response cache.",
            a.cache_hits,
        ),
        (
            "llm_mux_cache_misses_total",
            "Cacheable requests answered upstream.",
            a.cache_misses,
        ),
    ] {
        e.counter(name, help);
        e.sample_u64(name, &[], n);
    }
    let name = "llm_mux_cache_saved_usd_total";
    e.counter(
        name,
        "What the cache hits would have cost upstream, in USD.",
    );
    e.sample(name, &[], a.cache_saved_usd);
    e.into_string()
}

/// Whether an `Accept` header prefers the Prometheus text (`text/plain` or
/// `application/openmetrics-text`) over JSON, as a Prometheus scraper's does; curl
/// (`*/*`) and browsers (`text/html`, ...) keep JSON.
pub fn wants_prometheus(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut text, mut json) = (0u32, 0u32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        // q in thousandths (no float parsing).
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .next()
            .map_or(1000, quality);
        match media.as_str() {
            "text/plain" | "application/openmetrics-text" => text = text.max(q),
            "application/json" | "application/*" | "*/*" => json = json.max(q),
            _ => {}
        }
    }
    text > json
}

/// A q-value (`1`, `0.5`, `0.25`) in thousandths; unreadable: 0.
fn quality(q: &str) -> u32 {
    let q = q.trim();
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let int: u32 = match int {
        "1" => 1000,
        "0" | "" => 0,
        _ => return 0,
    };
    let mut thousandths = 0;
    for (i, d) in frac.bytes().take(3).enumerate() {
        if !d.is_ascii_digit() {
            return 0;
        }
        thousandths += u32::from(d - b'0') * [100, 10, 1][i];
    }
    (int + thousandths).min(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsEvent;

    #[test]
    fn scrapers_get_text_and_people_get_json() {
        // Prometheus 2.x / 3.x.
        assert!(wants_prometheus(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(wants_prometheus(Some(
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        )));
        assert!(wants_prometheus(Some("text/plain")));
        // curl, browsers, JSON clients.
        assert!(!wants_prometheus(None));
        assert!(!wants_prometheus(Some("*/*")));
        assert!(!wants_prometheus(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
        )));
        assert!(!wants_prometheus(Some("application/json")));
        assert!(!wants_prometheus(Some(
            "application/json, text/plain;q=0.5"
        )));
        assert_eq!(quality("0.75"), 750);
        assert_eq!(quality("1.0"), 1000);
        assert_eq!(quality("x"), 0);
    }

    #[test]
    fn the_exposition_carries_the_aggregate() {
        let mut a = Aggregate::default();
        let completed = |latency_ms: u64, tier: &str| MetricsEvent::Completed {
            id: "x".into(),
            model: format!("m-{tier}"),
            tier: tier.into(),
            top_tier: tier == "large",
            latency_ms,
            tokens_in: 10,
            tokens_out: 20,
            cost_usd: 0.5,
            cost_if_large_usd: 1.0,
            tokens_estimated: false,
            incomplete: None,
            fallback: None,
            usage_implausible: false,
            dropped_stream_events: 0,
            key: None,
            cache: None,
            cache_saved_usd: 0.0,
            upstream_ms: 0,
            ttfb_ms: None,
        };
        a.apply(&completed(7, "small"));
        a.apply(&completed(120, "small"));
        a.apply(&completed(90_000, "large"));
        a.apply(&MetricsEvent::Failed {
            id: "y".into(),
            reason: "upstream_error".into(),
            fallback: None,
            cost: None,
            key: None,
            count: 3,
            status: None,
        });
        let text = prometheus(&a, 0.25);
        for line in [
            "llm_mux_requests_total{tier=\"small\",model=\"m-small\",outcome=\"ok\"} 2",
            "llm_mux_requests_total{tier=\"\",model=\"\",outcome=\"upstream_error\"} 3",
            "llm_mux_cost_usd_total{tier=\"large\",model=\"m-large\"} 0.5",
            "llm_mux_cost_if_always_large_usd_total 3",
            "llm_mux_evaluation_cost_usd_total 0.25",
            "llm_mux_tokens_total{direction=\"in\",tier=\"small\"} 20",
            "llm_mux_request_duration_ms_bucket{tier=\"small\",le=\"10\"} 1",
            "llm_mux_request_duration_ms_bucket{tier=\"small\",le=\"250\"} 2",
            "llm_mux_request_duration_ms_bucket{tier=\"large\",le=\"60000\"} 0",
            "llm_mux_request_duration_ms_bucket{tier=\"large\",le=\"+Inf\"} 1",
            "llm_mux_request_duration_ms_sum{tier=\"small\"} 127",
            "llm_mux_request_duration_ms_count{tier=\"small\"} 2",
            "# TYPE llm_mux_request_duration_ms histogram",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}

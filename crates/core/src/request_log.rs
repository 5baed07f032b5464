//! The per-request log line: one JSON object per request, what Workers Logs indexes when
//! deployed (LOG_REQUESTS, on by default).
//!
//! It owns the line's fields: request id, method, route, status, outcome, tier, model,
//! score, latency, tokens, cost, cache and key id. It must never carry the prompt, the
//! answer or a secret: it is built from the metrics event (which holds none of them) and
//! the request's route and status only.

use serde_json::{Map, Value};

use crate::metrics::MetricsEvent;

/// What the line says about a request besides its metrics event.
pub struct Line<'a> {
    /// The request id (also in `x-request-id`).
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// The path (no query string).
    pub route: &'a str,
    /// The answer's status.
    pub status: u16,
    /// The routing score, when the request was routed.
    pub score: Option<f64>,
    /// Milliseconds from arrival to the answer (for a stream: to its end).
    pub latency_ms: u64,
}

impl Line<'_> {
    /// The JSON line, with what `event` records (none for requests that record nothing,
    /// e.g. `GET /metrics`).
    pub fn json(&self, event: Option<&MetricsEvent>) -> String {
        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.into(), v);
        };
        put("request_id", self.request_id.into());
        put("method", self.method.into());
        put("route", self.route.into());
        put("status", self.status.into());
        put("latency_ms", self.latency_ms.into());
        if let Some(score) = self.score {
            put("score", score.into());
        }
        match event {
            Some(MetricsEvent::Completed {
                tier,
                model,
                tokens_in,
                tokens_out,
                cost_usd,
                incomplete,
                cache,
                key,
                ..
            }) => {
                put("outcome", incomplete.as_deref().unwrap_or("ok").into());
                put("tier", tier.as_str().into());
                put("model", model.as_str().into());
                put("tokens_in", (*tokens_in).into());
                put("tokens_out", (*tokens_out).into());
                put("cost_usd", (*cost_usd).into());
                if let Some(cache) = cache {
                    put("cache", cache.as_str().into());
                }
                if let Some(key) = key {
                    put("key_id", key.as_str().into());
                }
            }
            Some(MetricsEvent::Failed {
                reason, cost, key, ..
            }) => {
                put("outcome", reason.as_str().into());
                if let Some(cost) = cost {
                    put("tokens_in", cost.tokens_in.into());
                    put("tokens_out", cost.tokens_out.into());
                    put("cost_usd", cost.cost_usd.into());
                }
                if let Some(key) = key {
                    put("key_id", key.as_str().into());
                }
            }
            None => put(
                "outcome",
                if self.status < 400 { "ok" } else { "error" }.into(),
            ),
        }
        crate::jsonwrite::text(&Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: u16, score: Option<f64>) -> Line<'static> {
        Line {
            request_id: "00ff",
            method: "POST",
            route: "/query",
            status,
            score,
            latency_ms: 12,
        }
    }

    #[test]
    fn a_completed_request_logs_its_routing_usage_and_cost() {
        let event = MetricsEvent::Completed {
            id: "00ff".into(),
            model: "mistral-small-latest".into(),
            tier: "small".into(),
            top_tier: false,
            latency_ms: 12,
            tokens_in: 3,
            tokens_out: 5,
            cost_usd: 0.25,
            cost_if_large_usd: 1.0,
            tokens_estimated: false,
            incomplete: None,
            fallback: None,
            usage_implausible: false,
            dropped_stream_events: 0,
            key: Some("06aa3438ca66".into()),
            cache: Some("miss".into()),
            cache_saved_usd: 0.0,
            upstream_ms: 0,
            ttfb_ms: None,
        };
        let v: Value = serde_json::from_str(&line(200, Some(0.5)).json(Some(&event))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "request_id": "00ff", "method": "POST", "route": "/query", "status": 200,
                "latency_ms": 12, "score": 0.5, "outcome": "ok", "tier": "small",
                "model": "mistral-small-latest", "tokens_in": 3, "tokens_out": 5,
                "cost_usd": 0.25, "cache": "miss", "key_id": "06aa3438ca66"
            })
        );
    }

    #[test]
    fn failures_and_plain_routes_log_their_outcome() {
        let event = MetricsEvent::Failed {
            id: "00ff".into(),
            reason: "rate_limited".into(),
            fallback: None,
            cost: None,
            key: Some("k".into()),
            count: 1,
            status: None,
        };
        let v: Value = serde_json::from_str(&line(429, None).json(Some(&event))).unwrap();
        assert_eq!(v["outcome"], "rate_limited");
        assert_eq!(v["key_id"], "k");
        assert!(v.get("score").is_none() && v.get("cost_usd").is_none());
        let v: Value = serde_json::from_str(&line(200, None).json(None)).unwrap();
        assert_eq!(v["outcome"], "ok");
        let v: Value = serde_json::from_str(&line(404, None).json(None)).unwrap();
        assert_eq!(v["outcome"], "error");
    }
}

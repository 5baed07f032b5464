//! The metrics aggregate: a fold of request events, mergeable, and its /metrics report.

use serde::{Deserialize, Serialize};

pub use crate::named::Named;

use super::sketch::LatencySketch;

/// One finished request, as recorded after the response is sent.
///
/// Serialised as one object tagged by `kind` (`{"kind": "completed", "id": ..}`), and read
/// back field by field from a `serde_json::Value` rather than through serde's derive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsEvent {
    /// The upstream answered and the client got an answer.
    Completed {
        /// Request id, for de-duplication of retried deliveries.
        id: String,
        /// Configured model of the tier (the alias users configure).
        model: String,
        /// Name of the tier the request went to.
        tier: String,
        /// Whether that is the most expensive plain tier ("large").
        top_tier: bool,
        /// Request latency.
        latency_ms: u64,
        /// Prompt tokens.
        tokens_in: u64,
        /// Completion tokens.
        tokens_out: u64,
        /// Cost at the routed model's prices.
        cost_usd: f64,
        /// Cost of the same tokens at the large model's prices.
        cost_if_large_usd: f64,
        /// Tokens were estimated because the upstream sent no usage.
        #[serde(default)]
        tokens_estimated: bool,
        /// Why a streamed answer is incomplete (`client_disconnected`, `upstream_cut`,
        /// `upstream_timeout`, `upstream_too_large`, `no_usage`); `None` when complete.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incomplete: Option<String>,
        /// The tier that failed first, when another tier answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<FallbackRecord>,
        /// The upstream's usage could not be true and was replaced by the estimate.
        #[serde(default, skip_serializing_if = "is_false")]
        usage_implausible: bool,
        /// Malformed stream events dropped.
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped_stream_events: u64,
        /// Id of the client key (when LLM_MUX_API_KEYS is set).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The response cache's part: `hit` (answered from the cache, at no cost),
        /// `miss` (answered upstream and stored) or `bypass`; none when not cacheable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<String>,
        /// What a cache hit would have cost upstream.
        #[serde(default, skip_serializing_if = "is_zero_f64")]
        cache_saved_usd: f64,
        /// Time spent waiting on the upstream (ms): from the first call to the whole
        /// answer (fallbacks included), or to a stream's end.
        #[serde(default, skip_serializing_if = "is_zero")]
        upstream_ms: u64,
        /// A stream's time to first byte (ms from the request's arrival).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttfb_ms: Option<u64>,
    },
    /// The request failed. Nothing is added to the costs unless the upstream was paid
    /// for an answer that then failed (`cost`, estimated).
    Failed {
        /// Request id.
        id: String,
        /// Metric label of the error.
        reason: String,
        /// Fallbacks tried before the failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<FallbackRecord>,
        /// The estimated cost of an answer the upstream produced (and billed) but that
        /// broke before the client got it; written as the completed event's token and cost
        /// fields, so the reader takes them with the fields it has.
        #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
        cost: Option<FailureCost>,
        /// Id of the client key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Requests this event stands for: failures with nothing but a reason (refused
        /// keys, limits) are counted together in the isolate's batch
        /// ([`super::outbox::Outbox::push`]), so that a flood costs no row per request.
        #[serde(skip_serializing_if = "is_one")]
        count: u64,
        /// The upstream's HTTP status, when the failure is its error answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A fallback: `route` is `from->to` (tier names), `reason` the failure's metric label.
/// Written as one string, `"small->large upstream_error"` (a string costs the reader no
/// struct deserializer of its own in the wasm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct FallbackRecord {
    /// `small->large`.
    pub route: String,
    /// Why the first tier failed (`upstream_error`, `upstream_rate_limited`, ...).
    pub reason: String,
}

impl From<FallbackRecord> for String {
    fn from(f: FallbackRecord) -> String {
        format!("{} {}", f.route, f.reason)
    }
}

impl TryFrom<String> for FallbackRecord {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let (route, reason) = text
            .split_once(' ')
            .ok_or_else(|| format!("fallback {text:?}: expected \"from->to reason\""))?;
        Ok(Self {
            route: route.to_string(),
            reason: reason.to_string(),
        })
    }
}

/// What a failed request cost anyway (tokens estimated).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FailureCost {
    /// Prompt tokens (estimated).
    pub tokens_in: u64,
    /// Completion tokens (estimated from the bytes received).
    pub tokens_out: u64,
    /// Cost at the routed model's prices.
    pub cost_usd: f64,
    /// The same tokens at the top tier's prices.
    pub cost_if_large_usd: f64,
}

impl<'de> Deserialize<'de> for MetricsEvent {
    /// Read through serde_json's `Value` (already in the worker) rather than a derived
    /// visitor of its own (~7 KB of wasm for this struct's 20 fields): the fields of the
    /// event's `kind` are required, the rest default, unknown ones are ignored.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(deserializer)?;
        MetricsEvent::from_value(&v).map_err(D::Error::custom)
    }
}

impl MetricsEvent {
    /// Reads an event from its JSON (what `Deserialize` does after parsing a `Value`).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        let missing = |field: &str| format!("missing field `{field}`");
        let text = |field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
        let count = |field: &str| v.get(field).and_then(Value::as_u64);
        let amount = |field: &str| v.get(field).and_then(Value::as_f64);
        let flag = |field: &str| v.get(field).and_then(Value::as_bool);
        let id = text("id").ok_or_else(|| missing("id"))?;
        let fallback = match text("fallback") {
            Some(f) => Some(FallbackRecord::try_from(f)?),
            None => None,
        };
        match v.get("kind").and_then(Value::as_str) {
            Some("completed") => Ok(Self::Completed {
                id,
                model: text("model").ok_or_else(|| missing("model"))?,
                tier: text("tier").ok_or_else(|| missing("tier"))?,
                top_tier: flag("top_tier").ok_or_else(|| missing("top_tier"))?,
                latency_ms: count("latency_ms").ok_or_else(|| missing("latency_ms"))?,
                tokens_in: count("tokens_in").ok_or_else(|| missing("tokens_in"))?,
                tokens_out: count("tokens_out").ok_or_else(|| missing("tokens_out"))?,
                cost_usd: amount("cost_usd").ok_or_else(|| missing("cost_usd"))?,
                cost_if_large_usd: amount("cost_if_large_usd")
                    .ok_or_else(|| missing("cost_if_large_usd"))?,
                tokens_estimated: flag("tokens_estimated").unwrap_or(false),
                incomplete: text("incomplete"),
                fallback,
                usage_implausible: flag("usage_implausible").unwrap_or(false),
                dropped_stream_events: count("dropped_stream_events").unwrap_or(0),
                key: text("key"),
                cache: text("cache"),
                cache_saved_usd: amount("cache_saved_usd").unwrap_or(0.0),
                upstream_ms: count("upstream_ms").unwrap_or(0),
                ttfb_ms: count("ttfb_ms"),
            }),
            Some("failed") => Ok(Self::Failed {
                id,
                reason: text("reason").ok_or_else(|| missing("reason"))?,
                fallback,
                cost: match (
                    count("tokens_in"),
                    count("tokens_out"),
                    amount("cost_usd"),
                    amount("cost_if_large_usd"),
                ) {
                    (
                        Some(tokens_in),
                        Some(tokens_out),
                        Some(cost_usd),
                        Some(cost_if_large_usd),
                    ) => Some(FailureCost {
                        tokens_in,
                        tokens_out,
                        cost_usd,
                        cost_if_large_usd,
                    }),
                    _ => None,
                },
                key: text("key"),
                count: count("count").unwrap_or(1),
                status: count("status").and_then(|s| u16::try_from(s).ok()),
            }),
            Some(other) => Err(format!(
                "unknown variant `{other}`, expected `completed` or `failed`"
            )),
            None => Err(missing("kind")),
        }
    }
}

impl MetricsEvent {
    /// The event's request id.
    pub fn id(&self) -> &str {
        match self {
            Self::Completed { id, .. } | Self::Failed { id, .. } => id,
        }
    }

    /// What the request cost (USD): its price, or a failed answer's estimated cost.
    pub fn cost_usd(&self) -> f64 {
        match self {
            Self::Completed { cost_usd, .. } => *cost_usd,
            Self::Failed { cost, .. } => cost.map_or(0.0, |c| c.cost_usd),
        }
    }

    /// Notes the response cache's part in a completed request (`hit`, `miss`,
    /// `bypass`). A hit paid nothing upstream: its costs and tokens are zero, and what it
    /// would have cost (`saved_usd`) is counted apart.
    pub fn set_cache(&mut self, outcome: &str, saved_usd: f64) {
        if let Self::Completed {
            cache,
            cache_saved_usd,
            cost_usd,
            cost_if_large_usd,
            tokens_in,
            tokens_out,
            ..
        } = self
        {
            *cache = Some(outcome.to_string());
            if outcome == "hit" {
                *cache_saved_usd = saved_usd;
                *cost_usd = 0.0;
                *cost_if_large_usd = 0.0;
                *tokens_in = 0;
                *tokens_out = 0;
            }
        }
    }

    /// Notes a completed request's time waiting on the upstream and, for a stream, its
    /// time to first byte (ms).
    pub fn set_timing(&mut self, upstream: u64, ttfb: Option<u64>) {
        if let Self::Completed {
            upstream_ms,
            ttfb_ms,
            ..
        } = self
        {
            *upstream_ms = upstream;
            *ttfb_ms = ttfb;
        }
    }

    /// Marks the event as a request of the client key `key_id`.
    pub fn set_key(&mut self, key_id: Option<&str>) {
        match self {
            Self::Completed { key, .. } | Self::Failed { key, .. } => {
                *key = key_id.map(str::to_string);
            }
        }
    }
}

/// Cumulative usage since the store was created.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Aggregate {
    /// Completed requests.
    pub total_requests: u64,
    /// Completed requests routed below the top tier (to a cheaper model).
    pub small_requests: u64,
    /// Completed requests routed to the top tier.
    pub large_requests: u64,
    /// Completed requests per tier name.
    pub tier_breakdown: Named<u64>,
    /// Streamed requests that ended incomplete, per reason (counted in total_requests too).
    pub incomplete_requests: Named<u64>,
    /// Sum of request costs.
    pub total_cost_usd: f64,
    /// What the same tokens would have cost on the large model.
    pub cost_if_always_large_usd: f64,
    /// Sum of latencies of completed requests.
    pub total_latency_ms: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Completed requests whose tokens were estimated.
    pub estimated_usage_requests: u64,
    /// Completed requests per model.
    pub model_breakdown: Named<u64>,
    /// Failed requests per reason.
    pub failed_requests: Named<u64>,
    /// Fallbacks per route and reason, keyed `small->large upstream_error`.
    pub fallbacks: Named<u64>,
    /// Requests whose reported usage could not be true (replaced by an estimate).
    pub implausible_usage_requests: u64,
    /// Malformed upstream stream events dropped.
    pub dropped_stream_events: u64,
    /// Failed requests that cost something anyway (an answer broke after it was billed).
    pub failed_requests_with_cost: u64,
    /// Usage per client key id.
    pub keys: Named<KeyUsage>,
    /// Response cache: answers served from it.
    pub cache_hits: u64,
    /// Response cache: cacheable requests answered upstream (and stored).
    pub cache_misses: u64,
    /// Response cache: requests that asked to bypass it.
    pub cache_bypasses: u64,
    /// What the cache hits would have cost upstream.
    pub cache_saved_usd: f64,
    /// Requests by `tier|model|outcome` (`ok`, an incomplete stream's reason, or a
    /// failure's; tier and model empty for failures), for the Prometheus exposition.
    pub series: Named<u64>,
    /// Cost by `tier|model`.
    pub cost_by: Named<f64>,
    /// Tokens by `in|tier` and `out|tier`.
    pub tokens_by: Named<u64>,
    /// Completed requests' latencies by `tier|bucket` (the index in
    /// [`LATENCY_BUCKETS_MS`] of the first bound at or above the latency; past the last:
    /// its length), and `tier|sum` (milliseconds in all).
    pub latency_by: Named<u64>,
    /// Completed requests' latency sketches by `kind|scope`: kind `request` (the whole
    /// request), `upstream` (waiting on the upstream), `overhead` (request − upstream) or
    /// `ttfb` (a stream's first byte); scope empty (overall), `t:<tier>` or `m:<model>`.
    pub sketches: Named<LatencySketch>,
    /// Completed requests' usage by `t:<tier>` and `m:<model>`.
    pub usage_by: Named<Usage>,
}

/// Completed requests' usage in one tier or model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Completed requests.
    pub requests: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// The same tokens at the top tier's prices.
    pub cost_if_always_large_usd: f64,
}

impl Usage {
    fn from_value(value: &serde_json::Value) -> Self {
        let n = |f: &str| {
            value
                .get(f)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let x = |f: &str| {
            value
                .get(f)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        Self {
            requests: n("requests"),
            tokens_in: n("tokens_in"),
            tokens_out: n("tokens_out"),
            cost_usd: x("cost_usd"),
            cost_if_always_large_usd: x("cost_if_always_large_usd"),
        }
    }

    fn merge(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost_usd += other.cost_usd;
        self.cost_if_always_large_usd += other.cost_if_always_large_usd;
    }
}

/// Upper bounds (ms) of the latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// One client key's usage (by its id).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyUsage {
    /// Completed requests.
    pub requests: u64,
    /// Failed requests (rate-limited and over-budget ones included).
    pub failed_requests: u64,
    /// Requests refused by a rate limit.
    pub rate_limited: u64,
    /// Requests refused by a budget.
    pub budget_refused: u64,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// What is left of the key's daily budget (USD), when it has one (from the ledger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_budget_left_usd: Option<f64>,
    /// What is left of the key's monthly budget (USD), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_budget_left_usd: Option<f64>,
}

impl KeyUsage {
    /// As stored (fields missing or of another type read as zero).
    fn from_value(value: &serde_json::Value) -> Self {
        let n = |field: &str| {
            value
                .get(field)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        Self {
            requests: n("requests"),
            failed_requests: n("failed_requests"),
            rate_limited: n("rate_limited"),
            budget_refused: n("budget_refused"),
            tokens_in: n("tokens_in"),
            tokens_out: n("tokens_out"),
            cost_usd: value
                .get("cost_usd")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0),
            daily_budget_left_usd: None,
            monthly_budget_left_usd: None,
        }
    }

    fn merge(&mut self, other: &KeyUsage) {
        self.requests += other.requests;
        self.failed_requests += other.failed_requests;
        self.rate_limited += other.rate_limited;
        self.budget_refused += other.budget_refused;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost_usd += other.cost_usd;
    }
}

impl<'de> Deserialize<'de> for Aggregate {
    /// Read field by field from a `serde_json::Value` (missing fields are zero, so older
    /// stored states load), rather than through a derived visitor of its own.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_value(&serde_json::Value::deserialize(
            deserializer,
        )?))
    }
}

/// The counts of a JSON object (entries that are not counts are skipped).
fn counts_of(value: Option<&serde_json::Value>) -> Named<u64> {
    value
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, c)| Some((k.clone(), c.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

impl Aggregate {
    /// Reads an aggregate from its JSON (what `Deserialize` does after parsing a `Value`).
    pub fn from_value(v: &serde_json::Value) -> Self {
        let n = |field: &str| {
            v.get(field)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let x = |field: &str| {
            v.get(field)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        let mut keys = Named::default();
        if let Some(m) = v.get("keys").and_then(serde_json::Value::as_object) {
            for (id, usage) in m {
                keys.insert(id, KeyUsage::from_value(usage));
            }
        }
        Self {
            total_requests: n("total_requests"),
            small_requests: n("small_requests"),
            large_requests: n("large_requests"),
            tier_breakdown: counts_of(v.get("tier_breakdown")),
            incomplete_requests: counts_of(v.get("incomplete_requests")),
            total_cost_usd: x("total_cost_usd"),
            cost_if_always_large_usd: x("cost_if_always_large_usd"),
            total_latency_ms: n("total_latency_ms"),
            tokens_in: n("tokens_in"),
            tokens_out: n("tokens_out"),
            estimated_usage_requests: n("estimated_usage_requests"),
            model_breakdown: counts_of(v.get("model_breakdown")),
            failed_requests: counts_of(v.get("failed_requests")),
            fallbacks: counts_of(v.get("fallbacks")),
            implausible_usage_requests: n("implausible_usage_requests"),
            dropped_stream_events: n("dropped_stream_events"),
            failed_requests_with_cost: n("failed_requests_with_cost"),
            keys,
            cache_hits: n("cache_hits"),
            cache_misses: n("cache_misses"),
            cache_bypasses: n("cache_bypasses"),
            cache_saved_usd: x("cache_saved_usd"),
            series: counts_of(v.get("series")),
            cost_by: v
                .get("cost_by")
                .and_then(serde_json::Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, c)| Some((k.clone(), c.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            tokens_by: counts_of(v.get("tokens_by")),
            latency_by: counts_of(v.get("latency_by")),
            usage_by: v
                .get("usage_by")
                .and_then(serde_json::Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, u)| (k.clone(), Usage::from_value(u)))
                        .collect()
                })
                .unwrap_or_default(),
            sketches: v
                .get("sketches")
                .and_then(serde_json::Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, s)| Some((k.clone(), LatencySketch::decode(s.as_str()?)?)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn count_fallback(&mut self, fallback: &Option<FallbackRecord>) {
        if let Some(f) = fallback {
            self.fallbacks.add(&String::from(f.clone()), 1);
        }
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &MetricsEvent) {
        match event {
            MetricsEvent::Completed {
                model,
                tier,
                top_tier,
                latency_ms,
                tokens_in,
                tokens_out,
                cost_usd,
                cost_if_large_usd,
                tokens_estimated,
                incomplete,
                fallback,
                usage_implausible,
                dropped_stream_events,
                key,
                cache,
                cache_saved_usd,
                upstream_ms,
                ttfb_ms,
                ..
            } => {
                let called = cache.as_deref() != Some("hit");
                let figures = [
                    ("request", Some(*latency_ms)),
                    ("upstream", called.then_some(*upstream_ms)),
                    (
                        "overhead",
                        called.then(|| latency_ms.saturating_sub(*upstream_ms)),
                    ),
                    ("ttfb", *ttfb_ms),
                ];
                // One key buffer for the twelve sketches (the fold runs per event and per
                // time bucket in the metrics object).
                let mut sketch_key = String::with_capacity(64);
                for (prefix, name) in [("", ""), ("t:", tier.as_str()), ("m:", model.as_str())] {
                    for (kind, ms) in figures {
                        let Some(ms) = ms else { continue };
                        sketch_key.clear();
                        sketch_key.push_str(kind);
                        sketch_key.push('|');
                        sketch_key.push_str(prefix);
                        sketch_key.push_str(name);
                        self.sketches.entry(&sketch_key).add_ms(ms);
                    }
                }
                let outcome = incomplete.as_deref().unwrap_or("ok");
                self.series.add(&format!("{tier}|{model}|{outcome}"), 1);
                *self.cost_by.entry(&format!("{tier}|{model}")) += cost_usd;
                self.tokens_by.add(&format!("in|{tier}"), *tokens_in);
                self.tokens_by.add(&format!("out|{tier}"), *tokens_out);
                let bucket = LATENCY_BUCKETS_MS
                    .iter()
                    .position(|&b| *latency_ms <= b)
                    .unwrap_or(LATENCY_BUCKETS_MS.len());
                self.latency_by.add(&format!("{tier}|{bucket}"), 1);
                self.latency_by.add(&format!("{tier}|sum"), *latency_ms);
                match cache.as_deref() {
                    Some("hit") => self.cache_hits += 1,
                    Some("miss") => self.cache_misses += 1,
                    Some("bypass") => self.cache_bypasses += 1,
                    _ => {}
                }
                self.cache_saved_usd += cache_saved_usd;
                for name in [format!("t:{tier}"), format!("m:{model}")] {
                    let usage = self.usage_by.entry(&name);
                    usage.requests += 1;
                    usage.tokens_in += tokens_in;
                    usage.tokens_out += tokens_out;
                    usage.cost_usd += cost_usd;
                    usage.cost_if_always_large_usd += cost_if_large_usd;
                }
                if let Some(key) = key {
                    let usage = self.keys.entry(key);
                    usage.requests += 1;
                    usage.tokens_in += tokens_in;
                    usage.tokens_out += tokens_out;
                    usage.cost_usd += cost_usd;
                }
                self.count_fallback(fallback);
                self.implausible_usage_requests += u64::from(*usage_implausible);
                self.dropped_stream_events += dropped_stream_events;
                self.total_requests += 1;
                if *top_tier {
                    self.large_requests += 1;
                } else {
                    self.small_requests += 1;
                }
                self.tier_breakdown.add(tier, 1);
                if let Some(reason) = incomplete {
                    self.incomplete_requests.add(reason, 1);
                }
                self.total_cost_usd += cost_usd;
                self.cost_if_always_large_usd += cost_if_large_usd;
                self.total_latency_ms += latency_ms;
                self.tokens_in += tokens_in;
                self.tokens_out += tokens_out;
                self.estimated_usage_requests += u64::from(*tokens_estimated);
                self.model_breakdown.add(model, 1);
            }
            MetricsEvent::Failed {
                reason,
                fallback,
                cost,
                key,
                count,
                status,
                ..
            } => {
                self.failed_requests.add(reason, *count);
                let outcome = match status {
                    Some(status) => format!("upstream_error_{status}"),
                    None => reason.clone(),
                };
                self.series.add(&format!("||{outcome}"), *count);
                if let Some(cost) = cost {
                    *self.cost_by.entry("|") += cost.cost_usd;
                }
                if let Some(key) = key {
                    let usage = self.keys.entry(key);
                    usage.failed_requests += count;
                    match reason.as_str() {
                        "rate_limited" => usage.rate_limited += count,
                        "budget_exceeded" => usage.budget_refused += count,
                        _ => {}
                    }
                    if let Some(cost) = cost {
                        usage.tokens_in += cost.tokens_in;
                        usage.tokens_out += cost.tokens_out;
                        usage.cost_usd += cost.cost_usd;
                    }
                }
                self.count_fallback(fallback);
                if let Some(cost) = cost {
                    self.failed_requests_with_cost += 1;
                    self.total_cost_usd += cost.cost_usd;
                    self.cost_if_always_large_usd += cost.cost_if_large_usd;
                    self.tokens_in += cost.tokens_in;
                    self.tokens_out += cost.tokens_out;
                    self.estimated_usage_requests += 1;
                }
            }
        }
    }

    /// Adds another aggregate (e.g. of another shard) into this one.
    pub fn merge(&mut self, other: &Aggregate) {
        self.total_requests += other.total_requests;
        self.small_requests += other.small_requests;
        self.large_requests += other.large_requests;
        self.total_cost_usd += other.total_cost_usd;
        self.cost_if_always_large_usd += other.cost_if_always_large_usd;
        self.total_latency_ms += other.total_latency_ms;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.estimated_usage_requests += other.estimated_usage_requests;
        self.model_breakdown.merge(&other.model_breakdown);
        self.failed_requests.merge(&other.failed_requests);
        self.tier_breakdown.merge(&other.tier_breakdown);
        self.incomplete_requests.merge(&other.incomplete_requests);
        self.fallbacks.merge(&other.fallbacks);
        self.implausible_usage_requests += other.implausible_usage_requests;
        self.dropped_stream_events += other.dropped_stream_events;
        self.failed_requests_with_cost += other.failed_requests_with_cost;
        self.series.merge(&other.series);
        for (k, v) in &other.cost_by.0 {
            *self.cost_by.entry(k) += v;
        }
        self.tokens_by.merge(&other.tokens_by);
        self.latency_by.merge(&other.latency_by);
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.cache_bypasses += other.cache_bypasses;
        self.cache_saved_usd += other.cache_saved_usd;
        for (key, usage) in &other.keys.0 {
            self.keys.entry(key).merge(usage);
        }
        for (key, sketch) in &other.sketches.0 {
            self.sketches.entry(key).merge(sketch);
        }
        for (name, usage) in &other.usage_by.0 {
            self.usage_by.entry(name).merge(usage);
        }
    }

    /// Completed and failed requests by outcome: `ok`, `incomplete_<reason>` (a stream
    /// cut short), `upstream_error_<status>` (the upstream's error answer), or the
    /// failure's label (`upstream_timeout`, `bad_request`, `rate_limited`, ...).
    pub fn outcomes(&self) -> Named<u64> {
        let mut outcomes = Named::default();
        for (key, n) in &self.series.0 {
            let mut parts = key.splitn(3, '|');
            let (tier, outcome) = (parts.next().unwrap_or(""), parts.nth(1).unwrap_or(""));
            if tier.is_empty() || outcome == "ok" {
                outcomes.add(outcome, *n);
            } else {
                outcomes.add(&format!("incomplete_{outcome}"), *n);
            }
        }
        outcomes
    }

    /// The usage entries named `prefix<name>`, by name.
    fn usage_of(&self, prefix: &str) -> Named<Usage> {
        self.usage_by
            .0
            .iter()
            .filter_map(|(k, u)| Some((k.strip_prefix(prefix)?.to_string(), u.clone())))
            .collect()
    }

    /// `latency_ms` of the report: p50/p95/p99 (ms, 0.1 ms resolution) and counts of each
    /// kind, overall (`overall`), per tier (`by_tier`) and per model (`by_model`).
    pub fn latency_report(&self) -> serde_json::Value {
        use serde_json::{Map, Value};
        let mut overall = Map::new();
        let mut by_tier = Map::new();
        let mut by_model = Map::new();
        for (key, sketch) in &self.sketches.0 {
            let Some((kind, scope)) = key.split_once('|') else {
                continue;
            };
            let (map, name) = match scope.split_once(':') {
                Some(("t", tier)) => (&mut by_tier, tier),
                Some(("m", model)) => (&mut by_model, model),
                _ => (&mut overall, ""),
            };
            let q = |q: f64| sketch.quantile(q).map(|x| (x * 10.0).round() / 10.0);
            let mut figures = Map::new();
            figures.insert("count".into(), sketch.count().into());
            for (label, at) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                figures.insert(label.into(), q(at).into());
            }
            let figures = Value::Object(figures);
            if name.is_empty() {
                map.insert(kind.into(), figures);
            } else if let Value::Object(target) =
                map.entry(name).or_insert_with(|| Value::Object(Map::new()))
            {
                target.insert(kind.into(), figures);
            }
        }
        let mut out = Map::new();
        out.insert("overall".into(), Value::Object(overall));
        out.insert("by_tier".into(), Value::Object(by_tier));
        out.insert("by_model".into(), Value::Object(by_model));
        Value::Object(out)
    }

    /// Savings versus always-large as a ratio in [0, 1] (0 when nothing was spent).
    pub fn savings_ratio(&self) -> f64 {
        if self.cost_if_always_large_usd > 0.0 {
            1.0 - self.total_cost_usd / self.cost_if_always_large_usd
        } else {
            0.0
        }
    }

    /// Share of completed requests that went to the small tier.
    pub fn small_ratio(&self) -> f64 {
        ratio(self.small_requests, self.total_requests)
    }

    /// The `/metrics` body.
    pub fn report(&self) -> MetricsReport {
        MetricsReport {
            total_requests: self.total_requests,
            total_cost: format_usd(self.total_cost_usd),
            avg_latency_ms: if self.total_requests == 0 {
                0
            } else {
                (self.total_latency_ms as f64 / self.total_requests as f64).round() as u64
            },
            cost_savings_vs_always_large: format_percent(self.savings_ratio()),
            small_model_usage_percent: format_percent(self.small_ratio()),
            model_breakdown: self.model_breakdown.clone(),
            total_cost_usd: self.total_cost_usd,
            cost_if_always_large_usd: self.cost_if_always_large_usd,
            savings_ratio: self.savings_ratio(),
            small_model_ratio: self.small_ratio(),
            tier_breakdown: self.tier_breakdown.clone(),
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            requests_with_estimated_tokens: self.estimated_usage_requests,
            incomplete_requests: self.incomplete_requests.clone(),
            failed_requests_total: self.failed_requests.total(),
            failed_requests: self.failed_requests.clone(),
            failed_requests_with_cost: self.failed_requests_with_cost,
            fallbacks_total: self.fallbacks.clone(),
            implausible_usage_requests: self.implausible_usage_requests,
            dropped_stream_events: self.dropped_stream_events,
            evaluation_cost_usd: 0.0,
            keys: self.keys.clone(),
            budgets: Named::default(),
            cache: CacheReport {
                hits: self.cache_hits,
                misses: self.cache_misses,
                bypasses: self.cache_bypasses,
                saved_usd: self.cache_saved_usd,
            },
            total_savings_usd: (self.cost_if_always_large_usd - self.total_cost_usd).max(0.0)
                + self.cache_saved_usd,
            window: "all".into(),
            latency_ms: self.latency_report(),
            outcomes: self.outcomes(),
            by_tier: self.usage_of("t:"),
            by_model: self.usage_of("m:"),
            prices_as_of: String::new(),
            storage: serde_json::Value::Null,
            quality: serde_json::Value::Null,
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `$0.24`; amounts under a cent keep six decimals so they do not read as zero.
pub fn format_usd(amount: f64) -> String {
    if amount == 0.0 || amount >= 0.01 {
        format!("${}", crate::numfmt::fixed(amount, 2))
    } else {
        format!("${}", crate::numfmt::fixed(amount, 6))
    }
}

/// `71.8%` from a ratio.
pub fn format_percent(ratio: f64) -> String {
    format!("{}%", crate::numfmt::fixed(ratio * 100.0, 1))
}

/// The `GET /metrics` response body: the original design's fields, then numeric ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    /// Completed requests.
    pub total_requests: u64,
    /// Total cost, formatted (`$0.24`).
    pub total_cost: String,
    /// Mean latency of completed requests, rounded.
    pub avg_latency_ms: u64,
    /// Savings versus sending every request to the large model (`71.8%`).
    pub cost_savings_vs_always_large: String,
    /// Share of completed requests below the top tier, i.e. on a cheaper model (`76.3%`).
    pub small_model_usage_percent: String,
    /// Completed requests per model.
    pub model_breakdown: Named<u64>,
    /// Total cost in USD.
    pub total_cost_usd: f64,
    /// The same tokens priced at the large model's prices.
    pub cost_if_always_large_usd: f64,
    /// 1 - total_cost_usd / cost_if_always_large_usd.
    pub savings_ratio: f64,
    /// small requests / total requests.
    pub small_model_ratio: f64,
    /// Completed requests per tier name.
    pub tier_breakdown: Named<u64>,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Completed requests whose tokens were estimated (no usage from upstream).
    pub requests_with_estimated_tokens: u64,
    /// Streamed requests that ended incomplete, per reason.
    pub incomplete_requests: Named<u64>,
    /// Failed requests per reason.
    pub failed_requests: Named<u64>,
    /// Sum of failed_requests.
    pub failed_requests_total: u64,
    /// Failed requests whose (estimated) cost is in the totals: answers the upstream
    /// produced, and likely billed, that broke before the client got them.
    #[serde(default)]
    pub failed_requests_with_cost: u64,
    /// Fallbacks to another tier, keyed by route and reason:
    /// `{"small->large upstream_error": 3}`.
    #[serde(default)]
    pub fallbacks_total: Named<u64>,
    /// Requests whose reported usage could not be true (priced by the estimate instead;
    /// counted in requests_with_estimated_tokens too).
    #[serde(default)]
    pub implausible_usage_requests: u64,
    /// Malformed upstream stream events dropped instead of relayed.
    #[serde(default)]
    pub dropped_stream_events: u64,
    /// Spend on judged shadow samples (the other tier's calls and the judge's), included
    /// in the totals above; savings are net of it.
    #[serde(default)]
    pub evaluation_cost_usd: f64,
    /// Usage per client key id (requests, tokens, cost, budget left).
    #[serde(skip_deserializing)]
    pub keys: Named<KeyUsage>,
    /// Spend of each budgeted scope (`global`, `key:<id>`) in its current periods, from
    /// the ledger; empty when no budget or rate limit is configured.
    #[serde(skip_deserializing)]
    pub budgets: Named<BudgetStatus>,
    /// The response cache: hits, misses, bypasses and what the hits saved (not in the
    /// routing savings above).
    #[serde(default)]
    pub cache: CacheReport,
    /// Routing savings (cost_if_always_large_usd - total_cost_usd) plus the cache's.
    #[serde(default)]
    pub total_savings_usd: f64,
    /// The time window these figures cover (`1h`, `24h`, `7d`, `30d` or `all`).
    #[serde(default)]
    pub window: String,
    /// Latency percentiles of completed requests ([`Aggregate::latency_report`]).
    #[serde(default)]
    pub latency_ms: serde_json::Value,
    /// Requests by outcome ([`Aggregate::outcomes`]).
    #[serde(default)]
    pub outcomes: Named<u64>,
    /// Completed requests' usage per tier: requests, tokens, cost and the cost at the top
    /// tier's prices.
    #[serde(skip_deserializing)]
    pub by_tier: Named<Usage>,
    /// The same per model.
    #[serde(skip_deserializing)]
    pub by_model: Named<Usage>,
    /// Date of the price table used for costs (set by the worker).
    #[serde(default)]
    pub prices_as_of: String,
    /// Storage work of the metrics objects since they started (set by the worker).
    #[serde(default)]
    pub storage: serde_json::Value,
    /// Judged shadow samples: the estimate, its interval, the threshold and the spend
    /// (set by the worker).
    #[serde(default)]
    pub quality: serde_json::Value,
}

/// `/metrics`' `cache` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Answers served from the cache.
    pub hits: u64,
    /// Cacheable requests answered upstream.
    pub misses: u64,
    /// Requests that bypassed the cache.
    pub bypasses: u64,
    /// What the hits would have cost upstream (USD).
    pub saved_usd: f64,
}

/// A scope's caps and spend in the current UTC day and month.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BudgetStatus {
    /// The daily cap (USD), if any.
    pub daily_budget_usd: Option<f64>,
    /// Settled spend today (USD).
    pub daily_spent_usd: f64,
    /// Settled spend today in picodollars (exact).
    pub daily_spent_picousd: u64,
    /// The monthly cap (USD), if any.
    pub monthly_budget_usd: Option<f64>,
    /// Settled spend this month (USD).
    pub monthly_spent_usd: f64,
    /// Settled spend this month in picodollars (exact).
    pub monthly_spent_picousd: u64,
    /// Held for requests in flight (USD).
    pub reserved_usd: f64,
    /// The rate limit (requests per minute), if any.
    pub rate_limit_per_minute: Option<u64>,
}

impl MetricsReport {
    /// Adds the ledger's budget status per scope, and what is left of each key's budgets
    /// to its usage.
    pub fn with_budgets(mut self, budgets: Named<BudgetStatus>) -> Self {
        for (scope, status) in &budgets.0 {
            if let Some(id) = scope.strip_prefix("key:") {
                let usage = self.keys.entry(id);
                let left = |cap: Option<f64>, spent: f64| cap.map(|c| (c - spent).max(0.0));
                usage.daily_budget_left_usd = left(status.daily_budget_usd, status.daily_spent_usd);
                usage.monthly_budget_left_usd =
                    left(status.monthly_budget_usd, status.monthly_spent_usd);
            }
        }
        self.budgets = budgets;
        self
    }

    /// Adds the evaluation spend of quality sampling: it joins `total_cost_usd` and
    /// `total_cost`, and the savings are reported net of it.
    pub fn with_evaluation_cost(mut self, evaluation_cost_usd: f64) -> Self {
        self.evaluation_cost_usd = evaluation_cost_usd;
        self.total_cost_usd += evaluation_cost_usd;
        self.total_cost = format_usd(self.total_cost_usd);
        self.savings_ratio = if self.cost_if_always_large_usd > 0.0 {
            1.0 - self.total_cost_usd / self.cost_if_always_large_usd
        } else {
            0.0
        };
        self.cost_savings_vs_always_large = format_percent(self.savings_ratio);
        self.total_savings_usd =
            (self.cost_if_always_large_usd - self.total_cost_usd).max(0.0) + self.cache.saved_usd;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    enum Tier {
        Small,
        Large,
    }

    fn completed(id: &str, tier: Tier, cost: f64, cost_large: f64) -> MetricsEvent {
        let (name, model) = match tier {
            Tier::Small => ("small", "mistral-small-latest"),
            Tier::Large => ("large", "mistral-large-latest"),
        };
        MetricsEvent::Completed {
            id: id.into(),
            model: model.into(),
            tier: name.into(),
            top_tier: matches!(tier, Tier::Large),
            incomplete: None,
            latency_ms: 100,
            tokens_in: 10,
            tokens_out: 20,
            cost_usd: cost,
            cost_if_large_usd: cost_large,
            tokens_estimated: false,
            fallback: None,
            usage_implausible: false,
            dropped_stream_events: 0,
            key: None,
            cache: None,
            cache_saved_usd: 0.0,
            upstream_ms: 0,
            ttfb_ms: None,
        }
    }

    #[test]
    fn empty_report() {
        let r = Aggregate::default().report();
        assert_eq!(r.total_requests, 0);
        assert_eq!(r.total_cost, "$0.00");
        assert_eq!(r.avg_latency_ms, 0);
        assert_eq!(r.cost_savings_vs_always_large, "0.0%");
        assert_eq!(r.small_model_usage_percent, "0.0%");
    }

    #[test]
    fn fold_counts_costs_and_failures() {
        let mut a = Aggregate::default();
        for i in 0..3 {
            a.apply(&completed(&i.to_string(), Tier::Small, 0.01, 0.04));
        }
        a.apply(&completed("l", Tier::Large, 0.05, 0.05));
        a.apply(&MetricsEvent::Failed {
            id: "f".into(),
            reason: "upstream_error".into(),
            fallback: None,
            cost: None,
            key: None,
            count: 1,
            status: None,
        });
        let r = a.report();
        assert_eq!(r.total_requests, 4);
        assert_eq!(r.model_breakdown["mistral-small-latest"], 3);
        assert_eq!(r.model_breakdown["mistral-large-latest"], 1);
        assert!((r.total_cost_usd - 0.08).abs() < 1e-12);
        assert!((r.cost_if_always_large_usd - 0.17).abs() < 1e-12);
        assert_eq!(r.total_cost, "$0.08");
        assert_eq!(r.cost_savings_vs_always_large, "52.9%");
        assert_eq!(r.small_model_usage_percent, "75.0%");
        assert_eq!(r.failed_requests["upstream_error"], 1);
        assert_eq!(r.failed_requests_total, 1);
        assert_eq!(r.tokens_in, 40);
        assert_eq!(r.avg_latency_ms, 100);
        assert_eq!(r.tier_breakdown["small"], 3);
        assert_eq!(r.tier_breakdown["large"], 1);
    }

    #[test]
    fn merge_equals_folding_everything() {
        let events: Vec<MetricsEvent> = (0..10)
            .map(|i| {
                completed(
                    &i.to_string(),
                    if i % 3 == 0 { Tier::Large } else { Tier::Small },
                    0.001 * i as f64,
                    0.002 * i as f64,
                )
            })
            .collect();
        let mut whole = Aggregate::default();
        events.iter().for_each(|e| whole.apply(e));
        let (mut left, mut right) = (Aggregate::default(), Aggregate::default());
        events[..4].iter().for_each(|e| left.apply(e));
        events[4..].iter().for_each(|e| right.apply(e));
        left.merge(&right);
        assert_eq!(left.total_requests, whole.total_requests);
        assert_eq!(left.model_breakdown, whole.model_breakdown);
        assert!((left.total_cost_usd - whole.total_cost_usd).abs() < 1e-12);
    }

    #[test]
    fn incomplete_streams_are_counted_with_their_cost() {
        let mut a = Aggregate::default();
        let mut event = completed("s", Tier::Small, 0.01, 0.02);
        if let MetricsEvent::Completed {
            incomplete,
            tokens_estimated,
            ..
        } = &mut event
        {
            *incomplete = Some("client_disconnected".into());
            *tokens_estimated = true;
        }
        a.apply(&event);
        let r = a.report();
        assert_eq!(r.total_requests, 1);
        assert_eq!(r.incomplete_requests["client_disconnected"], 1);
        assert_eq!(r.requests_with_estimated_tokens, 1);
        assert!(r.total_cost_usd > 0.0);
    }

    #[test]
    fn aggregate_round_trips_through_json() {
        let mut a = Aggregate::default();
        a.apply(&completed("x", Tier::Small, 0.5, 1.0));
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Aggregate>(&text).unwrap(), a);
        // an older stored state missing newer fields still loads
        let old: Aggregate = serde_json::from_str(r#"{"total_requests": 3}"#).unwrap();
        assert_eq!(old.total_requests, 3);
    }

    #[test]
    fn usage_per_key_sums_and_merges_exactly() {
        let keyed = |mut e: MetricsEvent, key: &str| {
            e.set_key(Some(key));
            e
        };
        let mut limited = failed("l1", "rate_limited");
        limited.set_key(Some("k1"));
        if let MetricsEvent::Failed { count, .. } = &mut limited {
            *count = 40;
        }
        let left = fold(&[
            keyed(completed("a", Tier::Small, 0.25, 1.0), "k1"),
            keyed(completed("b", Tier::Large, 1.0, 1.0), "k2"),
            limited,
            keyed(failed("c", "budget_exceeded"), "k2"),
            keyed(broken("d", (3, 5), (0.5, 2.0)), "k1"),
            completed("e", Tier::Small, 0.125, 1.0),
        ]);
        let k1 = KeyUsage {
            requests: 1,
            failed_requests: 41,
            rate_limited: 40,
            budget_refused: 0,
            tokens_in: 13,
            tokens_out: 25,
            cost_usd: 0.75,
            ..KeyUsage::default()
        };
        let k2 = KeyUsage {
            requests: 1,
            failed_requests: 1,
            budget_refused: 1,
            tokens_in: 10,
            tokens_out: 20,
            cost_usd: 1.0,
            ..KeyUsage::default()
        };
        assert_eq!(
            left.keys,
            Named(vec![("k1".into(), k1.clone()), ("k2".into(), k2.clone())])
        );
        assert_eq!(left.failed_requests["rate_limited"], 40);
        let right = fold(&[keyed(completed("f", Tier::Large, 2.0, 2.0), "k2")]);
        let mut merged = left.clone();
        merged.merge(&right);
        let k2_merged = KeyUsage {
            requests: 2,
            tokens_in: 20,
            tokens_out: 40,
            cost_usd: 3.0,
            ..k2
        };
        assert_eq!(
            merged.keys,
            Named(vec![("k1".into(), k1), ("k2".into(), k2_merged)])
        );
        assert_eq!(merged.report().keys, merged.keys);
        // Stored as a JSON object, read back the same.
        let text = serde_json::to_string(&merged).unwrap();
        assert!(text.contains(r#""keys":{"k1":{"requests":1,"#), "{text}");
        let back: Aggregate = serde_json::from_str(&text).unwrap();
        assert_eq!(back, merged);
    }

    #[test]
    fn event_wire_format() {
        let e = MetricsEvent::Failed {
            id: "a".into(),
            reason: "bad_request".into(),
            fallback: None,
            cost: None,
            key: None,
            count: 1,
            status: None,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"kind":"failed","id":"a","reason":"bad_request"}"#);
        assert_eq!(serde_json::from_str::<MetricsEvent>(&text).unwrap(), e);
    }

    #[test]
    fn completed_events_read_back_as_written() {
        let mut e = completed("x", Tier::Large, 0.5, 1.0);
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"completed","id":"x","#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<MetricsEvent>(&text).unwrap(), e);
        if let MetricsEvent::Completed {
            incomplete,
            tokens_estimated,
            ..
        } = &mut e
        {
            *incomplete = Some("upstream_cut".into());
            *tokens_estimated = true;
        }
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<MetricsEvent>(&text).unwrap(), e);
    }

    #[test]
    fn events_need_their_kind_s_fields_and_ignore_others() {
        let parse = serde_json::from_str::<MetricsEvent>;
        let missing = parse(r#"{"kind":"completed","id":"a","tier":"small"}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `model`"),
            "{missing}"
        );
        assert!(parse(r#"{"kind":"failed","id":"a"}"#).is_err());
        assert!(parse(r#"{"kind":"other","id":"a","reason":"x"}"#).is_err());
        assert!(parse(r#"{"id":"a","reason":"x"}"#).is_err());
        let e = parse(r#"{"reason":"x","kind":"failed","id":"a","extra":[1]}"#).unwrap();
        assert_eq!(
            e,
            MetricsEvent::Failed {
                id: "a".into(),
                reason: "x".into(),
                fallback: None,
                cost: None,
                key: None,
                count: 1,
                status: None,
            }
        );
    }

    #[test]
    fn fallbacks_and_failure_costs_round_trip_flat() {
        let events = [
            failed("f", "upstream_timeout"),
            broken("b", (5, 9), (0.5, 0.75)),
            event("code", "m-code", false, 50, (1, 2), (0.25, 0.5), true, None),
        ];
        for e in events {
            let text = serde_json::to_string(&e).unwrap();
            assert!(!text.contains("\"cost\""), "flat: {text}");
            let back: MetricsEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, e, "{text}");
        }
        // Flags that are off are left out of the event (it crosses to the Durable Object
        // in every batch).
        let plain = completed("p", Tier::Small, 0.5, 1.0);
        let text = serde_json::to_string(&plain).unwrap();
        assert!(
            !text.contains("usage_implausible") && !text.contains("dropped_stream_events"),
            "{text}"
        );
        let text = serde_json::to_string(&failed("f", "upstream_timeout")).unwrap();
        assert!(
            text.contains(r#""fallback":"large->small upstream_timeout""#),
            "{text}"
        );
        assert!(serde_json::from_str::<MetricsEvent>(
            r#"{"kind":"failed","id":"x","reason":"r","fallback":"no-space"}"#
        )
        .is_err());
    }

    #[test]
    fn money_and_percent_formats() {
        assert_eq!(format_usd(0.24), "$0.24");
        assert_eq!(format_usd(12.345), "$12.35");
        assert_eq!(format_usd(0.002552), "$0.002552");
        assert_eq!(format_percent(0.718), "71.8%");
    }

    #[test]
    fn evaluation_spend_joins_the_total_and_savings_are_net_of_it() {
        let mut a = Aggregate::default();
        a.apply(&MetricsEvent::Completed {
            id: "e1".into(),
            model: "m".into(),
            tier: "small".into(),
            top_tier: false,
            latency_ms: 1,
            tokens_in: 1,
            tokens_out: 1,
            cost_usd: 0.25,
            cost_if_large_usd: 2.0,
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
        });
        let plain = a.report();
        assert_eq!(plain.clone().with_evaluation_cost(0.0), plain);
        let r = a.report().with_evaluation_cost(0.15);
        assert_eq!(r.evaluation_cost_usd, 0.15);
        assert!((r.total_cost_usd - 0.40).abs() < 1e-12);
        assert_eq!(r.total_cost, "$0.40");
        assert!((r.savings_ratio - 0.80).abs() < 1e-12);
        assert_eq!(r.cost_savings_vs_always_large, "80.0%");
        assert_eq!(r.cost_if_always_large_usd, 2.0);
        let empty = Aggregate::default().report().with_evaluation_cost(0.5);
        assert_eq!(empty.savings_ratio, 0.0);
    }

    /// A completed event with every field distinct, so that a wrong operator on any one
    /// of them changes a sum. Costs are dyadic fractions: their sums are exact.
    #[allow(clippy::too_many_arguments)]
    fn event(
        tier: &str,
        model: &str,
        top_tier: bool,
        latency_ms: u64,
        tokens: (u64, u64),
        costs: (f64, f64),
        estimated: bool,
        incomplete: Option<&str>,
    ) -> MetricsEvent {
        MetricsEvent::Completed {
            id: format!("{tier}-{latency_ms}"),
            model: model.into(),
            tier: tier.into(),
            top_tier,
            latency_ms,
            tokens_in: tokens.0,
            tokens_out: tokens.1,
            cost_usd: costs.0,
            cost_if_large_usd: costs.1,
            tokens_estimated: estimated,
            incomplete: incomplete.map(String::from),
            // The new counters vary with the fields above, so every sum stays distinct.
            fallback: (tier == "code").then(|| FallbackRecord {
                route: "small->code".into(),
                reason: "upstream_error".into(),
            }),
            usage_implausible: estimated,
            dropped_stream_events: latency_ms / 25,
            key: None,
            cache: None,
            cache_saved_usd: 0.0,
            upstream_ms: 0,
            ttfb_ms: None,
        }
    }

    /// A failed event; a timeout fell back from large to small first.
    fn failed(id: &str, reason: &str) -> MetricsEvent {
        MetricsEvent::Failed {
            id: id.into(),
            reason: reason.into(),
            fallback: (reason == "upstream_timeout").then(|| FallbackRecord {
                route: "large->small".into(),
                reason: "upstream_timeout".into(),
            }),
            cost: None,
            key: None,
            count: 1,
            status: None,
        }
    }

    /// A failure that cost something: an answer that broke after it was billed.
    fn broken(id: &str, tokens: (u64, u64), costs: (f64, f64)) -> MetricsEvent {
        MetricsEvent::Failed {
            id: id.into(),
            reason: "upstream_broken".into(),
            fallback: None,
            cost: Some(FailureCost {
                tokens_in: tokens.0,
                tokens_out: tokens.1,
                cost_usd: costs.0,
                cost_if_large_usd: costs.1,
            }),
            key: None,
            count: 1,
            status: None,
        }
    }

    fn counts(pairs: &[(&str, u64)]) -> Named<u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn routes(triples: &[(&str, &str, u64)]) -> Named<u64> {
        triples
            .iter()
            .map(|(route, reason, n)| (format!("{route} {reason}"), *n))
            .collect()
    }

    /// Two shards' events. Every sum differs between the shards and no pair of them is
    /// (0, x), (1, x) or (2, 2), so `+=` replaced by `*=` or `-=` in `merge` changes it.
    fn left_events() -> Vec<MetricsEvent> {
        vec![
            event(
                "small",
                "m-small",
                false,
                100,
                (3, 5),
                (0.25, 1.0),
                false,
                None,
            ),
            event(
                "small",
                "m-small",
                false,
                200,
                (7, 11),
                (0.5, 2.0),
                true,
                Some("no_usage"),
            ),
            event(
                "large",
                "m-large",
                true,
                300,
                (13, 17),
                (4.0, 4.0),
                false,
                None,
            ),
            event(
                "large",
                "m-large",
                true,
                50,
                (2, 1),
                (1.0, 1.0),
                true,
                Some("upstream_cut"),
            ),
            event(
                "code",
                "m-code",
                false,
                25,
                (1, 4),
                (0.125, 0.5),
                false,
                Some("no_usage"),
            ),
            failed("f1", "upstream_error"),
            failed("f2", "upstream_error"),
            failed("f3", "bad_request"),
            broken("f7", (5, 9), (0.5, 0.75)),
        ]
    }

    fn right_events() -> Vec<MetricsEvent> {
        vec![
            event(
                "small",
                "m-small",
                false,
                1_000,
                (19, 23),
                (0.75, 3.0),
                true,
                Some("upstream_cut"),
            ),
            event(
                "large",
                "m-large",
                true,
                3_000,
                (29, 31),
                (8.0, 8.0),
                false,
                Some("no_usage"),
            ),
            event(
                "large",
                "m-large",
                true,
                7_000,
                (37, 41),
                (16.0, 16.0),
                true,
                None,
            ),
            event(
                "small",
                "m-small",
                false,
                11_000,
                (43, 47),
                (0.0625, 0.25),
                false,
                Some("client_disconnected"),
            ),
            event(
                "code",
                "m-code",
                false,
                13_000,
                (53, 59),
                (0.375, 1.5),
                true,
                None,
            ),
            event(
                "code",
                "m-code",
                false,
                17_000,
                (61, 67),
                (2.0, 8.0),
                false,
                None,
            ),
            event(
                "large",
                "m-large",
                true,
                19_000,
                (71, 73),
                (32.0, 32.0),
                false,
                None,
            ),
            failed("f4", "upstream_error"),
            failed("f5", "upstream_timeout"),
            failed("f6", "upstream_timeout"),
            broken("f8", (11, 13), (1.25, 2.5)),
        ]
    }

    /// The latency sketches of `events`, built by hand: every completed request's latency
    /// overall, per tier and per model; upstream and overhead unless a cache hit; ttfb
    /// for streams.
    fn sketches_of(events: &[MetricsEvent]) -> Named<LatencySketch> {
        let mut sketches: Named<LatencySketch> = Named::default();
        for e in events {
            if let MetricsEvent::Completed {
                tier,
                model,
                latency_ms,
                upstream_ms,
                ttfb_ms,
                cache,
                ..
            } = e
            {
                for scope in [String::new(), format!("t:{tier}"), format!("m:{model}")] {
                    let mut add = |kind: &str, v: u64| {
                        sketches.entry(&format!("{kind}|{scope}")).add(v as f64)
                    };
                    add("request", *latency_ms);
                    if cache.as_deref() != Some("hit") {
                        add("upstream", *upstream_ms);
                        add("overhead", latency_ms - upstream_ms);
                    }
                    if let Some(t) = ttfb_ms {
                        add("ttfb", *t);
                    }
                }
            }
        }
        sketches
    }

    /// Completed requests' usage by tier and model, summed by hand.
    fn usage_of_events(events: &[MetricsEvent]) -> Named<Usage> {
        let mut usage: Named<Usage> = Named::default();
        for e in events {
            if let MetricsEvent::Completed {
                tier,
                model,
                tokens_in,
                tokens_out,
                cost_usd,
                cost_if_large_usd,
                ..
            } = e
            {
                for name in [format!("t:{tier}"), format!("m:{model}")] {
                    let u = usage.entry(&name);
                    u.requests += 1;
                    u.tokens_in += tokens_in;
                    u.tokens_out += tokens_out;
                    u.cost_usd += cost_usd;
                    u.cost_if_always_large_usd += cost_if_large_usd;
                }
            }
        }
        usage
    }

    fn fold(events: &[MetricsEvent]) -> Aggregate {
        let mut a = Aggregate::default();
        events.iter().for_each(|e| a.apply(e));
        a
    }

    #[test]
    fn apply_sums_every_field_exactly() {
        let a = fold(&left_events());
        let expected = Aggregate {
            total_requests: 5,
            small_requests: 3,
            large_requests: 2,
            tier_breakdown: counts(&[("small", 2), ("large", 2), ("code", 1)]),
            incomplete_requests: counts(&[("no_usage", 2), ("upstream_cut", 1)]),
            total_cost_usd: 6.375,
            cost_if_always_large_usd: 9.25,
            total_latency_ms: 675,
            tokens_in: 31,
            tokens_out: 47,
            estimated_usage_requests: 3,
            model_breakdown: counts(&[("m-small", 2), ("m-large", 2), ("m-code", 1)]),
            failed_requests: counts(&[
                ("upstream_error", 2),
                ("bad_request", 1),
                ("upstream_broken", 1),
            ]),
            fallbacks: routes(&[("small->code", "upstream_error", 1)]),
            implausible_usage_requests: 2,
            dropped_stream_events: 27,
            failed_requests_with_cost: 1,
            keys: Named::default(),
            series: Named::from_pairs(&[
                ("code|m-code|no_usage", 1),
                ("large|m-large|ok", 1),
                ("large|m-large|upstream_cut", 1),
                ("small|m-small|no_usage", 1),
                ("small|m-small|ok", 1),
                ("||bad_request", 1),
                ("||upstream_broken", 1),
                ("||upstream_error", 2),
            ]),
            cost_by: Named(vec![
                ("code|m-code".into(), 0.125),
                ("large|m-large".into(), 5.0),
                ("small|m-small".into(), 0.75),
                ("|".into(), 0.5),
            ]),
            tokens_by: Named::from_pairs(&[
                ("in|code", 1),
                ("in|large", 15),
                ("in|small", 10),
                ("out|code", 4),
                ("out|large", 18),
                ("out|small", 16),
            ]),
            latency_by: Named::from_pairs(&[
                ("code|1", 1),
                ("code|sum", 25),
                ("large|2", 1),
                ("large|5", 1),
                ("large|sum", 350),
                ("small|3", 1),
                ("small|4", 1),
                ("small|sum", 300),
            ]),
            sketches: sketches_of(&left_events()),
            usage_by: usage_of_events(&left_events()),
            ..Aggregate::default()
        };
        assert_eq!(a, expected);
        let b = fold(&right_events());
        let expected = Aggregate {
            total_requests: 7,
            small_requests: 4,
            large_requests: 3,
            tier_breakdown: counts(&[("small", 2), ("large", 3), ("code", 2)]),
            incomplete_requests: counts(&[
                ("upstream_cut", 1),
                ("no_usage", 1),
                ("client_disconnected", 1),
            ]),
            total_cost_usd: 60.4375,
            cost_if_always_large_usd: 71.25,
            total_latency_ms: 71_000,
            tokens_in: 324,
            tokens_out: 354,
            estimated_usage_requests: 4,
            model_breakdown: counts(&[("m-small", 2), ("m-large", 3), ("m-code", 2)]),
            failed_requests: counts(&[
                ("upstream_error", 1),
                ("upstream_timeout", 2),
                ("upstream_broken", 1),
            ]),
            fallbacks: routes(&[
                ("small->code", "upstream_error", 2),
                ("large->small", "upstream_timeout", 2),
            ]),
            implausible_usage_requests: 3,
            dropped_stream_events: 2_840,
            failed_requests_with_cost: 1,
            keys: Named::default(),
            series: Named::from_pairs(&[
                ("code|m-code|ok", 2),
                ("large|m-large|no_usage", 1),
                ("large|m-large|ok", 2),
                ("small|m-small|client_disconnected", 1),
                ("small|m-small|upstream_cut", 1),
                ("||upstream_broken", 1),
                ("||upstream_error", 1),
                ("||upstream_timeout", 2),
            ]),
            cost_by: Named(vec![
                ("code|m-code".into(), 2.375),
                ("large|m-large".into(), 56.0),
                ("small|m-small".into(), 0.8125),
                ("|".into(), 1.25),
            ]),
            tokens_by: Named::from_pairs(&[
                ("in|code", 114),
                ("in|large", 137),
                ("in|small", 62),
                ("out|code", 126),
                ("out|large", 145),
                ("out|small", 70),
            ]),
            latency_by: Named::from_pairs(&[
                ("code|10", 2),
                ("code|sum", 30000),
                ("large|10", 1),
                ("large|8", 1),
                ("large|9", 1),
                ("large|sum", 29000),
                ("small|10", 1),
                ("small|6", 1),
                ("small|sum", 12000),
            ]),
            sketches: sketches_of(&right_events()),
            usage_by: usage_of_events(&right_events()),
            ..Aggregate::default()
        };
        assert_eq!(b, expected);
    }

    #[test]
    fn merge_adds_every_field_exactly() {
        let (left, right) = (fold(&left_events()), fold(&right_events()));
        let mut merged = left.clone();
        merged.merge(&right);
        let expected = Aggregate {
            total_requests: 12,
            small_requests: 7,
            large_requests: 5,
            tier_breakdown: counts(&[("small", 4), ("large", 5), ("code", 3)]),
            incomplete_requests: counts(&[
                ("no_usage", 3),
                ("upstream_cut", 2),
                ("client_disconnected", 1),
            ]),
            total_cost_usd: 66.8125,
            cost_if_always_large_usd: 80.5,
            total_latency_ms: 71_675,
            tokens_in: 355,
            tokens_out: 401,
            estimated_usage_requests: 7,
            model_breakdown: counts(&[("m-small", 4), ("m-large", 5), ("m-code", 3)]),
            failed_requests: counts(&[
                ("upstream_error", 3),
                ("bad_request", 1),
                ("upstream_timeout", 2),
                ("upstream_broken", 2),
            ]),
            fallbacks: routes(&[
                ("small->code", "upstream_error", 3),
                ("large->small", "upstream_timeout", 2),
            ]),
            implausible_usage_requests: 5,
            dropped_stream_events: 2_867,
            failed_requests_with_cost: 2,
            keys: Named::default(),
            series: Named::from_pairs(&[
                ("code|m-code|no_usage", 1),
                ("code|m-code|ok", 2),
                ("large|m-large|no_usage", 1),
                ("large|m-large|ok", 3),
                ("large|m-large|upstream_cut", 1),
                ("small|m-small|client_disconnected", 1),
                ("small|m-small|no_usage", 1),
                ("small|m-small|ok", 1),
                ("small|m-small|upstream_cut", 1),
                ("||bad_request", 1),
                ("||upstream_broken", 2),
                ("||upstream_error", 3),
                ("||upstream_timeout", 2),
            ]),
            cost_by: Named(vec![
                ("code|m-code".into(), 2.5),
                ("large|m-large".into(), 61.0),
                ("small|m-small".into(), 1.5625),
                ("|".into(), 1.75),
            ]),
            tokens_by: Named::from_pairs(&[
                ("in|code", 115),
                ("in|large", 152),
                ("in|small", 72),
                ("out|code", 130),
                ("out|large", 163),
                ("out|small", 86),
            ]),
            latency_by: Named::from_pairs(&[
                ("code|1", 1),
                ("code|10", 2),
                ("code|sum", 30025),
                ("large|10", 1),
                ("large|2", 1),
                ("large|5", 1),
                ("large|8", 1),
                ("large|9", 1),
                ("large|sum", 29350),
                ("small|10", 1),
                ("small|3", 1),
                ("small|4", 1),
                ("small|6", 1),
                ("small|sum", 12300),
            ]),
            sketches: sketches_of(&[left_events(), right_events()].concat()),
            usage_by: usage_of_events(&[left_events(), right_events()].concat()),
            ..Aggregate::default()
        };
        assert_eq!(merged, expected);
        // the same as folding every event into one aggregate, in either order
        let mut all = left_events();
        all.extend(right_events());
        assert_eq!(fold(&all), expected);
        let mut other_way = right.clone();
        other_way.merge(&left);
        assert_eq!(other_way, expected);
        // merging an empty aggregate changes nothing, and into an empty one copies
        let mut unchanged = left.clone();
        unchanged.merge(&Aggregate::default());
        assert_eq!(unchanged, left);
        let mut copy = Aggregate::default();
        copy.merge(&right);
        assert_eq!(copy, right);
    }

    #[test]
    fn report_of_a_merged_aggregate() {
        let mut a = fold(&left_events());
        a.merge(&fold(&right_events()));
        let r = a.report();
        assert_eq!(r.total_requests, 12);
        assert_eq!(r.total_cost, "$66.81");
        assert_eq!(r.avg_latency_ms, 5_973); // 71_675 / 12 = 5972.9
        assert_eq!(r.cost_savings_vs_always_large, "17.0%"); // 1 - 66.8125 / 80.5
        assert_eq!(r.small_model_usage_percent, "58.3%"); // 7 / 12
        assert_eq!(r.small_model_ratio, 7.0 / 12.0);
        assert_eq!(r.savings_ratio, 1.0 - 66.8125 / 80.5);
        assert_eq!(r.tokens_in, 355);
        assert_eq!(r.tokens_out, 401);
        assert_eq!(r.requests_with_estimated_tokens, 7);
        assert_eq!(r.failed_requests_total, 8);
        assert_eq!(r.failed_requests_with_cost, 2);
        assert_eq!(
            r.fallbacks_total,
            routes(&[
                ("small->code", "upstream_error", 3),
                ("large->small", "upstream_timeout", 2),
            ])
        );
        assert_eq!(r.implausible_usage_requests, 5);
        assert_eq!(r.dropped_stream_events, 2_867);
        assert_eq!(r.model_breakdown, a.model_breakdown);
        assert_eq!(r.tier_breakdown, a.tier_breakdown);
        assert_eq!(r.incomplete_requests, a.incomplete_requests);
        assert_eq!(r.failed_requests, a.failed_requests);
        // usage per tier and model: the completed requests' figures, adding up to the
        // totals less what failed requests cost
        assert_eq!(r.by_tier.get("large").map(|u| u.requests), Some(5));
        assert_eq!(r.by_model.get("m-code").map(|u| u.requests), Some(3));
        let sum = |f: fn(&Usage) -> u64| r.by_tier.0.iter().map(|(_, u)| f(u)).sum::<u64>();
        assert_eq!(sum(|u| u.requests), r.total_requests);
        let cost: f64 = r.by_model.0.iter().map(|(_, u)| u.cost_usd).sum();
        assert_eq!(
            cost,
            66.8125 - 1.75,
            "the total less the failed requests' cost"
        );
    }

    /// A seeded generator (splitmix64) for the shard tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Events of every kind, with costs in 1/64 dollars (sums exact in any order).
    fn random_events(rng: &mut Rng, n: usize) -> Vec<MetricsEvent> {
        let tiers = [
            ("small", "m-small", false),
            ("large", "m-large", true),
            ("code", "m-code", false),
        ];
        (0..n)
            .map(|i| {
                let id = format!("e{i}");
                let key = ["k1", "k2", ""][rng.below(3) as usize];
                let key = (!key.is_empty()).then(|| key.to_string());
                if rng.below(4) == 0 {
                    let status = [None, Some(503), Some(429)][rng.below(3) as usize];
                    let cost = (rng.below(3) == 0).then(|| FailureCost {
                        tokens_in: 1 + rng.below(50),
                        tokens_out: 1 + rng.below(50),
                        cost_usd: (1 + rng.below(64)) as f64 / 64.0,
                        cost_if_large_usd: (1 + rng.below(128)) as f64 / 64.0,
                    });
                    return MetricsEvent::Failed {
                        id,
                        reason: ["upstream_error", "rate_limited", "upstream_timeout"]
                            [rng.below(3) as usize]
                            .into(),
                        fallback: (rng.below(3) == 0).then(|| FallbackRecord {
                            route: "small->large".into(),
                            reason: "upstream_error".into(),
                        }),
                        cost,
                        key,
                        count: 1 + rng.below(3),
                        status,
                    };
                }
                let (tier, model, top) = tiers[rng.below(3) as usize];
                let latency = 1 + rng.below(5_000);
                MetricsEvent::Completed {
                    id,
                    model: model.into(),
                    tier: tier.into(),
                    top_tier: top,
                    latency_ms: latency,
                    tokens_in: rng.below(400),
                    tokens_out: rng.below(400),
                    cost_usd: rng.below(64) as f64 / 64.0,
                    cost_if_large_usd: rng.below(256) as f64 / 64.0,
                    tokens_estimated: rng.below(5) == 0,
                    incomplete: (rng.below(6) == 0).then(|| "upstream_cut".to_string()),
                    fallback: (rng.below(5) == 0).then(|| FallbackRecord {
                        route: "large->small".into(),
                        reason: "upstream_timeout".into(),
                    }),
                    usage_implausible: rng.below(7) == 0,
                    dropped_stream_events: rng.below(3),
                    key,
                    cache: [None, Some("hit"), Some("miss"), Some("bypass")][rng.below(4) as usize]
                        .map(str::to_string),
                    cache_saved_usd: rng.below(16) as f64 / 64.0,
                    upstream_ms: rng.below(latency + 1),
                    ttfb_ms: (rng.below(2) == 0).then(|| rng.below(latency + 1)),
                }
            })
            .collect()
    }

    #[test]
    fn shards_merged_in_any_order_equal_one_aggregate_of_every_event() {
        for seed in 1..=20 {
            let mut rng = Rng(seed);
            let events = random_events(&mut rng, 400);
            let whole = fold(&events);
            // every figure is well away from 0 and 1, so an operator other than `+` in
            // `merge` (`*`, `-`, `max`) gives another aggregate
            for n in [
                whole.total_requests,
                whole.small_requests,
                whole.large_requests,
                whole.total_latency_ms,
                whole.tokens_in,
                whole.tokens_out,
                whole.estimated_usage_requests,
                whole.implausible_usage_requests,
                whole.dropped_stream_events,
                whole.failed_requests_with_cost,
                whole.cache_hits,
                whole.cache_misses,
                whole.cache_bypasses,
            ] {
                assert!(n > 2, "seed {seed}: {n}");
            }
            assert!(whole.total_cost_usd > 2.0 && whole.cache_saved_usd > 2.0);
            assert!(whole.cost_if_always_large_usd > 2.0);
            // spread over 8 shards at random, merged in a random order
            let mut shards = vec![Aggregate::default(); 8];
            for e in &events {
                shards[rng.below(8) as usize].apply(e);
            }
            let mut order: Vec<usize> = (0..8).collect();
            for i in (1..8).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut merged = Aggregate::default();
            for &i in &order {
                merged.merge(&shards[i]);
            }
            assert_eq!(merged, whole, "seed {seed}");
            // through the stored JSON too (each shard's row is read back before merging)
            let mut stored = Aggregate::default();
            for shard in &shards {
                let text = serde_json::to_string(shard).unwrap();
                stored.merge(&serde_json::from_str::<Aggregate>(&text).unwrap());
            }
            assert_eq!(stored, whole, "seed {seed}: after a JSON round trip");
            assert_eq!(merged.report(), whole.report());
        }
    }

    #[test]
    fn latency_percentiles_overall_per_tier_and_model_match_exact_order_statistics() {
        let mut events = Vec::new();
        // small: 1..=1000 ms, upstream 80% of it; large: 2000..=2999 ms streamed
        for i in 0..1_000u64 {
            let mut e = completed(&format!("s{i}"), Tier::Small, 0.0, 0.0);
            let mut l = completed(&format!("l{i}"), Tier::Large, 0.0, 0.0);
            if let MetricsEvent::Completed { latency_ms, .. } = &mut e {
                *latency_ms = 1 + i;
            }
            e.set_timing((1 + i) * 4 / 5, None);
            if let MetricsEvent::Completed { latency_ms, .. } = &mut l {
                *latency_ms = 2_000 + i;
            }
            l.set_timing(2_000 + i - 7, Some(100 + i / 10));
            events.push(e);
            events.push(l);
        }
        let a = fold(&events);
        let report = a.report();
        let l = &report.latency_ms;
        let exact = |mut v: Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v[(q * (v.len() - 1) as f64).floor() as usize]
        };
        let check = |figures: &serde_json::Value, values: Vec<f64>, what: &str| {
            assert_eq!(figures["count"], values.len() as u64, "{what}");
            for (label, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                let got = figures[label].as_f64().unwrap();
                let want = exact(values.clone(), q);
                // the sketch's 1% plus the report's 0.1 ms rounding
                assert!(
                    (got - want).abs() <= want * 0.01 + 0.05,
                    "{what} {label}: {got} vs {want}"
                );
            }
        };
        let small: Vec<f64> = (1..=1_000).map(|v| v as f64).collect();
        let large: Vec<f64> = (2_000..3_000).map(|v| v as f64).collect();
        let both: Vec<f64> = small.iter().chain(&large).copied().collect();
        check(&l["overall"]["request"], both, "overall");
        check(&l["by_tier"]["small"]["request"], small.clone(), "small");
        check(
            &l["by_model"]["mistral-large-latest"]["request"],
            large,
            "large model",
        );
        let upstream: Vec<f64> = (1..=1_000u64).map(|v| (v * 4 / 5) as f64).collect();
        check(
            &l["by_tier"]["small"]["upstream"],
            upstream,
            "small upstream",
        );
        let overhead: Vec<f64> = (1..=1_000u64).map(|v| (v - v * 4 / 5) as f64).collect();
        check(
            &l["by_tier"]["small"]["overhead"],
            overhead,
            "small overhead",
        );
        check(
            &l["by_tier"]["large"]["overhead"],
            vec![7.0; 1_000],
            "large overhead",
        );
        let ttfb: Vec<f64> = (0..1_000u64).map(|i| (100 + i / 10) as f64).collect();
        check(&l["by_tier"]["large"]["ttfb"], ttfb.clone(), "large ttfb");
        check(&l["overall"]["ttfb"], ttfb, "overall ttfb");
        assert!(
            l["by_tier"]["small"].get("ttfb").is_none(),
            "no stream on small"
        );
        // an empty aggregate reports empty maps
        let empty = Aggregate::default().report().latency_ms;
        assert_eq!(
            empty,
            serde_json::json!({"overall": {}, "by_tier": {}, "by_model": {}})
        );
    }

    #[test]
    fn outcomes_count_ok_incomplete_upstream_status_and_failure_labels() {
        let mut cut = completed("c", Tier::Small, 0.0, 0.0);
        if let MetricsEvent::Completed { incomplete, .. } = &mut cut {
            *incomplete = Some("client_disconnected".into());
        }
        let failed =
            |id: &str, reason: &str, status: Option<u16>, count: u64| MetricsEvent::Failed {
                id: id.into(),
                reason: reason.into(),
                fallback: None,
                cost: None,
                key: None,
                count,
                status,
            };
        let events = vec![
            completed("a", Tier::Small, 0.0, 0.0),
            completed("b", Tier::Large, 0.0, 0.0),
            cut,
            failed("f1", "upstream_error", Some(503), 1),
            failed("f2", "upstream_error", Some(503), 1),
            failed("f3", "upstream_rate_limited", Some(429), 1),
            failed("f4", "upstream_timeout", None, 1),
            failed("f5", "bad_request", None, 4),
        ];
        let a = fold(&events);
        assert_eq!(
            a.report().outcomes,
            Named::from_pairs(&[
                ("ok", 2),
                ("incomplete_client_disconnected", 1),
                ("upstream_error_503", 2),
                ("upstream_error_429", 1),
                ("upstream_timeout", 1),
                ("bad_request", 4),
            ])
        );
        // the failure reasons keep their labels
        assert_eq!(a.failed_requests["upstream_error"], 2);
        assert_eq!(a.failed_requests["upstream_rate_limited"], 1);
        // an event read back keeps its status
        let text = serde_json::to_string(&events[3]).unwrap();
        assert!(text.contains(r#""status":503"#), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(MetricsEvent::from_value(&v).unwrap(), events[3]);
    }
}

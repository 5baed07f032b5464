//! Environment variables and secrets -> one validated `Config`, parsed before any work.

use std::fmt;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::GatewayError;
use crate::pricing::{ModelPrice, PriceTable};
use crate::providers::BackendKind;
use crate::routing::{self, FeatureCondition, Requested, RouterKind, TierPolicy};
use crate::scoring;

/// A secret string that never prints its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that must send it (the upstream request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// Default upstream base URL.
pub const DEFAULT_MISTRAL_BASE_URL: &str = "https://api.mistral.ai";
/// Default small-tier model.
pub const DEFAULT_SMALL_MODEL: &str = "mistral-small-latest";
/// Default large-tier model.
pub const DEFAULT_LARGE_MODEL: &str = "mistral-large-latest";
/// Default MAX_QUERY_BYTES.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 32 * 1024;
/// Default UPSTREAM_TIMEOUT_MS.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 60_000;
/// Default METRICS_BATCH_MS: how long an isolate gathers metrics events before sending
/// them to the Durable Object in one call.
pub const DEFAULT_METRICS_BATCH_MS: u64 = 100;
/// Upper bound of METRICS_BATCH_MS (a flusher lives in a request's `waitUntil`, which the
/// runtime keeps for 30 s after the response).
pub const MAX_METRICS_BATCH_MS: u64 = 10_000;
/// Upper bound of MAX_QUERY_BYTES: beyond it a single request risks the 128 MB isolate.
pub const MAX_MAX_QUERY_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound of UPSTREAM_TIMEOUT_MS (15 minutes).
pub const MAX_UPSTREAM_TIMEOUT_MS: u64 = 900_000;

/// One tier: how it is selected and where its queries go.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// Name and selection policy.
    pub policy: TierPolicy,
    /// API dialect of the backend.
    pub backend: BackendKind,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Model id sent upstream.
    pub model: String,
    /// Variable holding the backend key (empty: the backend needs none).
    pub key_variable: String,
    /// The key, when configured.
    pub api_key: Option<Secret>,
    /// Prices given in the tier itself; they win over the price table, whatever model id
    /// the upstream reports.
    pub price: Option<ModelPrice>,
}

impl TierConfig {
    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// The key to send, or the 503 error saying which variable to set.
    pub fn key(&self) -> Result<&str, GatewayError> {
        match (&self.api_key, self.key_variable.is_empty()) {
            (Some(key), _) => Ok(key.expose()),
            (None, true) => Ok(""),
            (None, false) => Err(GatewayError::UpstreamKeyMissing {
                variable: self.key_variable.clone(),
            }),
        }
    }
}

/// The gateway's validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tiers from cheapest to most expensive.
    pub tiers: Vec<TierConfig>,
    /// The tiers' selection policies (same order), for the router.
    pub policies: Vec<TierPolicy>,
    /// Scorer of query complexity.
    pub router: RouterKind,
    /// Score threshold of the most expensive plain tier.
    pub routing_threshold: f64,
    /// Bearer tokens accepted by the API; empty means no auth.
    pub api_keys: Vec<Secret>,
    /// Largest accepted query, in bytes of UTF-8.
    pub max_query_bytes: usize,
    /// Time allowed for the upstream call, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Batch window of metrics events, in milliseconds; 0 sends each event on its own.
    pub metrics_batch_ms: u64,
    /// Prices used for cost accounting (embedded table, MODEL_PRICES, tier prices).
    pub prices: PriceTable,
}

/// A tier as written in the TIERS variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierSpec {
    name: String,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    model: String,
    #[serde(default)]
    api_key_var: Option<String>,
    #[serde(default)]
    min_score: Option<f64>,
    #[serde(default)]
    when: Option<WhenSpec>,
    #[serde(default)]
    prices: Option<ModelPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenSpec {
    feature: String,
    #[serde(default = "default_min_value")]
    min_value: f64,
}

fn default_min_value() -> f64 {
    0.5
}

fn invalid(variable: &'static str, message: String) -> GatewayError {
    GatewayError::InvalidConfig { variable, message }
}

fn valid_base_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace)
}

fn valid_model_id(model: &str) -> bool {
    !model.is_empty() && !model.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Config {
    /// Reads and validates every variable through `lookup` (name -> raw value).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, GatewayError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string());
        let secret = |name: &str| get(name).filter(|v| !v.is_empty()).map(Secret::new);

        let mistral_base_url = match get("MISTRAL_BASE_URL").filter(|v| !v.is_empty()) {
            None => DEFAULT_MISTRAL_BASE_URL.to_string(),
            Some(url) if valid_base_url(&url) => url.trim_end_matches('/').to_string(),
            Some(url) => {
                return Err(invalid(
                    "MISTRAL_BASE_URL",
                    format!(
                        "expected an http(s) URL such as {DEFAULT_MISTRAL_BASE_URL}, got {url:?}"
                    ),
                ))
            }
        };

        let model = |name: &'static str, default: &str| -> Result<String, GatewayError> {
            match get(name) {
                None => Ok(default.to_string()),
                Some(v) if valid_model_id(&v) => Ok(v),
                Some(v) => Err(invalid(
                    name,
                    format!("expected a model id without spaces, got {v:?}"),
                )),
            }
        };
        let small_model = model("SMALL_MODEL", DEFAULT_SMALL_MODEL)?;
        let large_model = model("LARGE_MODEL", DEFAULT_LARGE_MODEL)?;

        let router = match get("ROUTER").filter(|v| !v.is_empty()) {
            None => routing::DEFAULT_ROUTER,
            Some(raw) => RouterKind::parse(&raw).ok_or_else(|| {
                invalid(
                    "ROUTER",
                    format!("expected \"heuristic\" or \"learned\", got {raw:?}"),
                )
            })?,
        };
        let routing_threshold = match get("ROUTING_THRESHOLD").filter(|v| !v.is_empty()) {
            None => router.default_threshold(),
            Some(raw) => match parse_decimal(&raw) {
                Some(t) if (0.0..=1.0).contains(&t) => t,
                _ => {
                    return Err(invalid(
                        "ROUTING_THRESHOLD",
                        format!("expected a number between 0 and 1, got {raw:?}"),
                    ))
                }
            },
        };

        let api_keys: Vec<Secret> = get("LLM_MUX_API_KEYS")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();

        let max_query_bytes = parse_bounded(
            get("MAX_QUERY_BYTES"),
            DEFAULT_MAX_QUERY_BYTES as u64,
            1,
            MAX_MAX_QUERY_BYTES as u64,
        )
        .map_err(|m| invalid("MAX_QUERY_BYTES", m))? as usize;
        let upstream_timeout_ms = parse_bounded(
            get("UPSTREAM_TIMEOUT_MS"),
            DEFAULT_UPSTREAM_TIMEOUT_MS,
            1,
            MAX_UPSTREAM_TIMEOUT_MS,
        )
        .map_err(|m| invalid("UPSTREAM_TIMEOUT_MS", m))?;
        let metrics_batch_ms = parse_bounded(
            get("METRICS_BATCH_MS"),
            DEFAULT_METRICS_BATCH_MS,
            0,
            MAX_METRICS_BATCH_MS,
        )
        .map_err(|m| invalid("METRICS_BATCH_MS", m))?;

        let mut prices = PriceTable::embedded();
        if let Some(raw) = get("MODEL_PRICES").filter(|v| !v.is_empty()) {
            prices
                .apply_overrides(&raw)
                .map_err(|m| invalid("MODEL_PRICES", m))?;
        }

        let tiers = match get("TIERS").filter(|v| !v.is_empty()) {
            None => {
                let mistral_tier = |name: &str, model: String, min_score: f64| TierConfig {
                    policy: TierPolicy {
                        name: name.to_string(),
                        min_score,
                        when: None,
                    },
                    backend: BackendKind::Mistral,
                    base_url: mistral_base_url.clone(),
                    model,
                    key_variable: "MISTRAL_API_KEY".into(),
                    api_key: secret("MISTRAL_API_KEY"),
                    price: None,
                };
                for (variable, model) in
                    [("SMALL_MODEL", &small_model), ("LARGE_MODEL", &large_model)]
                {
                    if prices.lookup(model, model).is_none() {
                        return Err(invalid(
                            variable,
                            format!("no price known for model {model:?}; add it to MODEL_PRICES"),
                        ));
                    }
                }
                vec![
                    mistral_tier("small", small_model, 0.0),
                    mistral_tier("large", large_model, routing_threshold),
                ]
            }
            Some(raw) => parse_tiers(&raw, &mistral_base_url, &mut prices, &secret)?,
        };
        let policies = tiers.iter().map(|t| t.policy.clone()).collect::<Vec<_>>();
        let routing_threshold = policies
            .get(routing::top_tier(&policies))
            .map(|p| p.min_score)
            .unwrap_or(routing_threshold);

        Ok(Self {
            tiers,
            policies,
            router,
            routing_threshold,
            api_keys,
            max_query_bytes,
            upstream_timeout_ms,
            metrics_batch_ms,
            prices,
        })
    }

    /// Price of a tier's calls: the tier's own prices, else the table's price of the model
    /// id the upstream reported, else of the configured model.
    pub fn price_of(&self, tier: usize, reported_model: &str) -> Option<ModelPrice> {
        let tier = self.tiers.get(tier)?;
        tier.price
            .or_else(|| self.prices.lookup(reported_model, &tier.model))
    }

    /// Index of the most expensive plain tier (the "always large" reference).
    pub fn top_tier(&self) -> usize {
        routing::top_tier(&self.policies)
    }

    /// Index of the tier called `name`.
    pub fn tier_by_name(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name() == name)
    }

    /// Resolves a requested `model` (`auto`, a tier name, or a model a tier serves).
    pub fn resolve_model(&self, model: &str) -> Result<Requested, GatewayError> {
        if model == "auto" {
            return Ok(Requested::Auto);
        }
        if let Some(i) = self.tier_by_name(model) {
            return Ok(Requested::Tier(i));
        }
        if let Some(i) = self.tiers.iter().position(|t| t.model == model) {
            return Ok(Requested::Model(i));
        }
        Err(GatewayError::UnknownModel {
            model: model.chars().take(100).collect(),
            available: self.model_names(),
        })
    }

    /// Every name a client may use as `model`: auto, the tiers, the tiers' models.
    pub fn model_names(&self) -> Vec<String> {
        let mut names = vec![String::from("auto")];
        for tier in &self.tiers {
            names.push(tier.name().to_string());
        }
        for tier in &self.tiers {
            if !names.contains(&tier.model) {
                names.push(tier.model.clone());
            }
        }
        names
    }

    /// Checks an `Authorization` header against LLM_MUX_API_KEYS in constant time per key.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        if self.api_keys.is_empty() {
            return Ok(());
        }
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or(GatewayError::Unauthorized)?;
        // Compare against every key without stopping early, so timing says nothing
        // about which key (or which prefix) matched.
        let mut matched = subtle::Choice::from(0u8);
        for key in &self.api_keys {
            matched |= key.expose().as_bytes().ct_eq(token.as_bytes());
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized)
        }
    }
}

/// Parses the TIERS variable: a JSON array of tiers from cheapest to most expensive.
fn parse_tiers(
    raw: &str,
    mistral_base_url: &str,
    prices: &mut PriceTable,
    secret: &dyn Fn(&str) -> Option<Secret>,
) -> Result<Vec<TierConfig>, GatewayError> {
    let bad = |message: String| invalid("TIERS", message);
    let specs: Vec<TierSpec> = serde_json::from_str(raw).map_err(|e| {
        bad(format!(
            "expected a JSON array of tiers like [{{\"name\": \"small\", \"model\": \"...\"}}]: {e}"
        ))
    })?;
    if specs.is_empty() {
        return Err(bad("at least one tier is needed".into()));
    }
    let mut tiers: Vec<TierConfig> = Vec::with_capacity(specs.len());
    let mut last_plain_min = None;
    for spec in specs {
        let name = spec.name.trim().to_string();
        let name_ok = !name.is_empty()
            && name != "auto"
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(bad(format!(
                "tier name {name:?} must be lowercase letters, digits, '-' or '_', and not \"auto\""
            )));
        }
        if tiers.iter().any(|t| t.name() == name) {
            return Err(bad(format!("tier name {name:?} appears twice")));
        }
        let backend = match spec.backend.as_deref() {
            None => BackendKind::Mistral,
            Some(kind) => BackendKind::parse(kind).ok_or_else(|| {
                bad(format!(
                    "tier {name:?}: backend {kind:?} is not one of mistral, openai, anthropic"
                ))
            })?,
        };
        let base_url = match (spec.base_url, backend) {
            (Some(url), _) if valid_base_url(&url) => url.trim_end_matches('/').to_string(),
            (Some(url), _) => {
                return Err(bad(format!(
                    "tier {name:?}: base_url {url:?} is not an http(s) URL"
                )))
            }
            (None, BackendKind::Mistral) => mistral_base_url.to_string(),
            (None, kind) => kind.default_base_url().to_string(),
        };
        if !valid_model_id(&spec.model) {
            return Err(bad(format!(
                "tier {name:?}: model {:?} is not a model id",
                spec.model
            )));
        }
        let key_variable = spec
            .api_key_var
            .unwrap_or_else(|| backend.default_key_variable().to_string());
        let key_ok = key_variable
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            return Err(bad(format!(
                "tier {name:?}: api_key_var {key_variable:?} must be an UPPER_CASE variable name (or \"\" for none)"
            )));
        }
        let min_score = spec.min_score.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_score) {
            return Err(bad(format!(
                "tier {name:?}: min_score must be between 0 and 1"
            )));
        }
        let when = match spec.when {
            None => {
                if last_plain_min.is_some_and(|m| min_score < m) {
                    return Err(bad(format!(
                        "tier {name:?}: tiers are ordered cheapest first, so min_score must not decrease"
                    )));
                }
                last_plain_min = Some(min_score);
                None
            }
            Some(w) => {
                if !scoring::FEATURE_NAMES.contains(&w.feature.as_str()) {
                    return Err(bad(format!(
                        "tier {name:?}: unknown feature {:?}; known: {}",
                        w.feature,
                        scoring::FEATURE_NAMES.join(", ")
                    )));
                }
                Some(FeatureCondition {
                    feature: w.feature,
                    min_value: w.min_value,
                })
            }
        };
        if let Some(price) = &spec.prices {
            prices
                .apply_overrides(&serde_json::json!({ spec.model.clone(): price }).to_string())
                .map_err(|m| bad(format!("tier {name:?}: {m}")))?;
        }
        if prices.lookup(&spec.model, &spec.model).is_none() {
            return Err(bad(format!(
                "tier {name:?}: no price known for model {:?}; give \"prices\": {{\"input\": n, \"output\": n}}",
                spec.model
            )));
        }
        let api_key = if key_variable.is_empty() {
            None
        } else {
            secret(&key_variable)
        };
        tiers.push(TierConfig {
            policy: TierPolicy {
                name,
                min_score,
                when,
            },
            backend,
            base_url,
            model: spec.model,
            key_variable,
            api_key,
            price: spec.prices,
        });
    }
    if last_plain_min.is_none() {
        return Err(bad(
            "at least one tier without a \"when\" condition is needed".into(),
        ));
    }
    Ok(tiers)
}

/// A decimal number such as `0.3`, `.25`, `+1` or `3e-1`, read by serde_json's number
/// parser (already in the worker for JSON) rather than core's `parse::<f64>`, whose
/// tables cost ~12 KB of gzipped wasm for the one number read outside JSON.
fn parse_decimal(raw: &str) -> Option<f64> {
    let text = raw.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        || text.contains("..")
        || !text.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    let text = match text.strip_prefix('.') {
        Some(rest) => format!("0.{rest}"),
        None => text.to_string(),
    };
    let text = match text.strip_suffix('.') {
        Some(int) => int.to_string(),
        None => text,
    };
    serde_json::from_str::<f64>(&text).ok()
}

/// Parses a whole number from `min` to `max`, or returns `default` when unset.
fn parse_bounded(raw: Option<String>, default: u64, min: u64, max: u64) -> Result<u64, String> {
    match raw.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!(
                "expected a whole number from {min} to {max}, got {raw:?}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, GatewayError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn invalid_variable(result: Result<Config, GatewayError>) -> &'static str {
        match result {
            Err(GatewayError::InvalidConfig { variable, .. }) => variable,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    fn invalid_message(result: Result<Config, GatewayError>) -> String {
        match result {
            Err(e @ GatewayError::InvalidConfig { .. }) => e.client_message(),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.tiers.len(), 2);
        let (small, large) = (&c.tiers[0], &c.tiers[1]);
        assert_eq!(
            (small.name(), small.model.as_str()),
            ("small", "mistral-small-latest")
        );
        assert_eq!(
            (large.name(), large.model.as_str()),
            ("large", "mistral-large-latest")
        );
        assert_eq!(small.base_url, "https://api.mistral.ai");
        assert_eq!(c.router, routing::DEFAULT_ROUTER);
        assert_eq!(large.policy.min_score, c.router.default_threshold());
        assert_eq!(c.routing_threshold, c.router.default_threshold());
        assert!(small.api_key.is_none());
        assert_eq!(
            small.key(),
            Err(GatewayError::UpstreamKeyMissing {
                variable: "MISTRAL_API_KEY".into()
            })
        );
        assert!(c.api_keys.is_empty());
        assert_eq!(c.max_query_bytes, 32768);
        assert_eq!(c.upstream_timeout_ms, 60000);
        assert_eq!(c.metrics_batch_ms, DEFAULT_METRICS_BATCH_MS);
        assert_eq!(c.top_tier(), 1);
    }

    #[test]
    fn values_are_read_and_normalised() {
        let c = config(&[
            ("MISTRAL_API_KEY", " sk-abc "),
            ("MISTRAL_BASE_URL", "http://127.0.0.1:9999/"),
            ("ROUTING_THRESHOLD", "0.25"),
            ("LLM_MUX_API_KEYS", "k1, k2,,"),
            ("MAX_QUERY_BYTES", "100"),
            ("UPSTREAM_TIMEOUT_MS", "1500"),
            ("METRICS_BATCH_MS", "250"),
        ])
        .unwrap();
        assert_eq!(c.metrics_batch_ms, 250);
        let unbatched = config(&[("METRICS_BATCH_MS", "0")]).unwrap();
        assert_eq!(unbatched.metrics_batch_ms, 0);
        assert_eq!(c.tiers[0].key(), Ok("sk-abc"));
        assert_eq!(c.tiers[1].base_url, "http://127.0.0.1:9999");
        assert_eq!(c.routing_threshold, 0.25);
        assert_eq!(c.tiers[1].policy.min_score, 0.25);
        assert_eq!(c.api_keys.len(), 2);
        assert_eq!(c.max_query_bytes, 100);
        assert_eq!(c.upstream_timeout_ms, 1500);
    }

    #[test]
    fn decimal_numbers_read_as_core_reads_them() {
        for (text, core) in [
            ("0", "0"),
            ("1", "1"),
            ("0.3103", "0.3103"),
            ("0.5573", "0.5573"),
            (".25", ".25"),
            ("+0.5", "+0.5"),
            ("1.", "1."),
            ("3e-1", "3e-1"),
            ("1E0", "1E0"),
            (" 0.7 ", "0.7"),
            ("0.123456789012345", "0.123456789012345"),
        ] {
            assert_eq!(parse_decimal(text), core.parse::<f64>().ok(), "{text:?}");
        }
        for bad in [
            "", " ", "abc", "0,5", "NaN", "inf", "--1", "0x1", "1..2", ".",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invalid_values_name_the_variable() {
        assert_eq!(
            invalid_variable(config(&[("MAX_QUERY_BYTES", "abc")])),
            "MAX_QUERY_BYTES"
        );
        assert_eq!(
            invalid_variable(config(&[("MAX_QUERY_BYTES", "0")])),
            "MAX_QUERY_BYTES"
        );
        assert_eq!(
            invalid_variable(config(&[("MAX_QUERY_BYTES", "-5")])),
            "MAX_QUERY_BYTES"
        );
        assert_eq!(
            invalid_variable(config(&[("UPSTREAM_TIMEOUT_MS", "1.5")])),
            "UPSTREAM_TIMEOUT_MS"
        );
        for bad in ["-1", "abc", "10001"] {
            assert_eq!(
                invalid_variable(config(&[("METRICS_BATCH_MS", bad)])),
                "METRICS_BATCH_MS"
            );
        }
        assert_eq!(
            invalid_variable(config(&[("ROUTING_THRESHOLD", "1.5")])),
            "ROUTING_THRESHOLD"
        );
        assert_eq!(
            invalid_variable(config(&[("ROUTING_THRESHOLD", "NaN")])),
            "ROUTING_THRESHOLD"
        );
        assert_eq!(
            invalid_variable(config(&[("MISTRAL_BASE_URL", "ftp://x")])),
            "MISTRAL_BASE_URL"
        );
        assert_eq!(
            invalid_variable(config(&[("SMALL_MODEL", "a b")])),
            "SMALL_MODEL"
        );
        assert_eq!(
            invalid_variable(config(&[("LARGE_MODEL", "unknown-model")])),
            "LARGE_MODEL"
        );
        assert_eq!(
            invalid_variable(config(&[("MODEL_PRICES", "{bad")])),
            "MODEL_PRICES"
        );
        assert_eq!(invalid_variable(config(&[("TIERS", "[]")])), "TIERS");
        assert_eq!(invalid_variable(config(&[("ROUTER", "neural")])), "ROUTER");
    }

    #[test]
    fn router_choice_sets_the_default_threshold() {
        let c = config(&[("ROUTER", "learned")]).unwrap();
        assert_eq!(c.router, RouterKind::Learned);
        assert_eq!(c.routing_threshold, crate::learned::DEFAULT_THRESHOLD);
        let c = config(&[("ROUTER", "heuristic")]).unwrap();
        assert_eq!(c.routing_threshold, scoring::DEFAULT_THRESHOLD);
        let c = config(&[("ROUTER", "learned"), ("ROUTING_THRESHOLD", "0.7")]).unwrap();
        assert_eq!(c.routing_threshold, 0.7);
    }

    #[test]
    fn unknown_model_accepted_with_a_price_override() {
        let c = config(&[
            ("LARGE_MODEL", "my-model"),
            ("MODEL_PRICES", r#"{"my-model": {"input": 1, "output": 2}}"#),
        ])
        .unwrap();
        assert_eq!(c.tiers[1].model, "my-model");
    }

    #[test]
    fn three_tiers_with_a_code_tier_and_mixed_backends() {
        let tiers = r#"[
          {"name": "tiny", "backend": "openai", "base_url": "http://127.0.0.1:11434/v1",
           "model": "llama3.2:1b", "api_key_var": "", "prices": {"input": 0, "output": 0}},
          {"name": "small", "model": "mistral-small-latest", "min_score": 0.2},
          {"name": "code", "model": "codestral-latest", "min_score": 0.1,
           "when": {"feature": "code", "min_value": 0.5}},
          {"name": "large", "backend": "anthropic", "model": "claude-sonnet-4-5",
           "min_score": 0.6, "prices": {"input": 3, "output": 15}}
        ]"#;
        let c = config(&[
            ("TIERS", tiers),
            ("MISTRAL_API_KEY", "m"),
            ("ANTHROPIC_API_KEY", "a"),
        ])
        .unwrap();
        assert_eq!(c.tiers.len(), 4);
        assert_eq!(c.tiers[0].backend, BackendKind::OpenAi);
        assert_eq!(c.tiers[0].key(), Ok(""));
        assert_eq!(c.tiers[1].base_url, "https://api.mistral.ai");
        assert_eq!(c.tiers[3].base_url, "https://api.anthropic.com");
        assert_eq!(c.tiers[3].key(), Ok("a"));
        assert_eq!(c.top_tier(), 3);
        assert_eq!(c.routing_threshold, 0.6);
        assert!(c.prices.lookup("claude-sonnet-4-5", "x").is_some());
        assert_eq!(c.resolve_model("auto"), Ok(Requested::Auto));
        assert_eq!(c.resolve_model("code"), Ok(Requested::Tier(2)));
        assert_eq!(
            c.resolve_model("claude-sonnet-4-5"),
            Ok(Requested::Model(3))
        );
        assert!(matches!(
            c.resolve_model("gpt-9"),
            Err(GatewayError::UnknownModel { .. })
        ));
        assert_eq!(
            c.model_names()[..5],
            ["auto", "tiny", "small", "code", "large"].map(String::from)
        );
    }

    #[test]
    fn tier_errors_are_specific() {
        let cases = [
            (r#"{"name": "x"}"#, "JSON array"),
            (
                r#"[{"name": "Big", "model": "mistral-large-latest"}]"#,
                "lowercase",
            ),
            (
                r#"[{"name": "auto", "model": "mistral-large-latest"}]"#,
                "not \"auto\"",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest"}, {"name": "a", "model": "mistral-small-latest"}]"#,
                "twice",
            ),
            (
                r#"[{"name": "a", "backend": "cohere", "model": "x"}]"#,
                "backend",
            ),
            (r#"[{"name": "a", "model": "no-price-model"}]"#, "no price"),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "min_score": 2}]"#,
                "min_score",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "min_score": 0.5}, {"name": "b", "model": "mistral-small-latest", "min_score": 0.1}]"#,
                "must not decrease",
            ),
            (
                r#"[{"name": "a", "model": "codestral-latest", "when": {"feature": "poetry"}}]"#,
                "unknown feature",
            ),
            (
                r#"[{"name": "a", "model": "codestral-latest", "when": {"feature": "code"}}]"#,
                "without a \"when\"",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "colour": "red"}]"#,
                "unknown field",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "api_key_var": "my key"}]"#,
                "api_key_var",
            ),
        ];
        for (tiers, needle) in cases {
            let message = invalid_message(config(&[("TIERS", tiers)]));
            assert!(
                message.contains("TIERS") && message.contains(needle),
                "{tiers}: {message}"
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = config(&[
            ("MISTRAL_API_KEY", "sk-supersecret"),
            ("LLM_MUX_API_KEYS", "tok-1"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("sk-supersecret"));
        assert!(!printed.contains("tok-1"));
    }

    #[test]
    fn auth_checks_bearer_tokens() {
        let open = config(&[]).unwrap();
        assert!(open.authorize(None).is_ok());
        let c = config(&[("LLM_MUX_API_KEYS", "alpha,beta")]).unwrap();
        assert!(c.authorize(Some("Bearer alpha")).is_ok());
        assert!(c.authorize(Some("bearer beta")).is_ok());
        assert_eq!(c.authorize(None), Err(GatewayError::Unauthorized));
        assert_eq!(
            c.authorize(Some("Bearer alph")),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(
            c.authorize(Some("Bearer alphax")),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(
            c.authorize(Some("Basic alpha")),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(c.authorize(Some("alpha")), Err(GatewayError::Unauthorized));
        assert_eq!(
            c.authorize(Some("Bearer ")),
            Err(GatewayError::Unauthorized)
        );
    }
}

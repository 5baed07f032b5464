//! Environment variables and secrets -> one validated `Config`, parsed before any work.
//!
//! This module owns the [`Config`] struct, the order in which [`Config::from_lookup`]
//! reads and validates the variables, and the lookups over a built configuration (prices,
//! top tier, tier and model names). The jobs live in sub-modules: `vars` reads the plain
//! variables, `tiers` builds the tiers, `auth` holds secrets and client
//! authentication; their public items are re-exported here, so `config::Secret`,
//! `config::TierConfig` and `config::DEFAULT_*` keep their paths. It must not parse a
//! variable itself nor do I/O: every value comes through the `lookup` function.

mod auth;
mod cost;
mod fallback;
mod quality;
mod tiers;
mod vars;

pub use auth::{api_keys_from_lookup, check_bearer, Secret};
pub use cost::{
    key_id, BudgetAction, CacheScope, Caps, CostControl, KeyPolicy,
    DEFAULT_BUDGET_MAX_COMPLETION_TOKENS,
};
pub use fallback::Fallback;
pub use quality::{
    QualityConfig, QualityTarget, DEFAULT_MAX_SAMPLES_PER_HOUR, MAX_MAX_SAMPLES_PER_HOUR,
};
pub use tiers::TierConfig;
pub use vars::{
    DEFAULT_LARGE_MODEL, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUERY_BYTES,
    DEFAULT_MAX_UPSTREAM_RESPONSE_BYTES, DEFAULT_METRICS_BATCH_MS, DEFAULT_METRICS_SHARDS,
    DEFAULT_MISTRAL_BASE_URL, DEFAULT_SMALL_MODEL, DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    DEFAULT_STREAM_MAX_DURATION_MS, DEFAULT_UPSTREAM_TIMEOUT_MS, MAX_MAX_BODY_BYTES,
    MAX_MAX_QUERY_BYTES, MAX_MAX_UPSTREAM_RESPONSE_BYTES, MAX_METRICS_BATCH_MS, MAX_METRICS_SHARDS,
    MAX_STREAM_MS, MAX_UPSTREAM_TIMEOUT_MS,
};

use crate::cors::CorsPolicy;
use crate::error::GatewayError;
use crate::pricing::{ModelPrice, PriceTable};
use crate::routing::{self, Requested, RouterKind, TierPolicy};

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
    /// Largest accepted request body, in bytes (MAX_BODY_BYTES).
    pub max_body_bytes: usize,
    /// Largest upstream answer read, whole or streamed (MAX_UPSTREAM_RESPONSE_BYTES).
    pub max_upstream_response_bytes: usize,
    /// Longest wait between two chunks of a stream (STREAM_IDLE_TIMEOUT_MS).
    pub stream_idle_timeout_ms: u64,
    /// Longest a stream may run (STREAM_MAX_DURATION_MS).
    pub stream_max_duration_ms: u64,
    /// Which tiers a failed call falls back to (FALLBACK).
    pub fallback: Fallback,
    /// Key that may reset the metrics (LLM_MUX_ADMIN_KEY); none: resets are off.
    pub admin_key: Option<Secret>,
    /// Time allowed for the upstream call, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Batch window of metrics events, in milliseconds; 0 sends each event on its own.
    pub metrics_batch_ms: u64,
    /// Metrics Durable Objects the events are spread over (METRICS_SHARDS).
    pub metrics_shards: u32,
    /// Prices used for cost accounting (embedded table, MODEL_PRICES, tier prices).
    pub prices: PriceTable,
    /// Judged shadow samples and the threshold controller's target.
    pub quality: QualityConfig,
    /// Origins allowed to call the API from a browser (CORS_ALLOW_ORIGINS).
    pub cors: CorsPolicy,
    /// Rate limits, budgets and the response cache.
    pub cost: CostControl,
    /// One JSON log line per request (LOG_REQUESTS).
    pub log_requests: bool,
}

impl Config {
    /// Reads and validates every variable through `lookup` (name -> raw value).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, GatewayError>
    where
        F: Fn(&str) -> Option<String>,
    {
        Self::read(&lookup)
    }

    /// [`Config::from_lookup`] through a trait object: one copy in the worker however
    /// many callers (the entry point, the Durable Objects) pass their own closures.
    fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, GatewayError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string());
        let secret = |name: &str| get(name).filter(|v| !v.is_empty()).map(Secret::new);

        let mistral_base_url = vars::mistral_base_url(&get)?;
        let small_model = vars::model(&get, "SMALL_MODEL", DEFAULT_SMALL_MODEL)?;
        let large_model = vars::model(&get, "LARGE_MODEL", DEFAULT_LARGE_MODEL)?;
        let router = vars::router(&get)?;
        let routing_threshold = vars::routing_threshold(&get, router)?;
        let api_keys = auth::api_keys(get("LLM_MUX_API_KEYS"));
        let max_query_bytes = vars::bounded(
            &get,
            "MAX_QUERY_BYTES",
            DEFAULT_MAX_QUERY_BYTES as u64,
            1,
            MAX_MAX_QUERY_BYTES as u64,
        )? as usize;
        let upstream_timeout_ms = vars::bounded(
            &get,
            "UPSTREAM_TIMEOUT_MS",
            DEFAULT_UPSTREAM_TIMEOUT_MS,
            1,
            MAX_UPSTREAM_TIMEOUT_MS,
        )?;
        let max_body_bytes = vars::bounded(
            &get,
            "MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES as u64,
            1024,
            MAX_MAX_BODY_BYTES as u64,
        )? as usize;
        let max_upstream_response_bytes = vars::bounded(
            &get,
            "MAX_UPSTREAM_RESPONSE_BYTES",
            DEFAULT_MAX_UPSTREAM_RESPONSE_BYTES as u64,
            1024,
            MAX_MAX_UPSTREAM_RESPONSE_BYTES as u64,
        )? as usize;
        let stream_idle_timeout_ms = vars::bounded(
            &get,
            "STREAM_IDLE_TIMEOUT_MS",
            DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            1,
            MAX_STREAM_MS,
        )?;
        let stream_max_duration_ms = vars::bounded(
            &get,
            "STREAM_MAX_DURATION_MS",
            DEFAULT_STREAM_MAX_DURATION_MS,
            1,
            MAX_STREAM_MS,
        )?;
        let admin_key = secret("LLM_MUX_ADMIN_KEY");
        let metrics_batch_ms = vars::bounded(
            &get,
            "METRICS_BATCH_MS",
            DEFAULT_METRICS_BATCH_MS,
            0,
            MAX_METRICS_BATCH_MS,
        )?;
        let metrics_shards = vars::bounded(
            &get,
            "METRICS_SHARDS",
            DEFAULT_METRICS_SHARDS,
            1,
            MAX_METRICS_SHARDS,
        )? as u32;
        let mut prices = vars::model_prices(&get)?;

        let tiers = match get("TIERS").filter(|v| !v.is_empty()) {
            None => tiers::default_tiers(
                &mistral_base_url,
                small_model,
                large_model,
                routing_threshold,
                &prices,
                &secret,
            )?,
            Some(raw) => tiers::parse_tiers(&raw, &mistral_base_url, &mut prices, &secret)?,
        };
        let policies = tiers.iter().map(|t| t.policy.clone()).collect::<Vec<_>>();
        let routing_threshold = policies
            .get(routing::top_tier(&policies))
            .map(|p| p.min_score)
            .unwrap_or(routing_threshold);
        let quality = quality::quality(&get, &tiers, routing::top_tier(&policies))?;
        let fallback = fallback::parse(get("FALLBACK"), &tiers)?;
        let cors = vars::cors_allow_origins(&get)?;
        let log_requests = vars::log_requests(&get)?;
        let cost = cost::cost_control(&get, &api_keys, &tiers)?;

        Ok(Self {
            tiers,
            policies,
            router,
            routing_threshold,
            api_keys,
            max_query_bytes,
            max_body_bytes,
            max_upstream_response_bytes,
            stream_idle_timeout_ms,
            stream_max_duration_ms,
            fallback,
            admin_key,
            upstream_timeout_ms,
            metrics_batch_ms,
            metrics_shards,
            prices,
            quality,
            cors,
            cost,
            log_requests,
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
}

/// A configuration from literal variables (with a Mistral key), for the tests of the
/// modules that take a `Config`.
#[cfg(test)]
pub(crate) mod testing {
    use super::Config;
    use std::collections::HashMap;

    /// The configuration of `vars`, over `MISTRAL_API_KEY=sk-test`; panics if invalid.
    pub fn config(vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> =
            HashMap::from([("MISTRAL_API_KEY".to_string(), "sk-test".to_string())]);
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        #[allow(clippy::unwrap_used)]
        Config::from_lookup(|name| map.get(name).cloned()).unwrap()
    }
}

/// Builds configurations from literal variables, for the sub-modules' tests.
#[cfg(test)]
mod test_support {
    use std::collections::HashMap;

    use super::Config;
    use crate::error::GatewayError;

    pub(super) fn config(vars: &[(&str, &str)]) -> Result<Config, GatewayError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    pub(super) fn invalid_variable(result: Result<Config, GatewayError>) -> &'static str {
        match result {
            Err(GatewayError::InvalidConfig { variable, .. }) => variable,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    pub(super) fn invalid_message(result: Result<Config, GatewayError>) -> String {
        match result {
            Err(e @ GatewayError::InvalidConfig { .. }) => e.client_message(),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::config;
    use super::*;

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
        assert_eq!(c.cors, CorsPolicy::Off);
    }
}

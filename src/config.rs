//! Environment variables and secrets -> one validated `Config`, parsed before any work.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::error::GatewayError;
use crate::pricing::PriceTable;
use crate::routing::Tier;
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
/// Upper bound of MAX_QUERY_BYTES: beyond it a single request risks the 128 MB isolate.
pub const MAX_MAX_QUERY_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound of UPSTREAM_TIMEOUT_MS (15 minutes).
pub const MAX_UPSTREAM_TIMEOUT_MS: u64 = 900_000;

/// The gateway's validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Key for the Mistral API; `None` makes /query answer 503.
    pub mistral_api_key: Option<Secret>,
    /// Base URL without a trailing slash.
    pub mistral_base_url: String,
    /// Model of the small tier.
    pub small_model: String,
    /// Model of the large tier.
    pub large_model: String,
    /// Score at or above which a query goes to the large tier.
    pub routing_threshold: f64,
    /// Bearer tokens accepted by /query and /metrics; empty means no auth.
    pub api_keys: Vec<Secret>,
    /// Largest accepted query, in bytes of UTF-8.
    pub max_query_bytes: usize,
    /// Time allowed for the upstream call, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Prices used for cost accounting (embedded table plus MODEL_PRICES overrides).
    pub prices: PriceTable,
}

impl Config {
    /// Reads and validates every variable through `lookup` (name -> raw value).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, GatewayError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string());
        let invalid = |variable: &'static str, message: String| GatewayError::InvalidConfig {
            variable,
            message,
        };

        let mistral_api_key = get("MISTRAL_API_KEY")
            .filter(|v| !v.is_empty())
            .map(Secret::new);

        let mistral_base_url = match get("MISTRAL_BASE_URL").filter(|v| !v.is_empty()) {
            None => DEFAULT_MISTRAL_BASE_URL.to_string(),
            Some(url) => {
                let valid = (url.starts_with("https://") || url.starts_with("http://"))
                    && url.len() > "http://".len()
                    && !url.chars().any(char::is_whitespace);
                if !valid {
                    return Err(invalid(
                        "MISTRAL_BASE_URL",
                        format!("expected an http(s) URL such as {DEFAULT_MISTRAL_BASE_URL}, got {url:?}"),
                    ));
                }
                url.trim_end_matches('/').to_string()
            }
        };

        let model = |name: &'static str, default: &str| -> Result<String, GatewayError> {
            match get(name) {
                None => Ok(default.to_string()),
                Some(v) if v.is_empty() => Err(invalid(name, "must not be empty".into())),
                Some(v) if v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    Err(invalid(name, format!("model id must not contain spaces, got {v:?}")))
                }
                Some(v) => Ok(v),
            }
        };
        let small_model = model("SMALL_MODEL", DEFAULT_SMALL_MODEL)?;
        let large_model = model("LARGE_MODEL", DEFAULT_LARGE_MODEL)?;

        let routing_threshold = match get("ROUTING_THRESHOLD").filter(|v| !v.is_empty()) {
            None => scoring::DEFAULT_THRESHOLD,
            Some(raw) => match raw.parse::<f64>() {
                Ok(t) if (0.0..=1.0).contains(&t) => t,
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
            MAX_MAX_QUERY_BYTES as u64,
        )
        .map_err(|m| invalid("MAX_QUERY_BYTES", m))? as usize;
        let upstream_timeout_ms = parse_bounded(
            get("UPSTREAM_TIMEOUT_MS"),
            DEFAULT_UPSTREAM_TIMEOUT_MS,
            MAX_UPSTREAM_TIMEOUT_MS,
        )
        .map_err(|m| invalid("UPSTREAM_TIMEOUT_MS", m))?;

        let mut prices = PriceTable::embedded();
        if let Some(raw) = get("MODEL_PRICES").filter(|v| !v.is_empty()) {
            prices
                .apply_overrides(&raw)
                .map_err(|m| invalid("MODEL_PRICES", m))?;
        }
        for (variable, model) in [("SMALL_MODEL", &small_model), ("LARGE_MODEL", &large_model)] {
            if prices.lookup(model, model).is_none() {
                return Err(invalid(
                    variable,
                    format!("no price known for model {model:?}; add it to MODEL_PRICES"),
                ));
            }
        }

        Ok(Self {
            mistral_api_key,
            mistral_base_url,
            small_model,
            large_model,
            routing_threshold,
            api_keys,
            max_query_bytes,
            upstream_timeout_ms,
            prices,
        })
    }

    /// The configured model of a tier.
    pub fn model_for(&self, tier: Tier) -> &str {
        match tier {
            Tier::Small => &self.small_model,
            Tier::Large => &self.large_model,
        }
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

/// Parses a positive integer no larger than `max`, or returns `default` when unset.
fn parse_bounded(raw: Option<String>, default: u64, max: u64) -> Result<u64, String> {
    match raw.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if v >= 1 && v <= max => Ok(v),
            _ => Err(format!(
                "expected a whole number from 1 to {max}, got {raw:?}"
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

    #[test]
    fn defaults_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert!(c.mistral_api_key.is_none());
        assert_eq!(c.mistral_base_url, "https://api.mistral.ai");
        assert_eq!(c.small_model, "mistral-small-latest");
        assert_eq!(c.large_model, "mistral-large-latest");
        assert_eq!(c.routing_threshold, scoring::DEFAULT_THRESHOLD);
        assert!(c.api_keys.is_empty());
        assert_eq!(c.max_query_bytes, 32768);
        assert_eq!(c.upstream_timeout_ms, 60000);
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
        ])
        .unwrap();
        assert_eq!(c.mistral_api_key.as_ref().unwrap().expose(), "sk-abc");
        assert_eq!(c.mistral_base_url, "http://127.0.0.1:9999");
        assert_eq!(c.routing_threshold, 0.25);
        assert_eq!(c.api_keys.len(), 2);
        assert_eq!(c.max_query_bytes, 100);
        assert_eq!(c.upstream_timeout_ms, 1500);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        assert_eq!(invalid_variable(config(&[("MAX_QUERY_BYTES", "abc")])), "MAX_QUERY_BYTES");
        assert_eq!(invalid_variable(config(&[("MAX_QUERY_BYTES", "0")])), "MAX_QUERY_BYTES");
        assert_eq!(invalid_variable(config(&[("MAX_QUERY_BYTES", "-5")])), "MAX_QUERY_BYTES");
        assert_eq!(invalid_variable(config(&[("UPSTREAM_TIMEOUT_MS", "1.5")])), "UPSTREAM_TIMEOUT_MS");
        assert_eq!(invalid_variable(config(&[("ROUTING_THRESHOLD", "1.5")])), "ROUTING_THRESHOLD");
        assert_eq!(invalid_variable(config(&[("ROUTING_THRESHOLD", "NaN")])), "ROUTING_THRESHOLD");
        assert_eq!(invalid_variable(config(&[("MISTRAL_BASE_URL", "ftp://x")])), "MISTRAL_BASE_URL");
        assert_eq!(invalid_variable(config(&[("SMALL_MODEL", "a b")])), "SMALL_MODEL");
        assert_eq!(invalid_variable(config(&[("LARGE_MODEL", "unknown-model")])), "LARGE_MODEL");
        assert_eq!(invalid_variable(config(&[("MODEL_PRICES", "{bad")])), "MODEL_PRICES");
    }

    #[test]
    fn unknown_model_accepted_with_a_price_override() {
        let c = config(&[
            ("LARGE_MODEL", "my-model"),
            ("MODEL_PRICES", r#"{"my-model": {"input": 1, "output": 2}}"#),
        ])
        .unwrap();
        assert_eq!(c.model_for(Tier::Large), "my-model");
    }

    #[test]
    fn secrets_never_print() {
        let c = config(&[("MISTRAL_API_KEY", "sk-supersecret"), ("LLM_MUX_API_KEYS", "tok-1")])
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
        assert_eq!(c.authorize(Some("Bearer alph")), Err(GatewayError::Unauthorized));
        assert_eq!(c.authorize(Some("Bearer alphax")), Err(GatewayError::Unauthorized));
        assert_eq!(c.authorize(Some("Basic alpha")), Err(GatewayError::Unauthorized));
        assert_eq!(c.authorize(Some("alpha")), Err(GatewayError::Unauthorized));
        assert_eq!(c.authorize(Some("Bearer ")), Err(GatewayError::Unauthorized));
    }
}

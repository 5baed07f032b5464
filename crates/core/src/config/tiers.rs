//! The tiers: [`TierConfig`], the two default Mistral tiers built from SMALL_MODEL and
//! LARGE_MODEL, and the parsing of the TIERS JSON array into tiers with their selection
//! policies (name, `min_score`, `when` condition), backend, base URL, key variable and
//! prices. It validates every tier and names the offending one in its `InvalidConfig`
//! error; it must not read variables other than a tier's key variable (the plain ones
//! arrive already parsed from `vars`) nor decide how a query is routed.

use serde_json::Value;

use super::vars::{invalid, valid_base_url, valid_model_id};
use super::Secret;
use crate::error::GatewayError;
use crate::jsonread::{self, Fields};
use crate::pricing::{ModelPrice, PriceTable};
use crate::providers::BackendKind;
use crate::routing::{FeatureCondition, TierPolicy};
use crate::scoring;

/// Looks up a secret variable (trimmed, `None` when unset or empty).
pub(super) type SecretLookup<'a> = &'a dyn Fn(&str) -> Option<Secret>;

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

/// A tier as written in the TIERS variable.
#[derive(Debug)]
struct TierSpec {
    name: String,
    backend: Option<String>,
    base_url: Option<String>,
    model: String,
    api_key_var: Option<String>,
    min_score: Option<f64>,
    when: Option<WhenSpec>,
    prices: Option<ModelPrice>,
}

#[derive(Debug)]
struct WhenSpec {
    feature: String,
    /// 0.5 when not given.
    min_value: f64,
}

impl TierSpec {
    /// Reads one tier object: `name` and `model` required, the rest optional (missing or
    /// `null`), no other field.
    fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        f.deny_unknown(&[
            "name",
            "backend",
            "base_url",
            "model",
            "api_key_var",
            "min_score",
            "when",
            "prices",
        ])?;
        Ok(TierSpec {
            name: f.string("name")?,
            backend: f.opt_string("backend")?,
            base_url: f.opt_string("base_url")?,
            model: f.string("model")?,
            api_key_var: f.opt_string("api_key_var")?,
            min_score: f.opt_f64("min_score")?,
            when: f
                .opt("when")
                .map(WhenSpec::from_value)
                .transpose()
                .map_err(|e| format!("when: {e}"))?,
            prices: f
                .opt("prices")
                .map(ModelPrice::from_value)
                .transpose()
                .map_err(|e| format!("prices: {e}"))?,
        })
    }
}

impl WhenSpec {
    fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        f.deny_unknown(&["feature", "min_value"])?;
        Ok(WhenSpec {
            feature: f.string("feature")?,
            min_value: match f.0.get("min_value") {
                Some(m) => jsonread::as_f64(m, "min_value")?,
                None => 0.5,
            },
        })
    }
}

/// The tier objects of TIERS, in order.
fn tier_specs(raw: &str) -> Result<Vec<TierSpec>, String> {
    let value: Value = serde_json::from_slice(raw.as_bytes()).map_err(|e| e.to_string())?;
    value
        .as_array()
        .ok_or_else(|| String::from("not an array"))?
        .iter()
        .enumerate()
        .map(|(i, tier)| TierSpec::from_value(tier).map_err(|e| format!("tier {}: {e}", i + 1)))
        .collect()
}

/// The tiers when TIERS is unset: "small" (from 0) and "large" (from `routing_threshold`)
/// on Mistral, both models needing a known price.
pub(super) fn default_tiers(
    mistral_base_url: &str,
    small_model: String,
    large_model: String,
    routing_threshold: f64,
    prices: &PriceTable,
    secret: SecretLookup,
) -> Result<Vec<TierConfig>, GatewayError> {
    let mistral_tier = |name: &str, model: String, min_score: f64| TierConfig {
        policy: TierPolicy {
            name: name.to_string(),
            min_score,
            when: None,
        },
        backend: BackendKind::Mistral,
        base_url: mistral_base_url.to_string(),
        model,
        key_variable: "MISTRAL_API_KEY".into(),
        api_key: secret("MISTRAL_API_KEY"),
        price: None,
    };
    for (variable, model) in [("SMALL_MODEL", &small_model), ("LARGE_MODEL", &large_model)] {
        if prices.lookup(model, model).is_none() {
            return Err(invalid(
                variable,
                format!("no price known for model {model:?}; add it to MODEL_PRICES"),
            ));
        }
    }
    Ok(vec![
        mistral_tier("small", small_model, 0.0),
        mistral_tier("large", large_model, routing_threshold),
    ])
}

/// Parses the TIERS variable: a JSON array of tiers from cheapest to most expensive.
pub(super) fn parse_tiers(
    raw: &str,
    mistral_base_url: &str,
    prices: &mut PriceTable,
    secret: SecretLookup,
) -> Result<Vec<TierConfig>, GatewayError> {
    let bad = |message: String| invalid("TIERS", message);
    let specs = tier_specs(raw).map_err(|e| {
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
                .apply_overrides(&crate::jsonwrite::text(
                    &serde_json::json!({ spec.model.clone(): price }),
                ))
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, invalid_message};
    use super::*;
    use crate::routing::Requested;

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
    fn optional_tier_fields_may_be_null_or_missing() {
        let tiers = r#"[
          {"name": "small", "model": "mistral-small-latest", "backend": null, "base_url": null,
           "api_key_var": null, "min_score": null, "when": null, "prices": null},
          {"name": "code", "model": "codestral-latest", "when": {"feature": "code"}},
          {"name": "large", "model": "mistral-large-latest", "min_score": 1,
           "prices": {"input": 2, "output": 6.5}}
        ]"#;
        let c = config(&[("TIERS", tiers)]).unwrap();
        assert_eq!(c.tiers[0].backend, BackendKind::Mistral);
        assert_eq!(c.tiers[0].key_variable, "MISTRAL_API_KEY");
        assert_eq!(c.tiers[0].price, None);
        assert_eq!(c.policies[0].min_score, 0.0);
        let when = c.policies[1].when.as_ref().unwrap();
        assert_eq!((when.feature.as_str(), when.min_value), ("code", 0.5));
        assert_eq!(c.policies[2].min_score, 1.0);
        assert_eq!(
            c.tiers[2].price,
            Some(ModelPrice {
                input: 2.0,
                output: 6.5
            })
        );
    }

    #[test]
    fn tier_fields_of_the_wrong_type_are_named() {
        let cases = [
            (
                r#"[{"model": "mistral-large-latest"}]"#,
                "missing field `name`",
            ),
            (r#"[{"name": "a"}]"#, "missing field `model`"),
            (
                r#"[{"name": 1, "model": "mistral-large-latest"}]"#,
                "`name`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "min_score": "0.5"}]"#,
                "`min_score`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "backend": 3}]"#,
                "`backend`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "when": {"min_value": 1}}]"#,
                "missing field `feature`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "when": {"feature": "code", "min_value": null}}]"#,
                "`min_value`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "when": {"feature": "code", "max": 1}}]"#,
                "unknown field `max`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "when": "code"}]"#,
                "when",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "prices": {"input": 1}}]"#,
                "missing field `output`",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest", "prices": [1, 2]}]"#,
                "prices",
            ),
            (
                r#"[{"name": "a", "model": "mistral-large-latest"}, 3]"#,
                "tier 2",
            ),
            ("[1", "JSON array"),
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
}

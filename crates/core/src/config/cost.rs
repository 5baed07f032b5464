//! Cost control settings: per-key policies (KEY_POLICIES), the global caps
//! (GLOBAL_RATE_LIMIT_PER_MINUTE, GLOBAL_DAILY_BUDGET_USD, GLOBAL_MONTHLY_BUDGET_USD), what
//! a request over a budget gets (BUDGET_ACTION), the completion ceiling a budgeted request
//! is reserved and capped at (BUDGET_MAX_COMPLETION_TOKENS), and the response cache
//! (CACHE_TTL_SECONDS, CACHE_SCOPE).
//!
//! It owns the parsing and validation of these variables and the client keys' ids
//! ([`key_id`]: a keyed hash, never the key). It must not decide admissions: that is
//! [`crate::ledger`]'s job, fed with the [`Caps`] read here.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::vars::{bounded, decimal_in, invalid, Lookup};
use super::{Secret, TierConfig};
use crate::error::GatewayError;

/// Default BUDGET_MAX_COMPLETION_TOKENS: the completion a budgeted request without
/// `max_tokens` is reserved for (and capped at upstream).
pub const DEFAULT_BUDGET_MAX_COMPLETION_TOKENS: u64 = 4096;
/// Upper bound of BUDGET_MAX_COMPLETION_TOKENS.
pub const MAX_BUDGET_MAX_COMPLETION_TOKENS: u64 = 1_000_000;
/// Upper bound of CACHE_TTL_SECONDS (30 days).
pub const MAX_CACHE_TTL_SECONDS: u64 = 30 * 86_400;
/// Largest budget accepted, in USD.
const MAX_BUDGET_USD: f64 = 1e9;
/// Largest rate limit accepted, in requests per minute.
const MAX_RATE_PER_MINUTE: u64 = 1_000_000;

/// Caps of one scope (a key, or all traffic). `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    /// Requests per minute (sliding 60-second window).
    pub rate_limit_per_minute: Option<u64>,
    /// Spend per UTC day, in USD.
    pub daily_budget_usd: Option<f64>,
    /// Spend per UTC calendar month, in USD.
    pub monthly_budget_usd: Option<f64>,
}

impl Caps {
    /// Whether any cap is set.
    pub fn any(&self) -> bool {
        self.rate_limit_per_minute.is_some() || self.has_budget()
    }

    /// Whether a spend cap is set.
    pub fn has_budget(&self) -> bool {
        self.daily_budget_usd.is_some() || self.monthly_budget_usd.is_some()
    }
}

/// One key's policy (KEY_POLICIES entry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyPolicy {
    /// The key's caps.
    pub caps: Caps,
    /// Tiers (indexes) the key may use; `None`: every tier.
    pub allowed_tiers: Option<Vec<usize>>,
}

/// What a request that would exceed a budget gets (BUDGET_ACTION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetAction {
    /// 429 naming the budget and when it resets (the default).
    Refuse,
    /// The cheapest tier whose worst case still fits; 429 when none does.
    Downgrade,
}

/// Who shares cached answers (CACHE_SCOPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Each key its own (the default).
    Key,
    /// Every key the same.
    Shared,
}

/// The cost control settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CostControl {
    /// The id of each key of LLM_MUX_API_KEYS, in the same order.
    pub key_ids: Vec<String>,
    /// KEY_POLICIES: (key id or `*`, policy).
    pub policies: Vec<(String, KeyPolicy)>,
    /// The caps on all traffic together.
    pub global: Caps,
    /// BUDGET_ACTION.
    pub action: BudgetAction,
    /// BUDGET_MAX_COMPLETION_TOKENS.
    pub completion_ceiling: u64,
    /// CACHE_TTL_SECONDS; 0: no cache.
    pub cache_ttl_seconds: u64,
    /// CACHE_SCOPE.
    pub cache_scope: CacheScope,
}

impl CostControl {
    /// The policy of the key with id `key_id` (its own entry, else `*`), if any.
    pub fn policy(&self, key_id: Option<&str>) -> Option<&KeyPolicy> {
        let own = key_id.and_then(|id| self.policies.iter().find(|(k, _)| k == id));
        own.or_else(|| key_id.and_then(|_| self.policies.iter().find(|(k, _)| k == "*")))
            .map(|(_, p)| p)
    }

    /// Whether a request of `key_id` goes through the ledger (any cap applies to it).
    pub fn ledger_applies(&self, key_id: Option<&str>) -> bool {
        self.global.any() || self.policy(key_id).is_some_and(|p| p.caps.any())
    }

    /// Whether a spend cap applies to a request of `key_id`.
    pub fn budget_applies(&self, key_id: Option<&str>) -> bool {
        self.global.has_budget() || self.policy(key_id).is_some_and(|p| p.caps.has_budget())
    }

    /// Whether `tier` is allowed to a request of `key_id`.
    pub fn tier_allowed(&self, key_id: Option<&str>, tier: usize) -> bool {
        self.policy(key_id)
            .and_then(|p| p.allowed_tiers.as_ref())
            .is_none_or(|allowed| allowed.contains(&tier))
    }
}

/// The id of a client key: the first 12 hex digits of HMAC-SHA-256 keyed with
/// `llm-mux key id` over the key. Stable across deployments (KEY_POLICIES names keys by
/// it), short, and says nothing usable about the key.
pub fn key_id(key: &str) -> String {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(b"llm-mux key id") else {
        return String::new();
    };
    mac.update(key.as_bytes());
    crate::numfmt::hex(&mac.finalize().into_bytes()[..6])
}

/// Reads the cost control variables; `keys` are LLM_MUX_API_KEYS' keys.
pub(super) fn cost_control(
    get: Lookup,
    keys: &[Secret],
    tiers: &[TierConfig],
) -> Result<CostControl, GatewayError> {
    let key_ids: Vec<String> = keys.iter().map(|k| key_id(k.expose())).collect();
    let policies = match get("KEY_POLICIES").filter(|v| !v.is_empty()) {
        None => Vec::new(),
        Some(raw) => key_policies(&raw, &key_ids, tiers).map_err(|m| invalid("KEY_POLICIES", m))?,
    };
    let global = Caps {
        rate_limit_per_minute: optional_count(get, "GLOBAL_RATE_LIMIT_PER_MINUTE")?,
        daily_budget_usd: decimal_in(get, "GLOBAL_DAILY_BUDGET_USD", 0.0, MAX_BUDGET_USD)?,
        monthly_budget_usd: decimal_in(get, "GLOBAL_MONTHLY_BUDGET_USD", 0.0, MAX_BUDGET_USD)?,
    };
    let action = match get("BUDGET_ACTION").filter(|v| !v.is_empty()).as_deref() {
        None | Some("refuse") => BudgetAction::Refuse,
        Some("downgrade") => BudgetAction::Downgrade,
        Some(other) => {
            return Err(invalid(
                "BUDGET_ACTION",
                format!("expected 'refuse' or 'downgrade', got {other:?}"),
            ))
        }
    };
    let cache_scope = match get("CACHE_SCOPE").filter(|v| !v.is_empty()).as_deref() {
        None | Some("key") => CacheScope::Key,
        Some("shared") => CacheScope::Shared,
        Some(other) => {
            return Err(invalid(
                "CACHE_SCOPE",
                format!("expected 'key' or 'shared', got {other:?}"),
            ))
        }
    };
    Ok(CostControl {
        key_ids,
        policies,
        global,
        action,
        completion_ceiling: bounded(
            get,
            "BUDGET_MAX_COMPLETION_TOKENS",
            DEFAULT_BUDGET_MAX_COMPLETION_TOKENS,
            1,
            MAX_BUDGET_MAX_COMPLETION_TOKENS,
        )?,
        cache_ttl_seconds: bounded(get, "CACHE_TTL_SECONDS", 0, 0, MAX_CACHE_TTL_SECONDS)?,
        cache_scope,
    })
}

/// A whole number of requests per minute in `name`, if set.
fn optional_count(get: Lookup, name: &'static str) -> Result<Option<u64>, GatewayError> {
    match get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(_) => bounded(get, name, 0, 1, MAX_RATE_PER_MINUTE).map(Some),
    }
}

/// KEY_POLICIES: `{"<key id>" | "*": {"rate_limit_per_minute": 60, "daily_budget_usd": 5,
/// "monthly_budget_usd": 100, "allowed_tiers": ["small"]}}`.
fn key_policies(
    raw: &str,
    key_ids: &[String],
    tiers: &[TierConfig],
) -> Result<Vec<(String, KeyPolicy)>, String> {
    let value: Value =
        serde_json::from_slice(raw.as_bytes()).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(entries) = value else {
        return Err("expected a JSON object keyed by key id or \"*\"".into());
    };
    let mut policies = Vec::new();
    for (id, entry) in entries {
        if id != "*" && !key_ids.contains(&id) {
            return Err(format!(
                "{id:?} is not the id of a key in LLM_MUX_API_KEYS (ids: {}; or \"*\")",
                key_ids.join(", ")
            ));
        }
        let Value::Object(fields) = entry else {
            return Err(format!("{id}: expected an object"));
        };
        let policy = key_policy(&fields, tiers).map_err(|m| format!("{id}: {m}"))?;
        policies.push((id, policy));
    }
    Ok(policies)
}

fn key_policy(fields: &Map<String, Value>, tiers: &[TierConfig]) -> Result<KeyPolicy, String> {
    let mut policy = KeyPolicy::default();
    for (name, value) in fields {
        match name.as_str() {
            "rate_limit_per_minute" => {
                policy.caps.rate_limit_per_minute = Some(
                    value
                        .as_u64()
                        .filter(|n| (1..=MAX_RATE_PER_MINUTE).contains(n))
                        .ok_or(
                            "rate_limit_per_minute: expected a whole number from 1 to 1000000",
                        )?,
                );
            }
            "daily_budget_usd" => policy.caps.daily_budget_usd = Some(usd(name, value)?),
            "monthly_budget_usd" => policy.caps.monthly_budget_usd = Some(usd(name, value)?),
            "allowed_tiers" => {
                let names = value
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or("allowed_tiers: expected a non-empty list of tier names")?;
                let mut allowed = Vec::new();
                for name in names {
                    let index = name
                        .as_str()
                        .and_then(|n| tiers.iter().position(|t| t.name() == n))
                        .ok_or_else(|| {
                            let name = crate::jsonwrite::text(name);
                            format!("allowed_tiers: {name} is not a tier name")
                        })?;
                    allowed.push(index);
                }
                policy.allowed_tiers = Some(allowed);
            }
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    Ok(policy)
}

fn usd(name: &str, value: &Value) -> Result<f64, String> {
    value
        .as_f64()
        .filter(|v| (0.0..=MAX_BUDGET_USD).contains(v))
        .ok_or_else(|| format!("{name}: expected a number of USD from 0 to 1000000000"))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, invalid_message, invalid_variable};
    use super::*;

    #[test]
    fn key_ids_are_keyed_hash_prefixes() {
        // `printf alpha | openssl dgst -sha256 -hmac "llm-mux key id"`, first 12 digits.
        assert_eq!(key_id("alpha"), "06aa3438ca66");
        assert_ne!(key_id("alpha"), key_id("beta"));
        assert_eq!(key_id("alpha"), key_id("alpha"));
        assert!(!key_id("alpha").contains("alpha"));
        let c = config(&[("LLM_MUX_API_KEYS", "alpha,beta")]).unwrap();
        assert_eq!(c.cost.key_ids, vec![key_id("alpha"), key_id("beta")]);
    }

    #[test]
    fn nothing_is_capped_by_default() {
        let c = config(&[]).unwrap();
        assert!(!c.cost.global.any());
        assert!(!c.cost.ledger_applies(None));
        assert_eq!(c.cost.action, BudgetAction::Refuse);
        assert_eq!(c.cost.cache_ttl_seconds, 0);
        assert_eq!(c.cost.cache_scope, CacheScope::Key);
        assert_eq!(c.cost.completion_ceiling, 4096);
    }

    #[test]
    fn policies_by_key_id_and_star() {
        let alpha = key_id("alpha");
        let policies = format!(
            r#"{{"{alpha}": {{"rate_limit_per_minute": 5, "daily_budget_usd": 1.5, "allowed_tiers": ["small"]}},
                "*": {{"monthly_budget_usd": 20}}}}"#
        );
        let c = config(&[
            ("LLM_MUX_API_KEYS", "alpha,beta"),
            ("KEY_POLICIES", &policies),
            ("GLOBAL_DAILY_BUDGET_USD", "100"),
            ("BUDGET_ACTION", "downgrade"),
        ])
        .unwrap();
        let a = c.cost.policy(Some(&alpha)).unwrap();
        assert_eq!(a.caps.rate_limit_per_minute, Some(5));
        assert_eq!(a.caps.daily_budget_usd, Some(1.5));
        assert_eq!(a.allowed_tiers, Some(vec![0]));
        assert!(!c.cost.tier_allowed(Some(&alpha), 1));
        let b = c.cost.policy(Some(&key_id("beta"))).unwrap();
        assert_eq!(b.caps.monthly_budget_usd, Some(20.0));
        assert!(c.cost.tier_allowed(Some(&key_id("beta")), 1));
        assert_eq!(c.cost.global.daily_budget_usd, Some(100.0));
        assert_eq!(c.cost.action, BudgetAction::Downgrade);
        assert!(c.cost.budget_applies(None));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let keys = ("LLM_MUX_API_KEYS", "alpha");
        for (vars, variable) in [
            (vec![keys, ("KEY_POLICIES", "[1]")], "KEY_POLICIES"),
            (vec![keys, ("KEY_POLICIES", "{")], "KEY_POLICIES"),
            (
                vec![keys, ("KEY_POLICIES", r#"{"nokey": {}}"#)],
                "KEY_POLICIES",
            ),
            (
                vec![keys, ("KEY_POLICIES", r#"{"*": {"daily_budget_usd": -1}}"#)],
                "KEY_POLICIES",
            ),
            (
                vec![
                    keys,
                    ("KEY_POLICIES", r#"{"*": {"rate_limit_per_minute": 0}}"#),
                ],
                "KEY_POLICIES",
            ),
            (
                vec![
                    keys,
                    ("KEY_POLICIES", r#"{"*": {"allowed_tiers": ["huge"]}}"#),
                ],
                "KEY_POLICIES",
            ),
            (
                vec![keys, ("KEY_POLICIES", r#"{"*": {"burst": 1}}"#)],
                "KEY_POLICIES",
            ),
            (
                vec![("GLOBAL_RATE_LIMIT_PER_MINUTE", "0")],
                "GLOBAL_RATE_LIMIT_PER_MINUTE",
            ),
            (
                vec![("GLOBAL_DAILY_BUDGET_USD", "-2")],
                "GLOBAL_DAILY_BUDGET_USD",
            ),
            (
                vec![("GLOBAL_MONTHLY_BUDGET_USD", "x")],
                "GLOBAL_MONTHLY_BUDGET_USD",
            ),
            (vec![("BUDGET_ACTION", "pray")], "BUDGET_ACTION"),
            (vec![("CACHE_TTL_SECONDS", "-1")], "CACHE_TTL_SECONDS"),
            (vec![("CACHE_SCOPE", "world")], "CACHE_SCOPE"),
            (
                vec![("BUDGET_MAX_COMPLETION_TOKENS", "0")],
                "BUDGET_MAX_COMPLETION_TOKENS",
            ),
        ] {
            assert_eq!(invalid_variable(config(&vars)), variable, "{vars:?}");
        }
        // The message names the unknown id and never a key.
        let m = invalid_message(config(&[keys, ("KEY_POLICIES", r#"{"nokey": {}}"#)]));
        assert!(m.contains("nokey") && !m.contains("alpha"), "{m}");
    }
}

//! The pipeline's decisions that need no I/O, one function per stage, in the order the
//! shell's pipeline (`src/pipeline.rs`) runs them.
//!
//! Authorization lives here once for every protected route; admission (the key's allowed
//! tiers) and the budget stage (what the ledger decides: rate limits and spend caps, see
//! [`crate::ledger`]) follow. These functions must not touch the network or the clock;
//! what they need of the runtime (the ledger's verdict, the time) is passed in.

use crate::chat::ChatRequest;
use crate::config::{check_bearer, Config, Secret};
use crate::error::GatewayError;
use crate::ledger::{self, Admit, Verdict};
use crate::plan::{self, Plan};
use crate::routing::Requested;
use crate::upstream::CallPolicy;

/// authorize: the request carries an accepted bearer key (when `LLM_MUX_API_KEYS` is set)
/// and the configuration is valid. The one place a request is authorized. The key is
/// checked first, against `keys` (LLM_MUX_API_KEYS read on its own) when the rest of the
/// configuration is invalid: what is wrong with it (a configured URL, say) is told only
/// to a caller with a key, and to the log.
pub fn authorize<'c>(
    config: &'c Result<Config, GatewayError>,
    keys: &[Secret],
    authorization: Option<&str>,
) -> Result<&'c Config, GatewayError> {
    match config {
        Ok(config) => {
            config.authorize(authorization)?;
            Ok(config)
        }
        Err(error) => {
            check_bearer(keys, authorization)?;
            Err(error.clone())
        }
    }
}

/// authorize an admin action (`DELETE /metrics`): the bearer token must be
/// LLM_MUX_ADMIN_KEY. Without an admin key, or with an invalid configuration (whose
/// message is not for an unauthenticated caller), the action is off.
pub fn authorize_admin<'c>(
    config: &'c Result<Config, GatewayError>,
    authorization: Option<&str>,
) -> Result<&'c Config, GatewayError> {
    let Some((config, admin_key)) = config
        .as_ref()
        .ok()
        .and_then(|c| Some((c, c.admin_key.as_ref()?)))
    else {
        return Err(GatewayError::Forbidden(
            "admin actions are off: set the secret LLM_MUX_ADMIN_KEY".into(),
        ));
    };
    // Present and equal (check_bearer passes everything only for an empty key list).
    let presented = authorization.is_some_and(|h| !h.trim().is_empty());
    if !presented || check_bearer(std::slice::from_ref(admin_key), authorization).is_err() {
        return Err(GatewayError::Forbidden(
            "DELETE /metrics needs 'Authorization: Bearer <LLM_MUX_ADMIN_KEY>'".into(),
        ));
    }
    Ok(config)
}

/// admit: the key's allowed tiers (KEY_POLICIES `allowed_tiers`). A request for a tier
/// the key may not use is refused (403); an automatically routed one moves to the nearest
/// allowed tier (the highest below, else the lowest above), said in its routing.
pub fn admit(
    config: &Config,
    key_id: Option<&str>,
    request: &ChatRequest,
    plan: Plan,
) -> Result<Plan, GatewayError> {
    let tier = plan.decision.tier;
    let allowed = |t: usize| config.cost.tier_allowed(key_id, t);
    if allowed(tier) {
        return Ok(plan);
    }
    let nearest = (0..tier)
        .rev()
        .find(|&t| allowed(t))
        .or_else(|| (tier + 1..config.tiers.len()).find(|&t| allowed(t)));
    match (plan.decision.requested, nearest) {
        (Requested::Auto, Some(to)) => plan::downgrade(config, request, &plan, to, "allowed_tiers"),
        _ => Err(GatewayError::Forbidden(format!(
            "key {} may not use tier '{}' (KEY_POLICIES allowed_tiers)",
            key_id.unwrap_or("-"),
            plan.decision.tier_name
        ))),
    }
}

/// budget: what the ledger must decide for this request (rate limits and spend caps),
/// or `None` when no cap applies to it (no ledger call). A budgeted request's completion
/// is capped at BUDGET_MAX_COMPLETION_TOKENS when the client set no `max_tokens`, so its
/// reservation bounds its cost.
pub fn budget(
    config: &Config,
    key_id: Option<&str>,
    plan: &mut Plan,
    request_id: &str,
) -> Option<Admit> {
    if config.cost.budget_applies(key_id) {
        ledger::cap_completion(config, plan);
    }
    ledger::admission(config, key_id, plan, request_id)
}

/// budget, after the ledger's verdict: the plan to call (moved to a cheaper tier when
/// only that one fits, BUDGET_ACTION=downgrade), or the refusal (429).
pub fn admitted(
    config: &Config,
    key_id: Option<&str>,
    request: &ChatRequest,
    plan: Plan,
    verdict: &Verdict,
    now_ms: u64,
) -> Result<Plan, GatewayError> {
    if let Some(refusal) = ledger::refusal(verdict, key_id, now_ms) {
        return Err(refusal);
    }
    match verdict {
        Verdict::Admitted { tier, .. } if *tier != plan.decision.tier => {
            let mut moved = plan::downgrade(config, request, &plan, *tier, "budget")?;
            ledger::cap_completion(config, &mut moved);
            Ok(moved)
        }
        _ => Ok(plan),
    }
}

/// The admission of a fallback plan: the same request, its reservation replaced by the
/// fallback tier's worst case (not counted against the rate limits again).
pub fn readmission(config: &Config, admission: &Admit, plan: &mut Plan) -> Admit {
    ledger::cap_completion(config, plan);
    Admit {
        id: admission.id.clone(),
        scopes: admission.scopes.clone(),
        candidates: vec![(
            plan.decision.tier,
            ledger::worst_case(config, plan, plan.decision.tier),
        )],
        replace: Some(admission.id.clone()),
    }
}

/// call: how the upstream call may spend its time.
pub fn call_policy(config: &Config) -> CallPolicy {
    CallPolicy::with_timeout(config.upstream_timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::api_keys_from_lookup;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, GatewayError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn authorize_checks_the_key_then_the_configuration() {
        let open = config(&[]);
        assert!(authorize(&open, &[], None).is_ok());
        let keyed = config(&[("LLM_MUX_API_KEYS", "k1,k2")]);
        assert_eq!(
            authorize(&keyed, &[], None).err(),
            Some(GatewayError::Unauthorized)
        );
        assert_eq!(
            authorize(&keyed, &[], Some("Bearer nope")).err(),
            Some(GatewayError::Unauthorized)
        );
        assert!(authorize(&keyed, &[], Some("Bearer k2")).is_ok());
        // An invalid configuration names a configured value: only a caller with a key
        // learns it.
        let vars = [
            ("MISTRAL_BASE_URL", "ftp://internal.example:21"),
            ("LLM_MUX_API_KEYS", "k1"),
        ];
        let broken = config(&vars);
        let keys = api_keys_from_lookup(Some("k1".to_string()));
        assert_eq!(
            authorize(&broken, &keys, None).err(),
            Some(GatewayError::Unauthorized)
        );
        assert_eq!(
            authorize(&broken, &keys, Some("Bearer k2")).err(),
            Some(GatewayError::Unauthorized)
        );
        assert!(matches!(
            authorize(&broken, &keys, Some("Bearer k1")),
            Err(GatewayError::InvalidConfig {
                variable: "MISTRAL_BASE_URL",
                ..
            })
        ));
        // Without keys, the configuration error is everyone's answer (as before).
        let open_broken = config(&[("MAX_QUERY_BYTES", "0")]);
        assert!(matches!(
            authorize(&open_broken, &[], None),
            Err(GatewayError::InvalidConfig {
                variable: "MAX_QUERY_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn admin_actions_need_the_admin_key() {
        let off = config(&[("LLM_MUX_API_KEYS", "k1")]);
        assert_eq!(
            authorize_admin(&off, Some("Bearer k1"))
                .unwrap_err()
                .status(),
            403
        );
        let on = config(&[("LLM_MUX_ADMIN_KEY", "adm-1"), ("LLM_MUX_API_KEYS", "k1")]);
        assert!(authorize_admin(&on, Some("Bearer adm-1")).is_ok());
        for wrong in [None, Some("Bearer k1"), Some("Bearer adm-"), Some("adm-1")] {
            let error = authorize_admin(&on, wrong).unwrap_err();
            assert_eq!(error.status(), 403, "{wrong:?}");
            assert!(!error.client_message().contains("adm-1"));
        }
        // An invalid configuration is not revealed: the action is off.
        let broken = config(&[("MAX_QUERY_BYTES", "0"), ("LLM_MUX_ADMIN_KEY", "adm-2")]);
        let error = authorize_admin(&broken, Some("Bearer adm-2")).unwrap_err();
        assert_eq!(error.status(), 403);
        assert!(!error.client_message().contains("MAX_QUERY_BYTES"));
    }

    #[test]
    fn the_call_policy_follows_the_configured_deadline() {
        let c = config(&[("UPSTREAM_TIMEOUT_MS", "1234")]).unwrap();
        assert_eq!(call_policy(&c), CallPolicy::with_timeout(1234));
    }

    fn keyed(policies: &str, extra: &[(&'static str, &'static str)]) -> Config {
        let mut vars = vec![
            ("MISTRAL_API_KEY", "sk-test"),
            ("LLM_MUX_API_KEYS", "alpha,beta"),
            ("ROUTING_THRESHOLD", "0"),
        ];
        vars.extend_from_slice(extra);
        let policies = policies.replace("ALPHA", &crate::config::key_id("alpha"));
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("KEY_POLICIES".into(), policies);
        Config::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    fn planned(c: &Config, requested: Requested, max_tokens: Option<u32>) -> (ChatRequest, Plan) {
        let r = ChatRequest::single_turn("auto", "hello", max_tokens, false);
        let p = plan::plan(c, &r, requested, "hello").unwrap();
        (r, p)
    }

    #[test]
    fn admit_keeps_a_key_to_its_allowed_tiers() {
        let c = keyed(r#"{"ALPHA": {"allowed_tiers": ["small"]}}"#, &[]);
        let alpha = crate::config::key_id("alpha");
        // Routed large (threshold 0): moved to small, and said so.
        let (r, p) = planned(&c, Requested::Auto, None);
        assert_eq!(p.decision.tier_name, "large");
        let moved = admit(&c, Some(&alpha), &r, p).unwrap();
        assert_eq!(moved.decision.tier_name, "small");
        assert_eq!(moved.body["model"], "mistral-small-latest");
        assert!(moved
            .decision
            .describe()
            .contains("moved from LARGE (allowed_tiers)"));
        // Asked for large by name: refused.
        let (r, p) = planned(&c, Requested::Tier(1), None);
        let Err(e) = admit(&c, Some(&alpha), &r, p) else {
            panic!("admitted")
        };
        assert_eq!(e.status(), 403);
        assert!(e.client_message().contains(&alpha));
        // Another key has no such policy.
        let (r, p) = planned(&c, Requested::Tier(1), None);
        let beta = crate::config::key_id("beta");
        assert_eq!(admit(&c, Some(&beta), &r, p).unwrap().decision.tier, 1);
    }

    #[test]
    fn budget_reserves_the_worst_case_and_caps_the_completion() {
        let c = keyed(
            r#"{"*": {"daily_budget_usd": 1}}"#,
            &[
                ("BUDGET_ACTION", "downgrade"),
                ("BUDGET_MAX_COMPLETION_TOKENS", "100"),
            ],
        );
        let alpha = crate::config::key_id("alpha");
        let (_, mut p) = planned(&c, Requested::Auto, None);
        let admission = budget(&c, Some(&alpha), &mut p, "r1").unwrap();
        assert_eq!(p.body["max_tokens"], 100);
        let bytes = p.body.to_string().len() as u64;
        let large = c.price_of(1, "mistral-large-latest").unwrap();
        let small = c.price_of(0, "mistral-small-latest").unwrap();
        assert_eq!(
            admission.candidates,
            vec![
                (1, ledger::pico(large.cost_usd(bytes, 100))),
                (0, ledger::pico(small.cost_usd(bytes, 100)))
            ]
        );
        assert_eq!(admission.object(), format!("key:{alpha}"));
        // The client's own max_tokens bounds the completion instead.
        let (_, mut p) = planned(&c, Requested::Auto, Some(7));
        let admission = budget(&c, Some(&alpha), &mut p, "r2").unwrap();
        assert_eq!(p.body["max_tokens"], 7);
        assert_eq!(
            admission.candidates[0].1,
            ledger::pico(large.cost_usd(p.body.to_string().len() as u64, 7))
        );
        // No cap: no ledger call, the body untouched.
        let open = keyed("{}", &[]);
        let (_, mut p) = planned(&open, Requested::Auto, None);
        assert!(budget(&open, Some(&alpha), &mut p, "r3").is_none());
        assert!(p.body.get("max_tokens").is_none());
    }

    #[test]
    fn admitted_moves_to_the_tier_the_ledger_chose_or_refuses() {
        let c = keyed(
            r#"{"*": {"daily_budget_usd": 1}}"#,
            &[("BUDGET_ACTION", "downgrade")],
        );
        let alpha = crate::config::key_id("alpha");
        let (r, p) = planned(&c, Requested::Auto, None);
        let v = Verdict::Admitted {
            tier: 0,
            reserved: 1,
        };
        let moved = admitted(&c, Some(&alpha), &r, p, &v, 0).unwrap();
        assert_eq!(moved.decision.tier_name, "small");
        assert_eq!(moved.body["max_tokens"], 4096);
        assert!(moved
            .decision
            .describe()
            .contains("moved from LARGE (budget)"));
        let (r, p) = planned(&c, Requested::Auto, None);
        let v = Verdict::RateLimited {
            scope: format!("key:{alpha}"),
            limit: 1,
            retry_after_s: 9,
        };
        let Err(e) = admitted(&c, Some(&alpha), &r, p, &v, 0) else {
            panic!("admitted")
        };
        assert_eq!((e.status(), e.retry_after().as_deref()), (429, Some("9")));
        // A fallback re-admission replaces the reservation with the new tier's worst case.
        let (_, mut p) = planned(&c, Requested::Auto, None);
        let first = budget(&c, Some(&alpha), &mut p, "r9").unwrap();
        let (_, mut fallback) = planned(&c, Requested::Tier(0), None);
        let again = readmission(&c, &first, &mut fallback);
        assert_eq!(again.replace.as_deref(), Some("r9"));
        assert_eq!(again.candidates.len(), 1);
        assert_eq!(again.candidates[0].0, 0);
        assert_eq!(fallback.body["max_tokens"], 4096);
    }
}

//! The settle stage's arithmetic: what an answer cost, what it would have cost on the top
//! tier, and the metrics event that records it (or a failure).
//!
//! It owns the one name of each cost figure of a request, used from here through the
//! metrics event: `cost_usd` (what the routed model charged) and `cost_if_large_usd` (the
//! same tokens at the top tier's prices, the "always large" counterfactual; the aggregate
//! sums them as `total_cost_usd` and `cost_if_always_large_usd`). Usage missing
//! from the upstream is estimated (~4 characters per token) and flagged, never priced as
//! zero. It must not decide routing or touch the network.

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::MetricsEvent;
use crate::plan::Plan;
use crate::providers::{estimate_tokens, Usage};

/// Tokens and cost of one answered request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accounting {
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cost at the routed model's prices.
    pub cost_usd: f64,
    /// Cost of the same tokens at the top tier's prices.
    pub cost_if_large_usd: f64,
    /// Tokens were estimated (no usage from the upstream).
    pub estimated: bool,
}

/// Prices an answer: usage when the upstream sent it, else ~4 characters per token (and
/// flagged), never zero. The routed model's price is looked up by the id the upstream
/// reported, with the configured model as fallback.
pub fn account(
    config: &Config,
    plan: &Plan,
    reported_model: &str,
    usage: Option<Usage>,
    completion_chars: usize,
) -> Result<Accounting, GatewayError> {
    let (usage, estimated) = match usage {
        Some(usage) => (usage, false),
        None => (
            Usage {
                prompt_tokens: estimate_tokens(plan.prompt_chars),
                completion_tokens: estimate_tokens(completion_chars),
            },
            true,
        ),
    };
    let routed = config
        .price_of(plan.decision.tier, reported_model)
        .ok_or_else(|| GatewayError::Internal(format!("no price for {}", plan.model)))?;
    let top = config.top_tier();
    let top_price = if plan.decision.tier == top {
        Some(routed)
    } else {
        config
            .tiers
            .get(top)
            .and_then(|t| config.price_of(top, &t.model))
    }
    .ok_or_else(|| GatewayError::Internal("no price for the top tier".into()))?;
    Ok(Accounting {
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        cost_usd: routed.cost_usd(usage.prompt_tokens, usage.completion_tokens),
        cost_if_large_usd: top_price.cost_usd(usage.prompt_tokens, usage.completion_tokens),
        estimated,
    })
}

/// Prices an answer and builds the metrics event that records it.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    config: &Config,
    request_id: &str,
    plan: &Plan,
    reported_model: &str,
    usage: Option<Usage>,
    completion_chars: usize,
    latency_ms: u64,
    incomplete: Option<&str>,
) -> Result<(Accounting, MetricsEvent), GatewayError> {
    let accounting = account(config, plan, reported_model, usage, completion_chars)?;
    let event = completed_event(
        config,
        request_id,
        plan,
        &accounting,
        latency_ms,
        incomplete,
    );
    Ok((accounting, event))
}

/// What the tokens of `accounting` cost, or would have cost, on the lower and on the top
/// tier: the served tier's cost and the always-top counterfactual when a lower tier
/// served; the top tier's cost and the next plain tier below's price when the top served.
/// (The quality controller's traffic histogram prices thresholds with these.)
pub fn lower_and_top_costs(config: &Config, plan: &Plan, accounting: &Accounting) -> (f64, f64) {
    let top = config.top_tier();
    if plan.decision.tier != top {
        return (accounting.cost_usd, accounting.cost_if_large_usd);
    }
    let lower = crate::shadow::other_tier(config, top)
        .and_then(|tier| {
            let model = &config.tiers.get(tier)?.model;
            config.price_of(tier, model)
        })
        .map_or(accounting.cost_usd, |price| {
            price.cost_usd(accounting.tokens_in, accounting.tokens_out)
        });
    (lower, accounting.cost_usd)
}

/// The metrics event of a failed request.
pub fn failed_event(request_id: &str, error: &GatewayError) -> MetricsEvent {
    MetricsEvent::Failed {
        id: request_id.to_string(),
        reason: error.metric_label().to_string(),
    }
}

/// The metrics event of an answered request.
pub fn completed_event(
    config: &Config,
    request_id: &str,
    plan: &Plan,
    accounting: &Accounting,
    latency_ms: u64,
    incomplete: Option<&str>,
) -> MetricsEvent {
    MetricsEvent::Completed {
        id: request_id.to_string(),
        model: plan.model.clone(),
        tier: plan.decision.tier_name.clone(),
        top_tier: plan.decision.tier == config.top_tier(),
        latency_ms,
        tokens_in: accounting.tokens_in,
        tokens_out: accounting.tokens_out,
        cost_usd: accounting.cost_usd,
        cost_if_large_usd: accounting.cost_if_large_usd,
        tokens_estimated: accounting.estimated,
        incomplete: incomplete.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatRequest;
    use crate::plan::plan;
    use crate::routing::Requested;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> =
            HashMap::from([("MISTRAL_API_KEY".to_string(), "sk-test".to_string())]);
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn accounting_prices_the_dated_model_and_the_top_tier() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "What is the capital of France?", None, false);
        let d = plan(&c, &r, Requested::Auto, "What is the capital of France?").unwrap();
        let usage = Usage {
            prompt_tokens: 8,
            completion_tokens: 12,
        };
        let a = account(&c, &d, "mistral-small-2603", Some(usage), 0).unwrap();
        assert!((a.cost_usd - (8.0 * 0.15 + 12.0 * 0.60) / 1e6).abs() < 1e-15);
        assert!((a.cost_if_large_usd - (8.0 * 0.5 + 12.0 * 1.5) / 1e6).abs() < 1e-15);
        assert!(!a.estimated);
        let e = completed_event(&c, "r1", &d, &a, 42, None);
        assert!(
            matches!(e, MetricsEvent::Completed { ref tier, top_tier: false, latency_ms: 42, .. } if tier == "small")
        );
    }

    #[test]
    fn a_tier_price_wins_over_the_table_for_any_reported_id() {
        let tiers = r#"[
          {"name": "small", "model": "mistral-small-latest", "prices": {"input": 1, "output": 2}},
          {"name": "large", "model": "mistral-large-latest", "min_score": 1}
        ]"#;
        let c = config(&[("TIERS", tiers)]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let d = plan(&c, &r, Requested::Tier(0), "hi").unwrap();
        let usage = Usage {
            prompt_tokens: 100_000,
            completion_tokens: 20_000,
        };
        let a = account(&c, &d, "mistral-small-2603", Some(usage), 0).unwrap();
        assert!((a.cost_usd - 0.14).abs() < 1e-12, "{}", a.cost_usd);
        assert!(
            (a.cost_if_large_usd - (0.05 + 0.03)).abs() < 1e-12,
            "{}",
            a.cost_if_large_usd
        );
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let c = config(&[]);
        let r = ChatRequest::single_turn("auto", "abcdefgh", None, false);
        let d = plan(&c, &r, Requested::Auto, "abcdefgh").unwrap();
        let a = account(&c, &d, "unknown-dated-id", None, 4).unwrap();
        assert!(a.estimated);
        assert_eq!((a.tokens_in, a.tokens_out), (2, 1));
        assert!(a.cost_usd > 0.0);
    }

    #[test]
    fn lower_and_top_costs_price_both_tiers() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
        };
        let small = plan(&c, &r, Requested::Auto, "hi").unwrap();
        let a = account(&c, &small, "mistral-small-2603", Some(usage), 0).unwrap();
        let (lower, top) = lower_and_top_costs(&c, &small, &a);
        assert!(
            (lower - 0.75).abs() < 1e-12 && (top - 2.0).abs() < 1e-12,
            "{lower} {top}"
        );
        let large = plan(&c, &r, Requested::Tier(1), "hi").unwrap();
        let a = account(&c, &large, "mistral-large-2512", Some(usage), 0).unwrap();
        let (lower, top) = lower_and_top_costs(&c, &large, &a);
        assert!(
            (lower - 0.75).abs() < 1e-12 && (top - 2.0).abs() < 1e-12,
            "{lower} {top}"
        );
    }
}

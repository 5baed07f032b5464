//! The endpoint-independent core of one request: score, route, build the upstream call;
//! then price what came back and describe it as a metrics event. Pure.

use serde_json::Value;

use crate::chat::ChatRequest;
use crate::config::{Config, Secret};
use crate::error::GatewayError;
use crate::metrics::MetricsEvent;
use crate::providers::{estimate_tokens, BackendKind, Provider, Usage};
use crate::routing::{self, Requested, RouterKind, RoutingDecision};
use crate::scoring::{self, FeatureContribution};

/// Everything decided before the upstream is called.
pub struct Dispatch {
    /// The routing decision.
    pub decision: RoutingDecision,
    /// Named feature contributions behind the score.
    pub features: Vec<FeatureContribution>,
    /// The scorer that produced them.
    pub router: RouterKind,
    /// Backend of the chosen tier.
    pub backend: BackendKind,
    /// Model the chosen tier sends upstream (the configured id).
    pub model: String,
    /// Upstream URL.
    pub url: String,
    /// Upstream key (empty when the backend needs none).
    pub key: Secret,
    /// Upstream request body.
    pub body: Value,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Characters of prompt text, for estimates.
    pub prompt_chars: usize,
}

impl Dispatch {
    /// The provider of the chosen tier.
    pub fn provider(&self) -> &'static dyn Provider {
        self.backend.provider()
    }

    /// Headers of the upstream call (authentication included).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.provider().headers(self.key.expose())
    }
}

/// Scores `routing_text`, picks the tier, and builds the upstream request.
pub fn dispatch(
    config: &Config,
    request: &ChatRequest,
    requested: Requested,
    routing_text: &str,
) -> Result<Dispatch, GatewayError> {
    let complexity = config.router.score(routing_text);
    // Conditional tiers test the heuristic's named features, whatever the router.
    let has_conditions = config.policies.iter().any(|p| p.when.is_some());
    let heuristic = match config.router {
        RouterKind::Learned if has_conditions => Some(scoring::score(routing_text)),
        _ => None,
    };
    let condition_features = heuristic
        .as_ref()
        .map_or(&complexity.features, |h| &h.features);
    let decision = routing::decide(
        complexity.score,
        condition_features,
        &config.policies,
        requested,
    );
    let tier = config
        .tiers
        .get(decision.tier)
        .ok_or_else(|| GatewayError::Internal("routing chose a missing tier".into()))?;
    let key = Secret::new(tier.key()?);
    let provider = tier.backend.provider();
    let body = provider.build_request(request, &tier.model)?;
    Ok(Dispatch {
        features: complexity.features,
        router: config.router,
        backend: tier.backend,
        model: tier.model.clone(),
        url: provider.endpoint(&tier.base_url),
        key,
        body,
        stream: request.stream,
        prompt_chars: request.prompt_chars(),
        decision,
    })
}

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
    pub cost_if_top_usd: f64,
    /// Tokens were estimated (no usage from the upstream).
    pub estimated: bool,
}

/// Prices an answer: usage when the upstream sent it, else ~4 characters per token (and
/// flagged), never zero. The routed model's price is looked up by the id the upstream
/// reported, with the configured model as fallback.
pub fn account(
    config: &Config,
    dispatch: &Dispatch,
    reported_model: &str,
    usage: Option<Usage>,
    completion_chars: usize,
) -> Result<Accounting, GatewayError> {
    let (usage, estimated) = match usage {
        Some(usage) => (usage, false),
        None => (
            Usage {
                prompt_tokens: estimate_tokens(dispatch.prompt_chars),
                completion_tokens: estimate_tokens(completion_chars),
            },
            true,
        ),
    };
    let routed = config
        .price_of(dispatch.decision.tier, reported_model)
        .ok_or_else(|| GatewayError::Internal(format!("no price for {}", dispatch.model)))?;
    let top = config.top_tier();
    let top_price = if dispatch.decision.tier == top {
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
        cost_if_top_usd: top_price.cost_usd(usage.prompt_tokens, usage.completion_tokens),
        estimated,
    })
}

/// Prices an answer and builds the metrics event that records it.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    config: &Config,
    request_id: &str,
    dispatch: &Dispatch,
    reported_model: &str,
    usage: Option<Usage>,
    completion_chars: usize,
    latency_ms: u64,
    incomplete: Option<&str>,
) -> Result<(Accounting, MetricsEvent), GatewayError> {
    let accounting = account(config, dispatch, reported_model, usage, completion_chars)?;
    let event = completed_event(
        config,
        request_id,
        dispatch,
        &accounting,
        latency_ms,
        incomplete,
    );
    Ok((accounting, event))
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
    dispatch: &Dispatch,
    accounting: &Accounting,
    latency_ms: u64,
    incomplete: Option<&str>,
) -> MetricsEvent {
    MetricsEvent::Completed {
        id: request_id.to_string(),
        model: dispatch.model.clone(),
        tier: dispatch.decision.tier_name.clone(),
        top_tier: dispatch.decision.tier == config.top_tier(),
        latency_ms,
        tokens_in: accounting.tokens_in,
        tokens_out: accounting.tokens_out,
        cost_usd: accounting.cost_usd,
        cost_if_large_usd: accounting.cost_if_top_usd,
        tokens_estimated: accounting.estimated,
        incomplete: incomplete.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn dispatch_routes_and_builds_the_upstream_call() {
        let c = config(&[("ROUTING_THRESHOLD", "0")]);
        let r = ChatRequest::single_turn("auto", "hi", Some(5), false);
        let d = dispatch(&c, &r, Requested::Auto, "hi").unwrap();
        assert_eq!(d.decision.tier_name, "large");
        assert_eq!(d.body["model"], "mistral-large-latest");
        assert_eq!(d.body["max_tokens"], 5);
        assert_eq!(d.url, "https://api.mistral.ai/v1/chat/completions");
        assert_eq!(
            d.headers(),
            vec![("authorization", "Bearer sk-test".to_string())]
        );
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        assert_eq!(
            dispatch(&c, &r, Requested::Auto, "hi")
                .unwrap()
                .decision
                .tier_name,
            "small"
        );
        assert_eq!(
            dispatch(&c, &r, Requested::Tier(1), "hi")
                .unwrap()
                .decision
                .tier_name,
            "large"
        );
    }

    #[test]
    fn learned_router_is_used_when_configured() {
        let c = config(&[("ROUTER", "learned")]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let d = dispatch(&c, &r, Requested::Auto, "hi").unwrap();
        assert_eq!(d.decision.score, crate::learned::score("hi").score);
        assert_eq!(d.decision.threshold, crate::learned::DEFAULT_THRESHOLD);
    }

    #[test]
    fn dispatch_needs_the_tier_key() {
        let c = Config::from_lookup(|_| None).unwrap();
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        assert_eq!(
            dispatch(&c, &r, Requested::Auto, "hi").err(),
            Some(GatewayError::UpstreamKeyMissing {
                variable: "MISTRAL_API_KEY".into()
            })
        );
    }

    #[test]
    fn accounting_prices_the_dated_model_and_the_top_tier() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "What is the capital of France?", None, false);
        let d = dispatch(&c, &r, Requested::Auto, "What is the capital of France?").unwrap();
        let usage = Usage {
            prompt_tokens: 8,
            completion_tokens: 12,
        };
        let a = account(&c, &d, "mistral-small-2603", Some(usage), 0).unwrap();
        assert!((a.cost_usd - (8.0 * 0.15 + 12.0 * 0.60) / 1e6).abs() < 1e-15);
        assert!((a.cost_if_top_usd - (8.0 * 0.5 + 12.0 * 1.5) / 1e6).abs() < 1e-15);
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
        let d = dispatch(&c, &r, Requested::Tier(0), "hi").unwrap();
        let usage = Usage {
            prompt_tokens: 100_000,
            completion_tokens: 20_000,
        };
        let a = account(&c, &d, "mistral-small-2603", Some(usage), 0).unwrap();
        assert!((a.cost_usd - 0.14).abs() < 1e-12, "{}", a.cost_usd);
        assert!(
            (a.cost_if_top_usd - (0.05 + 0.03)).abs() < 1e-12,
            "{}",
            a.cost_if_top_usd
        );
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let c = config(&[]);
        let r = ChatRequest::single_turn("auto", "abcdefgh", None, false);
        let d = dispatch(&c, &r, Requested::Auto, "abcdefgh").unwrap();
        let a = account(&c, &d, "unknown-dated-id", None, 4).unwrap();
        assert!(a.estimated);
        assert_eq!((a.tokens_in, a.tokens_out), (2, 1));
        assert!(a.cost_usd > 0.0);
    }
}

//! The plan stage: score the routing text, pick the tier, and build the upstream call.
//!
//! It owns the decision of where a request goes and what is sent there (URL, headers with
//! the tier's key, body in the backend's dialect). It must not price answers (that is
//! [`crate::accounting`]) or do I/O: the shell sends what the plan describes.

use serde_json::Value;

use crate::chat::ChatRequest;
use crate::config::{Config, Secret};
use crate::error::GatewayError;
use crate::providers::{BackendKind, Provider};
use crate::routing::{self, Requested, RouterKind, RoutingDecision};
use crate::scoring::{self, FeatureContribution};
use crate::upstream::UpstreamRequest;

/// Everything decided before the upstream is called.
pub struct Plan {
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
    /// Largest upstream answer read (MAX_UPSTREAM_RESPONSE_BYTES).
    pub max_response_bytes: usize,
}

impl Plan {
    /// The provider of the chosen tier.
    pub fn provider(&self) -> &'static dyn Provider {
        self.backend.provider()
    }

    /// Headers of the upstream call (authentication included).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.provider().headers(self.key.expose())
    }

    /// The upstream request this plan describes.
    pub fn upstream_request(&self) -> UpstreamRequest<'_> {
        UpstreamRequest {
            url: &self.url,
            headers: self.headers(),
            body: crate::jsonwrite::text(&self.body).into_bytes(),
            stream: self.stream,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

/// Scores `routing_text`, picks the tier, and builds the upstream request.
pub fn plan(
    config: &Config,
    request: &ChatRequest,
    requested: Requested,
    routing_text: &str,
) -> Result<Plan, GatewayError> {
    plan_with_threshold(config, request, requested, routing_text, None)
}

/// [`plan`], with the top tier's threshold replaced by `threshold` (the quality
/// controller's) when one is given.
pub fn plan_with_threshold(
    config: &Config,
    request: &ChatRequest,
    requested: Requested,
    routing_text: &str,
    threshold: Option<f64>,
) -> Result<Plan, GatewayError> {
    let complexity = config.router.score(routing_text);
    let moved;
    let policies = match threshold {
        Some(t) if t != config.routing_threshold => {
            let mut policies = config.policies.clone();
            if let Some(top) = policies.get_mut(config.top_tier()) {
                top.min_score = t;
            }
            moved = policies;
            &moved
        }
        _ => &config.policies,
    };
    // Conditional tiers test the heuristic's named features, whatever the router.
    let has_conditions = config.policies.iter().any(|p| p.when.is_some());
    let heuristic = match config.router {
        RouterKind::Learned if has_conditions => Some(scoring::score(routing_text)),
        _ => None,
    };
    let condition_features = heuristic
        .as_ref()
        .map_or(&complexity.features, |h| &h.features);
    let decision = routing::decide(complexity.score, condition_features, policies, requested);
    finish(config, request, decision, complexity.features)
}

/// The plan of a call to tier `tier`, unrouted and unscored (the shadow sample's other
/// tier, the judge).
pub fn direct(config: &Config, request: &ChatRequest, tier: usize) -> Result<Plan, GatewayError> {
    let decision = routing::decide(0.0, &[], &config.policies, Requested::Tier(tier));
    finish(config, request, decision, Vec::new())
}

/// The plan of the same request on tier `tier`, after `failed` (the plan whose call
/// failed with the metric label `reason`): same score and features, another tier.
pub fn fallback(
    config: &Config,
    request: &ChatRequest,
    failed: &Plan,
    tier: usize,
    reason: &'static str,
) -> Result<Plan, GatewayError> {
    let to = tier_name(config, tier)?;
    let mut decision = failed.decision.clone();
    // The first tier that failed stays the `from` of a second fallback.
    let from = failed
        .decision
        .fallback
        .as_ref()
        .map_or_else(|| failed.decision.tier_name.clone(), |f| f.from.clone());
    decision.fallback = Some(crate::routing::FallbackNote {
        from,
        to: to.clone(),
        reason,
    });
    moved(config, request, failed, decision, (tier, to))
}

/// The plan of the same request moved to tier `tier` before any call (cost control):
/// same score and features, the move noted in the decision.
pub fn downgrade(
    config: &Config,
    request: &ChatRequest,
    planned: &Plan,
    tier: usize,
    reason: &'static str,
) -> Result<Plan, GatewayError> {
    let mut decision = planned.decision.clone();
    decision.downgrade = Some(crate::routing::Downgrade {
        from: planned.decision.tier_name.clone(),
        reason,
    });
    moved(
        config,
        request,
        planned,
        decision,
        (tier, tier_name(config, tier)?),
    )
}

/// Name of tier `tier`.
fn tier_name(config: &Config, tier: usize) -> Result<String, GatewayError> {
    config
        .tiers
        .get(tier)
        .map(|t| t.name().to_string())
        .ok_or_else(|| GatewayError::Internal("a move to a missing tier".into()))
}

/// `from`'s request built anew for `to` (tier index and name) with `decision` (its note
/// already set): the score, features and router stay `from`'s.
fn moved(
    config: &Config,
    request: &ChatRequest,
    from: &Plan,
    mut decision: RoutingDecision,
    to: (usize, String),
) -> Result<Plan, GatewayError> {
    (decision.tier, decision.tier_name) = to;
    let mut plan = finish(config, request, decision, from.features.clone())?;
    plan.router = from.router;
    Ok(plan)
}

fn finish(
    config: &Config,
    request: &ChatRequest,
    decision: RoutingDecision,
    features: Vec<FeatureContribution>,
) -> Result<Plan, GatewayError> {
    let tier = config
        .tiers
        .get(decision.tier)
        .ok_or_else(|| GatewayError::Internal("routing chose a missing tier".into()))?;
    let key = Secret::new(tier.key()?);
    let provider = tier.backend.provider();
    let body = provider.build_request(request, &tier.model)?;
    Ok(Plan {
        features,
        router: config.router,
        backend: tier.backend,
        model: tier.model.clone(),
        url: provider.endpoint(&tier.base_url),
        key,
        body,
        stream: request.stream,
        prompt_chars: request.prompt_chars(),
        max_response_bytes: config.max_upstream_response_bytes,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;

    #[test]
    fn plan_routes_and_builds_the_upstream_call() {
        let c = config(&[("ROUTING_THRESHOLD", "0")]);
        let r = ChatRequest::single_turn("auto", "hi", Some(5), false);
        let d = plan(&c, &r, Requested::Auto, "hi").unwrap();
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
            plan(&c, &r, Requested::Auto, "hi")
                .unwrap()
                .decision
                .tier_name,
            "small"
        );
        assert_eq!(
            plan(&c, &r, Requested::Tier(1), "hi")
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
        let d = plan(&c, &r, Requested::Auto, "hi").unwrap();
        assert_eq!(d.decision.score, crate::learned::score("hi").score);
        assert_eq!(d.decision.threshold, crate::learned::DEFAULT_THRESHOLD);
    }

    #[test]
    fn plan_needs_the_tier_key() {
        let c = Config::from_lookup(|_| None).unwrap();
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        assert_eq!(
            plan(&c, &r, Requested::Auto, "hi").err(),
            Some(GatewayError::UpstreamKeyMissing {
                variable: "MISTRAL_API_KEY".into()
            })
        );
    }

    #[test]
    fn upstream_request_carries_the_plan() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "hi", None, true);
        let p = plan(&c, &r, Requested::Auto, "hi").unwrap();
        let u = p.upstream_request();
        assert_eq!(u.url, "https://api.mistral.ai/v1/chat/completions");
        assert!(u.stream);
        assert_eq!(u.headers, p.headers());
        let body: Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(body, p.body);
        assert_eq!(body["model"], "mistral-small-latest");
    }

    #[test]
    fn a_controller_threshold_replaces_the_top_tiers() {
        let c = config(&[("ROUTING_THRESHOLD", "0.9")]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let p = plan_with_threshold(&c, &r, Requested::Auto, "hi", Some(0.0)).unwrap();
        assert_eq!(p.decision.tier_name, "large");
        assert_eq!(p.decision.threshold, 0.0);
        let p = plan_with_threshold(&c, &r, Requested::Auto, "hi", None).unwrap();
        assert_eq!(p.decision.tier_name, "small");
        assert_eq!(p.decision.threshold, 0.9);
        // A tier the client asked for is kept whatever the threshold.
        let p = plan_with_threshold(&c, &r, Requested::Tier(0), "hi", Some(0.0)).unwrap();
        assert_eq!(p.decision.tier_name, "small");
    }

    #[test]
    fn a_direct_plan_calls_the_given_tier() {
        let c = config(&[]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let p = direct(&c, &r, 1).unwrap();
        assert_eq!(p.model, "mistral-large-latest");
        assert_eq!(p.body["model"], "mistral-large-latest");
        assert!(p.features.is_empty());
        assert!(direct(&c, &r, 0).unwrap().body["model"] == "mistral-small-latest");
    }

    #[test]
    fn a_fallback_plan_keeps_the_score_and_says_where_it_came_from() {
        let tiers = r#"[
          {"name": "small", "model": "mistral-small-latest"},
          {"name": "medium", "model": "mistral-medium-latest", "min_score": 0.4},
          {"name": "large", "model": "mistral-large-latest", "min_score": 0.8}
        ]"#;
        let c = config(&[("TIERS", tiers)]);
        let r = ChatRequest::single_turn("auto", "Explain TCP vs UDP", None, true);
        let first = plan(&c, &r, Requested::Auto, "Explain TCP vs UDP").unwrap();
        assert!(first.decision.fallback.is_none());
        let second = fallback(&c, &r, &first, 2, "upstream_error").unwrap();
        assert_eq!(second.decision.tier, 2);
        assert_eq!(second.decision.tier_name, "large");
        assert_eq!(second.model, "mistral-large-latest");
        assert_eq!(second.body["model"], "mistral-large-latest");
        assert_eq!(second.decision.score, first.decision.score);
        assert_eq!(second.features, first.features);
        assert!(second.stream);
        let note = second.decision.fallback.clone().unwrap();
        assert_eq!(
            (note.from.as_str(), note.to.as_str()),
            (first.decision.tier_name.as_str(), "large")
        );
        assert_eq!(note.reason, "upstream_error");
        assert_eq!(note.route(), format!("{}->large", first.decision.tier_name));
        assert!(second.decision.describe().contains("fell back from"));
        // A second fallback keeps the first tier that failed as `from`.
        let third = fallback(&c, &r, &second, 1, "upstream_rate_limited").unwrap();
        let note = third.decision.fallback.unwrap();
        assert_eq!(note.from, first.decision.tier_name);
        assert_eq!(
            (note.to.as_str(), note.reason),
            ("medium", "upstream_rate_limited")
        );
        assert!(fallback(&c, &r, &first, 9, "upstream_error").is_err());
    }
}

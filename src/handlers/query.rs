//! `POST /query`: validate, score, route, call the upstream, answer, and record the event
//! after the response. `plan` and `finish` are pure; `handle` only moves data.

use serde_json::Value;
use worker::{Context, Date, Env, Request, Response};

use crate::api::{QueryMetrics, QueryRequest, QueryResponse, RoutingInfo};
use crate::config::{Config, Secret};
use crate::error::GatewayError;
use crate::metrics::store::MetricsClient;
use crate::metrics::MetricsEvent;
use crate::providers::{estimate_tokens, http, mistral, Usage};
use crate::routing::{self, RoutingDecision, Tier};
use crate::scoring;

/// Everything decided before the upstream is called.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// The validated request.
    pub request: QueryRequest,
    /// The routing decision.
    pub decision: RoutingDecision,
    /// Named feature contributions behind the score.
    pub routing: RoutingInfo,
    /// Configured model of the chosen tier.
    pub model: String,
    /// Upstream URL.
    pub url: String,
    /// Upstream request body.
    pub upstream_body: Value,
}

/// Validates the body, scores and routes the query, and builds the upstream request.
pub fn plan(config: &Config, body: &[u8]) -> Result<QueryPlan, GatewayError> {
    let request = QueryRequest::parse(body, config.max_query_bytes)?;
    if config.mistral_api_key.is_none() {
        return Err(GatewayError::UpstreamKeyMissing);
    }
    let complexity = scoring::score(&request.query);
    let decision = routing::decide(complexity.score, config.routing_threshold, request.tier);
    let model = config.model_for(decision.tier).to_string();
    let upstream_body = mistral::build_chat_request(&model, &request.query, request.max_tokens);
    Ok(QueryPlan {
        routing: RoutingInfo::new(&decision, complexity.features),
        request,
        decision,
        model,
        url: mistral::chat_completions_url(&config.mistral_base_url),
        upstream_body,
    })
}

/// Parses the upstream answer, prices it, and builds the response and the metrics event.
pub fn finish(
    config: &Config,
    plan: QueryPlan,
    upstream_body: &[u8],
    latency_ms: u64,
    request_id: &str,
) -> Result<(QueryResponse, MetricsEvent), GatewayError> {
    let completion = mistral::parse_chat_response(upstream_body)?;
    let (usage, tokens_estimated) = match completion.usage {
        Some(usage) => (usage, false),
        None => (
            Usage {
                prompt_tokens: estimate_tokens(&plan.request.query),
                completion_tokens: estimate_tokens(&completion.answer),
            },
            true,
        ),
    };
    let routed_price = config
        .prices
        .lookup(&completion.model, &plan.model)
        .ok_or_else(|| GatewayError::Internal(format!("no price for {}", plan.model)))?;
    let large_price = match plan.decision.tier {
        Tier::Large => routed_price,
        Tier::Small => config
            .prices
            .lookup(&config.large_model, &config.large_model)
            .ok_or_else(|| GatewayError::Internal("no price for the large model".into()))?,
    };
    let cost_usd = routed_price.cost_usd(usage.prompt_tokens, usage.completion_tokens);
    let cost_if_large_usd = large_price.cost_usd(usage.prompt_tokens, usage.completion_tokens);

    let event = MetricsEvent::Completed {
        id: request_id.to_string(),
        model: plan.model.clone(),
        tier: plan.decision.tier,
        latency_ms,
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        cost_usd,
        cost_if_large_usd,
        tokens_estimated,
    };
    let response = QueryResponse {
        answer: completion.answer,
        routing_decision: plan.decision.describe(),
        model_used: plan.model,
        upstream_model: completion.model,
        metrics: QueryMetrics {
            latency_ms,
            tokens_in: usage.prompt_tokens,
            tokens_out: usage.completion_tokens,
            cost_usd,
            tokens_estimated,
        },
        routing: plan.routing,
    };
    Ok((response, event))
}

/// Serves one query; every outcome, success or failure, is recorded after the response.
pub async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> worker::Result<Response> {
    let outcome = run(&mut req, config, request_id, started_ms).await;
    let (response, event) = match outcome {
        Ok((body, event)) => {
            let tier = body.routing.tier;
            let score = body.routing.score;
            let mut response = super::json_response(200, &body)?;
            response.headers_mut().set("x-llm-mux-tier", tier.shout())?;
            response
                .headers_mut()
                .set("x-llm-mux-score", &format!("{score:.4}"))?;
            (response, event)
        }
        Err(error) => {
            let event = MetricsEvent::Failed {
                id: request_id.to_string(),
                reason: error.metric_label().to_string(),
            };
            (super::error_response(&error)?, event)
        }
    };
    let env = env.clone();
    ctx.wait_until(async move {
        let recorded = async { MetricsClient::connect(&env)?.record(&event).await }.await;
        if let Err(e) = recorded {
            worker::console_error!("metrics: event {} not recorded: {e}", event.id());
        }
    });
    Ok(response)
}

async fn run(
    req: &mut Request,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> Result<(QueryResponse, MetricsEvent), GatewayError> {
    let config = config.as_ref().map_err(Clone::clone)?;
    let authorization = req.headers().get("authorization").ok().flatten();
    config.authorize(authorization.as_deref())?;
    let body = req
        .bytes()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("cannot read request body: {e}")))?;
    let plan = plan(config, &body)?;
    let key: &Secret = config
        .mistral_api_key
        .as_ref()
        .ok_or(GatewayError::UpstreamKeyMissing)?;
    let reply = http::post_json(&plan.url, key, &plan.upstream_body, config.upstream_timeout_ms)
        .await?;
    let latency_ms = Date::now().as_millis().saturating_sub(started_ms);
    finish(config, plan, &reply.body, latency_ms, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Config {
        let mut map: HashMap<String, String> = HashMap::from([(
            "MISTRAL_API_KEY".to_string(),
            "sk-test".to_string(),
        )]);
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn plan_routes_and_builds_the_upstream_request() {
        let c = config(&[("ROUTING_THRESHOLD", "0")]);
        let p = plan(&c, br#"{"query": "hi", "max_tokens": 5}"#).unwrap();
        assert_eq!(p.decision.tier, Tier::Large);
        assert_eq!(p.model, "mistral-large-latest");
        assert_eq!(p.upstream_body["model"], "mistral-large-latest");
        assert_eq!(p.upstream_body["max_tokens"], 5);
        assert_eq!(p.url, "https://api.mistral.ai/v1/chat/completions");

        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let p = plan(&c, br#"{"query": "hi"}"#).unwrap();
        assert_eq!(p.decision.tier, Tier::Small);
        let p = plan(&c, br#"{"query": "hi", "tier": "large"}"#).unwrap();
        assert_eq!(p.decision.tier, Tier::Large);
    }

    #[test]
    fn plan_refuses_without_upstream_key_after_validation() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(plan(&c, b"{").unwrap_err().status(), 400);
        assert_eq!(plan(&c, br#"{"query": "hi"}"#).unwrap_err(), GatewayError::UpstreamKeyMissing);
    }

    #[test]
    fn finish_prices_the_dated_model_and_builds_the_event() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let p = plan(&c, br#"{"query": "What is the capital of France?"}"#).unwrap();
        let body = include_bytes!("../../tests/fixtures/mistral/chat_completion.json");
        let (response, event) = finish(&c, p, body, 42, "req-1").unwrap();
        assert_eq!(response.model_used, "mistral-small-latest");
        assert_eq!(response.upstream_model, "mistral-small-2603");
        assert_eq!(response.metrics.tokens_in, 8);
        assert_eq!(response.metrics.tokens_out, 12);
        let expected = (8.0 * 0.15 + 12.0 * 0.60) / 1e6;
        assert!((response.metrics.cost_usd - expected).abs() < 1e-15);
        assert!(response.routing_decision.starts_with("Routed to SMALL (score: "));
        match event {
            MetricsEvent::Completed { cost_if_large_usd, tier, latency_ms, .. } => {
                assert_eq!(tier, Tier::Small);
                assert_eq!(latency_ms, 42);
                assert!((cost_if_large_usd - (8.0 * 0.5 + 12.0 * 1.5) / 1e6).abs() < 1e-15);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn finish_estimates_missing_usage_and_flags_it() {
        let c = config(&[]);
        let p = plan(&c, br#"{"query": "abcdefgh"}"#).unwrap();
        let body = br#"{"model":"x","choices":[{"index":0,"message":{"role":"assistant","content":"abcd"},"finish_reason":"stop"}]}"#;
        let (response, _) = finish(&c, p, body, 1, "r").unwrap();
        assert!(response.metrics.tokens_estimated);
        assert_eq!(response.metrics.tokens_in, 2);
        assert_eq!(response.metrics.tokens_out, 1);
        assert!(response.metrics.cost_usd > 0.0);
    }

    #[test]
    fn finish_turns_garbage_into_502() {
        let c = config(&[]);
        let p = plan(&c, br#"{"query": "x"}"#).unwrap();
        assert_eq!(finish(&c, p, b"not json", 1, "r").unwrap_err().status(), 502);
    }
}

//! `POST /query`: validate, score, route, call the upstream, answer (whole or streamed),
//! and record the outcome after the response.

use serde_json::json;
use worker::{Context, Env, Response};

use super::Incoming;

use crate::api::{QueryMetrics, QueryRequest, QueryResponse, RoutingInfo};
use crate::chat::ChatRequest;
use crate::config::Config;
use crate::dispatch::{self, Accounting, Dispatch};
use crate::error::GatewayError;
use crate::providers::StreamOptions;
use crate::routing::Requested;
use crate::streaming::{sse_data, ClientFormat, StreamMeter};
use crate::upstream::UpstreamBody;

/// Serves one query; every outcome, success or failure, is recorded after the response.
pub async fn handle(
    req: Incoming,
    env: &Env,
    ctx: &Context,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> worker::Result<Response> {
    let outcome = run(&req, env, ctx, config, request_id, started_ms).await;
    super::conclude(env, ctx, config, request_id, outcome, super::error_response)
}

/// Resolves the request's `tier` field against the configured tiers.
pub fn requested_tier(config: &Config, tier: Option<&str>) -> Result<Requested, GatewayError> {
    match tier {
        None => Ok(Requested::Auto),
        Some(name) => config
            .tier_by_name(name)
            .map(Requested::Tier)
            .ok_or_else(|| {
                let names: Vec<String> = config
                    .tiers
                    .iter()
                    .map(|t| format!("\"{}\"", t.name()))
                    .collect();
                GatewayError::BadRequest(format!(
                    "field 'tier' must be \"auto\" or one of {}, got {name:?}",
                    names.join(", ")
                ))
            }),
    }
}

/// The `/query` answer from a priced completion.
pub fn query_response(
    dispatch: &Dispatch,
    answer: String,
    upstream_model: String,
    accounting: &Accounting,
    latency_ms: u64,
) -> QueryResponse {
    QueryResponse {
        answer,
        routing_decision: dispatch.decision.describe(),
        model_used: dispatch.model.clone(),
        upstream_model,
        metrics: QueryMetrics {
            latency_ms,
            tokens_in: accounting.tokens_in,
            tokens_out: accounting.tokens_out,
            cost_usd: accounting.cost_usd,
            tokens_estimated: accounting.estimated,
        },
        routing: RoutingInfo::new(
            dispatch.router,
            &dispatch.decision,
            dispatch.features.clone(),
        ),
    }
}

async fn run(
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> super::Outcome {
    let config = config.as_ref().map_err(Clone::clone)?;
    config.authorize(super::authorization(req).as_deref())?;
    let body = super::read_body(req).await?;
    let query = QueryRequest::parse(&body, config.max_query_bytes)?;
    let requested = requested_tier(config, query.tier.as_deref())?;
    let chat = ChatRequest::single_turn("auto", &query.query, query.max_tokens, query.stream);
    let dispatch = dispatch::dispatch(config, &chat, requested, &query.query)?;
    let internal = |e: worker::Error| GatewayError::Internal(e.to_string());
    match super::call_upstream(config, &dispatch).await? {
        UpstreamBody::Whole(bytes) => {
            let completion = dispatch.provider().parse_response(&bytes)?;
            let latency_ms = super::elapsed_ms(started_ms);
            let (accounting, event) = dispatch::settle(
                config,
                request_id,
                &dispatch,
                &completion.model,
                completion.usage,
                completion.answer.chars().count(),
                latency_ms,
                None,
            )?;
            let body = query_response(
                &dispatch,
                completion.answer,
                completion.model,
                &accounting,
                latency_ms,
            );
            let mut response = super::json_response(200, &body).map_err(internal)?;
            super::set_routing_headers(&mut response, &dispatch.decision, &dispatch.model)
                .map_err(internal)?;
            Ok((response, Some(event)))
        }
        UpstreamBody::Stream(upstream) => {
            let meter = StreamMeter::new(
                dispatch.provider().stream_decoder(StreamOptions {
                    client_wants_usage: false,
                    created: crate::runtime::now_ms() / 1000,
                }),
                ClientFormat::QueryDeltas,
            );
            let decision = dispatch.decision.clone();
            let model = dispatch.model.clone();
            let window_ms = config.metrics_batch_ms;
            let config = config.clone();
            let request_id = request_id.to_string();
            let finish = move |summary: crate::streaming::StreamSummary, end| {
                let latency_ms = super::elapsed_ms(started_ms);
                let incomplete = summary.incomplete_reason(end);
                let reported = summary.model.clone().unwrap_or_default();
                let (tail, event) = match dispatch::settle(
                    &config,
                    &request_id,
                    &dispatch,
                    &reported,
                    summary.usage,
                    summary.completion_chars,
                    latency_ms,
                    incomplete,
                ) {
                    Ok((accounting, event)) => {
                        let mut last = serde_json::to_value(query_response(
                            &dispatch,
                            summary.answer,
                            reported,
                            &accounting,
                            latency_ms,
                        ))
                        .unwrap_or_default();
                        last["type"] = json!("final");
                        last["incomplete"] = json!(incomplete);
                        (last, event)
                    }
                    Err(error) => (
                        json!({"type": "error", "error": error.to_body()["error"]}),
                        dispatch::failed_event(&request_id, &error),
                    ),
                };
                let mut bytes = sse_data(&tail);
                bytes.extend_from_slice(b"data: [DONE]\n\n");
                (bytes, event)
            };
            let mut response = super::stream_response(env, ctx, window_ms, upstream, meter, finish)
                .map_err(internal)?;
            super::set_routing_headers(&mut response, &decision, &model).map_err(internal)?;
            Ok((response, None))
        }
    }
}

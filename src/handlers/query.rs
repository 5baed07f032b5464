//! `POST /query`: validate, score, route, call the upstream, answer (whole or streamed),
//! and record the outcome after the response.

use serde_json::json;
use worker::{Context, Date, Env, Request, Response};

use crate::api::{QueryMetrics, QueryRequest, QueryResponse, RoutingInfo};
use crate::chat::ChatRequest;
use crate::config::Config;
use crate::dispatch::{self, Accounting, Dispatch};
use crate::error::GatewayError;
use crate::metrics::MetricsEvent;
use crate::providers::http::{self, UpstreamBody, UpstreamCall};
use crate::providers::StreamOptions;
use crate::routing::Requested;
use crate::streaming::{sse_data, ClientFormat, StreamMeter};

/// Serves one query; every outcome, success or failure, is recorded after the response.
pub async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> worker::Result<Response> {
    match run(&mut req, env, ctx, config, request_id, started_ms).await {
        Ok((response, event)) => {
            if let Some(event) = event {
                super::record_after_response(env, ctx, event);
            }
            Ok(response)
        }
        Err(error) => {
            let event = MetricsEvent::Failed {
                id: request_id.to_string(),
                reason: error.metric_label().to_string(),
            };
            super::record_after_response(env, ctx, event);
            super::error_response(&error)
        }
    }
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
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> Result<(Response, Option<MetricsEvent>), GatewayError> {
    let config = config.as_ref().map_err(Clone::clone)?;
    config.authorize(super::authorization(req).as_deref())?;
    let body = req
        .bytes()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("cannot read request body: {e}")))?;
    let query = QueryRequest::parse(&body, config.max_query_bytes)?;
    let requested = requested_tier(config, query.tier.as_deref())?;
    let chat = ChatRequest::single_turn("auto", &query.query, query.max_tokens, query.stream);
    let dispatch = dispatch::dispatch(config, &chat, requested, &query.query)?;
    let call = UpstreamCall {
        url: &dispatch.url,
        headers: dispatch.headers(),
        body: dispatch.body.to_string(),
        timeout_ms: config.upstream_timeout_ms,
        secret: dispatch.key.expose(),
        provider: dispatch.provider(),
    };
    let internal = |e: worker::Error| GatewayError::Internal(e.to_string());
    match http::call(&call, dispatch.stream).await? {
        UpstreamBody::Whole(bytes) => {
            let completion = dispatch.provider().parse_response(&bytes)?;
            let latency_ms = Date::now().as_millis().saturating_sub(started_ms);
            let accounting = dispatch::account(
                config,
                &dispatch,
                &completion.model,
                completion.usage,
                completion.answer.chars().count(),
            )?;
            let event = dispatch::completed_event(
                config,
                request_id,
                &dispatch,
                &accounting,
                latency_ms,
                None,
            );
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
                    created: Date::now().as_millis() / 1000,
                }),
                ClientFormat::QueryDeltas,
            );
            let decision = dispatch.decision.clone();
            let model = dispatch.model.clone();
            let config = config.clone();
            let request_id = request_id.to_string();
            let finish = move |summary: crate::streaming::StreamSummary, end| {
                let latency_ms = Date::now().as_millis().saturating_sub(started_ms);
                let incomplete = summary.incomplete_reason(end);
                let reported = summary.model.clone().unwrap_or_default();
                let (tail, event) = match dispatch::account(
                    &config,
                    &dispatch,
                    &reported,
                    summary.usage,
                    summary.completion_chars,
                ) {
                    Ok(accounting) => {
                        let event = dispatch::completed_event(
                            &config,
                            &request_id,
                            &dispatch,
                            &accounting,
                            latency_ms,
                            incomplete,
                        );
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
                        MetricsEvent::Failed {
                            id: request_id.clone(),
                            reason: error.metric_label().into(),
                        },
                    ),
                };
                let mut bytes = sse_data(&tail);
                bytes.extend_from_slice(b"data: [DONE]\n\n");
                (bytes, event)
            };
            let mut response =
                super::stream_response(env, ctx, upstream, meter, finish).map_err(internal)?;
            super::set_routing_headers(&mut response, &decision, &model).map_err(internal)?;
            Ok((response, None))
        }
    }
}

//! `POST /v1/chat/completions`: the OpenAI-compatible endpoint. `model: "auto"` is routed,
//! a tier name picks that tier, a configured model id passes through unrouted. The answer
//! keeps the chat.completion shape (streamed as chunks when asked), with routing headers;
//! errors use OpenAI's error body so SDKs raise their usual exceptions.

use serde_json::{json, Value};
use worker::{Context, Env, Response};

use super::Incoming;

use crate::api::max_body_bytes;
use crate::chat::{openai_error_body, ChatRequest};
use crate::config::Config;
use crate::dispatch;
use crate::error::GatewayError;
use crate::providers::StreamOptions;
use crate::streaming::{ClientFormat, StreamMeter};
use crate::upstream::UpstreamBody;

/// Smallest body bound of chat requests: conversations carry history.
const MIN_CHAT_BODY_BYTES: usize = 1 << 20;

/// Serves one chat completion; the outcome is recorded after the response.
pub async fn handle(
    req: Incoming,
    env: &Env,
    ctx: &Context,
    config: &Result<Config, GatewayError>,
    request_id: &str,
    started_ms: u64,
) -> worker::Result<Response> {
    let outcome = run(&req, env, ctx, config, request_id, started_ms).await;
    super::conclude(env, ctx, config, request_id, outcome, openai_error)
}

/// An error in OpenAI's format.
pub fn openai_error(error: &GatewayError) -> worker::Result<Response> {
    super::error_response_with(error, &openai_error_body(error))
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
    let limit = max_body_bytes(config.max_query_bytes).max(MIN_CHAT_BODY_BYTES);
    let chat = ChatRequest::parse(&body, limit)?;
    let requested = config.resolve_model(&chat.model)?;
    let routing_text = chat.routing_text(config.max_query_bytes);
    let dispatch = dispatch::dispatch(config, &chat, requested, &routing_text)?;
    let internal = |e: worker::Error| GatewayError::Internal(e.to_string());
    match super::call_upstream(config, &dispatch).await? {
        UpstreamBody::Whole(bytes) => {
            let completion = dispatch.provider().parse_response(&bytes)?;
            let (accounting, event) = dispatch::settle(
                config,
                request_id,
                &dispatch,
                &completion.model,
                completion.usage,
                completion.answer.chars().count(),
                super::elapsed_ms(started_ms),
                None,
            )?;
            let mut body = completion.body;
            let mut response = if body.get("created").and_then(Value::as_u64).unwrap_or(0) == 0 {
                // Translated answers (Anthropic) get the gateway's clock.
                body["created"] = json!(crate::runtime::now_ms() / 1000);
                super::json_response(200, &body).map_err(internal)?
            } else {
                // An OpenAI-shaped answer goes back byte for byte.
                super::json_bytes_response(200, bytes).map_err(internal)?
            };
            super::set_routing_headers(&mut response, &dispatch.decision, &dispatch.model)
                .map_err(internal)?;
            response
                .headers_mut()
                .set("x-llm-mux-cost-usd", &format!("{:.8}", accounting.cost_usd))
                .map_err(internal)?;
            Ok((response, Some(event)))
        }
        UpstreamBody::Stream(upstream) => {
            let meter = StreamMeter::new(
                dispatch.provider().stream_decoder(StreamOptions {
                    client_wants_usage: chat.wants_stream_usage(),
                    created: crate::runtime::now_ms() / 1000,
                }),
                ClientFormat::OpenAiChunks,
            );
            let decision = dispatch.decision.clone();
            let model = dispatch.model.clone();
            let window_ms = config.metrics_batch_ms;
            let config = config.clone();
            let request_id = request_id.to_string();
            let finish = move |summary: crate::streaming::StreamSummary, end| {
                let incomplete = summary.incomplete_reason(end);
                let reported = summary.model.clone().unwrap_or_default();
                let event = match dispatch::settle(
                    &config,
                    &request_id,
                    &dispatch,
                    &reported,
                    summary.usage,
                    summary.completion_chars,
                    super::elapsed_ms(started_ms),
                    incomplete,
                ) {
                    Ok((_, event)) => event,
                    Err(error) => dispatch::failed_event(&request_id, &error),
                };
                (Vec::new(), event)
            };
            let mut response = super::stream_response(env, ctx, window_ms, upstream, meter, finish)
                .map_err(internal)?;
            super::set_routing_headers(&mut response, &decision, &model).map_err(internal)?;
            Ok((response, None))
        }
    }
}

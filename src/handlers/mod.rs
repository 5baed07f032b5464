//! One file per endpoint; each turns a request into a response and nothing else. The
//! helpers here are what every endpoint shares: JSON and error responses, recording a
//! metrics event after the response, and relaying a stream.

pub mod chat;
pub mod index;
pub mod metrics;
pub mod models;
pub mod query;
pub mod stream;

use futures_util::StreamExt;
use worker::{Context, Env, Headers, Response};

use crate::error::GatewayError;
use crate::metrics::store::MetricsClient;
use crate::metrics::MetricsEvent;
use crate::streaming::{StreamEnd, StreamMeter, StreamSummary};

/// A JSON response with the given status; struct fields keep their declared order.
pub fn json_response<T: serde::Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    json_bytes_response(status, serde_json::to_vec(body)?)
}

/// A response whose body is JSON already serialised (passed through as it came).
pub fn json_bytes_response(status: u16, body: Vec<u8>) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(body)?
        .with_status(status)
        .with_headers(headers))
}

/// The JSON error response of a gateway error, with `body` as its JSON.
pub fn error_response_with(
    error: &GatewayError,
    body: &serde_json::Value,
) -> worker::Result<Response> {
    let mut response = json_response(error.status(), body)?;
    match error {
        GatewayError::MethodNotAllowed { allowed, .. } => {
            response.headers_mut().set("allow", allowed)?;
        }
        GatewayError::Unauthorized => {
            response
                .headers_mut()
                .set("www-authenticate", "Bearer realm=\"llm-mux\"")?;
        }
        GatewayError::Upstream {
            retry_after: Some(after),
            ..
        } => {
            response.headers_mut().set("retry-after", after)?;
        }
        _ => {}
    }
    Ok(response)
}

/// The gateway's own JSON error response (`{"error": {"type", "message"}}`).
pub fn error_response(error: &GatewayError) -> worker::Result<Response> {
    error_response_with(error, &error.to_body())
}

/// What an endpoint's work ends in: the response and, unless a stream records it later,
/// the metrics event.
pub type Outcome = Result<(Response, Option<MetricsEvent>), GatewayError>;

/// Turns an endpoint's outcome into the response, recording the event (or the failure)
/// after it; `error_response` writes errors in the endpoint's format.
pub fn conclude(
    env: &Env,
    ctx: &Context,
    request_id: &str,
    outcome: Outcome,
    error_response: fn(&GatewayError) -> worker::Result<Response>,
) -> worker::Result<Response> {
    match outcome {
        Ok((response, event)) => {
            if let Some(event) = event {
                record_after_response(env, ctx, event);
            }
            Ok(response)
        }
        Err(error) => {
            record_after_response(env, ctx, crate::dispatch::failed_event(request_id, &error));
            error_response(&error)
        }
    }
}

/// The request body.
pub async fn read_body(req: &mut worker::Request) -> Result<Vec<u8>, GatewayError> {
    req.bytes()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("cannot read request body: {e}")))
}

/// Makes the upstream call a dispatch describes.
pub async fn call_upstream(
    config: &crate::config::Config,
    dispatch: &crate::dispatch::Dispatch,
) -> Result<crate::providers::http::UpstreamBody, GatewayError> {
    let call = crate::providers::http::UpstreamCall {
        url: &dispatch.url,
        headers: dispatch.headers(),
        body: dispatch.body.to_string(),
        timeout_ms: config.upstream_timeout_ms,
        secret: dispatch.key.expose(),
        provider: dispatch.provider(),
    };
    crate::providers::http::call(&call, dispatch.stream).await
}

/// Milliseconds since `started_ms`.
pub fn elapsed_ms(started_ms: u64) -> u64 {
    worker::Date::now().as_millis().saturating_sub(started_ms)
}

/// Records `event` in the metrics Durable Object after the response is sent.
pub fn record_after_response(env: &Env, ctx: &Context, event: MetricsEvent) {
    let env = env.clone();
    ctx.wait_until(async move { record(&env, &event).await });
}

async fn record(env: &Env, event: &MetricsEvent) {
    let recorded = async { MetricsClient::connect(env)?.record(event).await }.await;
    if let Err(e) = recorded {
        worker::console_error!("metrics: event {} not recorded: {e}", event.id());
    }
}

/// Relays an upstream SSE response through `meter`. When the stream ends (or the client
/// goes away), `finish` turns the summary into the last bytes to send and the metrics
/// event, which is recorded through `ctx.wait_until`.
pub fn stream_response<F>(
    env: &Env,
    ctx: &Context,
    mut upstream: Response,
    meter: StreamMeter,
    finish: F,
) -> worker::Result<Response>
where
    F: FnOnce(StreamSummary, StreamEnd) -> (Vec<u8>, MetricsEvent) + 'static,
{
    let (sender, receiver) = futures_channel::oneshot::channel::<MetricsEvent>();
    let on_end: stream::OnEnd = Box::new(move |summary, end| {
        let (tail, event) = finish(summary, end);
        // The receiver lives in wait_until; if it is gone there is nobody left to tell.
        let _ = sender.send(event);
        tail
    });
    let body = stream::MeteredStream::new(upstream.stream()?.boxed_local(), meter, on_end);
    let env = env.clone();
    ctx.wait_until(async move {
        if let Ok(event) = receiver.await {
            record(&env, &event).await;
        }
    });
    let headers = Headers::new();
    headers.set("content-type", "text/event-stream; charset=utf-8")?;
    headers.set("cache-control", "no-cache")?;
    Ok(Response::from_stream(body)?.with_headers(headers))
}

/// Sets the routing headers every answered request carries.
pub fn set_routing_headers(
    response: &mut Response,
    decision: &crate::routing::RoutingDecision,
    model: &str,
) -> worker::Result<()> {
    let headers = response.headers_mut();
    headers.set("x-llm-mux-tier", &decision.tier_name)?;
    headers.set("x-llm-mux-score", &format!("{:.4}", decision.score))?;
    headers.set("x-llm-mux-model", model)?;
    Ok(())
}

/// The `Authorization` header of a request.
pub fn authorization(req: &worker::Request) -> Option<String> {
    req.headers().get("authorization").ok().flatten()
}

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
use worker::{Context, Env, Response};

use crate::error::GatewayError;
use crate::metrics::outbox::{Outbox, Push};
use crate::metrics::MetricsEvent;
use crate::metrics_store::MetricsClient;
use crate::runtime;
use crate::streaming::{StreamEnd, StreamMeter, StreamSummary};

/// A JSON response with the given status; struct fields keep their declared order.
pub fn json_response<T: serde::Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    json_bytes_response(status, serde_json::to_vec(body)?)
}

/// A response whose body is JSON already serialised (passed through as it came).
pub fn json_bytes_response(status: u16, body: Vec<u8>) -> worker::Result<Response> {
    // `from_body` rather than `from_bytes`: the latter sets a content type first, and a
    // second Headers object would replace the builder's own.
    let mut response = Response::from_body(worker::ResponseBody::Body(body))?.with_status(status);
    let headers = response.headers_mut();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(response)
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
    config: &Result<crate::config::Config, GatewayError>,
    request_id: &str,
    outcome: Outcome,
    error_response: fn(&GatewayError) -> worker::Result<Response>,
) -> worker::Result<Response> {
    let window_ms = batch_window_ms(config);
    match outcome {
        Ok((response, event)) => {
            if let Some(event) = event {
                record_after_response(env, ctx, event, window_ms);
            }
            Ok(response)
        }
        Err(error) => {
            let event = crate::dispatch::failed_event(request_id, &error);
            record_after_response(env, ctx, event, window_ms);
            error_response(&error)
        }
    }
}

/// The incoming request as the runtime hands it over. Not converted to `worker::Request`:
/// that conversion reads the `cf` object (which the runtime parses from JSON) and copies
/// the URL and method on every request; handlers only need a header and the body.
pub type Incoming = worker::web_sys::Request;

/// The request body, read in one piece.
pub async fn read_body(req: &Incoming) -> Result<Vec<u8>, GatewayError> {
    let unreadable = |e: worker::wasm_bindgen::JsValue| {
        let reason = runtime::error_field(&e, "message").unwrap_or_else(|| "unreadable".into());
        GatewayError::BadRequest(format!("cannot read request body: {reason}"))
    };
    let promise = req.array_buffer().map_err(unreadable)?;
    runtime::array_buffer_bytes(promise)
        .await
        .map_err(unreadable)
}

/// Makes the upstream call a dispatch describes.
pub async fn call_upstream(
    config: &crate::config::Config,
    dispatch: &crate::dispatch::Dispatch,
) -> Result<crate::upstream::UpstreamBody, GatewayError> {
    let call = crate::upstream::UpstreamCall {
        url: &dispatch.url,
        headers: dispatch.headers(),
        body: dispatch.body.to_string(),
        timeout_ms: config.upstream_timeout_ms,
        secret: dispatch.key.expose(),
        provider: dispatch.provider(),
    };
    crate::upstream::call(&call, dispatch.stream).await
}

/// Milliseconds since `started_ms`.
pub fn elapsed_ms(started_ms: u64) -> u64 {
    runtime::now_ms().saturating_sub(started_ms)
}

/// The batch window of `config`, or the default when the configuration is invalid (its
/// failures are recorded too).
fn batch_window_ms(config: &Result<crate::config::Config, GatewayError>) -> u64 {
    config
        .as_ref()
        .map_or(crate::config::DEFAULT_METRICS_BATCH_MS, |c| {
            c.metrics_batch_ms
        })
}

thread_local! {
    /// This isolate's metrics events not yet sent to the Durable Object.
    static OUTBOX: std::cell::RefCell<Outbox> = std::cell::RefCell::new(Outbox::default());
}

/// Records `event` in the metrics Durable Object after the response is sent: it joins the
/// isolate's batch, and this request's `wait_until` keeps the batch's flusher alive when
/// it is the first event of the batch (see [`crate::metrics::outbox`]).
pub fn record_after_response(env: &Env, ctx: &Context, event: MetricsEvent, window_ms: u64) {
    if let Some(flush) = enqueue(env, event, window_ms) {
        ctx.wait_until(flush);
    }
}

/// Queues `event`; returns the work the current request must keep alive, if any.
fn enqueue(
    env: &Env,
    event: MetricsEvent,
    window_ms: u64,
) -> Option<impl std::future::Future<Output = ()> + 'static> {
    let push = OUTBOX.with(|outbox| {
        outbox
            .borrow_mut()
            .push(event, runtime::now_ms(), window_ms)
    });
    let env = env.clone();
    match push {
        Push::Queued => None,
        Push::SendNow => {
            let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_now());
            Some(futures_util::future::Either::Left(async move {
                send_batch(&env, &batch).await;
            }))
        }
        Push::StartFlusher { window_ms } => Some(futures_util::future::Either::Right(async move {
            worker::Delay::from(std::time::Duration::from_millis(window_ms)).await;
            let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_batch());
            send_batch(&env, &batch).await;
        })),
    }
}

/// Sends this isolate's queued events now (before `/metrics` reads the aggregate). The
/// send runs in `ctx.wait_until`, so events of other requests taken from the queue are
/// still delivered if the reader goes away; the reader waits for it to finish.
pub async fn flush_metrics(env: &Env, ctx: &Context) {
    let batch = OUTBOX.with(|outbox| outbox.borrow_mut().take_now());
    if batch.is_empty() {
        return;
    }
    let (done, finished) = futures_channel::oneshot::channel::<()>();
    let env = env.clone();
    ctx.wait_until(async move {
        send_batch(&env, &batch).await;
        let _ = done.send(());
    });
    let _ = finished.await;
}

async fn send_batch(env: &Env, batch: &[MetricsEvent]) {
    if batch.is_empty() {
        return;
    }
    let sent = async { MetricsClient::connect(env)?.record(batch).await }.await;
    if let Err(e) = sent {
        worker::console_error!("metrics: {} events not recorded: {e}", batch.len());
    }
}

/// Relays an upstream SSE response through `meter`. When the stream ends (or the client
/// goes away), `finish` turns the summary into the last bytes to send and the metrics
/// event, which is recorded (batched, `window_ms`) through `ctx.wait_until`.
pub fn stream_response<F>(
    env: &Env,
    ctx: &Context,
    window_ms: u64,
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
            if let Some(flush) = enqueue(&env, event, window_ms) {
                flush.await;
            }
        }
    });
    let mut response = Response::from_stream(body)?;
    let headers = response.headers_mut();
    headers.set("content-type", "text/event-stream; charset=utf-8")?;
    headers.set("cache-control", "no-cache")?;
    Ok(response)
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
pub fn authorization(req: &Incoming) -> Option<String> {
    req.headers().get("authorization").ok().flatten()
}

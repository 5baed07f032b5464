//! Responses: JSON answers, error answers (the one place an error becomes a response, and
//! the one place its detail is logged), routing headers, and streamed answers.
//!
//! It owns the HTTP shape of what the pipeline decided. It must not decide anything: status,
//! message and body format come from the core's error and endpoint types.

use worker::{Context, Env, Response};

use llm_mux_core::endpoint::WholeAnswer;
use llm_mux_core::plan::Plan;

use crate::config::Config;
use crate::error::GatewayError;
use crate::pipeline::Recorded;
use crate::stream::{MeteredStream, OnEnd, StreamLimits};
use crate::streaming::{StreamEnd, StreamMeter, StreamSummary};
use crate::upstream::UpstreamStream;

/// What the error exit needs to know about the request it answers.
pub struct Exchange<'a> {
    /// The request's id (also in `x-request-id`).
    pub request_id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Path, without query.
    pub path: &'a str,
    /// Arrival time (`runtime::now_ms`).
    pub started_ms: u64,
    /// The configuration (its secrets are scrubbed from logs).
    pub config: &'a Result<Config, GatewayError>,
}

/// Turns a failed runtime call (building a response, reading a stream) into an internal
/// error. `From<worker::Error> for GatewayError` cannot be written here (both types are
/// foreign to this crate, and the core must not know `worker`), so this is the conversion.
pub trait OrInternal<T> {
    /// The value, or [`GatewayError::Internal`] with the runtime's message.
    fn or_internal(self) -> Result<T, GatewayError>;
}

impl<T> OrInternal<T> for worker::Result<T> {
    fn or_internal(self) -> Result<T, GatewayError> {
        self.map_err(|e| GatewayError::Internal(e.to_string()))
    }
}

/// A JSON response with the given status; struct fields keep their declared order.
pub fn json<T: serde::Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    json_bytes(status, serde_json::to_vec(body)?)
}

/// A response whose body is JSON already serialised (passed through as it came).
pub fn json_bytes(status: u16, body: Vec<u8>) -> worker::Result<Response> {
    // `from_body` rather than `from_bytes`: the latter sets a content type first, and a
    // second Headers object would replace the builder's own.
    let mut response = Response::from_body(worker::ResponseBody::Body(body))?.with_status(status);
    let headers = response.headers_mut();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(response)
}

/// The error exit: the JSON error response of `error` with `body` (the endpoint's error
/// format), and, for server-side failures (5xx), one log line with the detail a client
/// never sees, every configured secret scrubbed from it.
pub fn error(
    exchange: &Exchange<'_>,
    error: &GatewayError,
    body: &serde_json::Value,
) -> worker::Result<Response> {
    let status = error.status();
    if status >= 500 {
        let secrets = secrets(exchange.config);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        worker::console_error!(
            "{} {} {} {status} {}ms {}",
            exchange.request_id,
            exchange.method,
            exchange.path,
            crate::runtime::now_ms().saturating_sub(exchange.started_ms),
            error.log_detail(&secrets)
        );
    }
    // A refusal by a limit or budget is logged with the key's id (never the key), so an
    // operator can see who hit which limit.
    if let Some(key_id) = error.key_id() {
        worker::console_log!(
            "{} {} {} {status} key {key_id}: {}",
            exchange.request_id,
            exchange.method,
            exchange.path,
            error.client_message()
        );
    }
    let mut response = json(status, body)?;
    match error {
        GatewayError::MethodNotAllowed { allowed, .. } => {
            response.headers_mut().set("allow", allowed)?;
        }
        GatewayError::Unauthorized => {
            response
                .headers_mut()
                .set("www-authenticate", "Bearer realm=\"llm-mux\"")?;
        }
        _ => {}
    }
    if let Some(after) = error.retry_after() {
        response.headers_mut().set("retry-after", &after)?;
    }
    if let Some(id) = error.key_id() {
        response.headers_mut().set("x-llm-mux-key-id", id)?;
    }
    // A spent budget does not come back within a client's retries either.
    if error.is_upstream() || error.metric_label() == "budget_exceeded" {
        // The gateway has made its retries and fallbacks already: the OpenAI SDKs honour
        // this header and do not multiply them (README: upstream calls per request).
        response.headers_mut().set("x-should-retry", "false")?;
    }
    Ok(response)
}

/// The request's JSON log line (LOG_REQUESTS, on by default; on when the configuration is
/// invalid): route, status, outcome, and what `event` records (routing, usage, cost, key
/// id), never the prompt, the answer or a secret.
pub fn log_request(
    exchange: &Exchange<'_>,
    status: u16,
    score: Option<f64>,
    event: Option<&llm_mux_core::metrics::MetricsEvent>,
) {
    if exchange.config.as_ref().is_ok_and(|c| !c.log_requests) {
        return;
    }
    let line = llm_mux_core::request_log::Line {
        request_id: exchange.request_id,
        method: exchange.method,
        route: exchange.path,
        status,
        score,
        latency_ms: crate::runtime::now_ms().saturating_sub(exchange.started_ms),
    };
    worker::console_log!("{}", line.json(event));
}

/// Every secret of the configuration: the tiers' upstream keys and the client keys.
fn secrets(config: &Result<Config, GatewayError>) -> Vec<String> {
    let Ok(config) = config else {
        return Vec::new();
    };
    config
        .tiers
        .iter()
        .filter_map(|tier| tier.key().ok().map(str::to_string))
        .chain(config.api_keys.iter().map(|k| k.expose().to_string()))
        .collect()
}

/// The routing headers every answered request carries.
pub struct RoutingHeaders {
    tier: String,
    score: String,
    model: String,
    fallback: Option<String>,
    budget: Option<String>,
}

impl RoutingHeaders {
    /// The headers that describe `plan`.
    pub fn of(plan: &Plan) -> Self {
        Self {
            tier: plan.decision.tier_name.clone(),
            score: llm_mux_core::numfmt::fixed(plan.decision.score, 4),
            model: plan.model.clone(),
            fallback: plan
                .decision
                .fallback
                .as_ref()
                .map(|f| format!("{}; reason={}", f.route(), f.reason)),
            budget: plan
                .decision
                .downgrade
                .as_ref()
                .filter(|d| d.reason == "budget")
                .map(|d| format!("downgraded from {}", d.from)),
        }
    }

    /// Only the fallback header (on an error answer after a fallback).
    pub fn set_fallback(&self, response: &mut Response) -> worker::Result<()> {
        if let Some(fallback) = &self.fallback {
            response.headers_mut().set("x-llm-mux-fallback", fallback)?;
        }
        Ok(())
    }

    fn set(&self, response: &mut Response) -> worker::Result<()> {
        let headers = response.headers_mut();
        headers.set("x-llm-mux-tier", &self.tier)?;
        headers.set("x-llm-mux-score", &self.score)?;
        headers.set("x-llm-mux-model", &self.model)?;
        if let Some(fallback) = &self.fallback {
            headers.set("x-llm-mux-fallback", fallback)?;
        }
        if let Some(budget) = &self.budget {
            headers.set("x-llm-mux-budget", budget)?;
        }
        Ok(())
    }
}

/// A whole answer with its routing headers.
pub fn answer(answer: WholeAnswer, plan: &Plan) -> worker::Result<Response> {
    let mut response = json_bytes(200, answer.body)?;
    RoutingHeaders::of(plan).set(&mut response)?;
    for (name, value) in &answer.headers {
        response.headers_mut().set(name, value)?;
    }
    Ok(response)
}

/// Relays an upstream SSE response through `meter`, with the routing headers. When the
/// stream ends (or the client goes away), `finish` turns the summary into the last bytes
/// to send and what to record: the metrics event (batched, `window_ms`) and a sampled
/// request's shadow job, both handed over through `ctx.wait_until`.
#[allow(clippy::too_many_arguments)] // the stream's parts, each used once
pub fn stream<F>(
    env: &Env,
    ctx: &Context,
    window_ms: u64,
    routing: RoutingHeaders,
    upstream: UpstreamStream,
    meter: StreamMeter,
    limits: StreamLimits,
    finish: F,
) -> worker::Result<Response>
where
    F: FnOnce(StreamSummary, StreamEnd, Option<u64>) -> (Vec<u8>, Recorded) + 'static,
{
    use futures_util::StreamExt;
    type Flush = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
    let (sender, receiver) = futures_channel::oneshot::channel::<(
        Option<llm_mux_core::shadow::ShadowJob>,
        Option<Flush>,
        Option<Flush>,
    )>();
    let recorder_env = env.clone();
    // Served until the stream ends and its event is queued (or the body is dropped).
    let serving = crate::metrics_shipping::serving();
    let on_end: OnEnd = Box::new(move |summary, end, first_byte_ms| {
        let (tail, (event, job, settle)) = finish(summary, end, first_byte_ms);
        // The event joins the isolate's outbox now, before the last bytes go out, so a
        // client that reads /metrics after its stream ended finds it (a `wait_until` task
        // would queue it only some time later). The send itself runs after the response.
        let flush = crate::metrics_shipping::enqueue(&recorder_env, event, window_ms)
            .map(|f| Box::pin(f) as Flush);
        // The settlement joins the isolate's queue now too (a /metrics read sends it).
        let settle = settle
            .and_then(|s| crate::ledger_store::enqueue(&recorder_env, s, window_ms))
            .map(|f| Box::pin(f) as Flush);
        // The receiver lives in wait_until; if it is gone there is nobody left to tell.
        let _ = sender.send((job, flush, settle));
        drop(serving);
        tail
    });
    let UpstreamStream {
        mut response,
        controller,
    } = upstream;
    let body = MeteredStream::new(
        response.stream()?.boxed_local(),
        controller,
        meter,
        limits,
        on_end,
    );
    let env = env.clone();
    crate::runtime::after_response(ctx, async move {
        if let Ok((job, flush, settle)) = receiver.await {
            if let Some(job) = job {
                crate::quality::submit(env.clone(), job).await;
            }
            // Both batch windows at once.
            let idle = || Box::pin(async {}) as Flush;
            futures_util::future::join(flush.unwrap_or_else(idle), settle.unwrap_or_else(idle))
                .await;
        }
    });
    let mut response = Response::from_stream(body)?;
    let headers = response.headers_mut();
    headers.set("content-type", "text/event-stream; charset=utf-8")?;
    headers.set("cache-control", "no-cache")?;
    routing.set(&mut response)?;
    Ok(response)
}

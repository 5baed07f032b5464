//! The request's path through the gateway, as one list of named stages read top to bottom:
//!
//! ```text
//! authorize -> parse -> plan -> admit -> budget -> cache lookup -> sample -> call
//!           -> settle -> respond -> record
//! ```
//!
//! (admit: the key's allowed tiers; budget: rate limits and spend caps in one ledger
//! round trip, after the plan, which it needs to price the worst case.)
//!
//! `POST /query` and `POST /v1/chat/completions` both run [`serve`]; they differ only in
//! the [`Endpoint`] they pass (parse, answer shape, stream tail, error format). Each stage
//! is one call into the core (`llm_mux_core::stages`, `plan`, `upstream`, `accounting`,
//! `endpoint`) or one runtime adapter of this crate, so a new feature (rate limits,
//! budgets, a cache, fallbacks, judged samples) is a stage's new policy, not an edit in
//! every handler. This file owns the order of the stages and the hand-over of data between
//! them; it must not hold policy of its own (no retry rules, no prices, no formats).

use worker::{Context, Env, Response};

use llm_mux_core::accounting::{self, Accounting, Answered};
use llm_mux_core::cache::{self as cache_policy, CacheUse};
use llm_mux_core::config::DEFAULT_METRICS_BATCH_MS;
use llm_mux_core::endpoint::{Endpoint, Parsed};
use llm_mux_core::fallback;
use llm_mux_core::ledger::{self, Admit};
use llm_mux_core::plan::{self, Plan};
use llm_mux_core::routing::Requested;
use llm_mux_core::shadow::{self, ShadowJob};
use llm_mux_core::stages;
use llm_mux_core::streaming::{self as stream_policy, StreamEnd, StreamMeter, StreamSummary};
use llm_mux_core::upstream::{self, Answer};

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::MetricsEvent;
use crate::quality;
use crate::respond::{self, Exchange, OrInternal, RoutingHeaders};
use crate::runtime;
use crate::stream::StreamLimits;
use crate::upstream::{Fetch, UpstreamStream};

/// The incoming request as the runtime hands it over. Not converted to `worker::Request`:
/// that conversion reads the `cf` object (which the runtime parses from JSON) and copies
/// the URL and method on every request; the pipeline only needs a header and the body.
pub type Incoming = worker::web_sys::Request;

/// What the stages before `record` produce: the response, the metrics event (unless a
/// stream records its own when it ends) and a sampled request's shadow job.
type Served = (
    Response,
    Option<MetricsEvent>,
    Option<ShadowJob>,
    Option<f64>,
);

/// Serves one API request. `access` is the result of the authorize stage, run once for
/// every protected route by the router (`lib.rs`). Every outcome, success or failure, is
/// recorded after the response.
pub async fn serve(
    endpoint: &'static dyn Endpoint,
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    access: Result<&Config, GatewayError>,
    exchange: &Exchange<'_>,
) -> worker::Result<Response> {
    // Counted as being served until this returns (its event queued by then; a stream's
    // body holds its own count until it ends): a graceful stop waits for it.
    let _serving = crate::metrics_shipping::serving();
    // Failures are recorded too; an invalid configuration has no batch window of its own.
    let window_ms = access
        .as_ref()
        .map_or(DEFAULT_METRICS_BATCH_MS, |c| c.metrics_batch_ms);
    let config = access.as_ref().ok().copied();
    let key_id = config.and_then(|c| {
        let authorization = req.headers().get("authorization").ok().flatten();
        c.key_id_of(authorization.as_deref()).map(str::to_string)
    });
    let key_id = key_id.as_deref();
    // The ledger's reservation, settled with the recorded cost (streams settle their own).
    let mut admission = None;
    let served = stages(
        endpoint,
        req,
        env,
        ctx,
        access,
        exchange,
        key_id,
        &mut admission,
    )
    .await;
    let (error, plan) = match served {
        Ok(Ok((mut response, event, job, score))) => {
            // record: after the response, batched per isolate; a sampled request's job goes
            // to the quality store; the ledger is settled at the real cost.
            if let Some(mut event) = event {
                event.set_key(key_id);
                respond::log_request(exchange, response.status_code(), score, Some(&event));
                settle_after_response(env, ctx, admission.as_ref(), &event, window_ms);
                crate::metrics_shipping::record_after_response(env, ctx, event, window_ms);
            }
            if let Some(job) = job {
                quality::submit_after_response(env, ctx, job);
            }
            if let Some(id) = key_id {
                response.headers_mut().set("x-llm-mux-key-id", id)?;
            }
            return Ok(response);
        }
        // The call failed: recorded with its plan (the fallback, the cost of a billed
        // answer).
        Ok(Err(failed)) => (failed.error, Some(failed.plan)),
        Err(error) => (error, None),
    };
    let mut event = match (config, &plan) {
        (Some(config), Some(plan)) => {
            accounting::failed_call_event(config, exchange.request_id, plan, &error)
        }
        _ => accounting::failed_event(exchange.request_id, &error),
    };
    event.set_key(key_id);
    settle_after_response(env, ctx, admission.as_ref(), &event, window_ms);
    let score = plan.as_ref().map(|p| p.decision.score);
    respond::log_request(exchange, error.status(), score, Some(&event));
    crate::metrics_shipping::record_after_response(env, ctx, event, window_ms);
    let mut response = respond::error(exchange, &error, &endpoint.error_body(&error))?;
    if let Some(plan) = plan.filter(|p| p.decision.fallback.is_some()) {
        RoutingHeaders::of(&plan).set_fallback(&mut response)?;
    }
    Ok(response)
}

/// settle: the ledger's reservation of this request released, its real cost (the
/// event's) charged, after the response.
fn settle_after_response(
    env: &Env,
    ctx: &Context,
    admission: Option<&Admit>,
    event: &MetricsEvent,
    window_ms: u64,
) {
    if let Some(admission) = admission {
        let settle = admission.settle(ledger::pico(event.cost_usd()));
        crate::ledger_store::settle_after_response(env, ctx, settle, window_ms);
    }
}

/// A failed upstream call, with the plan of the last tier tried.
struct FailedCall {
    plan: Plan,
    error: GatewayError,
}

/// The stages from admission to the response: the request's failure before the call
/// (outer error), or the call's failure with the plan it ran (inner error).
#[allow(clippy::too_many_arguments)] // the request's parts, each used once
async fn stages(
    endpoint: &'static dyn Endpoint,
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    access: Result<&Config, GatewayError>,
    exchange: &Exchange<'_>,
    key_id: Option<&str>,
    admission: &mut Option<Admit>,
) -> Result<Result<Served, FailedCall>, GatewayError> {
    // authorize: decided by the router, once; a refusal is this request's failure.
    let config = access?;
    // parse: the body (refused by its declared length before reading, or counted while
    // reading, MAX_BODY_BYTES), by the endpoint's rules.
    let body = read_body(req, config.max_body_bytes).await?;
    let parsed = endpoint.parse(&body, config)?;
    // plan: score, route (with the quality controller's threshold when a target is set),
    // build the upstream request.
    let threshold = quality::threshold(env, ctx, config).await;
    let plan = plan::plan_with_threshold(
        config,
        &parsed.chat,
        parsed.requested,
        &parsed.routing_text,
        threshold,
    )?;
    // admit: the key's allowed tiers.
    let mut plan = stages::admit(config, key_id, &parsed.chat, plan)?;
    // budget: rate limits and spend caps, one ledger round trip (none when no cap applies).
    if let Some(request) = stages::budget(config, key_id, &mut plan, exchange.request_id) {
        let verdict = crate::ledger_store::admit(env, &request)
            .await
            .map_err(|e| GatewayError::Internal(format!("ledger: {e}")))?;
        if matches!(verdict, ledger::Verdict::Admitted { .. }) {
            *admission = Some(request);
        }
        plan = stages::admitted(
            config,
            key_id,
            &parsed.chat,
            plan,
            &verdict,
            runtime::now_ms(),
        )?;
    }
    // cache lookup: a deterministic whole request answered before (CACHE_TTL_SECONDS) is
    // answered again from the Workers cache, at no upstream cost.
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let cache_use = cache_policy::decide(
        config,
        key_id,
        &plan,
        header("x-llm-mux-cache").as_deref(),
        header("cache-control").as_deref(),
    );
    let mut cached_stream = None;
    if let CacheUse::Key(url) = &cache_use {
        if let Some(raw) = crate::cache::lookup(url).await {
            if let Ok(completion) = plan.provider().parse_response(&raw) {
                if !plan.stream {
                    return from_cache(endpoint, config, exchange, &plan, completion, raw).map(Ok);
                }
                // A streamed request: the whole answer as a synthetic stream.
                cached_stream = Some(cache_policy::synthetic_stream(&completion.body));
            }
        }
    }
    // A stream not found in the cache is not stored either (no whole answer): no count.
    let cache_use = match cache_use {
        CacheUse::Key(_) if plan.stream && cached_stream.is_none() => CacheUse::Off,
        other => other,
    };
    let from_cache = cached_stream.is_some();
    // sample: an automatically routed request may be shadowed by the other tier and
    // judged, after its response (QUALITY_SAMPLE_RATE).
    let auto = parsed.requested == Requested::Auto && !from_cache;
    let sample = if auto {
        quality::sample(config, plan.decision.score).and_then(|probability| {
            let other = shadow::other_tier(config, plan.decision.tier)?;
            Some(Sampled::new(exchange, &plan, &parsed, probability, other))
        })
    } else {
        None
    };
    // call: attempts, retries and the deadline (the core's policy) over the runtime's
    // fetch; a failure before any answer falls back to the next tier (FALLBACK).
    let call_started_ms = runtime::now_ms();
    let (plan, answer, request_bytes) = match cached_stream {
        Some(sse) => (
            plan,
            Answer::Stream(UpstreamStream::synthetic(sse).or_internal()?),
            0,
        ),
        None => {
            let called = call_with_fallback(env, config, key_id, &parsed, plan, admission).await;
            match called {
                Ok(called) => called,
                Err(failed) => return Ok(Err(failed)),
            }
        }
    };
    match answer {
        Answer::Whole(raw) => {
            // settle: parse, price, and describe the answer as a metrics event.
            let completion = match plan.provider().parse_response(&raw) {
                Ok(completion) => completion,
                Err(error) => return Ok(Err(FailedCall { plan, error })),
            };
            let latency_ms = elapsed_ms(exchange.started_ms);
            let answered = Answered {
                reported_model: &completion.model,
                usage: completion.usage,
                completion_chars: completion.answer.chars().count(),
                request_bytes,
                received_bytes: raw.len(),
                dropped_events: 0,
            };
            let (accounting, mut event) = accounting::settle(
                config,
                exchange.request_id,
                &plan,
                &answered,
                latency_ms,
                None,
            )?;
            event.set_timing(latency_ms.min(elapsed_ms(call_started_ms)), None);
            if auto {
                let (lower, top) = accounting::lower_and_top_costs(config, &plan, &accounting);
                quality::record_traffic(config, plan.decision.score, lower, top);
            }
            let job = sample.map(|s| s.job(completion.answer.clone(), &accounting));
            // The answer joins the cache (after the response).
            if let CacheUse::Key(url) = &cache_use {
                crate::cache::store(ctx, url, raw.clone(), config.cost.cache_ttl_seconds);
            }
            // respond: the endpoint's shape.
            let now_s = runtime::now_ms() / 1000;
            let answer =
                endpoint.whole_answer(&plan, completion, raw, &accounting, latency_ms, now_s)?;
            let mut response = respond::answer(answer, &plan).or_internal()?;
            if let Some(outcome) = cache_use.miss_header() {
                event.set_cache(outcome, 0.0);
                response
                    .headers_mut()
                    .set("x-llm-mux-cache", outcome)
                    .or_internal()?;
            }
            Ok(Ok((response, Some(event), job, Some(plan.decision.score))))
        }
        Answer::Stream(upstream) => {
            // respond now; settle and record when the stream ends.
            // A cached answer streams in the OpenAI-compatible shape, whatever the backend.
            let provider = if from_cache {
                llm_mux_core::providers::BackendKind::OpenAi.provider()
            } else {
                plan.provider()
            };
            let mut meter = StreamMeter::new(
                provider.stream_decoder(endpoint.stream_options(&parsed, runtime::now_ms() / 1000)),
                endpoint.stream_format(),
            );
            if sample.is_some() {
                meter = meter.keeping_answer();
            }
            let window_ms = config.metrics_batch_ms;
            let routing = RoutingHeaders::of(&plan);
            let limits = StreamLimits {
                idle_ms: config.stream_idle_timeout_ms,
                deadline_ms: exchange.started_ms + config.stream_max_duration_ms,
                max_bytes: config.max_upstream_response_bytes,
            };
            let finish = stream_settlement(
                endpoint,
                config.clone(),
                exchange,
                plan,
                request_bytes,
                auto,
                sample,
                (key_id.map(str::to_string), admission.take()),
                from_cache,
                call_started_ms,
            );
            let mut response = respond::stream(
                env, ctx, window_ms, routing, upstream, meter, limits, finish,
            )
            .or_internal()?;
            if from_cache {
                response
                    .headers_mut()
                    .set("x-llm-mux-cache", "hit")
                    .or_internal()?;
            } else if let Some(outcome) = cache_use.miss_header() {
                response
                    .headers_mut()
                    .set("x-llm-mux-cache", outcome)
                    .or_internal()?;
            }
            Ok(Ok((response, None, None, None)))
        }
    }
}

/// respond from the cache: the stored upstream answer, priced at nothing (what it would
/// have cost is recorded as the cache's saving), with `x-llm-mux-cache: hit`.
fn from_cache(
    endpoint: &'static dyn Endpoint,
    config: &Config,
    exchange: &Exchange<'_>,
    plan: &Plan,
    completion: llm_mux_core::providers::ChatResponse,
    raw: Vec<u8>,
) -> Result<Served, GatewayError> {
    let latency_ms = elapsed_ms(exchange.started_ms);
    let answered = Answered {
        reported_model: &completion.model,
        usage: completion.usage,
        completion_chars: completion.answer.chars().count(),
        request_bytes: llm_mux_core::jsonwrite::text(&plan.body).len(),
        received_bytes: raw.len(),
        dropped_events: 0,
    };
    let (mut priced, mut event) = accounting::settle(
        config,
        exchange.request_id,
        plan,
        &answered,
        latency_ms,
        None,
    )?;
    accounting::cache_hit(&mut priced, &mut event);
    let now_s = runtime::now_ms() / 1000;
    let answer = endpoint.whole_answer(plan, completion, raw, &priced, latency_ms, now_s)?;
    let mut response = respond::answer(answer, plan).or_internal()?;
    response
        .headers_mut()
        .set("x-llm-mux-cache", "hit")
        .or_internal()?;
    Ok((response, Some(event), None, Some(plan.decision.score)))
}

/// The call stage: the plan's tier, then (when its failure allows it: no answer has begun)
/// the fallback tiers in the configured order. Returns the plan that answered, its answer
/// and the size of the request body sent; or the last failure with its plan.
async fn call_with_fallback(
    env: &Env,
    config: &Config,
    key_id: Option<&str>,
    parsed: &Parsed,
    mut plan: Plan,
    admission: &mut Option<Admit>,
) -> Result<(Plan, Answer<UpstreamStream>, usize), FailedCall> {
    // Tiers the key may not use count as tried: never fallen back to.
    let mut tried: Vec<usize> = (0..config.tiers.len())
        .filter(|&t| t == plan.decision.tier || !config.cost.tier_allowed(key_id, t))
        .collect();
    loop {
        let request = plan.upstream_request();
        let request_bytes = request.body.len();
        let result = upstream::call(
            &Fetch,
            &request,
            stages::call_policy(config),
            plan.provider(),
            plan.key.expose(),
        )
        .await;
        drop(request);
        let error = match result {
            Ok(answer) => return Ok((plan, answer, request_bytes)),
            Err(error) => error,
        };
        let next = fallback::reason(&error)
            .and_then(|reason| Some((reason, fallback::next_tier(config, &tried)?)));
        let Some((reason, tier)) = next else {
            return Err(FailedCall { plan, error });
        };
        let Ok(mut next_plan) = plan::fallback(config, &parsed.chat, &plan, tier, reason) else {
            return Err(FailedCall { plan, error });
        };
        // A budgeted request's reservation moves to the fallback tier's worst case; when
        // that does not fit, the first failure stands.
        if let Some(first) = admission.as_ref() {
            let again = stages::readmission(config, first, &mut next_plan);
            match crate::ledger_store::admit(env, &again).await {
                Ok(ledger::Verdict::Admitted { .. }) => *admission = Some(again),
                _ => return Err(FailedCall { plan, error }),
            }
        }
        tried.push(tier);
        plan = next_plan;
    }
}

/// settle and respond for a stream, run once when it ends: its price (from the usage it
/// reported, else estimated), the endpoint's last bytes, the event to record and the
/// ledger settlement of its reservation (`ledgered`: the key id and the admission).
#[allow(clippy::too_many_arguments)] // the stream's parts, each used once
fn stream_settlement(
    endpoint: &'static dyn Endpoint,
    config: Config,
    exchange: &Exchange<'_>,
    plan: Plan,
    request_bytes: usize,
    auto: bool,
    sample: Option<Sampled>,
    ledgered: (Option<String>, Option<Admit>),
    from_cache: bool,
    call_started_ms: u64,
) -> impl FnOnce(StreamSummary, StreamEnd, Option<u64>) -> (Vec<u8>, Recorded) + 'static {
    let started_ms = exchange.started_ms;
    let request_id = exchange.request_id.to_string();
    let route = exchange.path.to_string();
    move |summary: StreamSummary, end: StreamEnd, first_byte_ms: Option<u64>| {
        let latency_ms = elapsed_ms(started_ms);
        let ttfb_ms = first_byte_ms.map(|at| at.saturating_sub(started_ms));
        let incomplete = summary.incomplete_reason(end);
        let failure = stream_policy::stream_failure(end, &summary);
        let reported = summary.model.clone().unwrap_or_default();
        let answered = Answered {
            reported_model: &reported,
            usage: summary.usage,
            completion_chars: summary.completion_chars,
            request_bytes,
            received_bytes: summary.received_bytes,
            dropped_events: summary.dropped_events,
        };
        let mut settled = accounting::settle(
            &config,
            &request_id,
            &plan,
            &answered,
            latency_ms,
            incomplete,
        );
        // A cached answer costs nothing; what it would have cost is the cache's saving.
        if let (true, Ok((priced, event))) = (from_cache, &mut settled) {
            accounting::cache_hit(priced, event);
        }
        let priced: Result<&Accounting, &GatewayError> = match &settled {
            Ok((accounting, _)) => Ok(accounting),
            Err(error) => Err(error),
        };
        let answer = summary.answer.clone();
        // A stream that failed after it began ends with an error event in its format.
        let tail = match &failure {
            Some(error) => endpoint.stream_error_event(error),
            None => endpoint.stream_tail(&plan, summary, priced, latency_ms, incomplete),
        };
        let (event, job) = match settled {
            Ok((accounting, event)) => {
                if auto {
                    let (lower, top) = accounting::lower_and_top_costs(&config, &plan, &accounting);
                    quality::record_traffic(&config, plan.decision.score, lower, top);
                }
                // Only a stream that ended well is judged: a cut answer would be graded
                // unfairly.
                let job = match incomplete {
                    None => sample.map(|s| s.job(answer, &accounting)),
                    Some(_) => None,
                };
                (event, job)
            }
            Err(error) => (accounting::failed_event(&request_id, &error), None),
        };
        let (key_id, admission) = ledgered;
        let mut event = event;
        event.set_key(key_id.as_deref());
        event.set_timing(latency_ms.min(elapsed_ms(call_started_ms)), ttfb_ms);
        if config.log_requests {
            let line = llm_mux_core::request_log::Line {
                request_id: &request_id,
                method: "POST",
                route: &route,
                status: 200,
                score: Some(plan.decision.score),
                latency_ms,
            };
            worker::console_log!("{}", line.json(Some(&event)));
        }
        let settle = admission.map(|a| a.settle(ledger::pico(event.cost_usd())));
        (tail, (event, job, settle))
    }
}

/// What a stream records when it ends: its metrics event, its shadow job if sampled, and
/// its ledger settlement if it holds a reservation.
pub type Recorded = (MetricsEvent, Option<ShadowJob>, Option<ledger::Settle>);

/// A request the sample stage picked: what its shadow job needs besides the answer.
struct Sampled {
    id: String,
    created_ms: u64,
    router: &'static str,
    score: f64,
    threshold: f64,
    served_tier: usize,
    other_tier: usize,
    probability: f64,
    request: serde_json::Map<String, serde_json::Value>,
    query: String,
}

impl Sampled {
    fn new(
        exchange: &Exchange<'_>,
        plan: &Plan,
        parsed: &Parsed,
        probability: f64,
        other_tier: usize,
    ) -> Self {
        Self {
            id: exchange.request_id.to_string(),
            created_ms: exchange.started_ms,
            router: plan.router.name(),
            score: plan.decision.score,
            threshold: plan.decision.threshold,
            served_tier: plan.decision.tier,
            other_tier,
            probability,
            request: ShadowJob::request_of(&parsed.chat),
            query: parsed.routing_text.clone(),
        }
    }

    /// The shadow job, once the served answer and its price are known.
    fn job(self, served_answer: String, accounting: &Accounting) -> ShadowJob {
        ShadowJob {
            id: self.id,
            created_ms: self.created_ms,
            router: self.router.to_string(),
            score: self.score,
            threshold: self.threshold,
            served_tier: self.served_tier,
            other_tier: self.other_tier,
            sample_probability: self.probability,
            request: self.request,
            query: self.query,
            served_answer,
            served_tokens_in: accounting.tokens_in,
            served_tokens_out: accounting.tokens_out,
            served_cost_usd: accounting.cost_usd,
            served_first: quality::served_first(),
            other: None,
        }
    }
}

/// The request body, at most `limit` bytes (MAX_BODY_BYTES): refused from its declared
/// `Content-Length` before anything is read, read in one piece when declared (the runtime
/// reads no more than the declared length), and counted while reading when not (chunked
/// uploads), stopping at the limit.
async fn read_body(req: &Incoming, limit: usize) -> Result<Vec<u8>, GatewayError> {
    use worker::wasm_bindgen::JsValue;
    let unreadable = |e: JsValue| {
        let reason = runtime::error_field(&e, "message").unwrap_or_else(|| "unreadable".into());
        GatewayError::BadRequest(format!("cannot read request body: {reason}"))
    };
    let too_large = |actual: Option<usize>| GatewayError::PayloadTooLarge {
        variable: "MAX_BODY_BYTES",
        limit,
        actual,
    };
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(length) = declared {
        if length > limit {
            return Err(too_large(Some(length)));
        }
        let promise = req.array_buffer().map_err(unreadable)?;
        return runtime::array_buffer_bytes(promise)
            .await
            .map_err(unreadable);
    }
    match runtime::read_capped(req.body(), limit).await {
        Ok(bytes) => Ok(bytes),
        Err(runtime::Capped::TooLarge) => Err(too_large(None)),
        Err(runtime::Capped::Failed(e, _)) => Err(unreadable(e)),
    }
}

/// Milliseconds since `started_ms`.
pub fn elapsed_ms(started_ms: u64) -> u64 {
    runtime::now_ms().saturating_sub(started_ms)
}

//! llm-mux, the worker shell: an LLM routing gateway that runs as a Cloudflare Worker.
//!
//! This crate owns the runtime's side only: the entry point and route table (this file),
//! the request pipeline's order of stages ([`pipeline`]), and the adapters that move data
//! between the Workers runtime and the pure core (`llm-mux-core`): the upstream `fetch`
//! ([`upstream`]), responses and the error exit ([`respond`]), stream relaying
//! ([`stream`]), metrics shipping ([`metrics_shipping`]) and the metrics Durable Object
//! ([`metrics_store`]). It must not hold policy (scoring, routing, retries, prices,
//! formats): that lives in the core, where native tests reach it.

pub mod cache;
pub mod cors;
pub mod handlers;
pub mod ledger_store;
pub mod metrics_shipping;
pub mod metrics_store;
pub mod pipeline;
pub mod quality;
pub mod quality_store;
pub mod respond;
pub mod runtime;
pub mod stream;
pub mod upstream;

pub use llm_mux_core::{config, error, metrics, routes, streaming};

use worker::{event, Context, Env, Response};

use llm_mux_core::endpoint::{ChatApi, QueryApi};
use llm_mux_core::hash::{splitmix64, SPLITMIX64_GAMMA};
use llm_mux_core::stages;

use crate::config::Config;
use crate::pipeline::Incoming;
use crate::respond::{Exchange, OrInternal};
use crate::routes::Route;

pub use crate::ledger_store::LedgerStore;
pub use crate::metrics_store::MetricsStore;
pub use crate::quality_store::QualityStore;

/// Reads the configuration from the worker's vars and secrets.
fn load_config(env: &Env) -> Result<Config, error::GatewayError> {
    Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))
}

thread_local! {
    /// The configuration, parsed once per isolate: vars and secrets cannot change under a
    /// running isolate (a new deployment or `wrangler secret put` starts new ones).
    static CONFIG: std::cell::OnceCell<std::rc::Rc<Result<Config, error::GatewayError>>> =
        const { std::cell::OnceCell::new() };
}

fn config(env: &Env) -> std::rc::Rc<Result<Config, error::GatewayError>> {
    CONFIG.with(|cell| {
        cell.get_or_init(|| {
            let config = load_config(env);
            if let Ok(config) = &config {
                metrics_shipping::configure(config.metrics_shards);
            }
            std::rc::Rc::new(config)
        })
        .clone()
    })
}

thread_local! {
    /// State of the request-id sequence: seeded once per isolate from the runtime's CSPRNG.
    static ID_STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A request id (16 hex digits): a per-isolate random seed stepped through splitmix64, so
/// ids never repeat within an isolate, are unpredictable across isolates, and cost no call
/// into the runtime after the first.
fn new_request_id() -> String {
    format!("{:016x}", random_u64())
}

/// The next number of the isolate's random sequence (request ids, sampling decisions).
pub fn random_u64() -> u64 {
    ID_STATE.with(|state| {
        if state.get() == 0 {
            let mut bytes = [0u8; 8];
            if getrandom::getrandom(&mut bytes).is_err() {
                // No entropy: the clock, still unique enough for de-duplication.
                bytes = runtime::now_ms().to_le_bytes();
            }
            state.set(u64::from_le_bytes(bytes) | 1);
        }
        let next = state.get().wrapping_add(SPLITMIX64_GAMMA);
        state.set(next);
        splitmix64(next)
    })
}

#[event(fetch)]
async fn fetch(req: Incoming, env: Env, ctx: Context) -> worker::Result<Response> {
    let started_ms = runtime::now_ms();
    let request_id = new_request_id();
    let method = req.method();
    let url = req.url();
    let path = routes::path_of(&url);
    let config = config(&env);
    let exchange = Exchange {
        request_id: &request_id,
        method: &method,
        path,
        started_ms,
        config: config.as_ref(),
    };
    if path == "/_llm-mux/drain" && method == "POST" && drain_authorized(&req, &env) {
        metrics_shipping::drain(&env, &ctx).await;
        return Response::empty().map(|r| r.with_status(204));
    }
    let response = route(&req, &env, &ctx, &exchange).await;
    // A failure of the runtime itself (building a response): a 500 with the detail logged.
    let mut response = response
        .or_internal()
        .or_else(|e| error_response(&exchange, &e))?;
    // The pipeline logs its own requests (with their routing and cost); the rest here.
    if !matches!(
        routes::resolve(&method, path),
        Ok(Route::Query | Route::ChatCompletions)
    ) {
        respond::log_request(&exchange, response.status_code(), None, None);
    }
    response.headers_mut().set("x-request-id", &request_id)?;
    cors::apply(&req, &exchange, &mut response)?;
    Ok(response)
}

/// Whether a request carries the drain token of this process (LLM_MUX_DRAIN_TOKEN, made
/// up by scripts/selfhost/serve.sh at each start and known only to it and this worker) as
/// its bearer token; compared in constant time. Without the variable (deployed, `wrangler
/// dev`) there is no drain: the path is unknown like any other (404).
fn drain_authorized(req: &Incoming, env: &Env) -> bool {
    let Some(token) = env.var("LLM_MUX_DRAIN_TOKEN").ok().map(|v| v.to_string()) else {
        return false;
    };
    let authorization = req.headers().get("authorization").ok().flatten();
    !token.is_empty()
        && matches!(
            config::check_bearer(&[config::Secret::new(token)], authorization.as_deref()),
            Ok(Some(_))
        )
}

/// The route table: resolves the endpoint, authorizes once, and hands over.
async fn route(
    req: &Incoming,
    env: &Env,
    ctx: &Context,
    exchange: &Exchange<'_>,
) -> worker::Result<Response> {
    Ok(match routes::resolve(exchange.method, exchange.path) {
        Ok(Route::Index) => handlers::index::handle()?,
        // The page holds no data: served to anyone; it asks for a key when keys are set.
        Ok(Route::Dashboard) => handlers::dashboard::handle(match exchange.config {
            Ok(config) => !config.api_keys.is_empty(),
            Err(_) => !config::api_keys_from_lookup(
                env.var("LLM_MUX_API_KEYS").ok().map(|v| v.to_string()),
            )
            .is_empty(),
        })?,
        // A CORS preflight: no authentication (browsers send no credentials with it).
        Ok(Route::Preflight(allowed)) => cors::preflight(allowed)?,
        Ok(Route::MetricsReset) => {
            let authorization = req.headers().get("authorization").ok().flatten();
            match stages::authorize_admin(exchange.config, authorization.as_deref()) {
                Ok(config) => handlers::metrics::reset(env, ctx, config, exchange.request_id).await,
                Err(e) => Err(e),
            }
            .or_else(|e| error_response(exchange, &e))?
        }
        Ok(route) => {
            // authorize: once, for every protected route. When the configuration is
            // invalid, the key is still checked first (LLM_MUX_API_KEYS read on its own).
            let authorization = req.headers().get("authorization").ok().flatten();
            let keys = match exchange.config {
                Ok(_) => Vec::new(),
                Err(_) => config::api_keys_from_lookup(
                    env.var("LLM_MUX_API_KEYS").ok().map(|v| v.to_string()),
                ),
            };
            let access = stages::authorize(exchange.config, &keys, authorization.as_deref());
            let url = req.url();
            let window = routes::query_param(&url, "window");
            match route {
                Route::Query => pipeline::serve(&QueryApi, req, env, ctx, access, exchange).await?,
                Route::ChatCompletions => {
                    pipeline::serve(&ChatApi, req, env, ctx, access, exchange).await?
                }
                Route::Metrics | Route::MetricsPrometheus => match access {
                    Ok(config) => {
                        // A scraper's Accept (text/plain, OpenMetrics) gets the text format.
                        let accept = req.headers().get("accept").ok().flatten();
                        let text = route == Route::MetricsPrometheus
                            || llm_mux_core::metrics::expose::wants_prometheus(accept.as_deref());
                        handlers::metrics::handle(env, ctx, config, window, text).await
                    }
                    Err(e) => Err(e),
                }
                .or_else(|e| error_response(exchange, &e))?,
                Route::MetricsSeries => match access {
                    Ok(config) => handlers::metrics::series(env, ctx, config, window).await,
                    Err(e) => Err(e),
                }
                .or_else(|e| error_response(exchange, &e))?,
                Route::Models => access
                    .and_then(|config| handlers::models::handle(config).or_internal())
                    .or_else(|e| error_response(exchange, &e))?,
                Route::Model => access
                    .and_then(|config| handlers::models::retrieve(config, exchange.path))
                    .or_else(|e| error_response(exchange, &e))?,
                Route::Index | Route::Dashboard => handlers::index::handle()?,
                Route::MetricsReset => error_response(
                    exchange,
                    &error::GatewayError::Internal("reset routed twice".into()),
                )?,
                Route::Preflight(allowed) => cors::preflight(allowed)?,
            }
        }
        Err(e) => error_response(exchange, &e)?,
    })
}

/// An error outside the pipeline, in the format of its path (OpenAI's under `/v1/`).
fn error_response(
    exchange: &Exchange<'_>,
    error: &error::GatewayError,
) -> worker::Result<Response> {
    let body = if routes::is_openai_path(exchange.path) {
        error::openai_error_body(error)
    } else {
        error.to_body()
    };
    respond::error(exchange, error, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_never_repeat() {
        let ids: Vec<String> = (0..10_000).map(|_| new_request_id()).collect();
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}

/// The allocator: talc instead of Rust's default dlmalloc on wasm32 (smaller code in the
/// bundle; the worker is single-threaded, so the lock is a no-op).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };

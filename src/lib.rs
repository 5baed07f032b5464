//! llm-mux: an LLM routing gateway that runs as a Cloudflare Worker.
//!
//! The request's path: `lib.rs` (route table) -> `handlers` -> `config` (auth, limits)
//! -> `scoring` (pure) -> `routing` (pure) -> `providers` (pure build/parse + one fetch)
//! -> response -> `ctx.wait_until(metrics event -> Durable Object)`.

pub mod handlers;
pub mod metrics_store;
pub mod runtime;
pub mod upstream;

pub use llm_mux_core::{
    api, chat, config, dispatch, error, learned, metrics, pricing, providers, routes, routing,
    scoring, streaming,
};

use worker::{event, Context, Env, Response};

use crate::config::Config;
use crate::routes::Route;

pub use crate::metrics_store::MetricsStore;

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
        cell.get_or_init(|| std::rc::Rc::new(load_config(env)))
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
    ID_STATE.with(|state| {
        if state.get() == 0 {
            let mut bytes = [0u8; 8];
            if getrandom::getrandom(&mut bytes).is_err() {
                // No entropy: the clock, still unique enough for de-duplication.
                bytes = runtime::now_ms().to_le_bytes();
            }
            state.set(u64::from_le_bytes(bytes) | 1);
        }
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        format!("{:016x}", splitmix64(next))
    })
}

/// splitmix64's output function: a bijection on u64 that spreads every bit.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[event(fetch)]
async fn fetch(req: handlers::Incoming, env: Env, ctx: Context) -> worker::Result<Response> {
    let started_ms = runtime::now_ms();
    let request_id = new_request_id();
    let method = req.method();
    let url = req.url();
    let path = routes::path_of(&url);
    let config = config(&env);
    let config = config.as_ref();

    let error_response = |e: &error::GatewayError| {
        if routes::is_openai_path(path) {
            handlers::chat::openai_error(e)
        } else {
            handlers::error_response(e)
        }
    };
    let result = match routes::resolve(&method, path) {
        Ok(Route::Query) => {
            handlers::query::handle(req, &env, &ctx, config, &request_id, started_ms).await
        }
        Ok(Route::ChatCompletions) => {
            handlers::chat::handle(req, &env, &ctx, config, &request_id, started_ms).await
        }
        Ok(Route::Metrics) => match config {
            Ok(config) => handlers::metrics::handle(&req, &env, &ctx, config)
                .await
                .or_else(|e| error_response(&e)),
            Err(e) => error_response(e),
        },
        Ok(Route::Models) => match config {
            Ok(config) => match config.authorize(handlers::authorization(&req).as_deref()) {
                Ok(()) => handlers::models::handle(config),
                Err(e) => error_response(&e),
            },
            Err(e) => error_response(e),
        },
        Ok(Route::Index) => handlers::index::handle(),
        Err(e) => error_response(&e),
    };
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            worker::console_error!("{request_id} {method} {path}: {e}");
            handlers::error_response(&error::GatewayError::Internal(e.to_string()))?
        }
    };
    response.headers_mut().set("x-request-id", &request_id)?;
    // Only failures are logged: Workers observability already records every invocation,
    // and a console call per request costs measurable CPU (BENCHMARKS.md).
    if response.status_code() >= 500 {
        let reason = match config {
            Err(error) => error.client_message(),
            Ok(_) => String::new(),
        };
        worker::console_error!(
            "{request_id} {method} {path} {} {}ms {reason}",
            response.status_code(),
            handlers::elapsed_ms(started_ms)
        );
    }
    Ok(response)
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

    #[test]
    fn splitmix64_is_a_bijection_on_a_sample() {
        let outs: std::collections::HashSet<u64> = (0..100_000u64).map(splitmix64).collect();
        assert_eq!(outs.len(), 100_000);
        assert_ne!(splitmix64(1), 1);
    }
}

//! llm-mux: an LLM routing gateway that runs as a Cloudflare Worker.
//!
//! The request's path: `lib.rs` (route table) -> `handlers` -> `config` (auth, limits)
//! -> `scoring` (pure) -> `routing` (pure) -> `providers` (pure build/parse + one fetch)
//! -> response -> `ctx.wait_until(metrics event -> Durable Object)`.

pub mod api;
pub mod chat;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod eval;
pub mod handlers;
pub mod learned;
pub mod metrics;
pub mod pricing;
pub mod providers;
pub mod routes;
pub mod routing;
pub mod scoring;
pub mod streaming;

use worker::{event, Context, Date, Env, Request, Response};

use crate::config::Config;
use crate::routes::Route;

pub use crate::metrics::store::MetricsStore;

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

/// A random request id (16 hex digits).
fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No entropy: fall back to the clock, still unique enough for de-duplication.
        bytes = Date::now().as_millis().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started_ms = Date::now().as_millis();
    let request_id = new_request_id();
    let method = req.method().to_string();
    let path = req.path();
    let config = config(&env);
    let config = config.as_ref();

    let error_response = |e: &error::GatewayError| {
        if routes::is_openai_path(&path) {
            handlers::chat::openai_error(e)
        } else {
            handlers::error_response(e)
        }
    };
    let result = match routes::resolve(&method, &path) {
        Ok(Route::Query) => {
            handlers::query::handle(req, &env, &ctx, config, &request_id, started_ms).await
        }
        Ok(Route::ChatCompletions) => {
            handlers::chat::handle(req, &env, &ctx, config, &request_id, started_ms).await
        }
        Ok(Route::Metrics) => match config {
            Ok(config) => handlers::metrics::handle(&req, &env, config)
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
            Date::now().as_millis().saturating_sub(started_ms)
        );
    }
    Ok(response)
}

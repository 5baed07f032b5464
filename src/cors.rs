//! CORS on the wire: the preflight answer, and the core's CORS headers
//! ([`llm_mux_core::cors`]) copied onto every answer. No policy here.

use worker::Response;

use llm_mux_core::cors::CorsRequest;

use crate::pipeline::Incoming;
use crate::respond::Exchange;

/// The answer to `OPTIONS` on an API route (methods `allowed`): 204 with `Allow`, no
/// authentication; [`apply`] adds the CORS headers when the origin is allowed.
pub fn preflight(allowed: &str) -> worker::Result<Response> {
    let mut response = Response::empty()?.with_status(204);
    let allow = if allowed == "GET" {
        String::from("GET, HEAD, OPTIONS")
    } else {
        format!("{allowed}, OPTIONS")
    };
    response.headers_mut().set("allow", &allow)?;
    Ok(response)
}

/// Adds the CORS headers CORS_ALLOW_ORIGINS calls for to `response` (none when CORS is
/// off, the origin is not allowed, or the configuration is invalid).
pub fn apply(
    req: &Incoming,
    exchange: &Exchange<'_>,
    response: &mut Response,
) -> worker::Result<()> {
    let Ok(config) = exchange.config else {
        return Ok(());
    };
    // Off (the default): no header read, nothing added.
    if config.cors == llm_mux_core::cors::CorsPolicy::Off {
        return Ok(());
    }
    let headers = req.headers();
    let get = |name: &str| headers.get(name).ok().flatten();
    let (origin, request_method, request_headers) = (
        get("origin"),
        get("access-control-request-method"),
        get("access-control-request-headers"),
    );
    let request = CorsRequest {
        method: exchange.method,
        path: exchange.path,
        origin: origin.as_deref(),
        request_method: request_method.as_deref(),
        request_headers: request_headers.as_deref(),
    };
    let out = response.headers_mut();
    for (name, value) in config.cors.headers(&request) {
        if name == "vary" {
            out.append(name, &value)?;
        } else {
            out.set(name, &value)?;
        }
    }
    Ok(())
}

//! One file per endpoint; each turns a request into a response and nothing else.

pub mod index;
pub mod metrics;
pub mod query;

use worker::{Headers, Response};

use crate::error::GatewayError;

/// A JSON response with the given status; struct fields keep their declared order.
pub fn json_response<T: serde::Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(serde_json::to_vec(body)?)?
        .with_status(status)
        .with_headers(headers))
}

/// The JSON error response of a gateway error.
pub fn error_response(error: &GatewayError) -> worker::Result<Response> {
    let mut response = json_response(error.status(), &error.to_body())?;
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

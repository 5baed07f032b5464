//! `GET /`: what this service is and where its endpoints are.

use serde_json::json;
use worker::Response;

/// Describes the service.
pub fn handle() -> worker::Result<Response> {
    crate::respond::json(
        200,
        &json!({
            "service": "llm-mux",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoints": {
                "POST /query": "route a query to the small or large model and answer it",
                "GET /metrics": "cumulative usage, cost and savings",
                "POST /v1/chat/completions": "OpenAI-compatible chat completions; model \"auto\" is routed",
                "GET /v1/models": "models a client may request",
            },
        }),
    )
}

//! `GET /v1/models`: what a client may put in `model`: auto, the tiers, their models.

use serde_json::json;
use worker::Response;

use crate::config::Config;

/// The OpenAI-style model list.
pub fn handle(config: &Config) -> worker::Result<Response> {
    let mut data = vec![json!({
        "id": "auto", "object": "model", "created": 0, "owned_by": "llm-mux",
        "description": "routed by query complexity",
    })];
    for tier in &config.tiers {
        data.push(json!({
            "id": tier.name(), "object": "model", "created": 0, "owned_by": "llm-mux",
            "description": format!("tier {}: {}", tier.name(), tier.model),
        }));
    }
    for tier in &config.tiers {
        if data.iter().all(|m| m["id"] != tier.model.as_str()) {
            data.push(json!({
                "id": tier.model, "object": "model", "created": 0,
                "owned_by": tier.backend,
                "description": format!("passed through unrouted to tier {}", tier.name()),
            }));
        }
    }
    crate::respond::json(200, &json!({"object": "list", "data": data}))
}

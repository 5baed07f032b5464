//! `GET /`: what this service is and where its endpoints are.

use worker::Response;

/// The description, as JSON text (a constant: no JSON building in the worker).
const INDEX: &str = concat!(
    r#"{"service":"llm-mux","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#"","endpoints":{"#,
    r#""POST /query":"route a query to the small or large model and answer it","#,
    r#""GET /metrics":"cumulative usage, cost and savings (Prometheus text when the Accept header asks for it)","#,
    r#""GET /metrics/prometheus":"the same in the Prometheus text format","#,
    r#""GET /dashboard":"a page that draws the metrics (asks for an API key when keys are set)","#,
    r#""DELETE /metrics":"reset the metrics (LLM_MUX_ADMIN_KEY)","#,
    r#""POST /v1/chat/completions":"OpenAI-compatible chat completions; model \"auto\" is routed","#,
    r#""GET /v1/models":"models a client may request","#,
    r#""GET /v1/models/{id}":"one of them"}}"#
);

/// Describes the service.
pub fn handle() -> worker::Result<Response> {
    crate::respond::json_bytes(200, INDEX.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_json_with_every_endpoint() {
        let value: serde_json::Value = serde_json::from_str(INDEX).unwrap();
        assert_eq!(value["service"], "llm-mux");
        assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(value["endpoints"].as_object().unwrap().len(), 8);
    }
}

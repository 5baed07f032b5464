//! The models a client may put in `model`, as OpenAI model objects: `auto`, the tiers,
//! and the models the tiers serve (`GET /v1/models` lists them, `GET /v1/models/{id}`
//! returns one). It owns their ids, owners and descriptions; it must not build responses.

use serde_json::{json, Value};

use crate::config::Config;
use crate::error::GatewayError;

/// Every model object, in the order of `GET /v1/models`: auto, the tiers, then each
/// tier's model not already listed (passed through unrouted).
pub fn list(config: &Config) -> Vec<Value> {
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
    data
}

/// The body of `GET /v1/models`.
pub fn list_body(config: &Config) -> Value {
    json!({"object": "list", "data": list(config)})
}

/// The model object of `id` (the same object `GET /v1/models` lists), or
/// [`GatewayError::ModelNotFound`].
pub fn retrieve(config: &Config, id: &str) -> Result<Value, GatewayError> {
    list(config)
        .into_iter()
        .find(|m| m["id"] == id)
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: id.chars().take(100).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::openai_error_body;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn every_listed_model_is_retrieved_as_listed() {
        let c = config(&[("SMALL_MODEL", "mistral-medium-latest")]);
        let listed = list(&c);
        let ids: Vec<&str> = listed.iter().filter_map(|m| m["id"].as_str()).collect();
        assert_eq!(
            ids,
            [
                "auto",
                "small",
                "large",
                "mistral-medium-latest",
                "mistral-large-latest"
            ]
        );
        for model in &listed {
            let id = model["id"].as_str().unwrap();
            let got = retrieve(&c, id).unwrap();
            assert_eq!(&got, model);
            assert_eq!(got["object"], "model");
            assert!(got["created"].is_u64() && got["owned_by"].is_string());
        }
        assert_eq!(
            list_body(&c)["data"].as_array().unwrap().len(),
            listed.len()
        );
    }

    #[test]
    fn unknown_model_is_a_404_in_the_openai_shape() {
        let err = retrieve(&config(&[]), "gpt-4o").unwrap_err();
        assert_eq!(err.status(), 404);
        let body = openai_error_body(&err);
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o"));
        // Ids are matched exactly: no case folding, no prefix match.
        assert!(retrieve(&config(&[]), "Auto").is_err());
        assert!(retrieve(&config(&[]), "smal").is_err());
    }
}

//! The models a client may put in `model`, as OpenAI model objects: `auto`, the tiers,
//! and the models the tiers serve (`GET /v1/models` lists them, `GET /v1/models/{id}`
//! returns one). It owns their ids, owners and descriptions; it must not build responses.

use serde::Serialize;

use crate::config::Config;
use crate::error::GatewayError;

/// An OpenAI model object (derived serialisation: smaller in the wasm than building
/// `json!` maps).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelObject {
    /// What a client puts in `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix time; 0 (the gateway's models have no creation date).
    pub created: u64,
    /// `llm-mux` for auto and the tiers, the backend for a passed-through model.
    pub owned_by: &'static str,
    /// What choosing it does.
    pub description: String,
}

fn object(id: &str, owned_by: &'static str, description: String) -> ModelObject {
    ModelObject {
        id: id.to_string(),
        object: "model",
        created: 0,
        owned_by,
        description,
    }
}

/// Every model object, in the order of `GET /v1/models`: auto, the tiers, then each
/// tier's model not already listed (passed through unrouted).
pub fn list(config: &Config) -> Vec<ModelObject> {
    let mut data = vec![object(
        "auto",
        "llm-mux",
        "routed by query complexity".into(),
    )];
    for tier in &config.tiers {
        let description = format!("tier {}: {}", tier.name(), tier.model);
        data.push(object(tier.name(), "llm-mux", description));
    }
    for tier in &config.tiers {
        if data.iter().all(|m| m.id != tier.model) {
            let description = format!("passed through unrouted to tier {}", tier.name());
            data.push(object(&tier.model, tier.backend.name(), description));
        }
    }
    data
}

/// The body of `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<ModelObject>,
}

/// The body of `GET /v1/models`.
pub fn list_body(config: &Config) -> ModelList {
    ModelList {
        object: "list",
        data: list(config),
    }
}

/// The model object of `id` (the same object `GET /v1/models` lists), or
/// [`GatewayError::ModelNotFound`].
pub fn retrieve(config: &Config, id: &str) -> Result<ModelObject, GatewayError> {
    list(config)
        .into_iter()
        .find(|m| m.id == id)
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
        let listed: Vec<serde_json::Value> = list(&c)
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .collect();
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
            let got = serde_json::to_value(retrieve(&c, id).unwrap()).unwrap();
            assert_eq!(&got, model);
            assert_eq!(got["object"], "model");
            assert!(got["created"].is_u64() && got["owned_by"].is_string());
        }
        let body = serde_json::to_value(list_body(&c)).unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"].as_array().unwrap().len(), listed.len());
        assert_eq!(listed[0]["owned_by"], "llm-mux");
        assert_eq!(listed[4]["owned_by"], "mistral");
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

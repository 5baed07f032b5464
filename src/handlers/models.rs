//! `GET /v1/models` and `GET /v1/models/{id}`: what a client may put in `model` (auto, the
//! tiers, their models), as OpenAI model objects built by the core ([`llm_mux_core::models`]).

use worker::Response;

use llm_mux_core::models;

use crate::config::Config;
use crate::error::GatewayError;
use crate::respond::OrInternal;
use crate::routes;

/// The OpenAI-style model list.
pub fn handle(config: &Config) -> worker::Result<Response> {
    crate::respond::json(200, &models::list_body(config))
}

/// The model object of the id in `path` (`/v1/models/{id}`), or 404 `model_not_found`.
pub fn retrieve(config: &Config, path: &str) -> Result<Response, GatewayError> {
    let id = routes::model_id(path).unwrap_or_default();
    let model = models::retrieve(config, &id)?;
    crate::respond::json(200, &model).or_internal()
}

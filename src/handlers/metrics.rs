//! `GET /metrics`: the cumulative aggregate from the Durable Object, as a report.

use worker::{Env, Request, Response};

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::store::MetricsClient;

/// Serves the metrics report.
pub async fn handle(req: &Request, env: &Env, config: &Config) -> Result<Response, GatewayError> {
    let authorization = req.headers().get("authorization").ok().flatten();
    config.authorize(authorization.as_deref())?;
    let snapshot = async { MetricsClient::connect(env)?.snapshot().await }
        .await
        .map_err(|e| GatewayError::Internal(format!("metrics store: {e}")))?;
    let mut body = serde_json::to_value(snapshot.aggregate.report())
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    body["prices_as_of"] = serde_json::json!(config.prices.as_of);
    body["storage"] = snapshot.storage;
    super::json_response(200, &body).map_err(|e| GatewayError::Internal(e.to_string()))
}

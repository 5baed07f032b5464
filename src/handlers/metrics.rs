//! `GET /metrics`: the cumulative aggregate from the Durable Object, as a report (after
//! sending the events this isolate still holds).

use worker::{Context, Env, Response};

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::MetricsReport;
use crate::metrics_store::MetricsClient;

/// The report followed by context fields.
#[derive(serde::Serialize)]
struct MetricsBody<'a> {
    #[serde(flatten)]
    report: MetricsReport,
    /// Date of the price table used for costs.
    prices_as_of: &'a str,
    /// Storage work of the metrics object since it started.
    storage: serde_json::Value,
}

/// Serves the metrics report.
pub async fn handle(
    req: &super::Incoming,
    env: &Env,
    ctx: &Context,
    config: &Config,
) -> Result<Response, GatewayError> {
    config.authorize(super::authorization(req).as_deref())?;
    // This isolate's queued events first, so a client reads its own requests.
    super::flush_metrics(env, ctx).await;
    let snapshot = async { MetricsClient::connect(env)?.snapshot().await }
        .await
        .map_err(|e| GatewayError::Internal(format!("metrics store: {e}")))?;
    let body = MetricsBody {
        report: snapshot.aggregate.report(),
        prices_as_of: &config.prices.as_of,
        storage: snapshot.storage,
    };
    super::json_response(200, &body).map_err(|e| GatewayError::Internal(e.to_string()))
}

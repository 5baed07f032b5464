//! `GET /metrics`: the cumulative aggregate from the Durable Object, as a report (after
//! sending the events this isolate still holds).

use worker::{Context, Env, Response};

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::MetricsReport;
use crate::metrics_store::MetricsClient;
use crate::quality_store::QualityClient;
use crate::respond::{self, OrInternal};

/// The report followed by context fields.
#[derive(serde::Serialize)]
struct MetricsBody<'a> {
    #[serde(flatten)]
    report: MetricsReport,
    /// Date of the price table used for costs.
    prices_as_of: &'a str,
    /// Storage work of the metrics object since it started.
    storage: serde_json::Value,
    /// Judged shadow samples: the estimate, its interval, the threshold and the spend.
    quality: serde_json::Value,
}

/// Serves the metrics report to an authorized caller.
/// `prometheus`: the Prometheus text exposition instead of the JSON report.
pub async fn handle(
    env: &Env,
    ctx: &Context,
    config: &Config,
    prometheus: bool,
) -> Result<Response, GatewayError> {
    // This isolate's queued events and ledger settlements first, so a client reads its
    // own requests (the wait covers both kinds of send under way).
    crate::ledger_store::flush(env, ctx);
    crate::metrics_shipping::flush(env, ctx).await;
    let snapshot = async { MetricsClient::connect(env)?.snapshot().await }
        .await
        .map_err(|e| GatewayError::Internal(format!("metrics store: {e}")))?;
    let quality = async { QualityClient::connect(env)?.snapshot().await }
        .await
        .map_err(|e| GatewayError::Internal(format!("quality store: {e}")))?;
    // This isolate routes with the threshold it has just read.
    if let Some(published) = quality.published() {
        crate::quality::remember(published);
    }
    if prometheus {
        let text = llm_mux_core::metrics::expose::prometheus(
            &snapshot.aggregate,
            quality.evaluation_cost_usd(),
        );
        let mut response = Response::ok(text).or_internal()?;
        response
            .headers_mut()
            .set(
                "content-type",
                llm_mux_core::metrics::prometheus::CONTENT_TYPE,
            )
            .or_internal()?;
        return Ok(response);
    }
    // The ledger objects' spend (rate limits and budgets), when any cap is configured.
    let mut spend = Vec::new();
    for object in llm_mux_core::ledger::objects(config) {
        let found = crate::ledger_store::spend(env, &object)
            .await
            .map_err(|e| GatewayError::Internal(format!("ledger: {e}")))?;
        spend.extend(found);
    }
    let body = MetricsBody {
        report: snapshot
            .aggregate
            .report()
            .with_evaluation_cost(quality.evaluation_cost_usd())
            .with_budgets(llm_mux_core::ledger::budget_report(config, &spend)),
        prices_as_of: &config.prices.as_of,
        storage: snapshot.storage,
        quality: quality.report(),
    };
    respond::json(200, &body).or_internal()
}

/// `DELETE /metrics` (authorized with LLM_MUX_ADMIN_KEY): every total back to zero. This
/// isolate's queued events are sent first, so they are reset too; events still queued in
/// other isolates arrive after the reset and count. Logged.
pub async fn reset(env: &Env, ctx: &Context, request_id: &str) -> Result<Response, GatewayError> {
    crate::metrics_shipping::flush(env, ctx).await;
    async { MetricsClient::connect(env)?.reset().await }
        .await
        .map_err(|e| GatewayError::Internal(format!("metrics store: {e}")))?;
    worker::console_log!("{request_id} metrics reset by the admin key (DELETE /metrics)");
    respond::json(200, &serde_json::json!({"reset": true})).or_internal()
}

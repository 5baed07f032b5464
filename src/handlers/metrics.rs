//! `GET /metrics` and `GET /metrics/series`: the aggregate of every metrics shard (after
//! sending the events this isolate still holds), for a time window, as a report; and
//! requests and cost per time bucket.

use worker::{Context, Env, Response};

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::window::{self, Window};
use crate::metrics::Aggregate;
use crate::metrics_store::MetricsClient;
use crate::quality_store::QualityClient;
use crate::respond::{self, OrInternal};
use crate::runtime::{join_all, Boxed};

fn store_error(e: worker::Error) -> GatewayError {
    GatewayError::Internal(format!("metrics store: {e}"))
}

/// Every shard's snapshot of `window`, merged: counts, sums and sketches add up exactly
/// ([`Aggregate::merge`]); the storage counters are summed.
async fn merged(
    env: &Env,
    config: &Config,
    window: Window,
) -> worker::Result<(Aggregate, serde_json::Value)> {
    let reads = (0..config.metrics_shards)
        .map(|shard| -> Boxed<'_, _> {
            Box::pin(async move { MetricsClient::connect(env, shard)?.snapshot(window).await })
        })
        .collect();
    let mut aggregate = Aggregate::default();
    let mut storage = serde_json::Map::new();
    for snapshot in join_all(reads).await {
        let snapshot = snapshot?;
        aggregate.merge(&snapshot.aggregate);
        if let Some(counters) = snapshot.storage.as_object() {
            for (name, n) in counters {
                let sum = storage
                    .get(name)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
                    + n.as_u64().unwrap_or(0);
                storage.insert(name.clone(), sum.into());
            }
        }
    }
    Ok((aggregate, serde_json::Value::Object(storage)))
}

/// Serves the metrics report of the `window` query parameter to an authorized caller.
/// `prometheus`: the Prometheus text exposition (all time) instead of the JSON report.
pub async fn handle(
    env: &Env,
    ctx: &Context,
    config: &Config,
    window: Option<&str>,
    prometheus: bool,
) -> Result<Response, GatewayError> {
    let window = Window::parse(window)?;
    // This isolate's queued events and ledger settlements first, so a client reads its
    // own requests (the wait covers both kinds of send under way).
    crate::ledger_store::flush(env, ctx);
    crate::metrics_shipping::flush(env, ctx).await;
    let (aggregate, storage) = merged(env, config, window).await.map_err(store_error)?;
    let quality = async { QualityClient::connect(env)?.snapshot().await }
        .await
        .map_err(|e| GatewayError::Internal(format!("quality store: {e}")))?;
    // This isolate routes with the threshold it has just read.
    if let Some(published) = quality.published() {
        crate::quality::remember(published);
    }
    if prometheus {
        let text =
            llm_mux_core::metrics::expose::prometheus(&aggregate, quality.evaluation_cost_usd());
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
    let mut report = aggregate.report();
    report.window = window.name().to_string();
    // The evaluation spend is all-time (the quality store keeps no windows).
    if window == Window::All {
        report = report.with_evaluation_cost(quality.evaluation_cost_usd());
    }
    // The report's context fields (a `#[serde(flatten)]` wrapper would buffer the whole
    // report through serde's content type first).
    let mut body = report.with_budgets(llm_mux_core::ledger::budget_report(config, &spend));
    body.prices_as_of = config.prices.as_of.clone();
    body.storage = storage;
    body.quality = quality.report();
    respond::json(200, &body).or_internal()
}

/// `GET /metrics/series?window=W`: completed and failed requests and cost per bucket of
/// the window, from every shard.
pub async fn series(
    env: &Env,
    ctx: &Context,
    config: &Config,
    window: Option<&str>,
) -> Result<Response, GatewayError> {
    let window = Window::parse(window)?;
    crate::metrics_shipping::flush(env, ctx).await;
    let reads = (0..config.metrics_shards)
        .map(|shard| -> Boxed<'_, _> {
            Box::pin(async move { MetricsClient::connect(env, shard)?.series(window).await })
        })
        .collect();
    let mut buckets = Vec::new();
    for found in join_all(reads).await {
        buckets.extend(found.map_err(store_error)?);
    }
    let step = window.series(crate::runtime::now_ms() / 1000).1;
    let body = window::Series {
        window: window.name(),
        bucket_seconds: step,
        points: window::points(&buckets, step),
    };
    respond::json(200, &body).or_internal()
}

/// `DELETE /metrics` (authorized with LLM_MUX_ADMIN_KEY): every total of every shard back
/// to zero. This isolate's queued events are sent first, so they are reset too; events
/// still queued in other isolates arrive after the reset and count. Logged.
pub async fn reset(
    env: &Env,
    ctx: &Context,
    config: &Config,
    request_id: &str,
) -> Result<Response, GatewayError> {
    crate::metrics_shipping::flush(env, ctx).await;
    for shard in 0..config.metrics_shards {
        async { MetricsClient::connect(env, shard)?.reset().await }
            .await
            .map_err(store_error)?;
    }
    worker::console_log!("{request_id} metrics reset by the admin key (DELETE /metrics)");
    respond::json(200, &serde_json::json!({"reset": true})).or_internal()
}

//! The response cache's storage: the Workers Cache API (`caches.default`, per data
//! centre), keyed by the URLs of [`llm_mux_core::cache`]. It stores the upstream's whole
//! answer with the configured lifetime. Failures are logged and count as misses: the
//! cache never fails a request.

use worker::{Cache, Context, Response};

/// The stored upstream answer under `url`, if any.
pub async fn lookup(url: &str) -> Option<Vec<u8>> {
    let found = async {
        match Cache::default().get(url, true).await? {
            Some(mut response) => response.bytes().await.map(Some),
            None => Ok(None),
        }
    }
    .await;
    match found {
        Ok(found) => found,
        Err(e) => {
            worker::console_error!("cache: lookup failed: {e}");
            None
        }
    }
}

/// Stores `raw` under `url` for `ttl_seconds`, after the response.
pub fn store(ctx: &Context, url: &str, raw: Vec<u8>, ttl_seconds: u64) {
    let url = url.to_string();
    crate::runtime::after_response(ctx, async move {
        let stored = async {
            let mut response = Response::from_bytes(raw)?;
            response
                .headers_mut()
                .set("cache-control", &format!("max-age={ttl_seconds}"))?;
            Cache::default().put(url.as_str(), response).await
        }
        .await;
        if let Err(e) = stored {
            worker::console_error!("cache: store failed: {e}");
        }
    });
}

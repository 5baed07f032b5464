//! The one outbound call: POST JSON to an upstream with a deadline and bounded retries.
//! What to retry and how long to wait come from the pure provider code.

use futures_util::future::{select, Either};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, AbortController, AbortSignal};
use worker::{js_sys, Delay, Response};

use crate::error::GatewayError;
use crate::providers::{is_retryable, retry_delay_ms, sanitise, Provider};
use crate::runtime;

/// One upstream call.
pub struct UpstreamCall<'a> {
    /// Endpoint URL.
    pub url: &'a str,
    /// Headers, authentication included.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
    /// Deadline for the answer (its headers, when streaming), retries included.
    pub timeout_ms: u64,
    /// The key, scrubbed from anything passed on.
    pub secret: &'a str,
    /// Who classifies errors.
    pub provider: &'static dyn Provider,
}

/// A successful upstream answer.
pub enum UpstreamBody {
    /// The whole body (non-streaming).
    Whole(Vec<u8>),
    /// The response, body unread (streaming).
    Stream(Response),
}

/// Attempts per call: the first try plus one retry of a rate limit or server error.
const MAX_ATTEMPTS: u32 = 2;

/// Makes the call. Retries 429/5xx and network errors once while the deadline allows;
/// non-2xx answers come back classified as upstream errors.
pub async fn call(upstream: &UpstreamCall<'_>, stream: bool) -> Result<UpstreamBody, GatewayError> {
    let started = runtime::now_ms();
    let timeout_ms = upstream.timeout_ms;
    let mut attempt = 1;
    loop {
        let elapsed = runtime::now_ms().saturating_sub(started);
        let remaining = timeout_ms.saturating_sub(elapsed);
        if remaining == 0 {
            return Err(GatewayError::UpstreamTimeout { timeout_ms });
        }
        let outcome = attempt_once(upstream, remaining, stream).await;
        let (retryable, retry_after) = match &outcome {
            Ok(Reply::Failed {
                status,
                retry_after,
                ..
            }) => (is_retryable(*status), retry_after.clone()),
            Ok(Reply::Ok(_)) | Err(Attempt::Timeout) => (false, None),
            Err(Attempt::Network(_)) => (true, None),
        };
        if retryable && attempt < MAX_ATTEMPTS {
            let elapsed = runtime::now_ms().saturating_sub(started);
            let budget = timeout_ms.saturating_sub(elapsed);
            if let Some(delay) = retry_delay_ms(attempt, retry_after.as_deref(), budget) {
                Delay::from(std::time::Duration::from_millis(delay)).await;
                attempt += 1;
                continue;
            }
        }
        return match outcome {
            Ok(Reply::Ok(body)) => Ok(body),
            Ok(Reply::Failed {
                status,
                body,
                retry_after,
            }) => {
                Err(upstream
                    .provider
                    .classify_error(status, &body, retry_after, upstream.secret))
            }
            Err(Attempt::Timeout) => Err(GatewayError::UpstreamTimeout { timeout_ms }),
            Err(Attempt::Network(message)) => Err(GatewayError::Upstream {
                status: None,
                message: sanitise(&message, upstream.secret),
                retry_after: None,
            }),
        };
    }
}

enum Reply {
    Ok(UpstreamBody),
    Failed {
        status: u16,
        body: Vec<u8>,
        retry_after: Option<String>,
    },
}

enum Attempt {
    Timeout,
    Network(String),
}

async fn attempt_once(
    upstream: &UpstreamCall<'_>,
    timeout_ms: u64,
    stream: bool,
) -> Result<Reply, Attempt> {
    let deadline = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    if stream {
        // The deadline covers the time to the response headers only: a stream may run for
        // longer than UPSTREAM_TIMEOUT_MS, so the abort is cancelled once they arrive.
        let controller = AbortController::new().map_err(js_attempt)?;
        let exchange = async {
            let response = send(upstream, stream, &controller.signal()).await?;
            let status = response.status();
            if (200..300).contains(&status) {
                Ok(Reply::Ok(UpstreamBody::Stream(Response::from(response))))
            } else {
                failed(status, &response).await
            }
        };
        let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
        futures_util::pin_mut!(exchange);
        match select(exchange, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                controller.abort();
                Err(Attempt::Timeout)
            }
        }
    } else {
        // A whole answer: the runtime's own timeout signal bounds the call and the body
        // read (no timer of ours, no JS closure), and the body is read in one piece.
        let response = send(upstream, stream, &AbortSignal::timeout_with_u32(deadline)).await?;
        let status = response.status();
        if (200..300).contains(&status) {
            Ok(Reply::Ok(UpstreamBody::Whole(body_bytes(&response).await?)))
        } else {
            failed(status, &response).await
        }
    }
}

/// Sends the POST with `signal` and waits for the response headers.
async fn send(
    upstream: &UpstreamCall<'_>,
    stream: bool,
    signal: &AbortSignal,
) -> Result<web_sys::Response, Attempt> {
    let headers = web_sys::Headers::new().map_err(js_attempt)?;
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    for (name, value) in [("content-type", "application/json"), ("accept", accept)]
        .into_iter()
        .chain(upstream.headers.iter().map(|(n, v)| (*n, v.as_str())))
    {
        headers.set(name, value).map_err(js_attempt)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    // Bytes, not a JS string: the runtime would encode a string back to UTF-8.
    init.set_body(&js_sys::Uint8Array::from(upstream.body.as_bytes()));
    init.set_signal(Some(signal));
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(global.fetch_with_str_and_init(upstream.url, &init))
        .await
        .map_err(js_attempt)?;
    response.dyn_into().map_err(js_attempt)
}

/// The whole body of `response`.
async fn body_bytes(response: &web_sys::Response) -> Result<Vec<u8>, Attempt> {
    let promise = response.array_buffer().map_err(js_attempt)?;
    runtime::array_buffer_bytes(promise)
        .await
        .map_err(js_attempt)
}

/// A non-2xx answer, its body read for the error classification.
async fn failed(status: u16, response: &web_sys::Response) -> Result<Reply, Attempt> {
    let retry_after = response.headers().get("retry-after").ok().flatten();
    let body = body_bytes(response).await?;
    Ok(Reply::Failed {
        status,
        body,
        retry_after,
    })
}

/// A rejected fetch or body read: the deadline's abort, or a network failure.
fn js_attempt(error: JsValue) -> Attempt {
    match runtime::error_field(&error, "name").as_deref() {
        Some("TimeoutError") => Attempt::Timeout,
        _ => Attempt::Network(
            runtime::error_field(&error, "message")
                .or_else(|| error.as_string())
                .unwrap_or_else(|| "network error".into()),
        ),
    }
}

//! The worker's side of the upstream seam: one attempt over the runtime's `fetch`, a sleep
//! on the runtime's timer, and its clock.
//!
//! It owns only the JS calls: building the request, the deadline of one attempt
//! (`AbortSignal.timeout` for whole answers; an abort controller raced against a timer up
//! to the headers of a stream, kept with the stream so that the relay can end it) and
//! reading bodies within MAX_UPSTREAM_RESPONSE_BYTES (refused from `Content-Length`, or
//! counted while reading). It must not retry or classify errors: that is the core's policy
//! ([`llm_mux_core::upstream::call`]), tested natively.

use futures_util::future::{select, Either};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, AbortController, AbortSignal};
use worker::{js_sys, Delay, Response};

use llm_mux_core::upstream::{Answer, AttemptError, Reply, Upstream, UpstreamRequest};

use crate::runtime;

/// The runtime's `fetch`.
pub struct Fetch;

/// A streamed answer whose body is not read yet, and the controller that can abort it.
pub struct UpstreamStream {
    /// The response (headers read).
    pub response: Response,
    /// Aborts the upstream request (the relay's idle or duration deadline).
    pub controller: AbortController,
}

impl UpstreamStream {
    /// An answer the gateway makes itself (a cached answer as a stream), relayed like an
    /// upstream's.
    pub fn synthetic(events: String) -> worker::Result<Self> {
        Ok(Self {
            // A JS response, whose body is a stream like a fetched one's.
            response: Response::from(worker::web_sys::Response::new_with_opt_str(Some(&events))?),
            controller: AbortController::new()?,
        })
    }
}

/// Error bodies (non-2xx) are read up to this size for their message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

impl Upstream for Fetch {
    type Stream = UpstreamStream;

    async fn send(
        &self,
        request: &UpstreamRequest<'_>,
        timeout_ms: u64,
    ) -> Result<Reply<UpstreamStream>, AttemptError> {
        if request.stream {
            // The deadline covers the time to the response headers only: a stream may run
            // for longer than UPSTREAM_TIMEOUT_MS, so the abort is cancelled once they arrive.
            let controller = AbortController::new().map_err(attempt_error)?;
            let signal = controller.signal();
            let exchange = async {
                let response = match post(request, &signal).await {
                    Ok(response) => response,
                    Err(e) => return Err(Err(e)),
                };
                let status = response.status();
                if (200..300).contains(&status) {
                    Ok(Response::from(response))
                } else {
                    Err(failed(status, &response).await)
                }
            };
            let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
            futures_util::pin_mut!(exchange);
            match select(exchange, timer).await {
                Either::Left((Ok(response), _)) => Ok(Reply::Ok(Answer::Stream(UpstreamStream {
                    response,
                    controller,
                }))),
                Either::Left((Err(failed), _)) => failed,
                Either::Right(((), _)) => {
                    controller.abort();
                    Err(AttemptError::Timeout)
                }
            }
        } else {
            // A whole answer: the runtime's own timeout signal bounds the call and the body
            // read (no timer of ours, no JS closure), and the body is read in one piece.
            let deadline = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
            let response = post(request, &AbortSignal::timeout_with_u32(deadline)).await?;
            let status = response.status();
            if (200..300).contains(&status) {
                // From here the upstream has answered (and billed): a failure is Broken,
                // never a network error that could be retried.
                let body = read_capped(&response, request.max_response_bytes).await?;
                Ok(Reply::Ok(Answer::Whole(body)))
            } else {
                failed(status, &response).await
            }
        }
    }

    async fn sleep(&self, ms: u64) {
        Delay::from(std::time::Duration::from_millis(ms)).await;
    }

    fn now_ms(&self) -> u64 {
        runtime::now_ms()
    }
}

/// Sends the POST with `signal` and waits for the response headers.
async fn post(
    request: &UpstreamRequest<'_>,
    signal: &AbortSignal,
) -> Result<web_sys::Response, AttemptError> {
    let headers = web_sys::Headers::new().map_err(attempt_error)?;
    let accept = if request.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    for (name, value) in [("content-type", "application/json"), ("accept", accept)]
        .into_iter()
        .chain(request.headers.iter().map(|(n, v)| (*n, v.as_str())))
    {
        headers.set(name, value).map_err(attempt_error)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    // Bytes, not a JS string: the runtime would encode a string back to UTF-8.
    init.set_body(&js_sys::Uint8Array::from(request.body.as_slice()));
    init.set_signal(Some(signal));
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response = JsFuture::from(global.fetch_with_str_and_init(request.url, &init))
        .await
        .map_err(attempt_error)?;
    response.dyn_into().map_err(attempt_error)
}

/// The body of a 2xx answer, at most `limit` bytes: refused from `Content-Length` before
/// reading, read in one piece when the length is declared (the runtime holds a body to
/// its declared length), else counted chunk by chunk and cut at the limit.
async fn read_capped(response: &web_sys::Response, limit: usize) -> Result<Vec<u8>, AttemptError> {
    let declared = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => {
            cancel_body(response);
            Err(AttemptError::TooLarge { limit })
        }
        Some(_) => {
            let promise = response.array_buffer().map_err(|e| broken_after(&e, 0))?;
            runtime::array_buffer_bytes(promise)
                .await
                .map_err(|e| broken_after(&e, 0))
        }
        None => match runtime::read_capped(response.body(), limit).await {
            Ok(bytes) => Ok(bytes),
            Err(runtime::Capped::TooLarge) => Err(AttemptError::TooLarge { limit }),
            Err(runtime::Capped::Failed(e, received)) => Err(broken_after(&e, received)),
        },
    }
}

/// Tells the runtime the rest of a body is not wanted.
fn cancel_body(response: &web_sys::Response) {
    if let Some(body) = response.body() {
        let _ = body.cancel();
    }
}

/// A 2xx body that failed after `received_bytes`: by the deadline, or by the connection.
fn broken_after(error: &JsValue, received_bytes: usize) -> AttemptError {
    AttemptError::Broken {
        received_bytes,
        timed_out: runtime::error_field(error, "name").as_deref() == Some("TimeoutError"),
    }
}

/// A non-2xx answer, its body (up to 64 KiB) read for the error classification.
async fn failed(
    status: u16,
    response: &web_sys::Response,
) -> Result<Reply<UpstreamStream>, AttemptError> {
    let retry_after = response.headers().get("retry-after").ok().flatten();
    let body = match read_capped(response, MAX_ERROR_BODY_BYTES).await {
        Ok(body) => body,
        // An oversized error body says nothing the status does not.
        Err(AttemptError::TooLarge { .. }) => Vec::new(),
        Err(AttemptError::Broken {
            timed_out: true, ..
        }) => return Err(AttemptError::Timeout),
        Err(_) => return Err(AttemptError::Network("connection lost".into())),
    };
    Ok(Reply::Failed {
        status,
        body,
        retry_after,
    })
}

/// A rejected fetch or body read: the deadline's abort, or a network failure.
fn attempt_error(error: JsValue) -> AttemptError {
    match runtime::error_field(&error, "name").as_deref() {
        Some("TimeoutError") => AttemptError::Timeout,
        _ => AttemptError::Network(
            runtime::error_field(&error, "message")
                .or_else(|| error.as_string())
                .unwrap_or_else(|| "network error".into()),
        ),
    }
}

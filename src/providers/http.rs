//! The one outbound call: POST JSON to an upstream with a deadline and bounded retries.
//! What to retry and how long to wait come from the pure provider code.

use futures_util::future::{select, Either};
use worker::{
    AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit, Response,
};

use super::{is_retryable, retry_delay_ms, sanitise, Provider};
use crate::error::GatewayError;

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
    let started = Date::now().as_millis();
    let timeout_ms = upstream.timeout_ms;
    let mut attempt = 1;
    loop {
        let elapsed = Date::now().as_millis().saturating_sub(started);
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
            let elapsed = Date::now().as_millis().saturating_sub(started);
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
    let controller = AbortController::default();
    let signal = controller.signal();
    let network = |e: worker::Error| Attempt::Network(e.to_string());
    let exchange = async {
        let headers = Headers::new();
        headers
            .set("content-type", "application/json")
            .map_err(network)?;
        headers
            .set(
                "accept",
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .map_err(network)?;
        for (name, value) in &upstream.headers {
            headers.set(name, value).map_err(network)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(upstream.body.as_str().into()));
        let request = Request::new_with_init(upstream.url, &init).map_err(network)?;
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(network)?;
        let status = response.status_code();
        if (200..300).contains(&status) && stream {
            return Ok(Reply::Ok(UpstreamBody::Stream(response)));
        }
        let retry_after = response.headers().get("retry-after").ok().flatten();
        let body = response.bytes().await.map_err(network)?;
        if (200..300).contains(&status) {
            Ok(Reply::Ok(UpstreamBody::Whole(body)))
        } else {
            Ok(Reply::Failed {
                status,
                body,
                retry_after,
            })
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
}

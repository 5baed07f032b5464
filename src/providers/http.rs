//! The one outbound call: POST JSON to an upstream with a deadline and bounded retries.
//! Everything decided here (what to retry, how long to wait) comes from the pure provider code.

use futures_util::future::{select, Either};
use serde_json::Value;
use worker::{AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit};

use super::mistral;
use crate::config::Secret;
use crate::error::GatewayError;

/// A complete upstream answer.
#[derive(Debug)]
pub struct UpstreamReply {
    /// HTTP status.
    pub status: u16,
    /// Whole body.
    pub body: Vec<u8>,
}

/// Attempts per call: the first try plus one retry of a rate limit or server error.
const MAX_ATTEMPTS: u32 = 2;

/// POSTs `body` to `url` with the bearer key. Retries 429/5xx and network errors once
/// while the deadline allows. Non-2xx answers come back classified as upstream errors.
pub async fn post_json(
    url: &str,
    key: &Secret,
    body: &Value,
    timeout_ms: u64,
) -> Result<UpstreamReply, GatewayError> {
    let started = Date::now().as_millis();
    let payload = body.to_string();
    let mut attempt = 1;
    loop {
        let elapsed = Date::now().as_millis().saturating_sub(started);
        let remaining = timeout_ms.saturating_sub(elapsed);
        if remaining == 0 {
            return Err(GatewayError::UpstreamTimeout { timeout_ms });
        }
        let outcome = attempt_once(url, key, &payload, remaining).await;
        let (retryable, retry_after) = match &outcome {
            Ok(reply) => (mistral::is_retryable(reply.status), reply.retry_after.clone()),
            Err(Attempt::Network(_)) => (true, None),
            Err(Attempt::Timeout) => (false, None),
        };
        if retryable && attempt < MAX_ATTEMPTS {
            let elapsed = Date::now().as_millis().saturating_sub(started);
            let budget = timeout_ms.saturating_sub(elapsed);
            if let Some(delay) = mistral::retry_delay_ms(attempt, retry_after.as_deref(), budget) {
                Delay::from(std::time::Duration::from_millis(delay)).await;
                attempt += 1;
                continue;
            }
        }
        return match outcome {
            Ok(reply) if (200..300).contains(&reply.status) => Ok(UpstreamReply {
                status: reply.status,
                body: reply.body,
            }),
            Ok(reply) => Err(mistral::classify_error(
                reply.status,
                &reply.body,
                reply.retry_after,
                key.expose(),
            )),
            Err(Attempt::Timeout) => Err(GatewayError::UpstreamTimeout { timeout_ms }),
            Err(Attempt::Network(message)) => Err(GatewayError::Upstream {
                status: None,
                message: mistral::sanitise(&message, key.expose()),
                retry_after: None,
            }),
        };
    }
}

struct RawReply {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<String>,
}

enum Attempt {
    Timeout,
    Network(String),
}

async fn attempt_once(
    url: &str,
    key: &Secret,
    payload: &str,
    timeout_ms: u64,
) -> Result<RawReply, Attempt> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let headers = Headers::new();
        headers
            .set("content-type", "application/json")
            .and_then(|_| headers.set("accept", "application/json"))
            .and_then(|_| headers.set("authorization", &format!("Bearer {}", key.expose())))
            .map_err(|e| Attempt::Network(e.to_string()))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(payload.into()));
        let request =
            Request::new_with_init(url, &init).map_err(|e| Attempt::Network(e.to_string()))?;
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| Attempt::Network(e.to_string()))?;
        let status = response.status_code();
        let retry_after = response.headers().get("retry-after").ok().flatten();
        let body = response
            .bytes()
            .await
            .map_err(|e| Attempt::Network(e.to_string()))?;
        Ok(RawReply {
            status,
            body,
            retry_after,
        })
    };
    let timer = Delay::from(std::time::Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(call);
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(Attempt::Timeout)
        }
    }
}

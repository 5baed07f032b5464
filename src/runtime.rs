//! The few direct calls into the Workers runtime that the shell shares (handlers, the
//! upstream call): the clock, reading a body in one piece, and the fields of a JS error.

use worker::js_sys;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;

/// Milliseconds since the epoch (`Date.now()`, one call, no `Date` object).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The bytes an `arrayBuffer()` promise (of a request or a response) resolves to.
pub async fn array_buffer_bytes(promise: js_sys::Promise) -> Result<Vec<u8>, JsValue> {
    let buffer = JsFuture::from(promise).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Why [`read_capped`] stopped.
pub enum Capped {
    /// The body grew past the limit (the rest is cancelled).
    TooLarge,
    /// Reading failed after this many bytes.
    Failed(JsValue, usize),
}

/// Reads a body stream chunk by chunk, stopping once it would exceed `limit` bytes (for
/// bodies without a declared length: request bodies sent chunked, upstream answers).
pub async fn read_capped(
    body: Option<worker::web_sys::ReadableStream>,
    limit: usize,
) -> Result<Vec<u8>, Capped> {
    use worker::wasm_bindgen::JsCast;
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    let reader: worker::web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| Capped::Failed(e, bytes.len()))?;
        if js_sys::Reflect::get(&chunk, &JsValue::from_str("done"))
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
        {
            return Ok(bytes);
        }
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value"))
            .map_err(|e| Capped::Failed(e, bytes.len()))?;
        let piece = js_sys::Uint8Array::new(&value);
        if bytes.len() + piece.length() as usize > limit {
            let _ = reader.cancel();
            return Err(Capped::TooLarge);
        }
        bytes.extend(piece.to_vec());
    }
}

/// A string field (`name`, `message`) of a thrown JS value, if it has one.
pub fn error_field(error: &JsValue, name: &str) -> Option<String> {
    js_sys::Reflect::get(error, &JsValue::from_str(name))
        .ok()
        .and_then(|v| v.as_string())
}

/// POSTs `body` to a Durable Object at `url` and returns its response, failing unless it
/// answered 200 (`what` names the object in the error). Built on the runtime's
/// `RequestInit`: worker's own would also convert every Cloudflare `cf` option (~7 KB of
/// gzipped wasm).
pub async fn post_to_object(
    stub: &worker::Stub,
    url: &str,
    body: &str,
    what: &str,
) -> worker::Result<worker::Response> {
    let init = worker::web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&body.into());
    let request = worker::web_sys::Request::new_with_str_and_init(url, &init)?;
    let response = stub.fetch_with_request(request.into()).await?;
    match response.status_code() {
        200 => Ok(response),
        status => Err(worker::Error::RustError(format!(
            "{what} answered {status}"
        ))),
    }
}

/// Work that must finish after the response (`ctx.wait_until`), boxed: the runtime's
/// future-to-promise glue is then compiled once for every caller rather than once per
/// future type (~0.6 KB of wasm each).
pub fn after_response(
    ctx: &worker::Context,
    work: impl std::future::Future<Output = ()> + 'static,
) {
    let work: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = Box::pin(work);
    ctx.wait_until(work);
}

/// A future of the shell's, boxed (one type for every caller of [`join_all`]).
pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// Runs `futures` concurrently; their outputs, in order. (futures_util's `join_all` brings
/// an ordered-stream and a binary heap into the wasm, ~8 KB, for the same thing.)
pub async fn join_all<T>(futures: Vec<Boxed<'_, T>>) -> Vec<T> {
    use std::task::Poll;
    let mut pending: Vec<Option<Boxed<'_, T>>> = futures.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    futures_util::future::poll_fn(|cx| {
        let mut ready = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *out = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => ready = false,
                }
            }
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

//! Reads the request body, POSTs it to the upstream's chat completions endpoint, reads the
//! answer and returns it in a new response: the I/O llm-mux does on /v1/chat/completions,
//! with idiomatic workers-rs calls and nothing else.

use worker::{
    event, js_sys, Context, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result,
};

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let body = req.bytes().await?;
    // The same settings llm-mux reads, so the benchmark starts both alike.
    let upstream = env.var("MISTRAL_BASE_URL")?.to_string();
    let key = env.secret("MISTRAL_API_KEY")?.to_string();
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("authorization", &format!("Bearer {key}"))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(&body[..]).into()));
    let url = format!("{upstream}/v1/chat/completions");
    let mut answer = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send()
        .await?;
    let status = answer.status_code();
    let bytes = answer.bytes().await?;
    let mut response = Response::from_bytes(bytes)?.with_status(status);
    response
        .headers_mut()
        .set("content-type", "application/json")?;
    Ok(response)
}

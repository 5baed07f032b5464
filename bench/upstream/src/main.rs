//! A fast, dependency-free stand-in for Mistral's `POST /v1/chat/completions`, for the
//! benchmarks: fast enough (tens of thousands of requests/s, ~10 us CPU each) never to be
//! the bottleneck, so a benchmark measures the worker and not its upstream.
//!
//!   llm-mux-bench-upstream [--port 8791] [--host 127.0.0.1]
//!
//! Any POST is answered as a chat completion (so a pass-through worker that forwards its
//! own request body gets a well-formed answer too); the reported `model` echoes the
//! request's `"model"` (default `mistral-small-latest`). A body containing `"stream":true`
//! gets a Server-Sent Events stream (`data: {chunk}` lines, usage on the last content
//! chunk, then `data: [DONE]`) in chunked transfer encoding, like Mistral. GET /health
//! answers 200. HTTP/1.1 keep-alive, one thread per connection, loopback only by default.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// Pieces the streamed answer is split into (one SSE event each).
const STREAM_PIECES: [&str; 4] = ["Stub answer ", "from the bench ", "upstream, ", "streamed."];
const ANSWER: &str = "Stub answer from the bench upstream.";
/// Largest request body accepted (the gateway caps queries at 32 KB; JSON adds a little).
const MAX_BODY: usize = 1 << 20;

fn main() {
    let mut port = 8791u16;
    let mut host = String::from("127.0.0.1");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).unwrap_or(port),
            "--host" => host = args.next().unwrap_or(host),
            _ => {
                eprintln!("usage: llm-mux-bench-upstream [--port 8791] [--host 127.0.0.1]");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind((host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("bench upstream listening on http://{local}");
    let served = Arc::new(AtomicU64::new(0));
    for stream in listener.incoming().flatten() {
        let served = Arc::clone(&served);
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let _ = serve(stream, &served);
        });
    }
}

/// One request's head: what the answer depends on.
struct Head {
    method: String,
    path: String,
    content_length: usize,
    chunked: bool,
    close: bool,
}

fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut head = Head {
        method,
        path,
        content_length: 0,
        chunked: false,
        close: http10,
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => head.content_length = value.parse().unwrap_or(0),
                "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => head.close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    Ok(Some(head))
}

fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> io::Result<Vec<u8>> {
    if !head.chunked {
        let mut body = vec![0; head.content_length.min(MAX_BODY)];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?; // CRLF after the chunk
    }
}

/// The value of `"model":"..."` in a JSON body, if any (no JSON parser: the bench controls
/// the bodies, and a missing model only changes the echoed name).
fn model_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Some(at) = text.find("\"model\"") else {
        return String::from("mistral-small-latest");
    };
    let rest = text[at + 7..]
        .trim_start()
        .trim_start_matches(':')
        .trim_start();
    let Some(rest) = rest.strip_prefix('"') else {
        return String::from("mistral-small-latest");
    };
    rest.split('"')
        .next()
        .unwrap_or("mistral-small-latest")
        .to_string()
}

fn wants_stream(body: &[u8]) -> bool {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    compact.windows(13).any(|w| w == b"\"stream\":true")
}

fn serve(stream: TcpStream, served: &AtomicU64) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    while let Some(head) = read_head(&mut reader)? {
        let body = read_body(&mut reader, &head)?;
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = if head.close { "close" } else { "keep-alive" };
        if head.method == "GET" {
            let text = format!("{{\"ok\":true,\"served\":{n}}}");
            write!(
                writer,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {conn}\r\n\r\n{text}",
                text.len()
            )?;
        } else if head.method != "POST" {
            writer.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")?;
        } else {
            let model = model_of(&body);
            let prompt_tokens = body.len().div_ceil(4).max(1);
            if wants_stream(&body) {
                write_stream(&mut writer, n, &model, prompt_tokens, conn)?;
            } else {
                let text = format!(
                    "{{\"id\":\"bench-{n}\",\"object\":\"chat.completion\",\"created\":1767225600,\"model\":\"{model}\",\
\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{ANSWER}\",\"tool_calls\":null}},\"finish_reason\":\"stop\"}}],\
\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":9,\"total_tokens\":{}}}}}",
                    prompt_tokens + 9
                );
                write!(
                    writer,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {conn}\r\n\r\n{text}",
                    text.len()
                )?;
            }
        }
        writer.flush()?;
        if head.close {
            break;
        }
        let _ = head.path;
    }
    Ok(())
}

fn write_stream(
    w: &mut TcpStream,
    n: u64,
    model: &str,
    prompt_tokens: usize,
    conn: &str,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: {conn}\r\n\r\n"
    );
    let chunk = |delta: &str, tail: &str| {
        format!(
            "data: {{\"id\":\"bench-{n}\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"{model}\",\
\"choices\":[{{\"index\":0,\"delta\":{delta}{tail}}}]}}\n\n"
        )
    };
    let mut events = vec![chunk(
        "{\"role\":\"assistant\",\"content\":\"\"}",
        ",\"finish_reason\":null",
    )];
    for (i, piece) in STREAM_PIECES.iter().enumerate() {
        let delta = format!("{{\"content\":\"{piece}\"}}");
        if i + 1 == STREAM_PIECES.len() {
            let usage = format!(
                ",\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"completion_tokens\":9,\"total_tokens\":{}}}",
                prompt_tokens + 9
            );
            // Close the choice early and append usage at the top level.
            let mut e = chunk(&delta, "");
            let cut = e.len() - "}]}\n\n".len();
            e.truncate(cut);
            e.push_str(&usage);
            e.push_str("}\n\n");
            events.push(e);
        } else {
            events.push(chunk(&delta, ",\"finish_reason\":null"));
        }
    }
    events.push(String::from("data: [DONE]\n\n"));
    for e in &events {
        out.push_str(&format!("{:x}\r\n{e}\r\n", e.len()));
    }
    out.push_str("0\r\n\r\n");
    w.write_all(out.as_bytes())
}

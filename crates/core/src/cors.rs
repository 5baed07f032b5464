//! Cross-origin access (CORS) for browsers: which origins CORS_ALLOW_ORIGINS lets in, and
//! the headers of a preflight answer and of an actual response.
//!
//! It owns the policy (origin matching, the allowed methods and headers, what a page may
//! read); it must not touch a response: the shell copies [`CorsPolicy::headers`] onto
//! every answer where it sets `x-request-id`. Off by default (no CORS headers at all).

use crate::routes::{self, Route};

/// Response headers a page may read (`Access-Control-Expose-Headers`): the gateway's own
/// routing and cost headers, the request id, and what a client needs to back off.
pub const EXPOSED_HEADERS: &str = "x-llm-mux-tier, x-llm-mux-score, x-llm-mux-model, \
    x-llm-mux-cost-usd, x-llm-mux-fallback, x-llm-mux-key-id, x-llm-mux-budget, x-llm-mux-cache, \
    x-request-id, retry-after, x-should-retry";

/// Request headers always allowed in a preflight, besides the ones the browser asks for.
const ALWAYS_ALLOWED_HEADERS: &[&str] = &["authorization", "content-type"];

/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE_SECONDS: &str = "600";

/// Most request headers echoed into `Access-Control-Allow-Headers` (SDKs send ~10).
const MAX_REQUESTED_HEADERS: usize = 64;

/// The origins allowed to call the API from a browser (CORS_ALLOW_ORIGINS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers (the default): browsers refuse cross-origin reads.
    #[default]
    Off,
    /// `*`: any origin.
    AnyOrigin,
    /// These origins (`scheme://host[:port]`, lowercase).
    Origins(Vec<String>),
}

/// What of a request the CORS headers depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct CorsRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path, without query.
    pub path: &'a str,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Method` (present in a preflight).
    pub request_method: Option<&'a str>,
    /// `Access-Control-Request-Headers` (a preflight's comma-separated header names).
    pub request_headers: Option<&'a str>,
}

impl CorsPolicy {
    /// Reads CORS_ALLOW_ORIGINS: empty or unset is [`CorsPolicy::Off`], `*` any origin,
    /// else comma-separated origins such as `https://app.example.com,http://localhost:3000`.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let raw = raw.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(Self::Off);
        }
        if raw == "*" {
            return Ok(Self::AnyOrigin);
        }
        let mut origins = Vec::new();
        for item in raw.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            if item == "*" {
                return Err(String::from(
                    "\"*\" allows every origin and cannot be combined with others",
                ));
            }
            let origin = valid_origin(item).ok_or_else(|| {
                format!(
                    "expected \"*\" or comma-separated origins such as https://app.example.com \
                     (scheme://host[:port], no path), got {item:?}"
                )
            })?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        if origins.is_empty() {
            return Err(format!(
                "expected \"*\" or comma-separated origins, got {raw:?}"
            ));
        }
        Ok(Self::Origins(origins))
    }

    /// Whether a page from `origin` may call the API.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Off => false,
            Self::AnyOrigin => !origin.is_empty() && origin != "null",
            Self::Origins(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// The CORS headers of the answer to `request`: for a preflight of an API route (an
    /// `OPTIONS` with `Access-Control-Request-Method`), the allowed origin, methods and
    /// headers and their max age; for any other request, the allowed origin and the
    /// headers a page may read. Nothing when CORS is off or the origin is not allowed;
    /// `Vary: Origin` whenever CORS is on (the answer depends on the origin).
    pub fn headers(&self, request: &CorsRequest<'_>) -> Vec<(&'static str, String)> {
        if *self == Self::Off {
            return Vec::new();
        }
        let mut headers = vec![("vary", String::from("Origin"))];
        let Some(origin) = request.origin.filter(|o| self.allows(o)) else {
            return headers;
        };
        headers.push(("access-control-allow-origin", origin.to_string()));
        match preflight_methods(request) {
            Some(methods) => {
                headers.push(("access-control-allow-methods", methods));
                headers.push((
                    "access-control-allow-headers",
                    allowed_headers(request.request_headers),
                ));
                headers.push(("access-control-max-age", MAX_AGE_SECONDS.to_string()));
            }
            None => {
                headers.push(("access-control-expose-headers", EXPOSED_HEADERS.to_string()));
            }
        }
        headers
    }
}

/// The methods a preflight of `request` may announce: those of its route, when the
/// request is a preflight (`OPTIONS` with `Access-Control-Request-Method`) of an API
/// route and asks for one of them.
fn preflight_methods(request: &CorsRequest<'_>) -> Option<String> {
    if !request.method.eq_ignore_ascii_case("OPTIONS") {
        return None;
    }
    let asked = request.request_method?.trim();
    let Ok(Route::Preflight(allowed)) = routes::resolve("OPTIONS", request.path) else {
        return None;
    };
    let methods: Vec<&str> = allowed.split(',').map(str::trim).collect();
    methods
        .iter()
        .any(|m| m.eq_ignore_ascii_case(asked))
        .then(|| methods.join(", "))
}

/// `authorization, content-type` and the preflight's requested header names (valid
/// tokens only, lowercase, each once).
fn allowed_headers(requested: Option<&str>) -> String {
    let mut names: Vec<String> = ALWAYS_ALLOWED_HEADERS
        .iter()
        .map(|h| h.to_string())
        .collect();
    for name in requested
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| is_token(n))
        .take(MAX_REQUESTED_HEADERS)
    {
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

/// Whether `name` is an HTTP token (a valid header name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `item` as a lowercase origin if it is `http(s)://host[:port]` with nothing after.
fn valid_origin(item: &str) -> Option<String> {
    let lower = item.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let (host_ok, port) = match rest.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(v6) => {
            let (address, after) = v6.split_once(']')?;
            let ok = !address.is_empty()
                && address
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (ok, after)
        }
        None => {
            let end = rest.find(':').unwrap_or(rest.len());
            let host = &rest[..end];
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            (ok, &rest[end..])
        }
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    (host_ok && port_ok).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(raw: &str) -> CorsPolicy {
        CorsPolicy::parse(Some(raw)).unwrap()
    }

    fn get(headers: &[(&'static str, String)], name: &str) -> Option<String> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    fn actual<'a>(origin: Option<&'a str>) -> CorsRequest<'a> {
        CorsRequest {
            method: "POST",
            path: "/v1/chat/completions",
            origin,
            ..CorsRequest::default()
        }
    }

    fn preflight<'a>(
        path: &'a str,
        origin: &'a str,
        method: &'a str,
        headers: Option<&'a str>,
    ) -> CorsRequest<'a> {
        CorsRequest {
            method: "OPTIONS",
            path,
            origin: Some(origin),
            request_method: Some(method),
            request_headers: headers,
        }
    }

    #[test]
    fn parsing_the_variable() {
        assert_eq!(CorsPolicy::parse(None), Ok(CorsPolicy::Off));
        assert_eq!(CorsPolicy::parse(Some("  ")), Ok(CorsPolicy::Off));
        assert_eq!(policy(" * "), CorsPolicy::AnyOrigin);
        assert_eq!(
            policy("https://App.Example.com, http://localhost:3000,,https://app.example.com"),
            CorsPolicy::Origins(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        assert_eq!(
            policy("http://[::1]:8080"),
            CorsPolicy::Origins(vec!["http://[::1]:8080".into()])
        );
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "ftp://example.com",
            "https://",
            "https://exa mple.com",
            "https://example.com:",
            "https://example.com:80a",
            "https://*.example.com",
            "*, https://example.com",
            ",",
            "null",
        ] {
            let err = CorsPolicy::parse(Some(bad)).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn off_sends_nothing() {
        let headers = CorsPolicy::Off.headers(&actual(Some("https://a.example")));
        assert!(headers.is_empty());
        let headers =
            CorsPolicy::Off.headers(&preflight("/query", "https://a.example", "POST", None));
        assert!(headers.is_empty());
    }

    #[test]
    fn allowed_origin_gets_its_origin_back_and_the_exposed_headers() {
        let p = policy("https://a.example,https://b.example");
        let headers = p.headers(&actual(Some("https://b.example")));
        assert_eq!(
            get(&headers, "access-control-allow-origin").as_deref(),
            Some("https://b.example")
        );
        assert_eq!(get(&headers, "vary").as_deref(), Some("Origin"));
        let exposed = get(&headers, "access-control-expose-headers").unwrap();
        for name in ["x-llm-mux-tier", "x-request-id", "retry-after"] {
            assert!(exposed.split(", ").any(|n| n == name), "{exposed}");
        }
        assert_eq!(get(&headers, "access-control-allow-methods"), None);
    }

    #[test]
    fn other_origins_get_no_cors_headers() {
        let p = policy("https://a.example");
        for origin in [
            Some("https://evil.example"),
            Some("https://a.example.evil"),
            None,
        ] {
            let headers = p.headers(&actual(origin));
            assert!(
                headers
                    .iter()
                    .all(|(n, _)| !n.starts_with("access-control-")),
                "{origin:?}: {headers:?}"
            );
        }
        let headers = p.headers(&preflight("/query", "http://a.example", "POST", None));
        assert!(headers
            .iter()
            .all(|(n, _)| !n.starts_with("access-control-")));
    }

    #[test]
    fn any_origin_echoes_the_origin_but_not_null() {
        let p = CorsPolicy::AnyOrigin;
        let headers = p.headers(&actual(Some("http://localhost:5173")));
        assert_eq!(
            get(&headers, "access-control-allow-origin").as_deref(),
            Some("http://localhost:5173")
        );
        let headers = p.headers(&actual(Some("null")));
        assert_eq!(get(&headers, "access-control-allow-origin"), None);
    }

    #[test]
    fn preflight_of_an_api_route() {
        let p = policy("https://a.example");
        let headers = p.headers(&preflight(
            "/v1/chat/completions",
            "https://a.example",
            "POST",
            Some("Authorization, Content-Type, X-Stainless-OS, bad header, x-stainless-os"),
        ));
        assert_eq!(
            get(&headers, "access-control-allow-origin").as_deref(),
            Some("https://a.example")
        );
        let methods = get(&headers, "access-control-allow-methods").unwrap();
        assert!(methods.contains("POST"), "{methods}");
        assert_eq!(
            get(&headers, "access-control-allow-headers").as_deref(),
            Some("authorization, content-type, x-stainless-os")
        );
        assert_eq!(
            get(&headers, "access-control-max-age"),
            Some(MAX_AGE_SECONDS.to_string())
        );
        assert_eq!(get(&headers, "access-control-expose-headers"), None);

        let models = p.headers(&preflight(
            "/v1/models/auto",
            "https://a.example",
            "GET",
            None,
        ));
        let methods = get(&models, "access-control-allow-methods").unwrap();
        assert!(methods.contains("GET"), "{methods}");
        assert_eq!(
            get(&models, "access-control-allow-headers").as_deref(),
            Some("authorization, content-type")
        );
    }

    #[test]
    fn preflight_asking_for_a_method_the_route_lacks_gets_no_methods() {
        let p = policy("https://a.example");
        let headers = p.headers(&preflight("/query", "https://a.example", "PUT", None));
        assert_eq!(get(&headers, "access-control-allow-methods"), None);
        assert_eq!(get(&headers, "access-control-max-age"), None);
    }

    #[test]
    fn every_gateway_header_is_exposed() {
        // Any `x-llm-mux-*` header named in the shell or the core must be readable by a page.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for dir in [root.join("src"), root.join("../../src")] {
            let mut stack = vec![dir];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    if path.extension().is_none_or(|e| e != "rs") || path.ends_with("cors.rs") {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, _) in text.match_indices("\"x-llm-mux-") {
                        let name: String = text[i + 1..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                            .collect();
                        seen += 1;
                        assert!(
                            EXPOSED_HEADERS.split(", ").any(|h| h == name),
                            "{name} ({}) is not in EXPOSED_HEADERS",
                            path.display()
                        );
                    }
                }
            }
        }
        assert!(seen >= 4, "found only {seen} x-llm-mux-* header names");
    }
}

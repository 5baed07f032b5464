//! The route table: method and path -> endpoint, with 404 and 405 decided here.

use crate::error::GatewayError;

/// An endpoint of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: service description.
    Index,
    /// `GET /dashboard`: the metrics dashboard page (its data calls are authorized).
    Dashboard,
    /// `POST /query`.
    Query,
    /// `GET /metrics`.
    Metrics,
    /// `DELETE /metrics` (LLM_MUX_ADMIN_KEY): sets every total back to zero.
    MetricsReset,
    /// `GET /metrics/prometheus`: the Prometheus text exposition.
    MetricsPrometheus,
    /// `GET /metrics/series`: requests and cost per time bucket of a window.
    MetricsSeries,
    /// `POST /v1/chat/completions` (OpenAI-compatible).
    ChatCompletions,
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}` (the id: [`model_id`]).
    Model,
    /// `OPTIONS` on an API route (a CORS preflight), with the route's methods; answered
    /// 204 without authentication ([`crate::cors`] adds the CORS headers).
    Preflight(&'static str),
}

/// Whether errors on this path use OpenAI's error body.
pub fn is_openai_path(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// The path of a request URL as the runtime serialises it (`scheme://host[:port]/path?query`):
/// what follows the host, without query or fragment.
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let end = path.find(['?', '#']).unwrap_or(path.len());
    match &path[..end] {
        "" => "/",
        path => path,
    }
}

/// The first value of query parameter `name` in `url`, as written (not percent-decoded).
pub fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The path prefix of `GET /v1/models/{id}`.
const MODEL_PREFIX: &str = "/v1/models/";

/// The model id of a `/v1/models/{id}` path, percent-decoded (ids may hold `/` or `:`),
/// or `None` for any other path or an id that is not UTF-8.
pub fn model_id(path: &str) -> Option<String> {
    let raw = path.trim_end_matches('/').strip_prefix(MODEL_PREFIX)?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: &u8| (*b as char).to_digit(16);
        let digits = (
            bytes.get(i + 1).and_then(hex),
            bytes.get(i + 2).and_then(hex),
        );
        match (bytes[i], digits) {
            (b'%', (Some(high), Some(low))) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|id| !id.is_empty())
}

/// Resolves a method and path. HEAD is served as GET would be, without a body; OPTIONS on
/// an API route is a CORS preflight.
pub fn resolve(method: &str, path: &str) -> Result<Route, GatewayError> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (route, allowed) = match path {
        "/" => (Route::Index, "GET"),
        "/dashboard" => (Route::Dashboard, "GET"),
        "/query" => (Route::Query, "POST"),
        "/metrics" => (Route::Metrics, "GET, DELETE"),
        "/metrics/prometheus" => (Route::MetricsPrometheus, "GET"),
        "/metrics/series" => (Route::MetricsSeries, "GET"),
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        "/v1/models" => (Route::Models, "GET"),
        _ if model_id(path).is_some() => (Route::Model, "GET"),
        _ => {
            return Err(GatewayError::NotFound {
                path: path.chars().take(200).collect(),
            })
        }
    };
    if method == "OPTIONS" && !matches!(route, Route::Index | Route::Dashboard) {
        return Ok(Route::Preflight(allowed));
    }
    if route == Route::Metrics && method == "DELETE" {
        return Ok(Route::MetricsReset);
    }
    let method_ok = allowed
        .split(", ")
        .any(|m| m == method || (m == "GET" && method == "HEAD"));
    if method_ok {
        Ok(route)
    } else {
        Err(GatewayError::MethodNotAllowed {
            method: method.chars().take(20).collect(),
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_a_url() {
        assert_eq!(path_of("http://127.0.0.1:8787/query"), "/query");
        assert_eq!(
            path_of("https://gw.example.com/v1/chat/completions?x=1#f"),
            "/v1/chat/completions"
        );
        assert_eq!(path_of("https://gw.example.com"), "/");
        assert_eq!(path_of("https://gw.example.com/"), "/");
        assert_eq!(path_of("https://gw.example.com?q=1"), "/");
        assert_eq!(path_of("http://h/metrics/"), "/metrics/");
        assert_eq!(path_of("http://h/a%3Fb"), "/a%3Fb");
    }

    #[test]
    fn query_parameters_by_name() {
        let url = "http://h/metrics?window=24h&x=1#frag";
        assert_eq!(query_param(url, "window"), Some("24h"));
        assert_eq!(query_param(url, "x"), Some("1"));
        assert_eq!(query_param(url, "y"), None);
        assert_eq!(query_param("http://h/metrics", "window"), None);
        assert_eq!(query_param("http://h/m?window", "window"), Some(""));
        assert_eq!(
            query_param("http://h/m?a=1&window=7d&window=1h", "window"),
            Some("7d")
        );
        assert_eq!(query_param("http://h/m?x=1#window=1h", "window"), None);
    }

    #[test]
    fn known_routes() {
        assert_eq!(resolve("POST", "/query"), Ok(Route::Query));
        assert_eq!(resolve("POST", "/query/"), Ok(Route::Query));
        assert_eq!(resolve("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(resolve("HEAD", "/metrics"), Ok(Route::Metrics));
        assert_eq!(resolve("GET", "/"), Ok(Route::Index));
        assert_eq!(resolve("GET", "/dashboard"), Ok(Route::Dashboard));
        assert_eq!(resolve("HEAD", "/dashboard/"), Ok(Route::Dashboard));
        assert_eq!(
            resolve("POST", "/v1/chat/completions"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(resolve("GET", "/v1/models"), Ok(Route::Models));
        assert_eq!(resolve("GET", "/v1/models/auto"), Ok(Route::Model));
        assert_eq!(resolve("HEAD", "/v1/models/small/"), Ok(Route::Model));
        assert!(is_openai_path("/v1/chat/completions") && !is_openai_path("/query"));
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405() {
        assert_eq!(resolve("GET", "/nope").unwrap_err().status(), 404);
        assert_eq!(resolve("GET", "/query").unwrap_err().status(), 405);
        assert_eq!(resolve("DELETE", "/metrics"), Ok(Route::MetricsReset));
        assert_eq!(
            resolve("GET", "/metrics/prometheus"),
            Ok(Route::MetricsPrometheus)
        );
        assert_eq!(
            resolve("POST", "/metrics/prometheus").unwrap_err().status(),
            405
        );
        assert_eq!(resolve("GET", "/metrics/series"), Ok(Route::MetricsSeries));
        assert_eq!(
            resolve("DELETE", "/metrics/series").unwrap_err().status(),
            405
        );
        assert_eq!(resolve("POST", "/metrics").unwrap_err().status(), 405);
        assert_eq!(resolve("PUT", "/metrics").unwrap_err().status(), 405);
        assert_eq!(resolve("DELETE", "/query").unwrap_err().status(), 405);
        assert_eq!(resolve("HEAD", "/query").unwrap_err().status(), 405);
        assert_eq!(
            resolve("POST", "/v1/models/auto").unwrap_err().status(),
            405
        );
        assert_eq!(resolve("OPTIONS", "/").unwrap_err().status(), 405);
        assert_eq!(resolve("OPTIONS", "/dashboard").unwrap_err().status(), 405);
        assert_eq!(resolve("POST", "/dashboard").unwrap_err().status(), 405);
        assert_eq!(resolve("OPTIONS", "/nope").unwrap_err().status(), 404);
    }

    #[test]
    fn options_on_an_api_route_is_a_preflight_with_its_methods() {
        assert_eq!(resolve("OPTIONS", "/query"), Ok(Route::Preflight("POST")));
        assert_eq!(
            resolve("OPTIONS", "/v1/chat/completions/"),
            Ok(Route::Preflight("POST"))
        );
        assert_eq!(
            resolve("OPTIONS", "/metrics"),
            Ok(Route::Preflight("GET, DELETE"))
        );
        for path in ["/v1/models", "/v1/models/large"] {
            assert_eq!(
                resolve("OPTIONS", path),
                Ok(Route::Preflight("GET")),
                "{path}"
            );
        }
    }

    #[test]
    fn model_ids_of_paths() {
        assert_eq!(model_id("/v1/models/auto").as_deref(), Some("auto"));
        assert_eq!(model_id("/v1/models/small/").as_deref(), Some("small"));
        assert_eq!(
            model_id("/v1/models/accounts/f/models/llama").as_deref(),
            Some("accounts/f/models/llama")
        );
        assert_eq!(
            model_id("/v1/models/ft%3Agpt%2Fx%zz").as_deref(),
            Some("ft:gpt/x%zz")
        );
        assert_eq!(model_id("/v1/models/%ff"), None);
        assert_eq!(model_id("/v1/models/"), None);
        assert_eq!(model_id("/v1/models"), None);
        assert_eq!(model_id("/v2/models/auto"), None);
    }
}

//! The route table: method and path -> endpoint, with 404 and 405 decided here.

use crate::error::GatewayError;

/// An endpoint of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: service description.
    Index,
    /// `POST /query`.
    Query,
    /// `GET /metrics`.
    Metrics,
    /// `DELETE /metrics` (LLM_MUX_ADMIN_KEY): sets every total back to zero.
    MetricsReset,
    /// `POST /v1/chat/completions` (OpenAI-compatible).
    ChatCompletions,
    /// `GET /v1/models`.
    Models,
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

/// Resolves a method and path. HEAD is served as GET would be, without a body.
pub fn resolve(method: &str, path: &str) -> Result<Route, GatewayError> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (route, allowed) = match path {
        "/" => (Route::Index, "GET"),
        "/query" => (Route::Query, "POST"),
        "/metrics" => (Route::Metrics, "GET, DELETE"),
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        "/v1/models" => (Route::Models, "GET"),
        _ => {
            return Err(GatewayError::NotFound {
                path: path.chars().take(200).collect(),
            })
        }
    };
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
    fn known_routes() {
        assert_eq!(resolve("POST", "/query"), Ok(Route::Query));
        assert_eq!(resolve("POST", "/query/"), Ok(Route::Query));
        assert_eq!(resolve("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(resolve("HEAD", "/metrics"), Ok(Route::Metrics));
        assert_eq!(resolve("GET", "/"), Ok(Route::Index));
        assert_eq!(
            resolve("POST", "/v1/chat/completions"),
            Ok(Route::ChatCompletions)
        );
        assert_eq!(resolve("GET", "/v1/models"), Ok(Route::Models));
        assert!(is_openai_path("/v1/chat/completions") && !is_openai_path("/query"));
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_405() {
        assert_eq!(resolve("GET", "/nope").unwrap_err().status(), 404);
        assert_eq!(resolve("GET", "/query").unwrap_err().status(), 405);
        assert_eq!(resolve("DELETE", "/metrics"), Ok(Route::MetricsReset));
        assert_eq!(resolve("POST", "/metrics").unwrap_err().status(), 405);
        assert_eq!(resolve("PUT", "/metrics").unwrap_err().status(), 405);
        assert_eq!(resolve("DELETE", "/query").unwrap_err().status(), 405);
        assert_eq!(resolve("HEAD", "/query").unwrap_err().status(), 405);
    }
}

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
    /// `POST /v1/chat/completions` (OpenAI-compatible).
    ChatCompletions,
    /// `GET /v1/models`.
    Models,
}

/// Whether errors on this path use OpenAI's error body.
pub fn is_openai_path(path: &str) -> bool {
    path.starts_with("/v1/")
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
        "/metrics" => (Route::Metrics, "GET"),
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        "/v1/models" => (Route::Models, "GET"),
        _ => {
            return Err(GatewayError::NotFound {
                path: path.chars().take(200).collect(),
            })
        }
    };
    let method_ok = method == allowed || (allowed == "GET" && method == "HEAD");
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
        assert_eq!(resolve("DELETE", "/metrics").unwrap_err().status(), 405);
        assert_eq!(resolve("POST", "/metrics").unwrap_err().status(), 405);
        assert_eq!(resolve("HEAD", "/query").unwrap_err().status(), 405);
    }
}

//! Wire types of the public endpoints and the validation of what clients send.

use serde::Serialize;
use serde_json::Value;

use crate::error::GatewayError;
use crate::routing::RoutingDecision;
use crate::scoring::FeatureContribution;

/// Largest `max_tokens` accepted; larger values are surely mistakes.
pub const MAX_MAX_TOKENS: u64 = 1_000_000;

/// A validated `POST /query` request.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// The user's query, non-empty.
    pub query: String,
    /// Tier requested by the caller: `None` for auto, else a tier name (checked against the
    /// configured tiers by the handler).
    pub tier: Option<String>,
    /// Completion token limit passed to the upstream.
    pub max_tokens: Option<u32>,
    /// Stream the answer as server-sent events.
    pub stream: bool,
}

/// The request body's size against MAX_BODY_BYTES (the shell checks `Content-Length`
/// before reading, and counts while reading a body without one; this is the same rule).
pub fn check_body_size(len: usize, max_body_bytes: usize) -> Result<(), GatewayError> {
    if len > max_body_bytes {
        return Err(GatewayError::PayloadTooLarge {
            variable: "MAX_BODY_BYTES",
            limit: max_body_bytes,
            actual: Some(len),
        });
    }
    Ok(())
}

impl QueryRequest {
    /// Parses and validates a request body.
    /// The body's own size is checked before (MAX_BODY_BYTES, [`check_body_size`]).
    pub fn parse(body: &[u8], max_query_bytes: usize) -> Result<Self, GatewayError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            GatewayError::BadRequest(format!("request body is not valid JSON: {e}"))
        })?;
        let Value::Object(fields) = value else {
            return Err(GatewayError::BadRequest(String::from(
                "request body must be a JSON object like {\"query\": \"...\"}",
            )));
        };

        let query = match fields.get("query") {
            None | Some(Value::Null) => {
                return Err(GatewayError::BadRequest(String::from(
                    "missing field 'query': send {\"query\": \"your question\"}",
                )))
            }
            Some(Value::String(q)) => q,
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                    "field 'query' must be a string, got {}",
                    json_type(other)
                )))
            }
        };
        if query.trim().is_empty() {
            return Err(GatewayError::BadRequest(String::from(
                "field 'query' must not be empty",
            )));
        }
        if query.len() > max_query_bytes {
            return Err(GatewayError::PayloadTooLarge {
                variable: "MAX_QUERY_BYTES",
                limit: max_query_bytes,
                actual: Some(query.len()),
            });
        }

        let tier = match fields.get("tier") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t == "auto" => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                    "field 'tier' must be a string (\"auto\", \"small\" or \"large\"), got {}",
                    json_type(other)
                )))
            }
        };
        let stream = match fields.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                    "field 'stream' must be a boolean, got {}",
                    json_type(other)
                )))
            }
        };

        let max_tokens = match fields.get("max_tokens") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (1..=MAX_MAX_TOKENS).contains(&v) => Some(v as u32),
                _ => {
                    return Err(GatewayError::BadRequest(format!(
                    "field 'max_tokens' must be a whole number from 1 to {MAX_MAX_TOKENS}, got {n}"
                )))
                }
            },
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                    "field 'max_tokens' must be a number, got {}",
                    json_type(other)
                )))
            }
        };

        Ok(Self {
            query: query.clone(),
            tier,
            max_tokens,
            stream,
        })
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Per-request figures in the `/query` response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryMetrics {
    /// Wall time from request arrival to the upstream's full answer.
    pub latency_ms: u64,
    /// Prompt tokens, from the upstream's usage.
    pub tokens_in: u64,
    /// Completion tokens, from the upstream's usage.
    pub tokens_out: u64,
    /// Cost of this call in USD at the price table's prices.
    pub cost_usd: f64,
    /// True when the upstream sent no usage and tokens were estimated (~4 chars per token).
    pub tokens_estimated: bool,
}

/// Why a query went where it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingInfo {
    /// Scorer that produced the score (`heuristic` or `learned`).
    pub router: crate::routing::RouterKind,
    /// Complexity score in [0, 1].
    pub score: f64,
    /// Tier chosen.
    pub tier: String,
    /// Threshold in force: score >= threshold goes to the top tier.
    pub threshold: f64,
    /// What the caller asked for: `auto`, or the tier name it forced.
    pub requested_tier: String,
    /// Each feature's value and contribution to the score.
    pub features: Vec<FeatureContribution>,
    /// The tier that failed first, when this answer comes from a fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<crate::routing::FallbackNote>,
    /// The tier routing chose, when cost control moved the request off it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<crate::routing::Downgrade>,
}

impl RoutingInfo {
    /// Builds the routing block from a decision and the scorer's features.
    pub fn new(
        router: crate::routing::RouterKind,
        decision: &RoutingDecision,
        features: Vec<FeatureContribution>,
    ) -> Self {
        Self {
            router,
            score: decision.score,
            tier: decision.tier_name.clone(),
            threshold: decision.threshold,
            requested_tier: match decision.requested {
                crate::routing::Requested::Auto => String::from("auto"),
                _ => decision.tier_name.clone(),
            },
            features,
            fallback: decision.fallback.clone(),
            downgrade: decision.downgrade.clone(),
        }
    }
}

/// The `POST /query` response body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResponse {
    /// The model's answer.
    pub answer: String,
    /// `Routed to LARGE (score: 0.90)`.
    pub routing_decision: String,
    /// The configured model of the chosen tier.
    pub model_used: String,
    /// The model id the upstream reports (often a dated id).
    pub upstream_model: String,
    /// Latency, tokens and cost of this request.
    pub metrics: QueryMetrics,
    /// The routing details.
    pub routing: RoutingInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<QueryRequest, GatewayError> {
        QueryRequest::parse(body.as_bytes(), 100)
    }

    fn bad_request(body: &str) -> String {
        match parse(body) {
            Err(GatewayError::BadRequest(m)) => m,
            other => panic!("expected BadRequest for {body}, got {other:?}"),
        }
    }

    #[test]
    fn minimal_request() {
        let r = parse(r#"{"query": "hi"}"#).unwrap();
        assert_eq!(r.query, "hi");
        assert_eq!(r.tier, None);
        assert_eq!(r.max_tokens, None);
        assert!(!r.stream);
        assert_eq!(
            parse(r#"{"query": "hi", "tier": "auto"}"#).unwrap().tier,
            None
        );
    }

    #[test]
    fn full_request() {
        let r = parse(
            r#"{"query": "hi", "tier": "large", "max_tokens": 50, "stream": true, "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(r.tier.as_deref(), Some("large"));
        assert!(r.stream);
        assert_eq!(r.max_tokens, Some(50));
    }

    #[test]
    fn malformed_and_wrong_types_are_400() {
        assert!(bad_request("{").contains("not valid JSON"));
        assert!(bad_request("").contains("not valid JSON"));
        assert!(bad_request("[1]").contains("JSON object"));
        assert!(bad_request("{}").contains("missing field 'query'"));
        assert!(bad_request(r#"{"query": null}"#).contains("missing"));
        assert!(bad_request(r#"{"query": 5}"#).contains("must be a string"));
        assert!(bad_request(r#"{"query": ""}"#).contains("must not be empty"));
        assert!(bad_request(r#"{"query": "  \n "}"#).contains("must not be empty"));
        assert!(bad_request(r#"{"query": "x", "stream": "yes"}"#).contains("'stream'"));
        assert!(bad_request(r#"{"query": "x", "tier": 1}"#).contains("'tier'"));
        assert!(bad_request(r#"{"query": "x", "max_tokens": 0}"#).contains("'max_tokens'"));
        assert!(bad_request(r#"{"query": "x", "max_tokens": -3}"#).contains("'max_tokens'"));
        assert!(bad_request(r#"{"query": "x", "max_tokens": 1.5}"#).contains("'max_tokens'"));
        assert!(bad_request(r#"{"query": "x", "max_tokens": "10"}"#).contains("'max_tokens'"));
    }

    #[test]
    fn oversized_query_is_413() {
        let body = format!(r#"{{"query": "{}"}}"#, "a".repeat(101));
        assert_eq!(
            parse(&body),
            Err(GatewayError::PayloadTooLarge {
                variable: "MAX_QUERY_BYTES",
                limit: 100,
                actual: Some(101)
            })
        );
        let body = format!(r#"{{"query": "{}"}}"#, "a".repeat(100));
        assert!(parse(&body).is_ok());
        // multi-byte characters count in bytes
        let body = format!(r#"{{"query": "{}"}}"#, "é".repeat(51));
        assert!(matches!(
            parse(&body),
            Err(GatewayError::PayloadTooLarge {
                actual: Some(102),
                ..
            })
        ));
    }

    #[test]
    fn a_large_unknown_field_is_not_a_large_query() {
        // 300 KB beside a short query: the query limit does not apply to it, and the body
        // limit names its own variable.
        let body = format!(r#"{{"query": "hi", "padding": "{}"}}"#, "x".repeat(300_000));
        assert_eq!(
            QueryRequest::parse(body.as_bytes(), 100).unwrap().query,
            "hi"
        );
        let error = check_body_size(body.len(), 1024 * 1024 / 4).unwrap_err();
        assert_eq!(
            error,
            GatewayError::PayloadTooLarge {
                variable: "MAX_BODY_BYTES",
                limit: 262_144,
                actual: Some(body.len())
            }
        );
        let message = error.client_message();
        assert!(message.starts_with("request body is 300"), "{message}");
        assert!(
            message.contains("MAX_BODY_BYTES") && !message.contains("query"),
            "{message}"
        );
        assert!(check_body_size(10, 10).is_ok());
    }

    #[test]
    fn wrong_types_are_named_in_the_message() {
        assert_eq!(
            bad_request(r#"{"query": 5}"#),
            "field 'query' must be a string, got a number"
        );
        assert!(bad_request(r#"{"query": true}"#).ends_with("got a boolean"));
        assert!(bad_request(r#"{"query": ["a"]}"#).ends_with("got an array"));
        assert!(bad_request(r#"{"query": {"q": "a"}}"#).ends_with("got an object"));
        assert_eq!(
            bad_request(r#"{"query": "x", "max_tokens": "10"}"#),
            "field 'max_tokens' must be a number, got a string"
        );
        assert_eq!(
            bad_request(r#"{"query": "x", "stream": 1}"#),
            "field 'stream' must be a boolean, got a number"
        );
        assert!(bad_request(r#"{"query": "x", "tier": false}"#).ends_with("got a boolean"));
        assert_eq!(json_type(&Value::Null), "null");
        assert_eq!(json_type(&Value::String("s".into())), "a string");
    }

    #[test]
    fn max_tokens_bounds_are_inclusive() {
        let max_tokens = |n: u64| parse(&format!(r#"{{"query": "x", "max_tokens": {n}}}"#));
        assert_eq!(max_tokens(1).unwrap().max_tokens, Some(1));
        assert_eq!(
            max_tokens(MAX_MAX_TOKENS).unwrap().max_tokens,
            Some(1_000_000)
        );
        assert!(bad_request(&format!(
            r#"{{"query": "x", "max_tokens": {}}}"#,
            MAX_MAX_TOKENS + 1
        ))
        .contains("from 1 to 1000000, got 1000001"));
        assert_eq!(
            parse(r#"{"query": "x", "max_tokens": null}"#)
                .unwrap()
                .max_tokens,
            None
        );
    }

    #[test]
    fn tier_and_stream_values_pass_through() {
        let r = parse(r#"{"query": " x ", "tier": "code", "stream": false}"#).unwrap();
        assert_eq!(r.query, " x ");
        assert_eq!(r.tier.as_deref(), Some("code"));
        assert!(!r.stream);
        let r = parse(r#"{"query": "x", "tier": null, "stream": null}"#).unwrap();
        assert_eq!((r.tier, r.stream), (None, false));
    }
}

//! What one API endpoint adds to the shared pipeline: how its body is parsed, the shape of
//! its answer (whole or as the stream's last bytes) and the format of its errors.
//!
//! `POST /query` ([`QueryApi`]) and `POST /v1/chat/completions` ([`ChatApi`]) differ only
//! here; scoring, routing, the upstream call, pricing and recording are the pipeline's and
//! the same for both. An endpoint must not call the upstream, price anything or record
//! metrics: it turns what the pipeline has into bytes for its clients.

use serde_json::Value;

use crate::accounting::Accounting;
use crate::api::{check_body_size, QueryMetrics, QueryRequest, QueryResponse, RoutingInfo};
use crate::chat::ChatRequest;
use crate::config::Config;
use crate::error::{openai_error_body, GatewayError};
use crate::plan::Plan;
use crate::providers::{ChatResponse, StreamOptions};
use crate::routing::Requested;
#[cfg(test)]
use crate::streaming::StreamEnd;
use crate::streaming::{sse_data, ClientFormat, StreamSummary};

/// A request as the parse stage leaves it: the upstream request in OpenAI form, the tier
/// asked for, and the text the router scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The request to send (in OpenAI form; the provider translates it).
    pub chat: ChatRequest,
    /// `auto` or a tier the client named.
    pub requested: Requested,
    /// What the router scores.
    pub routing_text: String,
}

/// A whole answer for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct WholeAnswer {
    /// The JSON body.
    pub body: Vec<u8>,
    /// Headers beyond the routing headers every answer carries.
    pub headers: Vec<(&'static str, String)>,
}

/// An endpoint's part of the pipeline. Used as `&'static dyn Endpoint`: one copy of the
/// pipeline serves both endpoints (a generic pipeline was compiled twice, ~10 KB of wasm).
pub trait Endpoint {
    /// Parses and validates the request body.
    fn parse(&self, body: &[u8], config: &Config) -> Result<Parsed, GatewayError>;

    /// The answer to a whole upstream completion (`raw` is the upstream's body, passed
    /// through when the endpoint's shape is the upstream's).
    fn whole_answer(
        &self,
        plan: &Plan,
        completion: ChatResponse,
        raw: Vec<u8>,
        accounting: &Accounting,
        latency_ms: u64,
        now_s: u64,
    ) -> Result<WholeAnswer, GatewayError>;

    /// The event format of a streamed answer.
    fn stream_format(&self) -> ClientFormat;

    /// What the stream decoder must know of the request.
    fn stream_options(&self, parsed: &Parsed, now_s: u64) -> StreamOptions;

    /// The bytes a stream ends with, once it is settled (`settled` is its price, or why it
    /// could not be priced).
    fn stream_tail(
        &self,
        plan: &Plan,
        summary: StreamSummary,
        settled: Result<&Accounting, &GatewayError>,
        latency_ms: u64,
        incomplete: Option<&str>,
    ) -> Vec<u8>;

    /// The JSON body of an error.
    fn error_body(&self, error: &GatewayError) -> Value;

    /// The last event of a stream that failed after it began (instead of its tail): the
    /// error body as one `data:` event, without `[DONE]`, so that clients see an error
    /// rather than a silently shorter answer (the OpenAI SDKs raise on it).
    fn stream_error_event(&self, error: &GatewayError) -> Vec<u8> {
        sse_data(&self.error_body(error))
    }
}

/// `POST /query`: `{"query", "tier", "max_tokens", "stream"}` in, the gateway's answer
/// with routing and metrics out.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryApi;

/// `POST /v1/chat/completions`: the OpenAI chat API; `model: "auto"` is routed, a tier name
/// picks that tier, a configured model id passes through unrouted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatApi;

/// Resolves the request's `tier` field against the configured tiers.
pub fn requested_tier(config: &Config, tier: Option<&str>) -> Result<Requested, GatewayError> {
    match tier {
        None => Ok(Requested::Auto),
        Some(name) => config
            .tier_by_name(name)
            .map(Requested::Tier)
            .ok_or_else(|| {
                let names: Vec<String> = config
                    .tiers
                    .iter()
                    .map(|t| format!("\"{}\"", t.name()))
                    .collect();
                GatewayError::BadRequest(format!(
                    "field 'tier' must be \"auto\" or one of {}, got {name:?}",
                    names.join(", ")
                ))
            }),
    }
}

/// The `/query` answer from a priced completion.
pub fn query_response(
    plan: &Plan,
    answer: String,
    upstream_model: String,
    accounting: &Accounting,
    latency_ms: u64,
) -> QueryResponse {
    QueryResponse {
        answer,
        routing_decision: plan.decision.describe(),
        model_used: plan.model.clone(),
        upstream_model,
        metrics: QueryMetrics {
            latency_ms,
            tokens_in: accounting.tokens_in,
            tokens_out: accounting.tokens_out,
            cost_usd: accounting.cost_usd,
            tokens_estimated: accounting.estimated,
        },
        routing: RoutingInfo::new(plan.router, &plan.decision, plan.features.clone()),
    }
}

/// A `/query` stream's error event: `{"type": "error", "error": {...}}`.
fn query_error_event(error: &GatewayError) -> Value {
    let mut body = error.to_body();
    crate::object! {"type": "error", "error": body["error"].take()}
}

fn serialise<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(value).map_err(|e| GatewayError::Internal(format!("serialise answer: {e}")))
}

impl Endpoint for QueryApi {
    fn parse(&self, body: &[u8], config: &Config) -> Result<Parsed, GatewayError> {
        check_body_size(body.len(), config.max_body_bytes)?;
        let query = QueryRequest::parse(body, config.max_query_bytes)?;
        let requested = requested_tier(config, query.tier.as_deref())?;
        let chat = ChatRequest::single_turn("auto", &query.query, query.max_tokens, query.stream);
        Ok(Parsed {
            chat,
            requested,
            routing_text: query.query,
        })
    }

    fn whole_answer(
        &self,
        plan: &Plan,
        completion: ChatResponse,
        _raw: Vec<u8>,
        accounting: &Accounting,
        latency_ms: u64,
        _now_s: u64,
    ) -> Result<WholeAnswer, GatewayError> {
        let body = query_response(
            plan,
            completion.answer,
            completion.model,
            accounting,
            latency_ms,
        );
        Ok(WholeAnswer {
            body: serialise(&body)?,
            headers: Vec::new(),
        })
    }

    fn stream_format(&self) -> ClientFormat {
        ClientFormat::QueryDeltas
    }

    fn stream_options(&self, _parsed: &Parsed, now_s: u64) -> StreamOptions {
        StreamOptions {
            client_wants_usage: false,
            created: now_s,
        }
    }

    fn stream_tail(
        &self,
        plan: &Plan,
        summary: StreamSummary,
        settled: Result<&Accounting, &GatewayError>,
        latency_ms: u64,
        incomplete: Option<&str>,
    ) -> Vec<u8> {
        let last = match settled {
            Ok(accounting) => {
                let reported = summary.model.clone().unwrap_or_default();
                let mut last = serde_json::to_value(query_response(
                    plan,
                    summary.answer,
                    reported,
                    accounting,
                    latency_ms,
                ))
                .unwrap_or_default();
                last["type"] = Value::from("final");
                last["incomplete"] = Value::from(incomplete);
                last
            }
            Err(error) => query_error_event(error),
        };
        let mut bytes = sse_data(&last);
        bytes.extend_from_slice(b"data: [DONE]\n\n");
        bytes
    }

    fn error_body(&self, error: &GatewayError) -> Value {
        error.to_body()
    }

    fn stream_error_event(&self, error: &GatewayError) -> Vec<u8> {
        sse_data(&query_error_event(error))
    }
}

impl Endpoint for ChatApi {
    fn parse(&self, body: &[u8], config: &Config) -> Result<Parsed, GatewayError> {
        let chat = ChatRequest::parse(body, config.max_body_bytes)?;
        let requested = config.resolve_model(&chat.model)?;
        let routing_text = chat.routing_text(config.max_query_bytes);
        Ok(Parsed {
            chat,
            requested,
            routing_text,
        })
    }

    fn whole_answer(
        &self,
        _plan: &Plan,
        completion: ChatResponse,
        raw: Vec<u8>,
        accounting: &Accounting,
        _latency_ms: u64,
        now_s: u64,
    ) -> Result<WholeAnswer, GatewayError> {
        let mut body = completion.body;
        let body = if body.get("created").and_then(Value::as_u64).unwrap_or(0) == 0 {
            // Translated answers (Anthropic) get the gateway's clock.
            body["created"] = Value::from(now_s);
            serialise(&body)?
        } else {
            // An OpenAI-shaped answer goes back byte for byte.
            raw
        };
        Ok(WholeAnswer {
            body,
            headers: vec![(
                "x-llm-mux-cost-usd",
                crate::numfmt::fixed(accounting.cost_usd, 8),
            )],
        })
    }

    fn stream_format(&self) -> ClientFormat {
        ClientFormat::OpenAiChunks
    }

    fn stream_options(&self, parsed: &Parsed, now_s: u64) -> StreamOptions {
        StreamOptions {
            client_wants_usage: parsed.chat.wants_stream_usage(),
            created: now_s,
        }
    }

    fn stream_tail(
        &self,
        _plan: &Plan,
        _summary: StreamSummary,
        _settled: Result<&Accounting, &GatewayError>,
        _latency_ms: u64,
        _incomplete: Option<&str>,
    ) -> Vec<u8> {
        // The chunks, and the upstream's `[DONE]`, were relayed as they came.
        Vec::new()
    }

    fn error_body(&self, error: &GatewayError) -> Value {
        openai_error_body(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;
    use crate::plan::plan;
    use crate::providers::Usage;

    fn accounting() -> Accounting {
        Accounting {
            tokens_in: 3,
            tokens_out: 4,
            cost_usd: 0.000123,
            cost_if_large_usd: 0.0005,
            estimated: false,
            implausible: false,
        }
    }

    fn upstream_completion(created: u64) -> (ChatResponse, Vec<u8>) {
        let raw = format!(
            r#"{{"id":"x","object":"chat.completion","created":{created},"model":"mistral-small-2603","choices":[{{"index":0,"message":{{"role":"assistant","content":"Paris."}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":4}}}}"#
        );
        let parsed = crate::providers::parse_openai_shaped(raw.as_bytes(), "test").unwrap();
        assert_eq!(
            parsed.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        (parsed, raw.into_bytes())
    }

    #[test]
    fn query_parse_resolves_the_tier_and_scores_the_query() {
        let c = config(&[]);
        let p = QueryApi
            .parse(
                br#"{"query": "Capital of France?", "tier": "large", "max_tokens": 9}"#,
                &c,
            )
            .unwrap();
        assert_eq!(p.requested, Requested::Tier(1));
        assert_eq!(p.routing_text, "Capital of France?");
        assert_eq!(p.chat.params["max_tokens"], 9);
        let e = QueryApi
            .parse(br#"{"query": "x", "tier": "medium"}"#, &c)
            .unwrap_err();
        assert!(e.client_message().contains("\"small\", \"large\""), "{e:?}");
    }

    #[test]
    fn chat_parse_resolves_the_model() {
        let c = config(&[]);
        let body = br#"{"model": "auto", "messages": [{"role": "user", "content": "hi there"}]}"#;
        let p = ChatApi.parse(body, &c).unwrap();
        assert_eq!(p.requested, Requested::Auto);
        assert_eq!(p.routing_text, "hi there");
        let e = ChatApi
            .parse(
                br#"{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}"#,
                &c,
            )
            .unwrap_err();
        assert!(matches!(e, GatewayError::UnknownModel { .. }));
    }

    #[test]
    fn chat_answers_pass_upstream_bytes_through_and_date_translated_ones() {
        let c = config(&[]);
        let parsed = ChatApi
            .parse(
                br#"{"model": "small", "messages": [{"role": "user", "content": "x"}]}"#,
                &c,
            )
            .unwrap();
        let plan = plan(&c, &parsed.chat, parsed.requested, &parsed.routing_text).unwrap();
        let (completion, raw) = upstream_completion(1_700_000_000);
        let answer = ChatApi
            .whole_answer(&plan, completion, raw.clone(), &accounting(), 5, 42)
            .unwrap();
        assert_eq!(answer.body, raw);
        assert_eq!(
            answer.headers,
            vec![("x-llm-mux-cost-usd", "0.00012300".to_string())]
        );
        let (completion, raw) = upstream_completion(0);
        let answer = ChatApi
            .whole_answer(&plan, completion, raw, &accounting(), 5, 42)
            .unwrap();
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["created"], 42);
    }

    #[test]
    fn query_answers_and_stream_tails_have_the_gateways_shape() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let parsed = QueryApi.parse(br#"{"query": "Capital?"}"#, &c).unwrap();
        let plan = plan(&c, &parsed.chat, parsed.requested, &parsed.routing_text).unwrap();
        let (completion, raw) = upstream_completion(1);
        let answer = QueryApi
            .whole_answer(&plan, completion, raw, &accounting(), 17, 0)
            .unwrap();
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["answer"], "Paris.");
        assert_eq!(body["model_used"], "mistral-small-latest");
        assert_eq!(body["upstream_model"], "mistral-small-2603");
        assert_eq!(body["metrics"]["latency_ms"], 17);
        assert_eq!(body["metrics"]["cost_usd"], 0.000123);
        assert!(answer.headers.is_empty());

        let summary = StreamSummary {
            usage: None,
            completion_chars: 6,
            model: Some("mistral-small-2603".into()),
            saw_done: false,
            answer: "Paris.".into(),
            received_bytes: 300,
            dropped_events: 0,
            relayed_error: false,
        };
        let tail = QueryApi.stream_tail(
            &plan,
            summary.clone(),
            Ok(&accounting()),
            20,
            Some("upstream_cut"),
        );
        let text = String::from_utf8(tail).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let first = text.lines().next().unwrap().strip_prefix("data: ").unwrap();
        let last: Value = serde_json::from_str(first).unwrap();
        assert_eq!(last["type"], "final");
        assert_eq!(last["incomplete"], "upstream_cut");
        assert_eq!(last["answer"], "Paris.");
        let failed = GatewayError::Internal("no price".into());
        let text =
            String::from_utf8(QueryApi.stream_tail(&plan, summary.clone(), Err(&failed), 20, None))
                .unwrap();
        assert!(text.starts_with(r#"data: {"error":{"message":"internal error","type":"internal_error"},"type":"error"}"#), "{text}");
        assert!(ChatApi
            .stream_tail(&plan, summary, Ok(&accounting()), 20, None)
            .is_empty());
    }

    #[test]
    fn failed_streams_end_with_an_error_event_and_no_done() {
        let summary = StreamSummary {
            usage: None,
            completion_chars: 6,
            model: None,
            saw_done: false,
            answer: String::new(),
            received_bytes: 321,
            dropped_events: 0,
            relayed_error: false,
        };
        let failure = crate::streaming::stream_failure(StreamEnd::IdleTimeout, &summary).unwrap();
        assert_eq!(failure.metric_label(), "upstream_timeout");
        let chat = String::from_utf8(ChatApi.stream_error_event(&failure)).unwrap();
        let event: Value =
            serde_json::from_str(chat.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(event["error"]["code"], "upstream_timeout");
        assert!(event["error"]["message"]
            .as_str()
            .unwrap()
            .contains("STREAM_IDLE_TIMEOUT_MS"));
        assert!(!chat.contains("[DONE]"));
        let query = String::from_utf8(QueryApi.stream_error_event(&failure)).unwrap();
        let event: Value =
            serde_json::from_str(query.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(event["type"], "error");
        assert!(event["error"]["message"]
            .as_str()
            .unwrap()
            .contains("321 bytes"));
        assert!(!query.contains("[DONE]"));
        // A stream that ended well, or whose client left, is no failure.
        let done = StreamSummary {
            saw_done: true,
            usage: Some(crate::providers::Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            }),
            ..summary.clone()
        };
        assert!(crate::streaming::stream_failure(StreamEnd::UpstreamFinished, &done).is_none());
        assert!(crate::streaming::stream_failure(StreamEnd::ClientGone, &summary).is_none());
        let relayed = StreamSummary {
            relayed_error: true,
            ..summary.clone()
        };
        assert!(crate::streaming::stream_failure(StreamEnd::UpstreamFinished, &relayed).is_none());
        for (end, reason) in [
            (StreamEnd::UpstreamFailed, "upstream_cut"),
            (StreamEnd::UpstreamFinished, "upstream_cut"),
            (StreamEnd::DurationExceeded, "upstream_timeout"),
            (StreamEnd::TooLarge, "upstream_too_large"),
        ] {
            let failure = crate::streaming::stream_failure(end, &summary).unwrap();
            assert_eq!(failure.metric_label(), reason, "{end:?}");
        }
    }

    #[test]
    fn error_formats() {
        let e = GatewayError::Unauthorized;
        assert_eq!(
            QueryApi.error_body(&e)["error"]["type"],
            "authentication_error"
        );
        assert_eq!(ChatApi.error_body(&e)["error"]["code"], "invalid_api_key");
    }
}

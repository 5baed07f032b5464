//! Shadow samples: an automatically routed request that is also answered by the other tier
//! and judged, so the quality given up by routing is measured on the deployment's own
//! traffic.
//!
//! It owns what a sampled request hands over after its response ([`ShadowJob`]: the only
//! record that holds prompt and answer text, and only until it is judged), which tier
//! answers the shadow call, and what is kept once judged ([`JudgedSample`]: grades,
//! tokens and costs, never text). It must not call anything: the shell's quality store
//! makes the calls, and `crate::quality` turns samples into estimates and thresholds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chat::ChatRequest;
use crate::config::Config;
use crate::jsonread::{self, Fields};
use crate::judge::Grades;

/// A sampled request waiting for its shadow call and its judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowJob {
    /// The request's id (a sample is judged at most once per id).
    pub id: String,
    /// When the request arrived (ms since the epoch).
    pub created_ms: u64,
    /// Router that scored it (`learned`, `heuristic`).
    pub router: String,
    /// Its score.
    pub score: f64,
    /// The top tier's threshold it was routed with.
    pub threshold: f64,
    /// Index of the tier that served the client.
    pub served_tier: usize,
    /// Index of the tier that answers the shadow call.
    pub other_tier: usize,
    /// Probability with which this request was sampled (for inverse-probability weights).
    pub sample_probability: f64,
    /// The upstream request in OpenAI form (`messages` and parameters, without `model` and
    /// `stream`), replayed to the other tier.
    pub request: Map<String, Value>,
    /// The text the router scored (the judge's query).
    pub query: String,
    /// The answer the client was served.
    pub served_answer: String,
    /// Tokens and cost of the served call.
    pub served_tokens_in: u64,
    /// Completion tokens of the served call.
    pub served_tokens_out: u64,
    /// Cost of the served call.
    pub served_cost_usd: f64,
    /// Whether the served answer is shown to the judge first (drawn at random per sample).
    pub served_first: bool,
    /// The other tier's answer, once its call succeeded (a retried job only repeats the
    /// judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<OtherAnswer>,
}

/// The other tier's answer to a sampled request, and what its call cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherAnswer {
    /// The answer text (dropped with the job once judged).
    pub answer: String,
    /// Its call's tokens and cost.
    pub cost: CallCost,
}

impl<'de> Deserialize<'de> for ShadowJob {
    /// Read field by field from a `serde_json::Value` (crate::jsonread), as the derived
    /// reader did: every field but `other` required.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl ShadowJob {
    /// Reads a job as [`Serialize`] writes it.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(ShadowJob {
            id: f.string("id")?,
            created_ms: f.u64("created_ms")?,
            router: f.string("router")?,
            score: f.f64("score")?,
            threshold: f.f64("threshold")?,
            served_tier: f.usize("served_tier")?,
            other_tier: f.usize("other_tier")?,
            sample_probability: f.f64("sample_probability")?,
            request: f.object("request")?.clone(),
            query: f.string("query")?,
            served_answer: f.string("served_answer")?,
            served_tokens_in: f.u64("served_tokens_in")?,
            served_tokens_out: f.u64("served_tokens_out")?,
            served_cost_usd: f.f64("served_cost_usd")?,
            served_first: f.bool("served_first")?,
            other: f
                .opt("other")
                .map(OtherAnswer::from_value)
                .transpose()
                .map_err(|e| format!("other: {e}"))?,
        })
    }

    /// The request to replay to the other tier (never streamed).
    pub fn chat_request(&self) -> ChatRequest {
        let mut params = self.request.clone();
        let messages = match params.remove("messages") {
            Some(Value::Array(messages)) => messages,
            _ => Vec::new(),
        };
        params.remove("stream");
        params.remove("stream_options");
        ChatRequest {
            model: "shadow".into(),
            messages,
            stream: false,
            params,
        }
    }

    /// The job's request fields from the client's request.
    pub fn request_of(chat: &ChatRequest) -> Map<String, Value> {
        let mut request = chat.params.clone();
        request.insert("messages".into(), Value::Array(chat.messages.clone()));
        request
    }
}

/// The tier that answers a sample's shadow call: the top tier when a lower tier served,
/// the next plain tier below when the top tier served. `None` with a single tier.
pub fn other_tier(config: &Config, served: usize) -> Option<usize> {
    let top = config.top_tier();
    if served != top {
        return Some(top);
    }
    config.policies[..top]
        .iter()
        .rposition(|p| p.when.is_none())
}

/// What is kept of a judged sample: no text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedSample {
    /// The request's id.
    pub id: String,
    /// When the request arrived (ms since the epoch).
    pub time_ms: u64,
    /// Router that scored it.
    pub router: String,
    /// Its score.
    pub score: f64,
    /// The threshold it was routed with.
    pub threshold: f64,
    /// Name of the tier that served it.
    pub served_tier: String,
    /// Name of the tier that answered the shadow call.
    pub other_tier: String,
    /// Whether the top tier served it.
    pub served_top: bool,
    /// Grade (1-10) of the served answer.
    pub grade_served: u8,
    /// Grade (1-10) of the other tier's answer.
    pub grade_other: u8,
    /// Sampling probability (inverse-probability weight = 1 / this).
    pub sample_probability: f64,
    /// Tokens of the served call (in, out).
    pub served_tokens: [u64; 2],
    /// Tokens of the shadow call (in, out).
    pub other_tokens: [u64; 2],
    /// Tokens of the judge call (in, out).
    pub judge_tokens: [u64; 2],
    /// Cost of the served call.
    pub served_cost_usd: f64,
    /// Cost of the shadow call (evaluation spend).
    pub other_cost_usd: f64,
    /// Cost of the judge call (evaluation spend).
    pub judge_cost_usd: f64,
}

impl OtherAnswer {
    /// Reads an answer as [`Serialize`] writes it.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(OtherAnswer {
            answer: f.string("answer")?,
            cost: CallCost::from_value(f.get("cost")?).map_err(|e| format!("cost: {e}"))?,
        })
    }
}

impl<'de> Deserialize<'de> for OtherAnswer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl JudgedSample {
    /// Grade of the top tier's answer.
    pub fn grade_top(&self) -> u8 {
        if self.served_top {
            self.grade_served
        } else {
            self.grade_other
        }
    }

    /// Grade of the lower tier's answer.
    pub fn grade_lower(&self) -> u8 {
        if self.served_top {
            self.grade_other
        } else {
            self.grade_served
        }
    }

    /// What this sample cost to evaluate.
    pub fn evaluation_cost_usd(&self) -> f64 {
        self.other_cost_usd + self.judge_cost_usd
    }
}

/// Tokens and cost of one call.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CallCost {
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cost.
    pub cost_usd: f64,
}

impl CallCost {
    /// Reads a cost as [`Serialize`] writes it.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(CallCost {
            tokens_in: f.u64("tokens_in")?,
            tokens_out: f.u64("tokens_out")?,
            cost_usd: f.f64("cost_usd")?,
        })
    }
}

impl<'de> Deserialize<'de> for CallCost {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

/// The kept record of `job`, judged with `grades`, its shadow and judge calls costing
/// `other` and `judge`.
pub fn judged(
    config: &Config,
    job: &ShadowJob,
    grades: Grades,
    other: CallCost,
    judge: CallCost,
) -> JudgedSample {
    let name = |i: usize| {
        config
            .tiers
            .get(i)
            .map(|t| t.name().to_string())
            .unwrap_or_default()
    };
    JudgedSample {
        id: job.id.clone(),
        time_ms: job.created_ms,
        router: job.router.clone(),
        score: job.score,
        threshold: job.threshold,
        served_tier: name(job.served_tier),
        other_tier: name(job.other_tier),
        served_top: job.served_tier == config.top_tier(),
        grade_served: grades.served,
        grade_other: grades.other,
        sample_probability: job.sample_probability,
        served_tokens: [job.served_tokens_in, job.served_tokens_out],
        other_tokens: [other.tokens_in, other.tokens_out],
        judge_tokens: [judge.tokens_in, judge.tokens_out],
        served_cost_usd: job.served_cost_usd,
        other_cost_usd: other.cost_usd,
        judge_cost_usd: judge.cost_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;

    fn job() -> ShadowJob {
        let chat = ChatRequest::single_turn("auto", "What is 2+2?", Some(20), true);
        ShadowJob {
            id: "r1".into(),
            created_ms: 1_000,
            router: "learned".into(),
            score: 0.3,
            threshold: 0.55,
            served_tier: 0,
            other_tier: 1,
            sample_probability: 0.02,
            request: ShadowJob::request_of(&chat),
            query: "What is 2+2?".into(),
            served_answer: "4".into(),
            served_tokens_in: 5,
            served_tokens_out: 1,
            served_cost_usd: 0.001,
            served_first: false,
            other: None,
        }
    }

    #[test]
    fn the_other_tier_is_the_top_or_the_next_plain_one_below() {
        let c = config(&[]);
        assert_eq!(other_tier(&c, 0), Some(1));
        assert_eq!(other_tier(&c, 1), Some(0));
        let tiers = r#"[
          {"name": "tiny", "model": "mistral-small-latest"},
          {"name": "small", "model": "mistral-small-latest", "min_score": 0.3},
          {"name": "large", "model": "mistral-large-latest", "min_score": 0.6},
          {"name": "code", "model": "mistral-large-latest", "when": {"feature": "code", "min_value": 0.5}}
        ]"#;
        let c = config(&[("TIERS", tiers)]);
        assert_eq!(c.top_tier(), 2);
        assert_eq!(other_tier(&c, 0), Some(2));
        assert_eq!(other_tier(&c, 3), Some(2));
        assert_eq!(other_tier(&c, 2), Some(1));
    }

    #[test]
    fn a_job_replays_its_request_unstreamed() {
        let j = job();
        let r = j.chat_request();
        assert!(!r.stream);
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.params["max_tokens"], 20);
        assert!(r.params.get("messages").is_none());
        let text = serde_json::to_string(&j).unwrap();
        let back: ShadowJob = serde_json::from_str(&text).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn a_job_reads_back_with_its_other_answer_and_refuses_bad_fields() {
        let mut j = job();
        j.other = Some(OtherAnswer {
            answer: "four".into(),
            cost: CallCost {
                tokens_in: 7,
                tokens_out: 2,
                cost_usd: 0.25,
            },
        });
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(serde_json::from_str::<ShadowJob>(&text).unwrap(), j);
        let value = serde_json::to_value(&j).unwrap();
        assert_eq!(ShadowJob::from_value(&value), Ok(j.clone()));
        // `other` may be missing or null; unknown fields are ignored.
        let mut without = value.clone();
        without["other"] = Value::Null;
        without["extra"] = Value::from(1);
        let back = ShadowJob::from_value(&without).unwrap();
        assert_eq!(back.other, None);
        without.as_object_mut().unwrap().remove("other");
        assert_eq!(ShadowJob::from_value(&without).unwrap().other, None);
        // Every other field is required, with its type.
        for (field, bad) in [
            ("id", Value::from(1)),
            ("created_ms", Value::from(-1)),
            ("score", Value::from("x")),
            ("served_tier", Value::from(0.5)),
            ("request", Value::from("x")),
            ("served_first", Value::Null),
            ("other", Value::from(3)),
        ] {
            let mut broken = value.clone();
            broken[field] = bad;
            let e = ShadowJob::from_value(&broken).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
            let mut missing = value.clone();
            missing.as_object_mut().unwrap().remove(field);
            if field != "other" {
                let e = ShadowJob::from_value(&missing).unwrap_err();
                assert!(e.contains(&format!("missing field `{field}`")), "{e}");
            }
        }
        let mut bad_cost = value.clone();
        bad_cost["other"]["cost"]["tokens_out"] = Value::from("2");
        let e = serde_json::from_value::<ShadowJob>(bad_cost)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokens_out"), "{e}");
        assert!(serde_json::from_str::<ShadowJob>("[]").is_err());
        let cost = CallCost {
            tokens_in: 1,
            tokens_out: 2,
            cost_usd: 3.5,
        };
        let text = serde_json::to_string(&cost).unwrap();
        assert_eq!(serde_json::from_str::<CallCost>(&text).unwrap(), cost);
    }

    #[test]
    fn a_judged_sample_keeps_grades_and_costs_but_no_text() {
        let c = config(&[]);
        let j = job();
        let s = judged(
            &c,
            &j,
            Grades {
                served: 4,
                other: 9,
            },
            CallCost {
                tokens_in: 5,
                tokens_out: 8,
                cost_usd: 0.002,
            },
            CallCost {
                tokens_in: 40,
                tokens_out: 9,
                cost_usd: 0.0005,
            },
        );
        assert_eq!(
            (s.served_tier.as_str(), s.other_tier.as_str()),
            ("small", "large")
        );
        assert!(!s.served_top);
        assert_eq!((s.grade_top(), s.grade_lower()), (9, 4));
        assert!((s.evaluation_cost_usd() - 0.0025).abs() < 1e-12);
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("2+2") && !text.contains("\"4\""), "{text}");
    }
}

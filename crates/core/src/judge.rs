//! The judge of shadow samples: the one request that asks a model to grade two answers to
//! the same query, and the reading of its reply.
//!
//! It owns the judge's prompt (both answers in a random order per sample, to cancel the
//! judge's position bias), the reply contract (a JSON object with integer fields `score_a`
//! and `score_b`, each 1 to 10) and what counts as a failed judgement (unparseable,
//! refused, out of range). It must not call anything or keep any text: the shell sends the
//! request and drops the texts once the grades are read.

use serde_json::{Map, Value};

use crate::chat::ChatRequest;
use crate::providers::BackendKind;

/// Longest query or answer text put in a judge prompt, in characters (longer text is cut:
/// the judge's cost stays bounded, and the start of an answer carries most of its grade).
pub const MAX_JUDGED_CHARS: usize = 6_000;

/// Completion tokens the judge may spend (its reply is a small JSON object).
pub const JUDGE_MAX_TOKENS: u32 = 40;

const INSTRUCTIONS: &str = "You are an impartial judge. Grade answers A and B to the query \
from 1 (wrong or useless) to 10 (fully correct and helpful): correctness first, then \
completeness and clarity; ignore length, style and order. Reply with only \
{\"score_a\": <1-10>, \"score_b\": <1-10>}.";

/// Characters of a judge request besides the query and the two answers (the instructions
/// and the labels around the texts): what the judge reads on every sample. The simulator
/// prices the judge call from it.
pub fn overhead_chars() -> usize {
    request("", "", "", true, BackendKind::Mistral)
        .messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.chars().count())
        .sum()
}

/// Grades of the two answers of one sample, mapped back to which answer is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grades {
    /// Grade of the answer the client was served.
    pub served: u8,
    /// Grade of the other tier's answer.
    pub other: u8,
}

/// Why a judgement produced no grades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeFailure {
    /// The reply holds no JSON object with both fields.
    Unparseable,
    /// A grade is not an integer from 1 to 10.
    OutOfRange,
}

impl JudgeFailure {
    /// Low-cardinality label for /metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unparseable => "judge_unparseable",
            Self::OutOfRange => "judge_out_of_range",
        }
    }
}

fn cut(text: &str) -> &str {
    match text.char_indices().nth(MAX_JUDGED_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The judge's request: `served_first` decides whether the served answer is A (the order
/// is drawn at random per sample by the caller). `response_format: json_object` is asked
/// for where the backend supports it (Mistral and OpenAI-compatible servers).
pub fn request(
    query: &str,
    served_answer: &str,
    other_answer: &str,
    served_first: bool,
    backend: BackendKind,
) -> ChatRequest {
    let (a, b) = if served_first {
        (served_answer, other_answer)
    } else {
        (other_answer, served_answer)
    };
    let user = format!(
        "[Query]\n{}\n\n[Answer A]\n{}\n\n[Answer B]\n{}",
        cut(query),
        cut(a),
        cut(b)
    );
    let mut params = Map::new();
    params.insert("temperature".into(), Value::from(0));
    params.insert("max_tokens".into(), Value::from(JUDGE_MAX_TOKENS));
    if matches!(backend, BackendKind::Mistral | BackendKind::OpenAi) {
        params.insert(
            "response_format".into(),
            crate::object! {"type": "json_object"},
        );
    }
    ChatRequest {
        model: "judge".into(),
        messages: vec![
            crate::object! {"role": "system", "content": INSTRUCTIONS},
            crate::object! {"role": "user", "content": user},
        ],
        stream: false,
        params,
    }
}

/// Reads the judge's reply text: the first JSON object in it (a fenced block is fine)
/// with integer `score_a` and `score_b` from 1 to 10, mapped back to served and other.
pub fn read_reply(reply: &str, served_first: bool) -> Result<Grades, JudgeFailure> {
    let object = first_object(reply).ok_or(JudgeFailure::Unparseable)?;
    let grade = |name: &str| -> Result<u8, JudgeFailure> {
        let value = object.get(name).ok_or(JudgeFailure::Unparseable)?;
        let grade = value.as_u64().ok_or(match value {
            Value::Number(_) => JudgeFailure::OutOfRange,
            _ => JudgeFailure::Unparseable,
        })?;
        match u8::try_from(grade) {
            Ok(g @ 1..=10) => Ok(g),
            _ => Err(JudgeFailure::OutOfRange),
        }
    };
    let (a, b) = (grade("score_a")?, grade("score_b")?);
    Ok(if served_first {
        Grades {
            served: a,
            other: b,
        }
    } else {
        Grades {
            served: b,
            other: a,
        }
    })
}

/// The first `{...}` in `text` that parses as a JSON object.
fn first_object(text: &str) -> Option<Map<String, Value>> {
    let mut from = 0;
    while let Some(start) = text[from..].find('{').map(|i| i + from) {
        // From bytes, like every other JSON read in the worker: a `str` reader would
        // compile serde_json's whole parser a second time.
        let mut stream =
            serde_json::Deserializer::from_slice(&text.as_bytes()[start..]).into_iter::<Value>();
        if let Some(Ok(Value::Object(map))) = stream.next() {
            return Some(map);
        }
        from = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_puts_the_answers_in_the_given_order() {
        let r = request("What is 2+2?", "four", "five", true, BackendKind::Mistral);
        let user = r.messages[1]["content"].as_str().unwrap();
        assert!(user.find("four").unwrap() < user.find("five").unwrap());
        assert!(user.starts_with("[Query]\nWhat is 2+2?"));
        assert_eq!(r.params["response_format"]["type"], "json_object");
        assert_eq!(r.params["max_tokens"], JUDGE_MAX_TOKENS);
        assert!(!r.stream);
        let r = request(
            "What is 2+2?",
            "four",
            "five",
            false,
            BackendKind::Anthropic,
        );
        let user = r.messages[1]["content"].as_str().unwrap();
        assert!(user.find("five").unwrap() < user.find("four").unwrap());
        assert!(r.params.get("response_format").is_none());
    }

    #[test]
    fn the_overhead_is_the_request_without_texts() {
        let r = request("q", "a", "b", true, BackendKind::Mistral);
        let chars: usize = r
            .messages
            .iter()
            .map(|m| m["content"].as_str().unwrap().chars().count())
            .sum();
        assert_eq!(overhead_chars() + 3, chars);
        assert!(INSTRUCTIONS.starts_with("You are an impartial judge"));
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "é".repeat(MAX_JUDGED_CHARS + 50);
        let r = request(&long, &long, "x", true, BackendKind::OpenAi);
        let user = r.messages[1]["content"].as_str().unwrap();
        assert_eq!(
            user.chars().filter(|c| *c == 'é').count(),
            2 * MAX_JUDGED_CHARS
        );
    }

    #[test]
    fn replies_map_back_to_served_and_other() {
        let reply = r#"{"score_a": 9, "score_b": 4}"#;
        assert_eq!(
            read_reply(reply, true),
            Ok(Grades {
                served: 9,
                other: 4
            })
        );
        assert_eq!(
            read_reply(reply, false),
            Ok(Grades {
                served: 4,
                other: 9
            })
        );
        let fenced = "Here you go:\n```json\n{\"score_b\": 10, \"score_a\": 1}\n```";
        assert_eq!(
            read_reply(fenced, true),
            Ok(Grades {
                served: 1,
                other: 10
            })
        );
        let braces_first = "{not json} then {\"score_a\": 5, \"score_b\": 6}";
        assert_eq!(
            read_reply(braces_first, true),
            Ok(Grades {
                served: 5,
                other: 6
            })
        );
    }

    #[test]
    fn garbage_and_refusals_are_failures() {
        for reply in [
            "",
            "I cannot grade these answers.",
            "{\"score_a\": 7}",
            "{\"score_a\": \"7\", \"score_b\": 3}",
            "{\"score_a\": 7, \"score_b\": null}",
            "{ broken",
        ] {
            assert_eq!(
                read_reply(reply, true),
                Err(JudgeFailure::Unparseable),
                "{reply}"
            );
        }
        for reply in [
            "{\"score_a\": 0, \"score_b\": 3}",
            "{\"score_a\": 11, \"score_b\": 3}",
            "{\"score_a\": 7.5, \"score_b\": 3}",
            "{\"score_a\": -1, \"score_b\": 3}",
            "{\"score_a\": 300, \"score_b\": 3}",
        ] {
            assert_eq!(
                read_reply(reply, true),
                Err(JudgeFailure::OutOfRange),
                "{reply}"
            );
        }
        assert_eq!(JudgeFailure::Unparseable.label(), "judge_unparseable");
    }
}

//! Golden routing decisions: every prompt in `tests/golden/routing_golden.jsonl` must land in
//! its expected tier at `DEFAULT_THRESHOLD`, so no scorer change moves a prompt silently.

use llm_mux_core::scoring::{score, DEFAULT_THRESHOLD};
use serde::Deserialize;

#[derive(Deserialize)]
struct GoldenCase {
    prompt: String,
    expected_tier: String,
}

const GOLDEN: &str = include_str!("golden/routing_golden.jsonl");

fn tier(score: f64) -> &'static str {
    if score >= DEFAULT_THRESHOLD {
        "large"
    } else {
        "small"
    }
}

#[test]
fn golden_prompts_route_to_their_expected_tier() {
    let cases: Vec<GoldenCase> = GOLDEN
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("golden line is valid JSON"))
        .collect();
    assert!(cases.len() >= 40, "only {} golden cases", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        assert!(
            case.expected_tier == "small" || case.expected_tier == "large",
            "bad expected_tier {:?}",
            case.expected_tier
        );
        let s = score(&case.prompt);
        let got = tier(s.score);
        if got != case.expected_tier {
            let why: Vec<String> = s
                .features
                .iter()
                .filter(|f| f.contribution != 0.0)
                .map(|f| format!("{}={:+.3}", f.name, f.contribution))
                .collect();
            mismatches.push(format!(
                "expected {}, got {} (score {:.4}, threshold {}): {:?}\n    {}",
                case.expected_tier,
                got,
                s.score,
                DEFAULT_THRESHOLD,
                case.prompt,
                why.join(" ")
            ));
        }
    }
    for m in &mismatches {
        eprintln!("{m}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} golden prompts moved tier",
        mismatches.len(),
        cases.len()
    );
}

#[test]
fn golden_set_has_both_tiers() {
    let large = GOLDEN.matches("\"expected_tier\": \"large\"").count();
    let small = GOLDEN.matches("\"expected_tier\": \"small\"").count();
    assert!(large >= 15 && small >= 15, "large {large}, small {small}");
}

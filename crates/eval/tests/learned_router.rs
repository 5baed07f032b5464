//! The learned router as the worker uses it: the embedded model loads, scores are stable
//! (a snapshot of a few prompts, so retraining or a hashing change is never silent), the
//! golden prompts mostly land in their expected tier, and training is reproducible.

use llm_mux_core::learned::{self, LearnedModel, DEFAULT_THRESHOLD, PART_NAMES};
use llm_mux_eval::training::{self as train, TrainConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct GoldenCase {
    prompt: String,
    expected_tier: String,
}

const GOLDEN: &str = include_str!("../../core/tests/golden/routing_golden.jsonl");

#[test]
fn shipped_model_loads_with_its_threshold() {
    let m = learned::model().expect("embedded weights load");
    assert_eq!(m.threshold, DEFAULT_THRESHOLD);
    const { assert!(DEFAULT_THRESHOLD > 0.0 && DEFAULT_THRESHOLD < 1.0) };
}

#[test]
fn score_snapshot() {
    // Scores of the shipped model (data/learned_router.bin); update after `make train-router`.
    let cases = [
        ("hi", 0.5292),
        ("What is the capital of France?", 0.5278),
        ("Prove that there are infinitely many prime numbers.", 0.6091),
        (
            "1. Analyze the causes of the 2008 financial crisis.\n2. Compare them with the causes of the Great Depression.\n3. Explain which monetary policy responses worked and why.",
            0.6934,
        ),
    ];
    for (prompt, expected) in cases {
        let s = learned::score(prompt);
        assert!(
            (s.score - expected).abs() < 5e-4,
            "{prompt:?}: {} (snapshot {expected})",
            s.score
        );
        let names: Vec<&str> = s.features.iter().map(|f| f.name).collect();
        assert_eq!(names, PART_NAMES);
        let sum: f64 = s.features.iter().map(|f| f.contribution).sum();
        assert!((sum - s.score).abs() < 1e-9);
    }
}

#[test]
fn golden_prompts_mostly_land_in_their_tier() {
    let cases: Vec<GoldenCase> = GOLDEN
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("golden line is valid JSON"))
        .collect();
    let (mut agree, mut small_sum, mut large_sum, mut n_small, mut n_large) = (0, 0.0, 0.0, 0, 0);
    let mut misses = Vec::new();
    for c in &cases {
        let s = learned::score(&c.prompt).score;
        let tier = if s >= DEFAULT_THRESHOLD {
            "large"
        } else {
            "small"
        };
        if tier == c.expected_tier {
            agree += 1;
        } else {
            misses.push(format!(
                "{} -> {tier} ({s:.4}): {:?}",
                c.expected_tier, c.prompt
            ));
        }
        if c.expected_tier == "large" {
            large_sum += s;
            n_large += 1;
        } else {
            small_sum += s;
            n_small += 1;
        }
    }
    for m in &misses {
        eprintln!("{m}");
    }
    // The model learned from MMLU/GSM8K/MT-Bench outcomes, not from these labels: short
    // factual questions sit near the threshold (39 of 44 agree with the shipped 2^13-slot
    // model; 40 with the 2^14-slot one before it, 34 without sign-constrained heuristic
    // weights, 36 with the earlier 2^16-slot one).
    assert!(
        agree >= 39,
        "only {agree}/{} golden prompts agree",
        cases.len()
    );
    assert!(large_sum / f64::from(n_large) > small_sum / f64::from(n_small) + 0.03);
}

#[test]
fn training_is_reproducible_and_round_trips() {
    let cfg = TrainConfig {
        epochs: 3,
        dense_epochs: 3,
        ..TrainConfig::default()
    };
    let data = [
        ("Prove the theorem about primes.", 0.0, 1.0),
        ("Explain the proof of the lemma step by step.", 0.0, 1.0),
        ("hello there", 1.0, 1.0),
        ("What is the capital of Peru?", 1.0, 0.0),
    ];
    let examples: Vec<train::Example> = data
        .iter()
        .map(|&(t, s, l)| train::example(t, s, l, &cfg))
        .collect();
    let all: Vec<usize> = (0..examples.len()).collect();
    let a = train::write_model(&train::fit(&examples, &all, &cfg), 0.5);
    let b = train::write_model(&train::fit(&examples, &all, &cfg), 0.5);
    assert_eq!(a, b, "same data and settings must give the same bytes");
    let m = LearnedModel::from_bytes(&a).expect("written model loads");
    let s = m.score("Prove the lemma.");
    assert!((0.0..=1.0).contains(&s.score));
}

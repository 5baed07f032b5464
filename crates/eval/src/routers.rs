//! The two routers under evaluation, scored exactly as the worker scores them: the
//! heuristic (`llm_mux_core::scoring`) and the learned model (`llm_mux_core::learned`).
//!
//! It owns which router is which, its default threshold and its scores on a [`Dataset`]. It
//! must not re-implement scoring (a router's score here is the worker's score) or compute
//! metrics.

use llm_mux_core::learned;
use llm_mux_core::scoring::{self, Features, Weights};

use crate::data::Dataset;

/// Which router to score with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Router {
    /// `scoring::score` (hand-built features, tuned linear weights).
    Heuristic,
    /// `learned::score` (hashed n-grams + heuristic features, logistic).
    Learned,
}

impl Router {
    /// Parses `heuristic` or `learned`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "heuristic" => Ok(Router::Heuristic),
            "learned" => Ok(Router::Learned),
            other => Err(format!(
                "unknown router {other:?} (expected heuristic or learned)"
            )),
        }
    }

    /// Name as used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Router::Heuristic => "heuristic",
            Router::Learned => "learned",
        }
    }

    /// The threshold the worker ships with.
    pub fn default_threshold(self) -> f64 {
        match self {
            Router::Heuristic => scoring::DEFAULT_THRESHOLD,
            Router::Learned => learned::DEFAULT_THRESHOLD,
        }
    }

    /// Scores of the router as the worker computes them.
    pub fn scores(self, data: &Dataset) -> Vec<f64> {
        match self {
            Router::Heuristic => heuristic_scores(&data.features),
            Router::Learned => data
                .records
                .iter()
                .map(|r| learned::score(&r.prompt).score)
                .collect(),
        }
    }
}

/// The heuristic's scores (calibrated default weights, clamped like in the worker).
pub fn heuristic_scores(features: &[Features]) -> Vec<f64> {
    let w = Weights::default();
    features
        .iter()
        .map(|f| scoring::score_features(f, &w).score)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for r in [Router::Heuristic, Router::Learned] {
            assert_eq!(Router::parse(r.name()), Ok(r));
            assert!((0.0..1.0).contains(&r.default_threshold()));
        }
        assert!(Router::parse("oracle").is_err());
    }
}

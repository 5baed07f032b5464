//! Tiers and the policy that maps a complexity score (and the caller's wish) to a tier.
//!
//! Tiers are ordered from cheapest to most expensive. A *plain* tier is chosen by score:
//! the last plain tier whose `min_score` is <= the score. A *conditional* tier (`when`)
//! takes precedence when its feature condition holds, e.g. a code tier chosen when the
//! query's `code` feature is high.

use serde::Serialize;

use crate::learned;
use crate::scoring::{self, ComplexityScore, FeatureContribution};

/// Which scorer turns a query into its complexity score (`ROUTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// The transparent heuristic (`scoring`).
    Heuristic,
    /// The learned model over n-grams and the heuristic's features (`learned`).
    Learned,
}

impl RouterKind {
    /// Parses the `ROUTER` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "heuristic" => Some(Self::Heuristic),
            "learned" => Some(Self::Learned),
            _ => None,
        }
    }

    /// The `ROUTER` value naming this scorer.
    pub fn name(self) -> &'static str {
        match self {
            Self::Heuristic => "heuristic",
            Self::Learned => "learned",
        }
    }

    /// Scores a query.
    pub fn score(self, text: &str) -> ComplexityScore {
        match self {
            Self::Heuristic => scoring::score(text),
            Self::Learned => learned::score(text),
        }
    }

    /// The calibrated default threshold of this router.
    pub fn default_threshold(self) -> f64 {
        match self {
            Self::Heuristic => scoring::DEFAULT_THRESHOLD,
            Self::Learned => learned::DEFAULT_THRESHOLD,
        }
    }
}

/// The router used when `ROUTER` is unset: the one that generalises better to a kind of
/// prompt it was not fit on (`llm-mux-eval lobo`, leave-one-benchmark-out, README "Routing
/// evaluation"): held-out APGR heuristic 0.564 / 0.599 / 0.603 on GSM8K / MMLU / MT-Bench
/// vs learned 0.501 / 0.560 / 0.606. The learned router does better in distribution
/// (test APGR 0.653 vs 0.624); choose it with `ROUTER=learned` for benchmark-like traffic.
pub const DEFAULT_ROUTER: RouterKind = RouterKind::Heuristic;

/// A feature condition: the named feature's raw value must be at least `min_value`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureCondition {
    /// Feature name (one of `scoring::FEATURE_NAMES`).
    pub feature: String,
    /// Smallest raw feature value (in [0, 1]) that selects the tier.
    pub min_value: f64,
}

/// How one tier is selected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierPolicy {
    /// Tier name, e.g. `small`.
    pub name: String,
    /// Score at or above which this tier is chosen (plain tiers), or required in addition
    /// to the condition (conditional tiers).
    pub min_score: f64,
    /// Condition that makes this a conditional tier.
    pub when: Option<FeatureCondition>,
}

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requested {
    /// Let the scorer decide.
    #[default]
    Auto,
    /// A tier by index (`"tier": "small"`, `"model": "large"`).
    Tier(usize),
    /// A concrete model served by the tier at this index: passed through unrouted.
    Model(usize),
}

impl Requested {
    /// `auto`, `tier` or `model`.
    pub fn label(self) -> &'static str {
        match self {
            Requested::Auto => "auto",
            Requested::Tier(_) => "tier",
            Requested::Model(_) => "model",
        }
    }
}

/// The outcome of routing one query.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingDecision {
    /// Index of the chosen tier.
    pub tier: usize,
    /// Name of the chosen tier.
    pub tier_name: String,
    /// Complexity score of the query, in [0, 1].
    pub score: f64,
    /// The score boundary of the most expensive plain tier (the `ROUTING_THRESHOLD` of the
    /// default two-tier set-up).
    pub threshold: f64,
    /// What the caller asked for.
    pub requested: Requested,
    /// Set when the tier first chosen failed and this tier answers instead.
    pub fallback: Option<FallbackNote>,
    /// Set when cost control moved the request off the tier routing chose.
    pub downgrade: Option<Downgrade>,
}

/// A move off the routed tier before the call: a budget that only a cheaper tier fits
/// (`budget`), or a key not allowed the routed tier (`allowed_tiers`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Downgrade {
    /// Name of the tier routing chose.
    pub from: String,
    /// `budget` or `allowed_tiers`.
    pub reason: &'static str,
}

/// A fallback from one tier to the decision's tier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FallbackNote {
    /// Name of the tier that failed.
    pub from: String,
    /// Name of the tier that was tried instead.
    pub to: String,
    /// Metric label of the failure (`upstream_error`, `upstream_rate_limited`, ...).
    pub reason: &'static str,
}

impl FallbackNote {
    /// `small->large`, the `x-llm-mux-fallback` header's value and the metrics key.
    pub fn route(&self) -> String {
        format!("{}->{}", self.from, self.to)
    }
}

impl RoutingDecision {
    /// `Routed to LARGE (score: 0.90)`, with `; fell back from SMALL (upstream_error)`
    /// when the first tier failed.
    pub fn describe(&self) -> String {
        // Tier names are validated ASCII; ASCII upper-casing keeps Unicode case tables
        // out of the wasm.
        let mut text = format!(
            "Routed to {} (score: {})",
            self.tier_name.to_ascii_uppercase(),
            crate::numfmt::fixed(self.score, 2)
        );
        if let Some(d) = &self.downgrade {
            text.push_str(&format!(
                "; moved from {} ({})",
                d.from.to_ascii_uppercase(),
                d.reason
            ));
        }
        if let Some(note) = &self.fallback {
            text.push_str(&format!(
                "; fell back from {} ({})",
                note.from.to_ascii_uppercase(),
                note.reason
            ));
        }
        text
    }
}

/// Index of the most expensive plain tier: the "always large" reference.
pub fn top_tier(tiers: &[TierPolicy]) -> usize {
    tiers
        .iter()
        .rposition(|t| t.when.is_none())
        .unwrap_or(tiers.len().saturating_sub(1))
}

/// Maps a score, its features and the caller's request to a tier.
pub fn decide(
    score: f64,
    features: &[FeatureContribution],
    tiers: &[TierPolicy],
    requested: Requested,
) -> RoutingDecision {
    let top = top_tier(tiers);
    let tier = match requested {
        Requested::Tier(i) | Requested::Model(i) => i.min(tiers.len().saturating_sub(1)),
        Requested::Auto => {
            let conditional = tiers.iter().position(|t| {
                t.when.as_ref().is_some_and(|cond| {
                    score >= t.min_score
                        && features
                            .iter()
                            .any(|f| f.name == cond.feature && f.value >= cond.min_value)
                })
            });
            conditional.unwrap_or_else(|| {
                tiers
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, t)| t.when.is_none() && score >= t.min_score)
                    .map(|(i, _)| i)
                    .unwrap_or(0)
            })
        }
    };
    RoutingDecision {
        tier,
        tier_name: tiers.get(tier).map(|t| t.name.clone()).unwrap_or_default(),
        score,
        threshold: tiers.get(top).map(|t| t.min_score).unwrap_or(0.0),
        requested,
        fallback: None,
        downgrade: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_names_parse_back() {
        for kind in [RouterKind::Heuristic, RouterKind::Learned] {
            assert_eq!(RouterKind::parse(kind.name()), Some(kind));
        }
    }

    fn plain(name: &str, min_score: f64) -> TierPolicy {
        TierPolicy {
            name: name.into(),
            min_score,
            when: None,
        }
    }

    fn two_tiers(threshold: f64) -> Vec<TierPolicy> {
        vec![plain("small", 0.0), plain("large", threshold)]
    }

    fn feature(name: &'static str, value: f64) -> FeatureContribution {
        FeatureContribution {
            name,
            value,
            contribution: 0.0,
        }
    }

    #[test]
    fn threshold_is_inclusive() {
        let t = two_tiers(0.5);
        assert_eq!(decide(0.5, &[], &t, Requested::Auto).tier_name, "large");
        assert_eq!(decide(0.4999, &[], &t, Requested::Auto).tier_name, "small");
        assert_eq!(
            decide(0.0, &[], &two_tiers(0.0), Requested::Auto).tier_name,
            "large"
        );
        assert_eq!(
            decide(1.0, &[], &two_tiers(1.0), Requested::Auto).tier_name,
            "large"
        );
    }

    #[test]
    fn caller_can_force_a_tier() {
        let t = two_tiers(0.5);
        assert_eq!(decide(0.99, &[], &t, Requested::Tier(0)).tier_name, "small");
        assert_eq!(decide(0.01, &[], &t, Requested::Tier(1)).tier_name, "large");
        assert_eq!(decide(0.01, &[], &t, Requested::Model(1)).tier, 1);
    }

    #[test]
    fn three_tiers_by_score() {
        let t = vec![plain("tiny", 0.0), plain("small", 0.2), plain("large", 0.6)];
        assert_eq!(decide(0.1, &[], &t, Requested::Auto).tier_name, "tiny");
        assert_eq!(decide(0.3, &[], &t, Requested::Auto).tier_name, "small");
        assert_eq!(decide(0.7, &[], &t, Requested::Auto).tier_name, "large");
        assert_eq!(decide(0.7, &[], &t, Requested::Auto).threshold, 0.6);
    }

    #[test]
    fn conditional_tier_takes_precedence_when_its_feature_fires() {
        let mut t = two_tiers(0.5);
        t.insert(
            1,
            TierPolicy {
                name: "code".into(),
                min_score: 0.1,
                when: Some(FeatureCondition {
                    feature: "code".into(),
                    min_value: 0.5,
                }),
            },
        );
        let code = [feature("code", 0.8)];
        let prose = [feature("code", 0.1)];
        assert_eq!(decide(0.3, &code, &t, Requested::Auto).tier_name, "code");
        assert_eq!(decide(0.9, &code, &t, Requested::Auto).tier_name, "code");
        assert_eq!(decide(0.05, &code, &t, Requested::Auto).tier_name, "small");
        assert_eq!(decide(0.9, &prose, &t, Requested::Auto).tier_name, "large");
        assert_eq!(top_tier(&t), 2);
    }

    #[test]
    fn description_has_the_original_format() {
        let t = two_tiers(0.5);
        assert_eq!(
            decide(0.9, &[], &t, Requested::Auto).describe(),
            "Routed to LARGE (score: 0.90)"
        );
        assert_eq!(
            decide(0.123, &[], &t, Requested::Auto).describe(),
            "Routed to SMALL (score: 0.12)"
        );
    }

    #[test]
    fn requested_labels() {
        assert_eq!(Requested::default(), Requested::Auto);
        assert_eq!(Requested::Auto.label(), "auto");
        assert_eq!(Requested::Tier(1).label(), "tier");
        assert_eq!(Requested::Model(0).label(), "model");
    }

    #[test]
    fn forced_tiers_are_clamped_and_plain_tiers_bound_the_threshold() {
        let t = two_tiers(0.5);
        let d = decide(0.2, &[], &t, Requested::Tier(7));
        assert_eq!((d.tier, d.tier_name.as_str()), (1, "large"));
        assert_eq!((d.score, d.threshold), (0.2, 0.5));
        assert_eq!(d.requested, Requested::Tier(7));
        // no plain tier: the last one is the reference; no tier at all: index 0, no name
        let only_conditional = vec![TierPolicy {
            name: "code".into(),
            min_score: 0.3,
            when: Some(FeatureCondition {
                feature: "code".into(),
                min_value: 0.5,
            }),
        }];
        assert_eq!(top_tier(&only_conditional), 0);
        assert_eq!(top_tier(&[]), 0);
        let d = decide(0.9, &[], &[], Requested::Auto);
        assert_eq!((d.tier, d.tier_name.as_str(), d.threshold), (0, "", 0.0));
    }

    #[test]
    fn conditional_tier_needs_both_its_score_and_its_feature_at_their_minimums() {
        let t = vec![
            plain("small", 0.0),
            TierPolicy {
                name: "code".into(),
                min_score: 0.2,
                when: Some(FeatureCondition {
                    feature: "code".into(),
                    min_value: 0.5,
                }),
            },
            plain("large", 0.6),
        ];
        let code = |value| [feature("other", 1.0), feature("code", value)];
        assert_eq!(
            decide(0.2, &code(0.5), &t, Requested::Auto).tier_name,
            "code"
        );
        assert_eq!(
            decide(0.19, &code(0.5), &t, Requested::Auto).tier_name,
            "small"
        );
        assert_eq!(
            decide(0.2, &code(0.49), &t, Requested::Auto).tier_name,
            "small"
        );
        assert_eq!(
            decide(0.7, &code(0.49), &t, Requested::Auto).tier_name,
            "large"
        );
        // another feature's value does not count
        let other = [feature("other", 1.0)];
        assert_eq!(decide(0.3, &other, &t, Requested::Auto).tier_name, "small");
        // the threshold is the top plain tier's, not the conditional one's
        assert_eq!(decide(0.3, &code(0.9), &t, Requested::Auto).threshold, 0.6);
    }
}

//! Tiers and the policy that maps a complexity score (and the caller's wish) to a tier.

use serde::{Deserialize, Serialize};

/// A model tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The cheap model.
    Small,
    /// The costly model.
    Large,
}

impl Tier {
    /// Upper-case name used in the human-readable routing decision.
    pub fn shout(self) -> &'static str {
        match self {
            Tier::Small => "SMALL",
            Tier::Large => "LARGE",
        }
    }
}

/// What the caller asked for in the `tier` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestedTier {
    /// Let the scorer decide.
    #[default]
    Auto,
    /// Force the small tier.
    Small,
    /// Force the large tier.
    Large,
}

impl RequestedTier {
    /// Parses the wire value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "small" => Some(Self::Small),
            "large" => Some(Self::Large),
            _ => None,
        }
    }
}

/// The outcome of routing one query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoutingDecision {
    /// Tier chosen.
    pub tier: Tier,
    /// Complexity score of the query, in [0, 1].
    pub score: f64,
    /// Threshold in force: score >= threshold goes large.
    pub threshold: f64,
    /// What the caller asked for.
    pub requested: RequestedTier,
}

impl RoutingDecision {
    /// `Routed to LARGE (score: 0.90)`.
    pub fn describe(&self) -> String {
        format!("Routed to {} (score: {:.2})", self.tier.shout(), self.score)
    }
}

/// Maps a score and the caller's request to a tier: score >= threshold -> large.
pub fn decide(score: f64, threshold: f64, requested: RequestedTier) -> RoutingDecision {
    let tier = match requested {
        RequestedTier::Small => Tier::Small,
        RequestedTier::Large => Tier::Large,
        RequestedTier::Auto if score >= threshold => Tier::Large,
        RequestedTier::Auto => Tier::Small,
    };
    RoutingDecision {
        tier,
        score,
        threshold,
        requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_inclusive() {
        assert_eq!(decide(0.5, 0.5, RequestedTier::Auto).tier, Tier::Large);
        assert_eq!(decide(0.4999, 0.5, RequestedTier::Auto).tier, Tier::Small);
        assert_eq!(decide(0.0, 0.0, RequestedTier::Auto).tier, Tier::Large);
        assert_eq!(decide(1.0, 1.0, RequestedTier::Auto).tier, Tier::Large);
    }

    #[test]
    fn caller_can_force_a_tier() {
        assert_eq!(decide(0.99, 0.5, RequestedTier::Small).tier, Tier::Small);
        assert_eq!(decide(0.01, 0.5, RequestedTier::Large).tier, Tier::Large);
    }

    #[test]
    fn description_has_the_original_format() {
        assert_eq!(
            decide(0.9, 0.5, RequestedTier::Auto).describe(),
            "Routed to LARGE (score: 0.90)"
        );
        assert_eq!(
            decide(0.123, 0.5, RequestedTier::Auto).describe(),
            "Routed to SMALL (score: 0.12)"
        );
    }

    #[test]
    fn requested_tier_parses_only_known_values() {
        assert_eq!(RequestedTier::parse("auto"), Some(RequestedTier::Auto));
        assert_eq!(RequestedTier::parse("LARGE"), None);
        assert_eq!(RequestedTier::parse(""), None);
    }
}

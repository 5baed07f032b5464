//! FALLBACK: which tiers a request goes to when its tier's backend fails.
//!
//! Unset: "the other tier" (a lower tier falls back to the top tier, the top tier to the
//! plain tier below it). `none` (or `off`): no fallback. Otherwise a comma-separated order
//! of tier names: a failed tier falls back to the first listed tier not tried yet, then the
//! next, so that every request makes at most one call sequence per listed tier.

use super::vars::invalid;
use super::TierConfig;
use crate::error::GatewayError;

/// The configured fallback order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The other tier (unset).
    OtherTier,
    /// No fallback.
    Off,
    /// These tiers (indexes), in this order.
    Order(Vec<usize>),
}

/// Reads FALLBACK against the configured tiers.
pub(super) fn parse(raw: Option<String>, tiers: &[TierConfig]) -> Result<Fallback, GatewayError> {
    let Some(raw) = raw.filter(|v| !v.trim().is_empty()) else {
        return Ok(Fallback::OtherTier);
    };
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("none") || raw.eq_ignore_ascii_case("off") {
        return Ok(Fallback::Off);
    }
    let mut order = Vec::new();
    for name in raw.split(',').map(str::trim) {
        let Some(index) = tiers.iter().position(|t| t.name() == name) else {
            let names: Vec<&str> = tiers.iter().map(TierConfig::name).collect();
            return Err(invalid(
                "FALLBACK",
                format!(
                    "unknown tier {name:?}: expected 'none' or tier names from {} separated by commas",
                    names.join(", ")
                ),
            ));
        };
        if order.contains(&index) {
            return Err(invalid(
                "FALLBACK",
                format!("tier {name:?} is listed twice"),
            ));
        }
        order.push(index);
    }
    Ok(Fallback::Order(order))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, invalid_message, invalid_variable};
    use super::*;

    #[test]
    fn fallback_orders_are_read_and_checked() {
        assert_eq!(config(&[]).unwrap().fallback, Fallback::OtherTier);
        assert_eq!(
            config(&[("FALLBACK", "none")]).unwrap().fallback,
            Fallback::Off
        );
        assert_eq!(
            config(&[("FALLBACK", " large , small ")]).unwrap().fallback,
            Fallback::Order(vec![1, 0])
        );
        assert_eq!(
            invalid_variable(config(&[("FALLBACK", "medium")])),
            "FALLBACK"
        );
        assert!(invalid_message(config(&[("FALLBACK", "medium")])).contains("small, large"));
        assert!(invalid_message(config(&[("FALLBACK", "small,small")])).contains("twice"));
    }
}

//! The call stage's fallback policy: which failures send a request to another tier, and
//! to which tier (FALLBACK, read by [`crate::config::Fallback`]).
//!
//! A failure before any answer reached the client falls back: the backend could not be
//! reached, answered 5xx, was still rate limited (429) after the call's own retry, or
//! gave no headers within the deadline. A refused request (400, 422), a refused gateway
//! key (401, 403) and any failure after a 2xx answer began (billed already) do not. The
//! worst case per client request is [`max_upstream_calls`] upstream calls. This module
//! must not call anything: the shell's pipeline runs the loop.

use crate::config::{Config, Fallback};
use crate::error::GatewayError;
use crate::upstream::MAX_ATTEMPTS;

/// The metric label of a failure that may fall back to another tier; `None` when the
/// failure must reach the client as it is.
pub fn reason(error: &GatewayError) -> Option<&'static str> {
    match error {
        GatewayError::Upstream {
            status: Some(status),
            ..
        } if *status == 429 || *status >= 500 => Some(error.metric_label()),
        GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamTimeout { .. } => {
            Some(error.metric_label())
        }
        _ => None,
    }
}

/// The tier to try after the tiers in `tried` (the first is the one the request was
/// routed to) failed; `None` when the configuration offers no other tier with a key.
pub fn next_tier(config: &Config, tried: &[usize]) -> Option<usize> {
    let first = *tried.first()?;
    let candidates: Vec<usize> = match &config.fallback {
        Fallback::Off => return None,
        Fallback::OtherTier if tried.len() > 1 => return None,
        Fallback::OtherTier => crate::shadow::other_tier(config, first)
            .into_iter()
            .collect(),
        Fallback::Order(order) => order.clone(),
    };
    candidates.into_iter().find(|tier| {
        !tried.contains(tier) && config.tiers.get(*tier).is_some_and(|t| t.key().is_ok())
    })
}

/// The most upstream calls one client request can cause: every tier it may try, each
/// with the call's attempts (the first try and one retry).
pub fn max_upstream_calls(config: &Config) -> u32 {
    let tiers = match &config.fallback {
        Fallback::Off => 1,
        Fallback::OtherTier => 2,
        // The routed tier, then each listed tier other than it.
        Fallback::Order(order) => 1 + order.len().min(config.tiers.len().saturating_sub(1)),
    };
    MAX_ATTEMPTS * tiers as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::config;

    fn upstream(status: u16) -> GatewayError {
        GatewayError::Upstream {
            status: Some(status),
            message: "x".into(),
            retry_after: None,
        }
    }

    #[test]
    fn only_failures_before_an_answer_fall_back() {
        assert_eq!(reason(&upstream(500)), Some("upstream_error"));
        assert_eq!(reason(&upstream(503)), Some("upstream_error"));
        assert_eq!(reason(&upstream(429)), Some("upstream_rate_limited"));
        assert_eq!(
            reason(&GatewayError::UpstreamTimeout { timeout_ms: 1 }),
            Some("upstream_timeout")
        );
        assert_eq!(
            reason(&GatewayError::UpstreamUnreachable {
                cause: "dns".into()
            }),
            Some("upstream_unreachable")
        );
        for status in [400, 401, 403, 404, 422] {
            assert_eq!(reason(&upstream(status)), None, "{status}");
        }
        let billed = [
            GatewayError::UpstreamBroken {
                received_bytes: 10,
                timed_out: false,
            },
            GatewayError::UpstreamTooLarge { limit: 10 },
            GatewayError::Upstream {
                status: None,
                message: "not json".into(),
                retry_after: None,
            },
            GatewayError::BadRequest("x".into()),
        ];
        for error in billed {
            assert_eq!(reason(&error), None, "{error:?}");
        }
    }

    #[test]
    fn the_default_is_the_other_tier_once() {
        let c = config(&[]);
        assert_eq!(next_tier(&c, &[0]), Some(1));
        assert_eq!(next_tier(&c, &[1]), Some(0));
        assert_eq!(next_tier(&c, &[0, 1]), None);
        assert_eq!(max_upstream_calls(&c), 4);
        let off = config(&[("FALLBACK", "none")]);
        assert_eq!(next_tier(&off, &[0]), None);
        assert_eq!(max_upstream_calls(&off), 2);
    }

    #[test]
    fn a_configured_order_is_followed_and_tiers_without_a_key_are_skipped() {
        let tiers = r#"[
          {"name": "small", "model": "mistral-small-latest"},
          {"name": "local", "backend": "openai", "model": "llama", "base_url": "http://127.0.0.1:9", "api_key_var": "LOCAL_API_KEY", "prices": {"input": 0, "output": 0}},
          {"name": "large", "model": "mistral-large-latest", "min_score": 0.5}
        ]"#;
        let c = config(&[("TIERS", tiers), ("FALLBACK", "local,small,large")]);
        // LOCAL_API_KEY is unset: local is skipped.
        assert_eq!(next_tier(&c, &[2]), Some(0));
        assert_eq!(next_tier(&c, &[2, 0]), None);
        assert_eq!(next_tier(&c, &[0]), Some(2));
        assert_eq!(max_upstream_calls(&c), 6);
    }
}

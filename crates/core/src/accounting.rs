//! The settle stage's arithmetic: what an answer cost, what it would have cost on the top
//! tier, and the metrics event that records it (or a failure).
//!
//! It owns the one name of each cost figure of a request, used from here through the
//! metrics event: `cost_usd` (what the routed model charged) and `cost_if_large_usd` (the
//! same tokens at the top tier's prices, the "always large" counterfactual; the aggregate
//! sums them as `total_cost_usd` and `cost_if_always_large_usd`). Usage missing
//! from the upstream is estimated (~4 characters per token) and flagged, never priced as
//! zero. Reported usage is checked against what is plausible for the bytes that went up
//! and came back ([`plausible`]); implausible usage is replaced by the estimate and
//! flagged too, so one bad upstream answer cannot add a fortune to /metrics. It must not
//! decide routing or touch the network.

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::{FailureCost, FallbackRecord, MetricsEvent};
use crate::plan::Plan;
use crate::providers::{estimate_tokens, Usage};

/// What the settle stage knows of an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answered<'a> {
    /// The model id the upstream reported (empty when it reported none).
    pub reported_model: &'a str,
    /// Usage, as the upstream reported it.
    pub usage: Option<Usage>,
    /// Characters of answer text received.
    pub completion_chars: usize,
    /// Bytes of the upstream request body.
    pub request_bytes: usize,
    /// Bytes of the upstream's answer received (the whole body, or the stream's bytes).
    pub received_bytes: usize,
    /// Malformed stream events dropped (0 for whole answers).
    pub dropped_events: u64,
}

/// Tokens a byte may count for at most in a plausible usage report. No tokenizer makes
/// more than one token of a byte of text; the factor leaves room for what providers add
/// unseen (tool schemas rendered into the prompt, system prompts of their own).
pub const TOKENS_PER_BYTE_BOUND: u64 = 4;
/// Tokens allowed on top of that bound (chat templates, special tokens, short answers).
pub const TOKEN_SLACK: u64 = 16_384;

/// Whether reported `usage` can be true: prompt tokens at most
/// [`TOKENS_PER_BYTE_BOUND`] per byte of the request body, completion tokens at most that
/// per byte received, or at most the request's `max_tokens` when it set one (reasoning
/// models bill hidden tokens beyond the answer's bytes: they are plausible only under a
/// `max_tokens`); each plus [`TOKEN_SLACK`]. It catches absurd reports (a trillion
/// tokens for a one-line answer), not an upstream that overbills by a few percent.
pub fn plausible(
    usage: Usage,
    request_bytes: usize,
    received_bytes: usize,
    max_tokens: Option<u64>,
) -> bool {
    let bound = |bytes: usize| {
        (bytes as u64)
            .saturating_mul(TOKENS_PER_BYTE_BOUND)
            .saturating_add(TOKEN_SLACK)
    };
    let completion_bound = match max_tokens {
        Some(max) => max.saturating_add(TOKEN_SLACK),
        None => bound(received_bytes),
    };
    usage.prompt_tokens <= bound(request_bytes) && usage.completion_tokens <= completion_bound
}

/// Tokens and cost of one answered request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accounting {
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Cost at the routed model's prices.
    pub cost_usd: f64,
    /// Cost of the same tokens at the top tier's prices.
    pub cost_if_large_usd: f64,
    /// Tokens were estimated (no usage from the upstream, or implausible usage).
    pub estimated: bool,
    /// The upstream reported usage that cannot be true; the estimate replaced it.
    pub implausible: bool,
}

/// Prices an answer: usage when the upstream sent a plausible one, else ~4 characters per
/// token (and flagged), never zero. The routed model's price is looked up by the id the
/// upstream reported, with the configured model as fallback.
pub fn account(
    config: &Config,
    plan: &Plan,
    answered: &Answered<'_>,
) -> Result<Accounting, GatewayError> {
    let estimate = || Usage {
        prompt_tokens: estimate_tokens(plan.prompt_chars),
        completion_tokens: estimate_tokens(answered.completion_chars),
    };
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|field| plan.body.get(*field).and_then(serde_json::Value::as_u64));
    let (usage, estimated, implausible) = match answered.usage {
        Some(usage)
            if plausible(
                usage,
                answered.request_bytes,
                answered.received_bytes,
                max_tokens,
            ) =>
        {
            (usage, false, false)
        }
        Some(_) => (estimate(), true, true),
        None => (estimate(), true, false),
    };
    let reported_model = answered.reported_model;
    let routed = config
        .price_of(plan.decision.tier, reported_model)
        .ok_or_else(|| GatewayError::Internal(format!("no price for {}", plan.model)))?;
    let top = config.top_tier();
    let top_price = if plan.decision.tier == top {
        Some(routed)
    } else {
        config
            .tiers
            .get(top)
            .and_then(|t| config.price_of(top, &t.model))
    }
    .ok_or_else(|| GatewayError::Internal("no price for the top tier".into()))?;
    Ok(Accounting {
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        cost_usd: routed.cost_usd(usage.prompt_tokens, usage.completion_tokens),
        cost_if_large_usd: top_price.cost_usd(usage.prompt_tokens, usage.completion_tokens),
        estimated,
        implausible,
    })
}

/// Prices an answer and builds the metrics event that records it.
pub fn settle(
    config: &Config,
    request_id: &str,
    plan: &Plan,
    answered: &Answered<'_>,
    latency_ms: u64,
    incomplete: Option<&str>,
) -> Result<(Accounting, MetricsEvent), GatewayError> {
    let accounting = account(config, plan, answered)?;
    let mut event = completed_event(
        config,
        request_id,
        plan,
        &accounting,
        latency_ms,
        incomplete,
    );
    if let MetricsEvent::Completed {
        dropped_stream_events,
        ..
    } = &mut event
    {
        *dropped_stream_events = answered.dropped_events;
    }
    Ok((accounting, event))
}

/// A settled answer that came from the response cache: it cost nothing upstream, and what
/// it would have cost is recorded in `event` as the cache's saving.
pub fn cache_hit(accounting: &mut Accounting, event: &mut MetricsEvent) {
    event.set_cache("hit", accounting.cost_usd);
    accounting.cost_usd = 0.0;
    accounting.cost_if_large_usd = 0.0;
}

/// What the tokens of `accounting` cost, or would have cost, on the lower and on the top
/// tier: the served tier's cost and the always-top counterfactual when a lower tier
/// served; the top tier's cost and the next plain tier below's price when the top served.
/// (The quality controller's traffic histogram prices thresholds with these.)
pub fn lower_and_top_costs(config: &Config, plan: &Plan, accounting: &Accounting) -> (f64, f64) {
    let top = config.top_tier();
    if plan.decision.tier != top {
        return (accounting.cost_usd, accounting.cost_if_large_usd);
    }
    let lower = crate::shadow::other_tier(config, top)
        .and_then(|tier| {
            let model = &config.tiers.get(tier)?.model;
            config.price_of(tier, model)
        })
        .map_or(accounting.cost_usd, |price| {
            price.cost_usd(accounting.tokens_in, accounting.tokens_out)
        });
    (lower, accounting.cost_usd)
}

/// The metrics event of a failed request.
pub fn failed_event(request_id: &str, error: &GatewayError) -> MetricsEvent {
    MetricsEvent::Failed {
        id: request_id.to_string(),
        reason: error.metric_label().to_string(),
        fallback: None,
        cost: None,
        key: None,
        count: 1,
        status: error.upstream_status(),
    }
}

/// The metrics event of a request that failed after `plan`'s call (with the fallback that
/// led there, if any): an answer that broke after the upstream began it (and billed it)
/// carries its estimated cost (prompt from its characters, completion from the bytes
/// received, ~4 per token).
pub fn failed_call_event(
    config: &Config,
    request_id: &str,
    plan: &Plan,
    error: &GatewayError,
) -> MetricsEvent {
    let cost = match error {
        GatewayError::UpstreamBroken { received_bytes, .. } => {
            let answered = Answered {
                reported_model: "",
                usage: None,
                completion_chars: *received_bytes,
                request_bytes: 0,
                received_bytes: *received_bytes,
                dropped_events: 0,
            };
            account(config, plan, &answered).ok().map(|a| FailureCost {
                tokens_in: a.tokens_in,
                tokens_out: a.tokens_out,
                cost_usd: a.cost_usd,
                cost_if_large_usd: a.cost_if_large_usd,
            })
        }
        _ => None,
    };
    MetricsEvent::Failed {
        id: request_id.to_string(),
        reason: error.metric_label().to_string(),
        fallback: fallback_record(plan),
        cost,
        key: None,
        count: 1,
        status: error.upstream_status(),
    }
}

/// The metrics record of `plan`'s fallback, if it is one.
fn fallback_record(plan: &Plan) -> Option<FallbackRecord> {
    plan.decision.fallback.as_ref().map(|f| FallbackRecord {
        route: f.route(),
        reason: f.reason.to_string(),
    })
}

/// The metrics event of an answered request.
pub fn completed_event(
    config: &Config,
    request_id: &str,
    plan: &Plan,
    accounting: &Accounting,
    latency_ms: u64,
    incomplete: Option<&str>,
) -> MetricsEvent {
    MetricsEvent::Completed {
        id: request_id.to_string(),
        model: plan.model.clone(),
        tier: plan.decision.tier_name.clone(),
        top_tier: plan.decision.tier == config.top_tier(),
        latency_ms,
        tokens_in: accounting.tokens_in,
        tokens_out: accounting.tokens_out,
        cost_usd: accounting.cost_usd,
        cost_if_large_usd: accounting.cost_if_large_usd,
        tokens_estimated: accounting.estimated,
        incomplete: incomplete.map(str::to_string),
        fallback: fallback_record(plan),
        usage_implausible: accounting.implausible,
        dropped_stream_events: 0,
        key: None,
        cache: None,
        cache_saved_usd: 0.0,
        upstream_ms: 0,
        ttfb_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatRequest;
    use crate::config::testing::config;
    use crate::plan::plan;
    use crate::routing::Requested;

    fn answered(model: &str, usage: Option<Usage>, completion_chars: usize) -> Answered<'_> {
        Answered {
            reported_model: model,
            usage,
            completion_chars,
            request_bytes: 10_000_000,
            received_bytes: 10_000_000,
            dropped_events: 0,
        }
    }

    #[test]
    fn usage_is_checked_against_the_bytes_and_max_tokens() {
        let usage = |prompt_tokens, completion_tokens| Usage {
            prompt_tokens,
            completion_tokens,
        };
        // 4 tokens per byte + 16,384.
        assert!(plausible(usage(20_384, 18_384), 1_000, 500, None));
        assert!(!plausible(usage(20_385, 1), 1_000, 500, None));
        assert!(!plausible(usage(1, 18_385), 1_000, 500, None));
        // A max_tokens bounds the answer whatever came back (hidden reasoning tokens).
        assert!(plausible(usage(1, 56_384), 1_000, 10, Some(40_000)));
        assert!(!plausible(usage(1, 56_385), 1_000, 10, Some(40_000)));
        assert!(!plausible(
            usage(u64::MAX, u64::MAX),
            1_000,
            1_000,
            Some(u64::MAX)
        ));
    }

    #[test]
    fn absurd_usage_is_replaced_by_the_estimate_and_flagged() {
        let c = config(&[]);
        let r = ChatRequest::single_turn("auto", "abcdefgh", None, false);
        let d = plan(&c, &r, Requested::Auto, "abcdefgh").unwrap();
        let absurd = Answered {
            reported_model: "mistral-small-2603",
            usage: Some(Usage {
                prompt_tokens: 999_999_999_999,
                completion_tokens: 999_999_999_999,
            }),
            completion_chars: 40,
            request_bytes: 120,
            received_bytes: 300,
            dropped_events: 0,
        };
        let a = account(&c, &d, &absurd).unwrap();
        assert!(a.implausible && a.estimated);
        assert_eq!((a.tokens_in, a.tokens_out), (2, 10));
        assert!(a.cost_usd < 1e-4, "{}", a.cost_usd);
        let (_, event) = settle(&c, "r", &d, &absurd, 5, None).unwrap();
        assert!(matches!(
            event,
            MetricsEvent::Completed {
                usage_implausible: true,
                tokens_estimated: true,
                ..
            }
        ));
        // The same usage within bounds is taken as reported.
        let fine = Answered {
            usage: Some(Usage {
                prompt_tokens: 30,
                completion_tokens: 90,
            }),
            ..absurd
        };
        let a = account(&c, &d, &fine).unwrap();
        assert!(!a.implausible && !a.estimated);
        assert_eq!((a.tokens_in, a.tokens_out), (30, 90));
    }

    #[test]
    fn a_broken_answer_is_recorded_with_its_estimated_cost() {
        let c = config(&[]);
        let r = ChatRequest::single_turn("auto", "abcdefgh", None, false);
        let d = plan(&c, &r, Requested::Tier(1), "abcdefgh").unwrap();
        let broken = GatewayError::UpstreamBroken {
            received_bytes: 400,
            timed_out: false,
        };
        let MetricsEvent::Failed { reason, cost, .. } = failed_call_event(&c, "r", &d, &broken)
        else {
            panic!("not a failure");
        };
        assert_eq!(reason, "upstream_broken");
        let cost = cost.expect("a cost");
        assert_eq!((cost.tokens_in, cost.tokens_out), (2, 100));
        assert!((cost.cost_usd - (2.0 * 0.5 + 100.0 * 1.5) / 1e6).abs() < 1e-15);
        let refused = GatewayError::Upstream {
            status: Some(503),
            message: "x".into(),
            retry_after: None,
        };
        assert!(matches!(
            failed_call_event(&c, "r", &d, &refused),
            MetricsEvent::Failed { cost: None, .. }
        ));
    }

    #[test]
    fn accounting_prices_the_dated_model_and_the_top_tier() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "What is the capital of France?", None, false);
        let d = plan(&c, &r, Requested::Auto, "What is the capital of France?").unwrap();
        let usage = Usage {
            prompt_tokens: 8,
            completion_tokens: 12,
        };
        let a = account(&c, &d, &answered("mistral-small-2603", Some(usage), 0)).unwrap();
        assert!((a.cost_usd - (8.0 * 0.15 + 12.0 * 0.60) / 1e6).abs() < 1e-15);
        assert!((a.cost_if_large_usd - (8.0 * 0.5 + 12.0 * 1.5) / 1e6).abs() < 1e-15);
        assert!(!a.estimated);
        let e = completed_event(&c, "r1", &d, &a, 42, None);
        assert!(
            matches!(e, MetricsEvent::Completed { ref tier, top_tier: false, latency_ms: 42, .. } if tier == "small")
        );
    }

    #[test]
    fn a_cache_hit_costs_nothing_and_records_its_saving() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let d = plan(&c, &r, Requested::Auto, "hi").unwrap();
        let usage = Usage {
            prompt_tokens: 8,
            completion_tokens: 12,
        };
        let (mut a, mut e) = settle(
            &c,
            "r",
            &d,
            &answered("mistral-small-2603", Some(usage), 0),
            5,
            None,
        )
        .unwrap();
        let paid = a.cost_usd;
        assert!(paid > 0.0);
        cache_hit(&mut a, &mut e);
        assert_eq!((a.cost_usd, a.cost_if_large_usd), (0.0, 0.0));
        let MetricsEvent::Completed {
            cost_usd,
            cost_if_large_usd,
            tokens_in,
            cache,
            cache_saved_usd,
            ..
        } = e
        else {
            panic!("not completed");
        };
        assert_eq!((cost_usd, cost_if_large_usd, tokens_in), (0.0, 0.0, 0));
        assert_eq!((cache.as_deref(), cache_saved_usd), (Some("hit"), paid));
    }

    #[test]
    fn a_tier_price_wins_over_the_table_for_any_reported_id() {
        let tiers = r#"[
          {"name": "small", "model": "mistral-small-latest", "prices": {"input": 1, "output": 2}},
          {"name": "large", "model": "mistral-large-latest", "min_score": 1}
        ]"#;
        let c = config(&[("TIERS", tiers)]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let d = plan(&c, &r, Requested::Tier(0), "hi").unwrap();
        let usage = Usage {
            prompt_tokens: 100_000,
            completion_tokens: 20_000,
        };
        let a = account(&c, &d, &answered("mistral-small-2603", Some(usage), 0)).unwrap();
        assert!((a.cost_usd - 0.14).abs() < 1e-12, "{}", a.cost_usd);
        assert!(
            (a.cost_if_large_usd - (0.05 + 0.03)).abs() < 1e-12,
            "{}",
            a.cost_if_large_usd
        );
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let c = config(&[]);
        let r = ChatRequest::single_turn("auto", "abcdefgh", None, false);
        let d = plan(&c, &r, Requested::Auto, "abcdefgh").unwrap();
        let a = account(&c, &d, &answered("unknown-dated-id", None, 4)).unwrap();
        assert!(a.estimated);
        assert_eq!((a.tokens_in, a.tokens_out), (2, 1));
        assert!(a.cost_usd > 0.0);
    }

    #[test]
    fn lower_and_top_costs_price_both_tiers() {
        let c = config(&[("ROUTING_THRESHOLD", "1")]);
        let r = ChatRequest::single_turn("auto", "hi", None, false);
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
        };
        let small = plan(&c, &r, Requested::Auto, "hi").unwrap();
        let a = account(&c, &small, &answered("mistral-small-2603", Some(usage), 0)).unwrap();
        let (lower, top) = lower_and_top_costs(&c, &small, &a);
        assert!(
            (lower - 0.75).abs() < 1e-12 && (top - 2.0).abs() < 1e-12,
            "{lower} {top}"
        );
        let large = plan(&c, &r, Requested::Tier(1), "hi").unwrap();
        let a = account(&c, &large, &answered("mistral-large-2512", Some(usage), 0)).unwrap();
        let (lower, top) = lower_and_top_costs(&c, &large, &a);
        assert!(
            (lower - 0.75).abs() < 1e-12 && (top - 2.0).abs() < 1e-12,
            "{lower} {top}"
        );
    }
}

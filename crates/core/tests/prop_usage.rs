//! Property tests of the usage checks (`accounting::plausible` and the settle stage's
//! pricing): any usage an upstream may report, any sizes, never a panic; what is priced is
//! never above the plausible bound; implausible reports are replaced by the estimate and
//! flagged; plausible ones are taken as reported.
//!
//! Bounded for CI: 512 cases per property.

#![allow(clippy::expect_used)]

use llm_mux_core::accounting::{account, plausible, Answered, TOKENS_PER_BYTE_BOUND, TOKEN_SLACK};
use llm_mux_core::chat::ChatRequest;
use llm_mux_core::config::Config;
use llm_mux_core::plan::plan;
use llm_mux_core::providers::Usage;
use llm_mux_core::routing::Requested;
use proptest::prelude::*;

fn config() -> Config {
    Config::from_lookup(|name| (name == "MISTRAL_API_KEY").then(|| "sk-test".to_string()))
        .expect("the test configuration is valid")
}

/// Token counts from small to absurd.
fn tokens() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..5_000, 0u64..2_000_000, any::<u64>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plausible_is_the_stated_bound(
        prompt in tokens(),
        completion in tokens(),
        request_bytes in 0usize..10_000_000,
        received_bytes in 0usize..10_000_000,
        max_tokens in proptest::option::of(0u64..1_000_000),
    ) {
        let usage = Usage { prompt_tokens: prompt, completion_tokens: completion };
        let bound = |bytes: usize| bytes as u64 * TOKENS_PER_BYTE_BOUND + TOKEN_SLACK;
        let completion_bound = max_tokens.map_or(bound(received_bytes), |m| m + TOKEN_SLACK);
        prop_assert_eq!(
            plausible(usage, request_bytes, received_bytes, max_tokens),
            prompt <= bound(request_bytes) && completion <= completion_bound
        );
    }

    #[test]
    fn priced_usage_never_exceeds_the_bound_and_implausible_is_flagged(
        prompt in tokens(),
        completion in tokens(),
        query in "[a-z ]{1,200}",
        answer_chars in 0usize..5_000,
        received_bytes in 0usize..100_000,
        max_tokens in proptest::option::of(1u32..100_000),
    ) {
        let c = config();
        let request = ChatRequest::single_turn("auto", &query, max_tokens, false);
        let p = plan(&c, &request, Requested::Auto, &query).expect("a plan");
        let request_bytes = p.upstream_request().body.len();
        let answered = Answered {
            reported_model: "mistral-small-2603",
            usage: Some(Usage { prompt_tokens: prompt, completion_tokens: completion }),
            completion_chars: answer_chars,
            request_bytes,
            received_bytes,
            dropped_events: 0,
        };
        let a = account(&c, &p, &answered).expect("priced");
        let ok = plausible(
            Usage { prompt_tokens: prompt, completion_tokens: completion },
            request_bytes,
            received_bytes,
            max_tokens.map(u64::from),
        );
        prop_assert_eq!(a.implausible, !ok);
        prop_assert_eq!(a.estimated, !ok);
        if ok {
            prop_assert_eq!((a.tokens_in, a.tokens_out), (prompt, completion));
        } else {
            // The estimate: ~4 characters per token of what was sent and received.
            prop_assert!(a.tokens_in <= request_bytes as u64 / 4 + 1);
            prop_assert!(a.tokens_out <= answer_chars as u64 / 4 + 1);
        }
        prop_assert!(a.cost_usd.is_finite() && a.cost_usd >= 0.0);
        prop_assert!(a.cost_if_large_usd >= a.cost_usd);
    }
}

//! Property tests of the latency sketch (`metrics::sketch`): for any latencies, merging
//! two sketches gives the sketch of both inputs together (the same quantiles, count, zero
//! bucket, extremes), the merge commutes, the stated relative error bound holds against
//! the exact order statistics, and the compact encoding round-trips.
//!
//! Bounded for CI: 256 cases per property.

#![allow(clippy::expect_used)]

use llm_mux_core::metrics::sketch::{LatencySketch, ALPHA};
use proptest::prelude::*;

/// Latencies as a gateway sees them: zeros, whole milliseconds, fractions from a
/// microsecond to ~11 days.
fn latency() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(0.0),
        3 => (0u64..600_000).prop_map(|ms| ms as f64),
        3 => (-3.0f64..9.0).prop_map(|e| 10f64.powf(e)),
    ]
}

fn latencies() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(latency(), 0..300)
}

fn sketch_of(values: &[f64]) -> LatencySketch {
    let mut s = LatencySketch::new();
    for &v in values {
        s.add(v);
    }
    s
}

const QUANTILES: [f64; 9] = [0.0, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merged_quantiles_equal_the_quantiles_of_the_concatenation(a in latencies(), b in latencies()) {
        let mut merged = sketch_of(&a);
        merged.merge(&sketch_of(&b));
        let mut flipped = sketch_of(&b);
        flipped.merge(&sketch_of(&a));
        let whole = sketch_of(&[a.clone(), b.clone()].concat());
        for q in QUANTILES {
            prop_assert_eq!(merged.quantile(q), whole.quantile(q), "q={}", q);
            prop_assert_eq!(flipped.quantile(q), whole.quantile(q), "q={}", q);
        }
        prop_assert_eq!(merged.count(), whole.count());
        prop_assert_eq!(merged.min(), whole.min());
        prop_assert_eq!(merged.max(), whole.max());
        // The buckets and the zero bucket, as encoded, are the same.
        let (m, w) = (merged.encode(), whole.encode());
        prop_assert_eq!(m.rsplitn(4, ';').last(), w.rsplitn(4, ';').last());
        let tolerance = 1e-9 * whole.sum().max(1.0);
        prop_assert!((merged.sum() - whole.sum()).abs() <= tolerance);
        // Addition of two floats commutes exactly.
        prop_assert_eq!(merged, flipped);
    }

    #[test]
    fn every_quantile_is_within_the_relative_bound(values in latencies(), q in 0.0f64..=1.0) {
        let s = sketch_of(&values);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => prop_assert_eq!(s.quantile(q), None),
            n => {
                for q in QUANTILES.into_iter().chain([q]) {
                    let exact = sorted[(q * (n - 1) as f64).floor() as usize];
                    let got = s.quantile(q).expect("a quantile of a non-empty sketch");
                    prop_assert!(
                        (got - exact).abs() <= ALPHA * exact * (1.0 + 1e-12),
                        "q={} exact={} got={}", q, exact, got
                    );
                }
            }
        }
    }

    #[test]
    fn encoding_round_trips(values in latencies()) {
        let s = sketch_of(&values);
        prop_assert_eq!(LatencySketch::decode(&s.encode()), Some(s));
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in "[0-9x:;,a-f-]{0,40}") {
        if let Some(s) = LatencySketch::decode(&text) {
            prop_assert_eq!(LatencySketch::decode(&s.encode()), Some(s));
        }
    }
}

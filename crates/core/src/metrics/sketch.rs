//! A mergeable latency quantile sketch in the DDSketch style (Masson, Rim and Lee, VLDB
//! 2019): log-spaced buckets, so any quantile comes back within a relative error of
//! [`ALPHA`], and two sketches merge exactly by adding bucket counts.
//!
//! It owns the bucket mapping, the bounded bucket store, the quantile walk and a compact
//! text encoding (see [`LatencySketch::encode`]) for storing sketches in a Durable Object
//! or shipping them between isolates. It must not read the clock or do I/O: callers feed
//! it non-negative latencies in milliseconds.
//!
//! **Accuracy.** Bucket `i` holds the values in `(γ^(i-1), γ^i]` with
//! `γ = (1 + α) / (1 - α)`, and answers with `2γ^i / (γ + 1)`, which is within `α·x` of
//! every `x` in the bucket. With `α = 0.01` (γ ≈ 1.0202) every quantile of values from
//! [`MIN_TRACKED_MS`] up is within **1%** (relative) of the exact order statistic
//! `sorted[floor(q·(n−1))]` (plus floating-point rounding, ~1e-12), well inside a 2%
//! budget. Values below [`MIN_TRACKED_MS`] (and zero, negatives, NaN) are counted in a
//! zero bucket and answered with the smallest value seen, so their error is absolute,
//! under `MIN_TRACKED_MS`.
//!
//! **Memory.** Latencies from 0.1 ms to 10 minutes span ~780 buckets. The store is one
//! contiguous run of at most [`MAX_BUCKETS`] counts (16 KiB); past that the lowest buckets
//! collapse into the lowest kept one, so only quantiles that fall among values over
//! ~10^17 times smaller than the largest can lose accuracy (they are overestimated). The
//! collapse depends only on the largest bucket ever seen, so merging stays exact and
//! order-independent. Values above [`MAX_TRACKED_MS`] (and +∞) are recorded as that.

impl serde::Serialize for LatencySketch {
    /// As its [`encode`](LatencySketch::encode)d text.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

/// The relative accuracy of every quantile: 1%.
pub const ALPHA: f64 = 0.01;

/// `γ = (1 + α) / (1 − α)`: the ratio of consecutive bucket bounds.
const GAMMA: f64 = (1.0 + ALPHA) / (1.0 - ALPHA);

/// The most buckets kept: past it the lowest collapse (see the module doc).
pub const MAX_BUCKETS: usize = 2048;

/// Values below this (one nanosecond) count as zero.
pub const MIN_TRACKED_MS: f64 = 1e-6;

/// Values above this (~31.7 years) are recorded as it.
pub const MAX_TRACKED_MS: f64 = 1e12;

/// Bucket indices of tracked values lie within ±1,400; a decoded offset beyond this
/// bound is not a sketch (and would overflow the index arithmetic).
const MAX_DECODED_OFFSET: u32 = 1 << 20;

/// 2^53: below it every whole f64 is exact as a u64, so it is encoded in decimal.
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// A DDSketch of latencies in milliseconds: add values, merge sketches, read quantiles.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencySketch {
    /// Bucket index of `counts[0]`.
    offset: i32,
    /// Counts of consecutive buckets from `offset`: empty, or first and last non-zero.
    counts: Vec<u64>,
    /// Values below [`MIN_TRACKED_MS`].
    zero: u64,
    /// All values added (`zero` plus the bucket counts).
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// `ln γ`, computed once per call site (`f64::ln` is not const).
fn ln_gamma() -> f64 {
    GAMMA.ln()
}

/// The bucket of `v` (at least [`MIN_TRACKED_MS`], at most [`MAX_TRACKED_MS`]).
fn bucket_of(v: f64) -> i32 {
    (v.ln() / ln_gamma()).ceil() as i32
}

/// The value a bucket answers with: within `α` of everything in it.
fn bucket_value(index: i32) -> f64 {
    2.0 * (f64::from(index) * ln_gamma()).exp() / (GAMMA + 1.0)
}

impl LatencySketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency in milliseconds. Negative and NaN values count as zero, values
    /// above [`MAX_TRACKED_MS`] as that.
    pub fn add(&mut self, ms: f64) {
        // NaN fails the comparison too, and -0.0 becomes 0.0.
        let v = if ms > 0.0 {
            ms.min(MAX_TRACKED_MS)
        } else {
            0.0
        };
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        if v < MIN_TRACKED_MS {
            self.zero += 1;
        } else {
            self.add_buckets(bucket_of(v), &[1]);
        }
    }

    /// Records one latency in whole milliseconds.
    pub fn add_ms(&mut self, ms: u64) {
        self.add(ms as f64);
    }

    /// Adds `other`'s values to this sketch: the result is the sketch of both inputs'
    /// values together (bucket for bucket; the sum up to floating-point rounding).
    pub fn merge(&mut self, other: &LatencySketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.zero += other.zero;
        self.sum += other.sum;
        self.add_buckets(other.offset, &other.counts);
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the values added (as recorded: clamped to `[0, MAX_TRACKED_MS]`).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The smallest value added, exactly; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value added, exactly; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// How many buckets the store holds now (at most [`MAX_BUCKETS`]).
    pub fn bucket_count(&self) -> usize {
        self.counts.len()
    }

    /// The `q`-quantile (`q` from 0 to 1): the order statistic `sorted[floor(q·(n−1))]`
    /// within a relative error of [`ALPHA`]. `q = 0` and `q = 1` give the exact minimum
    /// and maximum. `None` when the sketch is empty or `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        // The extremes are kept exactly.
        if rank == 0 {
            return Some(self.min);
        }
        if rank >= self.count - 1 {
            return Some(self.max);
        }
        let mut seen = self.zero;
        let mut estimate = if rank < seen { 0.0 } else { self.max };
        if rank >= seen {
            for (index, &n) in (self.offset..).zip(&self.counts) {
                seen += n;
                if seen > rank {
                    estimate = bucket_value(index);
                    break;
                }
            }
        }
        // The true value lies in [min, max]: clamping only brings the estimate closer.
        Some(estimate.max(self.min).min(self.max))
    }

    /// Adds `counts` to the buckets from index `offset` on, widening the store to cover
    /// them and collapsing what falls below the lowest of the [`MAX_BUCKETS`] kept.
    fn add_buckets(&mut self, offset: i32, counts: &[u64]) {
        let Some(len) = i32::try_from(counts.len()).ok().filter(|&n| n > 0) else {
            return;
        };
        let top = offset.saturating_add(len - 1);
        let (lo, hi) = match self.top() {
            None => (offset, top),
            Some(self_top) => (self.offset.min(offset), self_top.max(top)),
        };
        // MAX_BUCKETS fits in an i32.
        let lo = lo.max(hi - (MAX_BUCKETS as i32 - 1));
        if self.counts.is_empty() || lo != self.offset || Some(hi) != self.top() {
            let mut store = vec![0u64; (hi - lo) as usize + 1];
            for (index, &n) in (self.offset..).zip(&self.counts) {
                store[(index.max(lo) - lo) as usize] += n;
            }
            self.counts = store;
            self.offset = lo;
        }
        for (index, &n) in (offset..).zip(counts) {
            self.counts[(index.max(lo) - lo) as usize] += n;
        }
    }

    /// The index of the highest bucket, if any.
    fn top(&self) -> Option<i32> {
        let len = i32::try_from(self.counts.len()).ok()?;
        (len > 0).then(|| self.offset + len - 1)
    }

    /// The compact text form `offset:c1,c2,...;zero;sum;min;max`: the bucket counts from
    /// bucket `offset` up (a zero count written as nothing), then the zero bucket, and the
    /// sum, minimum and maximum, each a decimal integer when it is a whole number below
    /// 2^53 and otherwise `x` and the 16 hex digits of its IEEE-754 bits, so that
    /// [`decode`](Self::decode) gives back an equal sketch with no float parsing. An empty
    /// sketch is `0:;0;0;0;0`; 1,000 log-normal latencies (median 300 ms, σ 1) take ~650
    /// bytes, ~1 KB with σ 2.
    pub fn encode(&self) -> String {
        let mut out = format!("{}:", self.offset);
        for (k, &n) in self.counts.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            if n > 0 {
                out.push_str(&n.to_string());
            }
        }
        out.push(';');
        out.push_str(&self.zero.to_string());
        for x in [self.sum, self.min, self.max] {
            out.push(';');
            if x.fract() == 0.0 && (0.0..EXACT_INT_LIMIT).contains(&x) {
                out.push_str(&(x as u64).to_string());
            } else {
                out.push_str(&format!("x{:016x}", x.to_bits()));
            }
        }
        out
    }

    /// Reads the form [`encode`](Self::encode) writes; `None` when `text` is not one
    /// (malformed, more than [`MAX_BUCKETS`] buckets, or inconsistent figures).
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(';');
        let (offset, buckets) = parts.next()?.split_once(':')?;
        let offset: i32 = offset.parse().ok()?;
        let counts = if buckets.is_empty() {
            Vec::new()
        } else {
            buckets
                .split(',')
                .map(|n| {
                    if n.is_empty() {
                        Some(0)
                    } else {
                        n.parse().ok()
                    }
                })
                .collect::<Option<Vec<u64>>>()?
        };
        let zero: u64 = parts.next()?.parse().ok()?;
        let mut figures = [0.0f64; 3];
        for figure in &mut figures {
            let part = parts.next()?;
            *figure = match part.strip_prefix('x') {
                Some(hex) if hex.len() == 16 => f64::from_bits(u64::from_str_radix(hex, 16).ok()?),
                Some(_) => return None,
                None => part.parse::<u64>().ok()? as f64,
            };
            if figure.is_nan() || *figure < 0.0 || figure.is_infinite() {
                return None;
            }
        }
        let [sum, min, max] = figures;
        let count = counts
            .iter()
            .try_fold(zero, |total, &n| total.checked_add(n))?;
        let trimmed = counts.first().is_none_or(|&n| n > 0) && counts.last().is_none_or(|&n| n > 0);
        let consistent = if count == 0 {
            sum == 0.0 && min == 0.0 && max == 0.0
        } else {
            min <= max
        };
        if parts.next().is_some()
            || counts.len() > MAX_BUCKETS
            || offset.unsigned_abs() > MAX_DECODED_OFFSET
            || !trimmed
            || !consistent
        {
            return None;
        }
        Some(LatencySketch {
            offset: if counts.is_empty() { 0 } else { offset },
            counts,
            zero,
            count,
            sum,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::SplitMix64;

    /// A uniform draw from [0, 1) (53 random bits).
    fn unit(rng: &mut SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal latencies around `median` ms (Box–Muller on SplitMix64 draws).
    fn log_normal(rng: &mut SplitMix64, median: f64, sigma: f64) -> f64 {
        let u1 = 1.0 - unit(rng);
        let u2 = unit(rng);
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * z).exp()
    }

    fn sketch_of(values: &[f64]) -> LatencySketch {
        let mut s = LatencySketch::new();
        for &v in values {
            s.add(v);
        }
        s
    }

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    /// Every listed quantile within the stated bound of the exact order statistic.
    fn assert_within_bound(values: &[f64], what: &str) {
        let s = sketch_of(values);
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = exact_quantile(&sorted, q);
            let got = s.quantile(q).unwrap();
            let error = (got - exact).abs();
            assert!(
                error <= ALPHA * exact * (1.0 + 1e-12),
                "{what}: q={q} exact={exact} got={got} relative error {}",
                error / exact
            );
        }
        assert_eq!(s.min(), Some(sorted[0]));
        assert_eq!(s.max(), sorted.last().copied());
        assert_eq!(s.count(), values.len() as u64);
    }

    #[test]
    fn quantiles_of_uniform_latencies_are_within_one_percent() {
        let mut rng = SplitMix64::new(7);
        let values: Vec<f64> = (0..20_000)
            .map(|_| 1.0 + 2_999.0 * unit(&mut rng))
            .collect();
        assert_within_bound(&values, "uniform 1..3000 ms");
        let whole: Vec<f64> = (0..5_000)
            .map(|_| (rng.next_u64() % 600_000 + 1) as f64)
            .collect();
        assert_within_bound(&whole, "whole ms up to 10 min");
    }

    #[test]
    fn quantiles_of_log_normal_latencies_are_within_one_percent() {
        let mut rng = SplitMix64::new(42);
        for (median, sigma) in [(250.0, 0.5), (1_200.0, 1.0), (40.0, 2.0), (0.3, 1.5)] {
            let values: Vec<f64> = (0..10_000)
                .map(|_| log_normal(&mut rng, median, sigma))
                .collect();
            assert_within_bound(&values, &format!("log-normal {median} ms, sigma {sigma}"));
        }
    }

    #[test]
    fn ten_minutes_down_to_a_tenth_of_a_millisecond_fits_in_about_780_buckets() {
        let s = sketch_of(&[0.1, 600_000.0]);
        assert!(
            (770..=790).contains(&s.bucket_count()),
            "{}",
            s.bucket_count()
        );
    }

    #[test]
    fn merging_is_the_sketch_of_the_concatenated_data() {
        let mut rng = SplitMix64::new(3);
        let mut parts: Vec<Vec<f64>> = Vec::new();
        for k in 0..4u64 {
            // Whole milliseconds, so the sums are exact and the sketches compare equal.
            parts.push(
                (0..1_000 + 300 * k)
                    .map(|_| log_normal(&mut rng, 100.0 * (k + 1) as f64, 1.2).round())
                    .collect(),
            );
        }
        parts[1].extend([0.0, 0.0]);
        let all: Vec<f64> = parts.concat();
        let whole = sketch_of(&all);
        let sketches: Vec<LatencySketch> = parts.iter().map(|p| sketch_of(p)).collect();

        let mut left = LatencySketch::new();
        for s in &sketches {
            left.merge(s);
        }
        assert_eq!(left, whole);

        // Another grouping and order: ((3 + 1) + (0 + 2)).
        let mut a = sketches[3].clone();
        a.merge(&sketches[1]);
        let mut b = sketches[0].clone();
        b.merge(&sketches[2]);
        a.merge(&b);
        assert_eq!(a, whole);

        // The empty sketch is the identity, on either side.
        let mut e = LatencySketch::new();
        e.merge(&whole);
        assert_eq!(e, whole);
        let mut w = whole.clone();
        w.merge(&LatencySketch::new());
        assert_eq!(w, whole);
    }

    #[test]
    fn collapsing_keeps_the_store_bounded_and_merging_exact() {
        // 1e-6 ms to 1e12 ms spans ~2,070 buckets: a little past the cap, so the bucket
        // of 1e-6 collapses into the lowest kept one (~1.7e-6).
        let values = [1e-6, 1e-6, 1e-6, 2e-6, 1e-3, 1.0, 1e3, 1e9, 1e12];
        let whole = sketch_of(&values);
        assert_eq!(whole.bucket_count(), MAX_BUCKETS);
        for split in 0..values.len() {
            let mut parts = sketch_of(&values[split..]);
            parts.merge(&sketch_of(&values[..split]));
            assert_eq!(parts.counts, whole.counts, "split at {split}");
            assert_eq!(parts.offset, whole.offset, "split at {split}");
        }
        // The high quantiles are untouched; the collapsed lowest are overestimated.
        assert_eq!(whole.quantile(1.0), Some(1e12));
        assert_eq!(whole.quantile(0.0), Some(1e-6));
        let p75 = whole.quantile(0.75).unwrap();
        assert!((p75 - 1e3).abs() <= ALPHA * 1e3, "{p75}");
        let p25 = whole.quantile(0.25).unwrap();
        assert!(p25 > 1.5e-6 && p25 < 2e-6, "{p25}");
    }

    #[test]
    fn empty_sketch_answers_nothing() {
        let s = LatencySketch::new();
        assert_eq!(s.count(), 0);
        assert_eq!(s.sum(), 0.0);
        assert_eq!(s.min(), None);
        assert_eq!(s.max(), None);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.encode(), "0:;0;0;0;0");
        assert_eq!(LatencySketch::decode("0:;0;0;0;0"), Some(s));
    }

    #[test]
    fn zero_negative_nan_and_huge_values_are_clamped() {
        let mut s = LatencySketch::new();
        for v in [0.0, -5.0, f64::NAN, 1e-9, -0.0] {
            s.add(v);
        }
        assert_eq!((s.count(), s.zero, s.bucket_count()), (5, 5, 0));
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.min(), Some(0.0));
        assert_eq!(s.max(), Some(1e-9));
        s.add(f64::INFINITY);
        s.add_ms(20);
        assert_eq!(s.max(), Some(MAX_TRACKED_MS));
        assert_eq!(s.quantile(1.0), Some(MAX_TRACKED_MS));
        assert!(s.sum().is_finite());
        assert_eq!(s.quantile(-0.1), None);
        assert_eq!(s.quantile(1.5), None);
        assert_eq!(s.quantile(f64::NAN), None);
    }

    #[test]
    fn single_value_is_answered_exactly() {
        let s = sketch_of(&[123.4]);
        for q in [0.0, 0.5, 1.0] {
            assert_eq!(s.quantile(q), Some(123.4));
        }
    }

    #[test]
    fn encoding_round_trips() {
        let mut rng = SplitMix64::new(11);
        let values: Vec<f64> = (0..1_000)
            .map(|_| log_normal(&mut rng, 300.0, 1.0))
            .collect();
        let mut s = sketch_of(&values);
        s.add(0.0);
        let text = s.encode();
        assert_eq!(LatencySketch::decode(&text).as_ref(), Some(&s));
        assert!(text.len() < 1_500, "{} bytes", text.len());

        let whole: Vec<f64> = values.iter().map(|v| v.round()).collect();
        let w = sketch_of(&whole);
        let text = w.encode();
        assert!(!text.contains(";x"), "whole figures are decimal: {text}");
        assert_eq!(LatencySketch::decode(&text), Some(w));

        let small = sketch_of(&[1.0, 1.0, 3.0]);
        // 1 ms is bucket 0, 3 ms bucket 55: 54 empty counts between.
        assert_eq!(small.encode(), format!("0:2{}1;0;5;1;3", ",".repeat(55)));
    }

    #[test]
    fn decoding_rejects_malformed_text() {
        for text in [
            "",
            "0",
            "0:1;0;1;1",
            "0:1;0;1;1;1;9",
            "a:1;0;1;1;1",
            "0:1,x;0;1;1;1",
            "0:0,1;0;1;1;1",
            "0:1,0;0;1;1;1",
            "0:;0;1;0;0",
            "0:2;0;5;3;1",
            "0:1;0;1;xff;1",
            "0:1;0;-1;1;1",
            "0:1;0;1;1;x7ff0000000000000",
            "2147483647:1;0;1;1;1",
            "-2147483648:1;0;1;1;1",
        ] {
            assert_eq!(LatencySketch::decode(text), None, "{text:?}");
        }
        let too_many = format!("0:{}1;0;1;1;1", "1,".repeat(MAX_BUCKETS));
        assert_eq!(LatencySketch::decode(&too_many), None);
    }
}

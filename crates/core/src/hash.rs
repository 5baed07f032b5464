//! The project's non-cryptographic hashes, in one place: FNV-1a (64-bit) and SplitMix64.
//!
//! It owns the constants and the arithmetic only: FNV-1a for stable hashes of bytes that
//! must not change across builds and platforms (the learned router's word n-grams, Mistral
//! tool-call ids, cross-validation folds), SplitMix64 for its bit mixer (request ids) and a
//! tiny seeded generator (the training shuffle). It must not hold state beyond a
//! [`SplitMix64`] value, read entropy or the clock, or be used where an adversary must not
//! find collisions: none of these hashes is cryptographic.

/// FNV-1a 64-bit offset basis: the state before any byte.
pub const FNV1A64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64-bit prime.
pub const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One FNV-1a step: folds byte `b` into the running hash `h` (start from
/// [`FNV1A64_OFFSET`]). The incremental form, for callers that transform or split bytes
/// as they go; always inlined, so it compiles to the same xor-multiply as a hand-written loop.
#[inline(always)]
pub fn fnv1a64_step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(FNV1A64_PRIME)
}

/// FNV-1a 64-bit hash of `bytes`.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV1A64_OFFSET, |h, &b| fnv1a64_step(h, b))
}

/// SplitMix64's increment (the golden ratio in 64-bit fixed point): the generator's state
/// advances by this much per output.
pub const SPLITMIX64_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijection on u64 that spreads every input bit over the
/// output.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The SplitMix64 generator: a 64-bit state stepped by [`SPLITMIX64_GAMMA`] and passed
/// through [`splitmix64`]. Deterministic for a seed; small and fast, not for secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is `splitmix64(seed + SPLITMIX64_GAMMA)`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next output.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(SPLITMIX64_GAMMA);
        splitmix64(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fnv1a64_incremental_matches_one_shot() {
        let text = b"The quick brown fox";
        let mut h = FNV1A64_OFFSET;
        for &b in text {
            h = fnv1a64_step(h, b);
        }
        assert_eq!(h, fnv1a64(text));
        assert_eq!(fnv1a64_step(FNV1A64_OFFSET, b'a'), fnv1a64(b"a"));
    }

    #[test]
    fn splitmix64_reference_sequence() {
        // Vigna's reference splitmix64.c seeded with 1234567.
        let mut g = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| g.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
        let mut zero = SplitMix64::new(0);
        assert_eq!(zero.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(zero.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn splitmix64_output_function() {
        assert_eq!(splitmix64(0), 0);
        assert_eq!(splitmix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(splitmix64(SPLITMIX64_GAMMA), SplitMix64::new(0).next_u64());
    }
}

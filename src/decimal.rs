//! Decimal text to `f64`, as `str::parse::<f64>` does it, with exact integer arithmetic.
//!
//! core's parser is fast because of a 10 KB table of powers of five (Eisel-Lemire); that
//! table and its code are ~13 KB of the gzipped worker, this file ~2 KB. The one number
//! the gateway parses from text outside JSON (`ROUTING_THRESHOLD`) is read once per
//! isolate, so this parser trades speed for size: it finds the nearest double (ties to
//! even) by long division of big integers. Same grammar, same results, bit for bit (tests
//! compare it with core on edge cases and random inputs).

use std::cmp::Ordering;

/// `text.parse::<f64>().ok()`: an optional sign, then `inf`, `infinity` or `nan` (any
/// case), or decimal digits with an optional point and an optional `e`/`E` exponent.
pub fn parse_f64(text: &str) -> Option<f64> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude =
        if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
            f64::INFINITY
        } else if unsigned.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            let (digits, exponent) = scan_decimal(unsigned)?;
            nearest_double(&digits, exponent)
        };
    Some(if negative { -magnitude } else { magnitude })
}

/// The significant digits (values 0-9, no leading or trailing zeros) and the power of ten
/// they are scaled by, or `None` when `text` is not a decimal number.
fn scan_decimal(text: &str) -> Option<(Vec<u8>, i64)> {
    /// Exponents are clamped here: far beyond any double, and no overflow when adding.
    const EXPONENT_CLAMP: i64 = 1 << 40;
    let mut bytes = text.bytes().peekable();
    let mut digits = Vec::new();
    let mut exponent: i64 = 0;
    let mut seen_digit = false;
    let mut after_point = false;
    while let Some(&b) = bytes.peek() {
        match b {
            b'0'..=b'9' => {
                seen_digit = true;
                if b != b'0' || !digits.is_empty() {
                    digits.push(b - b'0');
                }
                if after_point {
                    exponent -= 1;
                }
            }
            b'.' if !after_point => after_point = true,
            _ => break,
        }
        bytes.next();
    }
    if !seen_digit {
        return None;
    }
    if bytes.next_if(|&b| b == b'e' || b == b'E').is_some() {
        let negative = bytes.next_if_eq(&b'-').is_some();
        if !negative {
            bytes.next_if_eq(&b'+');
        }
        let mut explicit: i64 = 0;
        let mut seen_exponent_digit = false;
        while let Some(d @ b'0'..=b'9') = bytes.peek().copied() {
            seen_exponent_digit = true;
            explicit = (explicit * 10 + i64::from(d - b'0')).min(EXPONENT_CLAMP);
            bytes.next();
        }
        if !seen_exponent_digit {
            return None;
        }
        exponent += if negative { -explicit } else { explicit };
    }
    if bytes.next().is_some() {
        return None;
    }
    while digits.last() == Some(&0) {
        digits.pop();
        exponent += 1;
    }
    Some((digits, exponent))
}

/// The double nearest to `digits × 10^exponent`, ties to even.
fn nearest_double(digits: &[u8], exponent: i64) -> f64 {
    // The value lies in [10^(magnitude - 1), 10^magnitude).
    let magnitude = exponent + digits.len() as i64;
    if digits.is_empty() || magnitude < -324 {
        return 0.0; // below half the smallest subnormal (4.9e-324)
    }
    if magnitude > 310 {
        return f64::INFINITY;
    }
    let mut significand = Big::default();
    for &d in digits {
        significand.mul_add(10, u32::from(d));
    }
    // Find the binary scale s with 2^52 <= value × 2^s < 2^53 (or s = 1074, the
    // subnormals' scale), starting from an estimate and correcting it one step at a time.
    let mut scale = 53 - (magnitude as f64 * std::f64::consts::LOG2_10) as i64;
    loop {
        let scale_clamped = scale.min(1074);
        // value × 2^s = numerator / denominator, both integers.
        let mut numerator = significand.clone();
        let mut denominator = Big::from(1);
        numerator.mul_pow10(exponent.max(0));
        denominator.mul_pow10((-exponent).max(0));
        numerator.shl(scale_clamped.max(0));
        denominator.shl((-scale_clamped).max(0));
        let Some((quotient, remainder)) = numerator.div_small_quotient(&denominator) else {
            scale -= 8; // quotient of 64 bits or more: far too large a scale
            continue;
        };
        if quotient >= 1 << 53 {
            scale -= 1;
            continue;
        }
        if quotient < 1 << 52 && scale_clamped < 1074 {
            scale += 1;
            continue;
        }
        let mut twice_remainder = remainder;
        twice_remainder.mul_add(2, 0);
        let round_up = match twice_remainder.cmp(&denominator) {
            Ordering::Greater => true,
            Ordering::Equal => quotient % 2 == 1,
            Ordering::Less => false,
        };
        return compose(quotient + u64::from(round_up), scale_clamped);
    }
}

/// `mantissa × 2^-scale` as a double, where `mantissa <= 2^53` and either
/// `mantissa >= 2^52` or `scale == 1074` (a subnormal).
fn compose(mantissa: u64, scale: i64) -> f64 {
    let (mantissa, scale) = if mantissa == 1 << 53 {
        (1 << 52, scale - 1) // rounding carried into the next binade
    } else {
        (mantissa, scale)
    };
    if mantissa < 1 << 52 {
        return f64::from_bits(mantissa); // subnormal: the bits are the mantissa
    }
    let biased_exponent = 1075 - scale;
    if biased_exponent >= 0x7ff {
        return f64::INFINITY;
    }
    f64::from_bits(((biased_exponent as u64) << 52) | (mantissa & ((1 << 52) - 1)))
}

/// A non-negative big integer, 32-bit limbs, least significant first, no zero limbs at
/// the top.
#[derive(Clone, Default, PartialEq, Eq)]
struct Big(Vec<u32>);

impl From<u64> for Big {
    fn from(n: u64) -> Self {
        let mut big = Big(vec![n as u32, (n >> 32) as u32]);
        big.trim();
        big
    }
}

impl Big {
    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    /// `self = self × factor + addend`.
    fn mul_add(&mut self, factor: u32, addend: u32) {
        let mut carry = u64::from(addend);
        for limb in &mut self.0 {
            let product = u64::from(*limb) * u64::from(factor) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    /// `self = self × 10^power`.
    fn mul_pow10(&mut self, power: i64) {
        for _ in 0..power / 9 {
            self.mul_add(1_000_000_000, 0);
        }
        self.mul_add(10u32.pow((power % 9) as u32), 0);
    }

    /// `self = self × 2^bits`.
    fn shl(&mut self, bits: i64) {
        let (limbs, bits) = ((bits / 32) as usize, (bits % 32) as u32);
        let mut shifted = vec![0; limbs];
        shifted.extend_from_slice(&self.0);
        self.0 = shifted;
        self.mul_add(1 << bits, 0);
    }

    /// `self = self / 2`, rounded down.
    fn shr1(&mut self) {
        let mut carry = 0;
        for limb in self.0.iter_mut().rev() {
            let next_carry = *limb & 1;
            *limb = (*limb >> 1) | (carry << 31);
            carry = next_carry;
        }
        self.trim();
    }

    /// `self = self - other`, for `other <= self`.
    fn sub(&mut self, other: &Big) {
        let mut borrow = 0;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let subtrahend = u64::from(other.0.get(i).copied().unwrap_or(0)) + borrow;
            let (difference, underflow) = u64::from(*limb).overflowing_sub(subtrahend);
            *limb = difference as u32;
            borrow = u64::from(underflow);
        }
        self.trim();
    }

    /// `(self / divisor, self % divisor)` when the quotient fits in 64 bits, by binary
    /// long division.
    fn div_small_quotient(&self, divisor: &Big) -> Option<(u64, Big)> {
        let mut step = divisor.clone();
        step.shl(64);
        if *self >= step {
            return None;
        }
        let mut remainder = self.clone();
        let mut quotient = 0u64;
        for bit in (0..64).rev() {
            step.shr1();
            if remainder >= step {
                remainder.sub(&step);
                quotient |= 1 << bit;
            }
        }
        Some((quotient, remainder))
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares with core, bit for bit (NaN's sign included).
    fn check(text: &str) {
        let expected = text.parse::<f64>().ok().map(f64::to_bits);
        let got = parse_f64(text).map(f64::to_bits);
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn grammar_matches_core() {
        for text in [
            "",
            "+",
            "-",
            ".",
            "-.",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "1e-",
            "1e5.",
            "1..2",
            "1.2.3",
            " 1",
            "1 ",
            "1_0",
            "0x10",
            "1f",
            "1e5e5",
            "++1",
            "+-1",
            "--1",
            "inf",
            "-inf",
            "+INF",
            "Infinity",
            "-infinity",
            "infinit",
            "infinityy",
            "nan",
            "NaN",
            "-nan",
            "+NAN",
            "nana",
            "0",
            "-0",
            "+0",
            "0.",
            ".0",
            "-.0",
            "00.5000",
            "5.",
            ".5",
            "+.5e-3",
            "1E3",
            "1e+3",
            "1e-3",
            "0e999999999999999999999",
            "1e-99999999999999999999999",
            "1e99999999999",
            "-1e99999999999",
            "0.000e1",
            "١",
        ] {
            check(text);
        }
    }

    #[test]
    fn edge_values_match_core() {
        for text in [
            "0.1", "0.2", "0.3", "0.55", "0.3103", "1", "1.0", "0.9999999999999999",
            "0.99999999999999994", "0.99999999999999995", "1.0000000000000001",
            "1.00000000000000011102230246251565404236316680908203125",
            "1.000000000000000111022302462515654042363166809082031250000000000000001",
            "9007199254740993", "9007199254740992.5", "9007199254740993.0000000000001",
            "1e23", "8.98846567431158e307", "1.7976931348623157e308",
            "1.7976931348623158e308", "1.7976931348623159e308", "2.2250738585072011e-308",
            "2.2250738585072014e-308", "2.225073858507201136057409796709131975934819546351645648e-308",
            "4.9406564584124654e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
            "2.47032822920623272088284396434110686182529901307162382212792841250337753635104375932649918180817996189898282347722858865463328355177969898199387398005390939063150356595155702263922908583924491051844359318028499365361525003193704576782492193656236698636584807570015857692699037063119282795585513329278343384093519780155312465972635795746227664652728272200563740064854999770965994704540208281662262378573934507363390079677619305775067401763246736009689513405355374585166611342237666786041621596804619144672918403005300575308490487653917113865916462395249126236538818796362393732804238910186723484976682350898633885879256283027559956575244555072551893136908362547791869486679949683240497058210285131854513962138377228261454376934125320985913276672363281255e-324",
            "123456789012345678901234567890", "0.000001", "1e-7", "3.14159265358979323846",
        ] {
            check(text);
        }
    }

    #[test]
    fn random_inputs_match_core() {
        // A small xorshift: reproducible without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            // Random digits, point and exponent.
            let len = 1 + next() % 30;
            let mut text: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            if next() % 2 == 0 {
                text.insert((next() % (len + 1)) as usize, '.');
            }
            if next() % 2 == 0 {
                text = format!("{text}e{}", (next() % 700) as i64 - 350);
            }
            check(&text);
            // A random double, its neighbours' midpoint and numbers a hair either side.
            let bits = next() >> 1;
            let x = f64::from_bits(bits);
            if x.is_finite() {
                check(&format!("{x:e}"));
                check(&format!("{x:.17e}"));
                check(&format!("{x:.800e}"));
            }
        }
    }

    #[test]
    fn halfway_points_round_to_even() {
        // Exact midpoints between neighbouring doubles, written out in full.
        for x in [
            1.0_f64,
            0.1,
            0.3103,
            0.5,
            0.7,
            5e-324,
            2.2250738585072014e-308,
            1e300,
        ] {
            for (a, b) in [(x, next_up(x)), (next_down(x), x)] {
                let midpoint = exact_midpoint(a, b);
                check(&midpoint);
                check(&format!("{midpoint}1"));
                check(&bump_down(&midpoint));
            }
        }
    }

    fn next_up(x: f64) -> f64 {
        f64::from_bits(x.to_bits() + 1)
    }

    fn next_down(x: f64) -> f64 {
        f64::from_bits(x.to_bits() - 1)
    }

    /// (a + b) / 2 in decimal, exactly (a double has at most 1074 binary digits after the
    /// point, so as many decimal ones).
    fn exact_midpoint(a: f64, b: f64) -> String {
        let exact = |x: f64| format!("{x:.1080}");
        decimal_half(&decimal_sum(&exact(a), &exact(b)))
    }

    /// Half of a non-negative decimal, exactly (one more digit).
    fn decimal_half(text: &str) -> String {
        let mut out = String::new();
        let mut carry = 0;
        for c in text.chars().chain(std::iter::once('0')) {
            if c == '.' {
                out.push('.');
                continue;
            }
            let d = carry * 10 + c.to_digit(10).unwrap();
            out.push(char::from_digit(d / 2, 10).unwrap());
            carry = d % 2;
        }
        out
    }

    /// The sum of two non-negative decimals with the same number of digits after the point.
    fn decimal_sum(a: &str, b: &str) -> String {
        let (ai, af) = a.split_once('.').unwrap();
        let (bi, bf) = b.split_once('.').unwrap();
        let width = ai.len().max(bi.len()) + 1;
        let digits = |i: &str, f: &str| format!("{i:0>width$}{f}").into_bytes();
        let (x, y) = (digits(ai, af), digits(bi, bf));
        let mut out = vec![0u8; x.len()];
        let mut carry = 0;
        for k in (0..x.len()).rev() {
            let s = (x[k] - b'0') + (y[k] - b'0') + carry;
            out[k] = b'0' + s % 10;
            carry = s / 10;
        }
        let mut text = String::from_utf8(out).unwrap();
        text.insert(width, '.');
        text
    }

    /// The decimal one unit in its last place below (the input ends in a non-zero digit
    /// or in zeros after one).
    fn bump_down(text: &str) -> String {
        let trimmed = text.trim_end_matches('0');
        let mut bytes = trimmed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] -= 1;
        format!("{}99", String::from_utf8(bytes).unwrap())
    }
}

//! Fixed-point formatting of `f64` for the few numbers the gateway writes as text (costs,
//! percentages, scores). `format!("{:.2}", x)` would pull core's float-to-decimal tables
//! (Grisu and Dragon, ~11 KB of wasm) into the worker for these alone; JSON numbers go
//! through serde_json's own writer.

/// `x` with `decimals` digits after the point (at most 9), rounded half away from zero.
/// Non-finite values are written `NaN`, `inf`, `-inf`; magnitudes beyond 1e18 lose the
/// fraction's precision (no gateway figure comes near).
pub fn fixed(x: f64, decimals: u32) -> String {
    if !x.is_finite() {
        return String::from(if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        });
    }
    let decimals = decimals.min(9);
    let scale = 10u64.pow(decimals);
    // u64 holds 1.8e19: past it the integer part is written alone.
    let scaled = (x.abs() * scale as f64).round();
    let sign = if x < 0.0 && scaled > 0.0 { "-" } else { "" };
    if scaled >= 1.8e19 {
        return format!("{sign}{}", (x.abs().min(1.8e19)) as u64);
    }
    let n = scaled as u64;
    if decimals == 0 {
        return format!("{sign}{n}");
    }
    format!(
        "{sign}{}.{:0width$}",
        n / scale,
        n % scale,
        width = decimals as usize
    )
}

/// `bytes` as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

/// `x` in its shortest form (`0.5`, `1`, `1e-7`), through serde_json's writer.
pub fn short(x: f64) -> String {
    let text = serde_json::Number::from_f64(x).map_or_else(|| fixed(x, 0), |n| n.to_string());
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_is_the_shortest_form() {
        for (x, text) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (1000.0, "1000"),
            (0.3103, "0.3103"),
        ] {
            assert_eq!(short(x), text);
            assert_eq!(short(x), format!("{x}"));
        }
    }

    #[test]
    fn fixed_matches_the_standard_formatting_on_ordinary_values() {
        for x in [
            0.0,
            0.08,
            0.24,
            12.345_678,
            0.002_552,
            71.8,
            100.0,
            0.000_123,
            1.0 / 3.0,
            0.999_96,
            5_973.4,
            123_456.789,
        ] {
            for d in [1, 2, 4, 6, 8] {
                assert_eq!(fixed(x, d), format!("{x:.*}", d as usize), "{x} {d}");
                // Rounded to zero, the sign goes (the standard formatting keeps "-0.0").
                if fixed(x, d).trim_start_matches(['0', '.']).is_empty() {
                    assert_eq!(fixed(-x, d), fixed(x, d));
                } else {
                    assert_eq!(fixed(-x, d), format!("{:.*}", d as usize, -x), "-{x} {d}");
                }
            }
        }
        assert_eq!(fixed(2.5, 0), "3");
        assert_eq!(fixed(f64::NAN, 2), "NaN");
        assert_eq!(fixed(f64::INFINITY, 2), "inf");
        assert_eq!(fixed(f64::NEG_INFINITY, 2), "-inf");
        assert_eq!(fixed(1e30, 2), "18000000000000000000");
    }
}

//! The `speed` command: nanoseconds per query of both routers' scoring on synthetic
//! prompts of 100 B to 32 KB, as a Markdown table.
//!
//! It times the core's scorers as the worker calls them; it must not re-implement or
//! change them, and it prints nothing itself (rows go to the caller).

use std::time::Instant;

use llm_mux_core::learned;
use llm_mux_core::scoring::{self, ComplexityScore};

/// A prompt of exactly `size` bytes (or the nearest char boundary below) of mixed prose,
/// math and code.
pub fn speed_text(size: usize) -> String {
    let paragraph = "Explain step by step why the integral of 1/x from 1 to e equals 1, then \
        compare it with the sum of 1/k for k = 1..n; write a Python function `def h(n): \
        return sum(1/k for k in range(1, n+1))` and analyze its complexity. ";
    let mut text = String::new();
    while text.len() < size {
        text.push_str(paragraph);
    }
    let mut cut = size;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// Times both routers at each input size and hands each line of the table (header first)
/// to `line` as soon as it is measured.
pub fn run(mut line: impl FnMut(&str)) -> Result<(), String> {
    // Load the model outside the timed loop (the worker loads it once per isolate).
    learned::model().map_err(|e| format!("learned model: {e}"))?;
    line("| router | input | ns per query | ns per KB |");
    line("|---|---|---|---|");
    type ScoreFn = fn(&str) -> ComplexityScore;
    let routers: [(&str, ScoreFn); 2] =
        [("heuristic", scoring::score), ("learned", learned::score)];
    for (name, score) in routers {
        for size in [100usize, 1024, 8 * 1024, 32 * 1024] {
            let text = speed_text(size);
            let iterations = (20_000_000 / size).clamp(200, 200_000);
            let mut sink = 0.0;
            // Warm up, then time.
            for _ in 0..iterations / 10 {
                sink += score(std::hint::black_box(&text)).score;
            }
            let start = Instant::now();
            for _ in 0..iterations {
                sink += score(std::hint::black_box(&text)).score;
            }
            let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
            std::hint::black_box(sink);
            line(&format!(
                "| {name} | {} B | {:.0} | {:.0} |",
                size,
                ns,
                ns / (size as f64 / 1024.0)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_text_has_the_requested_size() {
        for size in [0, 1, 100, 1024, 5000] {
            assert_eq!(speed_text(size).len(), size);
        }
    }
}

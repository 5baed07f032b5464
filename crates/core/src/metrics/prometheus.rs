//! A pure writer of the Prometheus text exposition format, version 0.0.4 (served as
//! `text/plain; version=0.0.4`).
//!
//! It owns the format's syntax: `# HELP` and `# TYPE` lines, samples with label sets,
//! the escaping of help text and label values, histogram series (cumulative
//! `_bucket{le="..."}` lines ending with `+Inf`, then `_sum` and `_count`) and the
//! numbers' spelling (whole numbers as integers, `+Inf`, `-Inf`, `NaN`, no `{:.N}`
//! float formatting). It must not decide which metrics exist or read any state: callers
//! declare each family once, then write its samples.

use crate::numfmt;

/// `text/plain; version=0.0.4`: the content type of what [`Exposition`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Text being written in the exposition format: declare a family ([`counter`],
/// [`gauge`], [`histogram`]), then write its samples.
///
/// [`counter`]: Exposition::counter
/// [`gauge`]: Exposition::gauge
/// [`histogram`]: Exposition::histogram
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposition {
    text: String,
}

/// Labels of one sample: `(name, value)` pairs, written in the order given.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a counter family (by convention named `..._total`).
    pub fn counter(&mut self, name: &str, help: &str) -> &mut Self {
        self.family(name, help, "counter")
    }

    /// Declares a gauge family.
    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Self {
        self.family(name, help, "gauge")
    }

    /// Declares a histogram family; write its series with [`histogram_sample`].
    ///
    /// [`histogram_sample`]: Exposition::histogram_sample
    pub fn histogram(&mut self, name: &str, help: &str) -> &mut Self {
        self.family(name, help, "histogram")
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: Labels, value: f64) -> &mut Self {
        self.line(name, "", labels, None, &number(value))
    }

    /// One sample line with a whole-number value.
    pub fn sample_u64(&mut self, name: &str, labels: Labels, value: u64) -> &mut Self {
        self.line(name, "", labels, None, &value.to_string())
    }

    /// One histogram series: `buckets` are `(upper bound, observations in that bucket)`
    /// in ascending order of bound (not cumulative: the writer adds them up), `count` all
    /// observations (those above the last bound included) and `sum` their total. The
    /// `+Inf` bucket and `_count` are `count`, raised to the buckets' total if it is
    /// smaller, so the series is always monotonic. `labels` must not contain `le`.
    pub fn histogram_sample(
        &mut self,
        name: &str,
        labels: Labels,
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> &mut Self {
        let mut cumulative = 0u64;
        for &(bound, n) in buckets {
            cumulative = cumulative.saturating_add(n);
            let le = number(bound);
            self.line(name, "_bucket", labels, Some(&le), &cumulative.to_string());
        }
        let count = count.max(cumulative).to_string();
        self.line(name, "_bucket", labels, Some("+Inf"), &count);
        self.line(name, "_sum", labels, None, &number(sum));
        self.line(name, "_count", labels, None, &count)
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The finished exposition.
    pub fn into_string(self) -> String {
        self.text
    }

    fn family(&mut self, name: &str, help: &str, kind: &str) -> &mut Self {
        let name = metric_name(name);
        self.text.push_str("# HELP ");
        self.text.push_str(&name);
        self.text.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.text.push_str("\\\\"),
                '\n' => self.text.push_str("\\n"),
                c => self.text.push(c),
            }
        }
        self.text.push_str("\n# TYPE ");
        self.text.push_str(&name);
        self.text.push(' ');
        self.text.push_str(kind);
        self.text.push('\n');
        self
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: Labels,
        le: Option<&str>,
        value: &str,
    ) -> &mut Self {
        self.text.push_str(&metric_name(name));
        self.text.push_str(suffix);
        let le = le.map(|le| ("le", le));
        let mut pairs = labels.iter().copied().chain(le).peekable();
        if pairs.peek().is_some() {
            self.text.push('{');
            for (k, (label, value)) in pairs.enumerate() {
                if k > 0 {
                    self.text.push(',');
                }
                self.text.push_str(&label_name(label));
                self.text.push_str("=\"");
                escape_label_value(value, &mut self.text);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(value);
        self.text.push('\n');
        self
    }
}

/// A sample value or `le` bound as the format spells it: `+Inf`, `-Inf`, `NaN`, whole
/// numbers as integers (`3`, not `3.0`), others in their shortest decimal form
/// (`0.25`, `1e-7`).
pub fn number(x: f64) -> String {
    if x.is_nan() {
        String::from("NaN")
    } else if x.is_infinite() {
        String::from(if x > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        numfmt::short(x)
    }
}

/// Appends `value` with backslash, double quote and line feed escaped.
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `name` as a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`): other characters become
/// `_`, and a leading digit gets a `_` before it.
fn metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// `name` as a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
fn label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge_families_are_declared_then_sampled() {
        let mut e = Exposition::new();
        e.counter("llm_requests_total", "Requests answered.")
            .sample_u64("llm_requests_total", &[("model", "small")], 12)
            .sample_u64("llm_requests_total", &[("model", "large")], 3)
            .gauge("llm_queue_depth", "Events waiting.")
            .sample("llm_queue_depth", &[], 0.5);
        assert_eq!(
            e.as_str(),
            "# HELP llm_requests_total Requests answered.\n\
             # TYPE llm_requests_total counter\n\
             llm_requests_total{model=\"small\"} 12\n\
             llm_requests_total{model=\"large\"} 3\n\
             # HELP llm_queue_depth Events waiting.\n\
             # TYPE llm_queue_depth gauge\n\
             llm_queue_depth 0.5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.gauge("g", "a \\ back\nslash \"quoted\"").sample(
            "g",
            &[("path", "C:\\dir\n\"x\""), ("ok", "plain")],
            1.0,
        );
        assert_eq!(
            e.into_string(),
            "# HELP g a \\\\ back\\nslash \"quoted\"\n\
             # TYPE g gauge\n\
             g{path=\"C:\\\\dir\\n\\\"x\\\"\",ok=\"plain\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut e = Exposition::new();
        e.histogram("latency_ms", "Latency.").histogram_sample(
            "latency_ms",
            &[("tier", "small")],
            &[(100.0, 2), (250.0, 0), (1_000.0, 5)],
            2_345.5,
            9,
        );
        assert_eq!(
            e.as_str(),
            "# HELP latency_ms Latency.\n\
             # TYPE latency_ms histogram\n\
             latency_ms_bucket{tier=\"small\",le=\"100\"} 2\n\
             latency_ms_bucket{tier=\"small\",le=\"250\"} 2\n\
             latency_ms_bucket{tier=\"small\",le=\"1000\"} 7\n\
             latency_ms_bucket{tier=\"small\",le=\"+Inf\"} 9\n\
             latency_ms_sum{tier=\"small\"} 2345.5\n\
             latency_ms_count{tier=\"small\"} 9\n"
        );
    }

    #[test]
    fn histogram_count_is_never_below_its_buckets() {
        let mut e = Exposition::new();
        e.histogram_sample("h", &[], &[(0.5, 4)], 1.0, 1);
        assert!(e.as_str().contains("h_bucket{le=\"+Inf\"} 4\n"));
        assert!(e.as_str().ends_with("h_count 4\n"));
    }

    #[test]
    fn numbers_are_plain_decimals_and_integers_have_no_point() {
        for (x, text) in [
            (0.0, "0"),
            (3.0, "3"),
            (1e6, "1000000"),
            (0.25, "0.25"),
            (-2.5, "-2.5"),
            (1e-7, "1e-7"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(number(x), text);
        }
    }

    #[test]
    fn invalid_names_are_made_valid() {
        assert_eq!(metric_name("llm:latency-ms.p99"), "llm:latency_ms_p99");
        assert_eq!(metric_name("9lives"), "_9lives");
        assert_eq!(metric_name(""), "_");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(label_name("modèle"), "mod_le");
    }
}

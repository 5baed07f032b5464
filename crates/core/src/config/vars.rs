//! The plain variables: their defaults and bounds, and the reading of each one
//! (MISTRAL_BASE_URL, SMALL_MODEL, LARGE_MODEL, ROUTER, ROUTING_THRESHOLD, MODEL_PRICES,
//! CORS_ALLOW_ORIGINS and the bounded whole numbers) into a validated value or an `InvalidConfig` error that
//! names the variable. It owns the shared checks of a base URL and a model id and the
//! number parsers; it must not assemble tiers, handle secrets or decide the order in which
//! variables are read (that is [`super::Config::from_lookup`]'s job).

use crate::cors::CorsPolicy;
use crate::error::GatewayError;
use crate::pricing::PriceTable;
use crate::routing::{self, RouterKind};

/// Default upstream base URL.
pub const DEFAULT_MISTRAL_BASE_URL: &str = "https://api.mistral.ai";
/// Default small-tier model.
pub const DEFAULT_SMALL_MODEL: &str = "mistral-small-latest";
/// Default large-tier model.
pub const DEFAULT_LARGE_MODEL: &str = "mistral-large-latest";
/// Default MAX_QUERY_BYTES.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 32 * 1024;
/// Default UPSTREAM_TIMEOUT_MS.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 60_000;
/// Default METRICS_BATCH_MS: how long an isolate gathers metrics events before sending
/// them to the Durable Object in one call.
pub const DEFAULT_METRICS_BATCH_MS: u64 = 100;
/// Upper bound of METRICS_BATCH_MS (a flusher lives in a request's `waitUntil`, which the
/// runtime keeps for 30 s after the response).
pub const MAX_METRICS_BATCH_MS: u64 = 10_000;
/// Metrics Durable Objects events are spread over (METRICS_SHARDS). Each isolate sends
/// its batches to one of them; a read merges all. With per-isolate batching an object
/// takes one call per isolate per METRICS_BATCH_MS rather than one per request: 8 objects
/// at a few hundred batch calls per second each (a fraction of the ~1,000 simple calls
/// per second one object serves) carry several thousand requests per second; docs/metrics.md
/// has the arithmetic.
pub const DEFAULT_METRICS_SHARDS: u64 = 8;
/// The most metrics shards (a read makes one call per shard).
pub const MAX_METRICS_SHARDS: u64 = 64;
/// Upper bound of MAX_QUERY_BYTES: beyond it a single request risks the 128 MB isolate.
pub const MAX_MAX_QUERY_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound of UPSTREAM_TIMEOUT_MS (15 minutes).
pub const MAX_UPSTREAM_TIMEOUT_MS: u64 = 900_000;
/// Default MAX_BODY_BYTES: the largest request body read (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Upper bound of MAX_BODY_BYTES (the platform refuses bodies over 100 MB anyway; a
/// body is held whole, in a 128 MB isolate).
pub const MAX_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default MAX_UPSTREAM_RESPONSE_BYTES (8 MiB), enforced while reading.
pub const DEFAULT_MAX_UPSTREAM_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Upper bound of MAX_UPSTREAM_RESPONSE_BYTES.
pub const MAX_MAX_UPSTREAM_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Default STREAM_IDLE_TIMEOUT_MS: the longest wait between two chunks of a stream.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Default STREAM_MAX_DURATION_MS: the longest a stream may run in all (10 minutes).
pub const DEFAULT_STREAM_MAX_DURATION_MS: u64 = 600_000;
/// Upper bound of STREAM_IDLE_TIMEOUT_MS and STREAM_MAX_DURATION_MS (1 hour).
pub const MAX_STREAM_MS: u64 = 3_600_000;

/// Reads a variable by name, already trimmed.
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The error of an invalid variable.
pub(super) fn invalid(variable: &'static str, message: String) -> GatewayError {
    GatewayError::InvalidConfig { variable, message }
}

/// Whether `url` is an http(s) URL without whitespace.
pub(super) fn valid_base_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace)
}

/// Whether `model` is a non-empty model id without whitespace or control characters.
pub(super) fn valid_model_id(model: &str) -> bool {
    !model.is_empty() && !model.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// MISTRAL_BASE_URL without its trailing slash, or the default.
pub(super) fn mistral_base_url(get: Lookup) -> Result<String, GatewayError> {
    match get("MISTRAL_BASE_URL").filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_MISTRAL_BASE_URL.to_string()),
        Some(url) if valid_base_url(&url) => Ok(url.trim_end_matches('/').to_string()),
        Some(url) => Err(invalid(
            "MISTRAL_BASE_URL",
            format!("expected an http(s) URL such as {DEFAULT_MISTRAL_BASE_URL}, got {url:?}"),
        )),
    }
}

/// The model id in variable `name`, or `default`.
pub(super) fn model(
    get: Lookup,
    name: &'static str,
    default: &str,
) -> Result<String, GatewayError> {
    match get(name) {
        None => Ok(default.to_string()),
        Some(v) if valid_model_id(&v) => Ok(v),
        Some(v) => Err(invalid(
            name,
            format!("expected a model id without spaces, got {v:?}"),
        )),
    }
}

/// ROUTER, or the default router.
pub(super) fn router(get: Lookup) -> Result<RouterKind, GatewayError> {
    match get("ROUTER").filter(|v| !v.is_empty()) {
        None => Ok(routing::DEFAULT_ROUTER),
        Some(raw) => RouterKind::parse(&raw).ok_or_else(|| {
            invalid(
                "ROUTER",
                format!("expected \"heuristic\" or \"learned\", got {raw:?}"),
            )
        }),
    }
}

/// ROUTING_THRESHOLD, or `router`'s default threshold.
pub(super) fn routing_threshold(get: Lookup, router: RouterKind) -> Result<f64, GatewayError> {
    match get("ROUTING_THRESHOLD").filter(|v| !v.is_empty()) {
        None => Ok(router.default_threshold()),
        Some(raw) => match parse_decimal(&raw) {
            Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
            _ => Err(invalid(
                "ROUTING_THRESHOLD",
                format!("expected a number between 0 and 1, got {raw:?}"),
            )),
        },
    }
}

/// The decimal number in variable `name`, from `min` to `max` (inclusive), if set.
pub(super) fn decimal_in(
    get: Lookup,
    name: &'static str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, GatewayError> {
    match get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => match parse_decimal(&raw) {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(invalid(
                name,
                format!(
                    "expected a number from {} to {}, got {raw:?}",
                    crate::numfmt::short(min),
                    crate::numfmt::short(max)
                ),
            )),
        },
    }
}

/// The whole number in variable `name`, from `min` to `max`, or `default`.
pub(super) fn bounded(
    get: Lookup,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, GatewayError> {
    parse_bounded(get(name), default, min, max).map_err(|m| invalid(name, m))
}

/// The embedded price table with MODEL_PRICES applied over it.
pub(super) fn model_prices(get: Lookup) -> Result<PriceTable, GatewayError> {
    let mut prices = PriceTable::embedded();
    if let Some(raw) = get("MODEL_PRICES").filter(|v| !v.is_empty()) {
        prices
            .apply_overrides(&raw)
            .map_err(|m| invalid("MODEL_PRICES", m))?;
    }
    Ok(prices)
}

/// LOG_REQUESTS: one JSON log line per request, on unless `0`, `false` or `off`.
pub(super) fn log_requests(get: Lookup) -> Result<bool, GatewayError> {
    match get("LOG_REQUESTS").filter(|v| !v.is_empty()).as_deref() {
        None | Some("1" | "true" | "on") => Ok(true),
        Some("0" | "false" | "off") => Ok(false),
        Some(other) => Err(invalid(
            "LOG_REQUESTS",
            format!("expected 1/true/on or 0/false/off, got {other:?}"),
        )),
    }
}

/// CORS_ALLOW_ORIGINS: unset or empty is no CORS, `*` any origin, else a list of origins.
pub(super) fn cors_allow_origins(get: Lookup) -> Result<CorsPolicy, GatewayError> {
    CorsPolicy::parse(get("CORS_ALLOW_ORIGINS").as_deref())
        .map_err(|m| invalid("CORS_ALLOW_ORIGINS", m))
}

/// A decimal number such as `0.3`, `.25`, `+1` or `3e-1`, read by serde_json's number
/// parser (already in the worker for JSON) rather than core's `parse::<f64>`, whose
/// tables cost ~12 KB of gzipped wasm for the one number read outside JSON.
fn parse_decimal(raw: &str) -> Option<f64> {
    let text = raw.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        || text.contains("..")
        || !text.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    let text = match text.strip_prefix('.') {
        Some(rest) => format!("0.{rest}"),
        None => text.to_string(),
    };
    let text = match text.strip_suffix('.') {
        Some(int) => int.to_string(),
        None => text,
    };
    // Through `Value`: serde_json's typed `f64` reader would bring serde's float-printing
    // error path (crate::jsonread) into the worker.
    serde_json::from_slice::<serde_json::Value>(text.as_bytes())
        .ok()?
        .as_f64()
}

/// Parses a whole number from `min` to `max`, or returns `default` when unset.
fn parse_bounded(raw: Option<String>, default: u64, min: u64, max: u64) -> Result<u64, String> {
    match raw.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!(
                "expected a whole number from {min} to {max}, got {raw:?}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, invalid_variable};
    use super::*;
    use crate::scoring;

    #[test]
    fn values_are_read_and_normalised() {
        let c = config(&[
            ("MISTRAL_API_KEY", " sk-abc "),
            ("MISTRAL_BASE_URL", "http://127.0.0.1:9999/"),
            ("ROUTING_THRESHOLD", "0.25"),
            ("LLM_MUX_API_KEYS", "k1, k2,,"),
            ("MAX_QUERY_BYTES", "100"),
            ("UPSTREAM_TIMEOUT_MS", "1500"),
            ("METRICS_BATCH_MS", "250"),
        ])
        .unwrap();
        assert_eq!(c.metrics_batch_ms, 250);
        let unbatched = config(&[("METRICS_BATCH_MS", "0")]).unwrap();
        assert_eq!(unbatched.metrics_batch_ms, 0);
        assert_eq!(c.tiers[0].key(), Ok("sk-abc"));
        assert_eq!(c.tiers[1].base_url, "http://127.0.0.1:9999");
        assert_eq!(c.routing_threshold, 0.25);
        assert_eq!(c.tiers[1].policy.min_score, 0.25);
        assert_eq!(c.api_keys.len(), 2);
        assert_eq!(c.max_query_bytes, 100);
        assert_eq!(c.upstream_timeout_ms, 1500);
    }

    #[test]
    fn decimal_numbers_read_as_core_reads_them() {
        for (text, core) in [
            ("0", "0"),
            ("1", "1"),
            ("0.3103", "0.3103"),
            ("0.5573", "0.5573"),
            (".25", ".25"),
            ("+0.5", "+0.5"),
            ("1.", "1."),
            ("3e-1", "3e-1"),
            ("1E0", "1E0"),
            (" 0.7 ", "0.7"),
            ("0.123456789012345", "0.123456789012345"),
        ] {
            assert_eq!(parse_decimal(text), core.parse::<f64>().ok(), "{text:?}");
        }
        for bad in [
            "", " ", "abc", "0,5", "NaN", "inf", "--1", "0x1", "1..2", ".",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invalid_values_name_the_variable() {
        assert_eq!(
            invalid_variable(config(&[("LOG_REQUESTS", "maybe")])),
            "LOG_REQUESTS"
        );
        for (raw, on) in [
            ("", true),
            ("1", true),
            ("on", true),
            ("0", false),
            ("off", false),
        ] {
            let c = config(&[("LOG_REQUESTS", raw), ("MISTRAL_API_KEY", "k")]).unwrap();
            assert_eq!(c.log_requests, on, "{raw:?}");
        }
        assert_eq!(
            invalid_variable(config(&[("MAX_QUERY_BYTES", "abc")])),
            "MAX_QUERY_BYTES"
        );
        assert_eq!(
            invalid_variable(config(&[("MAX_QUERY_BYTES", "0")])),
            "MAX_QUERY_BYTES"
        );
        assert_eq!(
            invalid_variable(config(&[("MAX_QUERY_BYTES", "-5")])),
            "MAX_QUERY_BYTES"
        );
        assert_eq!(
            invalid_variable(config(&[("UPSTREAM_TIMEOUT_MS", "1.5")])),
            "UPSTREAM_TIMEOUT_MS"
        );
        for bad in ["-1", "abc", "10001"] {
            assert_eq!(
                invalid_variable(config(&[("METRICS_BATCH_MS", bad)])),
                "METRICS_BATCH_MS"
            );
        }
        assert_eq!(
            invalid_variable(config(&[("ROUTING_THRESHOLD", "1.5")])),
            "ROUTING_THRESHOLD"
        );
        assert_eq!(
            invalid_variable(config(&[("ROUTING_THRESHOLD", "NaN")])),
            "ROUTING_THRESHOLD"
        );
        assert_eq!(
            invalid_variable(config(&[("MISTRAL_BASE_URL", "ftp://x")])),
            "MISTRAL_BASE_URL"
        );
        assert_eq!(
            invalid_variable(config(&[("SMALL_MODEL", "a b")])),
            "SMALL_MODEL"
        );
        assert_eq!(
            invalid_variable(config(&[("LARGE_MODEL", "unknown-model")])),
            "LARGE_MODEL"
        );
        assert_eq!(
            invalid_variable(config(&[("MODEL_PRICES", "{bad")])),
            "MODEL_PRICES"
        );
        assert_eq!(invalid_variable(config(&[("TIERS", "[]")])), "TIERS");
        assert_eq!(invalid_variable(config(&[("ROUTER", "neural")])), "ROUTER");
        for bad in [
            "https://a.example/",
            "*,https://a.example",
            "a.example",
            ",",
        ] {
            assert_eq!(
                invalid_variable(config(&[("CORS_ALLOW_ORIGINS", bad)])),
                "CORS_ALLOW_ORIGINS"
            );
        }
    }

    #[test]
    fn cors_origins_are_read() {
        let c = config(&[(
            "CORS_ALLOW_ORIGINS",
            " https://A.example , http://localhost:3000 ",
        )])
        .unwrap();
        assert_eq!(
            c.cors,
            CorsPolicy::Origins(vec![
                "https://a.example".into(),
                "http://localhost:3000".into()
            ])
        );
        assert_eq!(
            config(&[("CORS_ALLOW_ORIGINS", "*")]).unwrap().cors,
            CorsPolicy::AnyOrigin
        );
        assert_eq!(
            config(&[("CORS_ALLOW_ORIGINS", "")]).unwrap().cors,
            CorsPolicy::Off
        );
    }

    #[test]
    fn router_choice_sets_the_default_threshold() {
        let c = config(&[("ROUTER", "learned")]).unwrap();
        assert_eq!(c.router, RouterKind::Learned);
        assert_eq!(c.routing_threshold, crate::learned::DEFAULT_THRESHOLD);
        let c = config(&[("ROUTER", "heuristic")]).unwrap();
        assert_eq!(c.routing_threshold, scoring::DEFAULT_THRESHOLD);
        let c = config(&[("ROUTER", "learned"), ("ROUTING_THRESHOLD", "0.7")]).unwrap();
        assert_eq!(c.routing_threshold, 0.7);
    }
}

//! Price table (embedded data file with its date) and the cost arithmetic.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jsonread::{self, Fields};
use crate::named::Named;

/// The embedded list-price table; see `data/prices.json` for its date and source.
const EMBEDDED_PRICES: &str = include_str!("../../../data/prices.json");

/// Price of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelPrice {
    /// USD per 1M prompt tokens.
    pub input: f64,
    /// USD per 1M completion tokens.
    pub output: f64,
}

impl<'de> Deserialize<'de> for ModelPrice {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl ModelPrice {
    /// Reads `{"input": n, "output": n}` (other fields ignored).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(ModelPrice {
            input: f.f64("input")?,
            output: f.f64("output")?,
        })
    }

    /// Cost in USD of one call with these token counts.
    pub fn cost_usd(&self, tokens_in: u64, tokens_out: u64) -> f64 {
        (tokens_in as f64 * self.input + tokens_out as f64 * self.output) / 1_000_000.0
    }

    fn validate(&self, model: &str) -> Result<(), String> {
        for (side, v) in [("input", self.input), ("output", self.output)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "price of {model} ({side}) must be a finite, non-negative number, got {}",
                    crate::numfmt::fixed(v, 6)
                ));
            }
        }
        Ok(())
    }
}

/// Model id -> price, with the date the prices were read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceTable {
    /// When these list prices were read (e.g. "2026-08").
    pub as_of: String,
    /// Where they come from.
    #[serde(default)]
    pub source: String,
    /// Prices keyed on dated model ids and on aliases.
    pub models: Named<ModelPrice>,
}

impl<'de> Deserialize<'de> for Named<ModelPrice> {
    /// Read from a `serde_json::Value` (`crate::jsonread`), not through serde_json's typed
    /// map reader.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl Named<ModelPrice> {
    /// Reads `{"model-id": {"input": n, "output": n}, ...}`; errors name the model.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let map = v
            .as_object()
            .ok_or_else(|| String::from("expected a JSON object of prices"))?;
        let mut named = Self::default();
        for (model, value) in map {
            let price = ModelPrice::from_value(value).map_err(|e| format!("{model}: {e}"))?;
            named.insert(model, price);
        }
        Ok(named)
    }
}

impl<'de> Deserialize<'de> for PriceTable {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl PriceTable {
    /// Reads a table as [`Serialize`] writes it (`source` may be missing).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(PriceTable {
            as_of: f.string("as_of")?,
            source: match f.0.get("source") {
                Some(source) => jsonread::as_str(source, "source")?.to_string(),
                None => String::new(),
            },
            models: Named::<ModelPrice>::from_value(f.get("models")?)
                .map_err(|e| format!("models: {e}"))?,
        })
    }

    /// The table shipped inside the worker.
    pub fn embedded() -> Self {
        // The embedded file is checked by a unit test; a broken file yields an empty table
        // rather than a panic in the worker.
        Self::from_json(EMBEDDED_PRICES).unwrap_or_else(|_| PriceTable {
            as_of: String::from("invalid"),
            source: String::new(),
            models: Named::default(),
        })
    }

    /// Parses and validates a full table.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let table = serde_json::from_slice::<Value>(text.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|v| Self::from_value(&v))
            .map_err(|e| format!("invalid price table: {e}"))?;
        for (model, price) in &table.models.0 {
            price.validate(model)?;
        }
        Ok(table)
    }

    /// Applies operator overrides given as `{"model-id": {"input": 0.1, "output": 0.3}, ...}`.
    pub fn apply_overrides(&mut self, json: &str) -> Result<(), String> {
        let overrides = serde_json::from_slice::<Value>(json.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|v| Named::<ModelPrice>::from_value(&v))
            .map_err(|e| format!("expected {{\"model\": {{\"input\": n, \"output\": n}}}}: {e}"))?;
        for (model, price) in overrides.0 {
            price.validate(&model)?;
            self.models.insert(&model, price);
        }
        Ok(())
    }

    /// Price for the dated model id the upstream returned, falling back to the alias requested.
    pub fn lookup(&self, returned_model: &str, requested_alias: &str) -> Option<ModelPrice> {
        self.models
            .get(returned_model)
            .or_else(|| self.models.get(requested_alias))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_loads_and_has_its_date() {
        let table = PriceTable::from_json(EMBEDDED_PRICES).expect("embedded prices parse");
        assert_eq!(table.as_of, "2026-08");
        assert_eq!(
            table.lookup("mistral-small-latest", "x"),
            Some(ModelPrice {
                input: 0.15,
                output: 0.60
            })
        );
        assert_eq!(PriceTable::embedded(), table);
    }

    #[test]
    fn dated_id_wins_then_alias_fallback() {
        let mut table = PriceTable::embedded();
        table
            .apply_overrides(r#"{"mistral-large-2512": {"input": 9, "output": 9}}"#)
            .unwrap();
        assert_eq!(
            table
                .lookup("mistral-large-2512", "mistral-large-latest")
                .unwrap()
                .input,
            9.0
        );
        // unknown dated id: alias price
        assert_eq!(
            table
                .lookup("mistral-large-2699", "mistral-large-latest")
                .unwrap()
                .input,
            0.5
        );
        assert_eq!(table.lookup("nope", "nada"), None);
    }

    #[test]
    fn cost_arithmetic() {
        let p = ModelPrice {
            input: 0.5,
            output: 1.5,
        };
        assert!((p.cost_usd(1_000_000, 0) - 0.5).abs() < 1e-12);
        assert!((p.cost_usd(8, 210) - (8.0 * 0.5 + 210.0 * 1.5) / 1e6).abs() < 1e-15);
    }

    #[test]
    fn overrides_are_validated() {
        let mut table = PriceTable::embedded();
        assert!(table.apply_overrides("not json").is_err());
        assert!(table
            .apply_overrides(r#"{"m": {"input": -1, "output": 1}}"#)
            .is_err());
        assert!(table.apply_overrides(r#"{"m": {"input": 1}}"#).is_err());
    }

    #[test]
    fn the_table_reads_back_as_written_and_names_bad_fields() {
        let table = PriceTable::embedded();
        let text = serde_json::to_string(&table).unwrap();
        assert_eq!(PriceTable::from_json(&text), Ok(table.clone()));
        assert_eq!(serde_json::from_str::<PriceTable>(&text).unwrap(), table);
        let one =
            r#"{"as_of": "2026-01", "models": {"m": {"input": 1, "output": 2.5, "note": "x"}}}"#;
        let read = PriceTable::from_json(one).unwrap();
        assert_eq!(read.source, "");
        assert_eq!(
            read.lookup("m", "m"),
            Some(ModelPrice {
                input: 1.0,
                output: 2.5
            })
        );
        for (text, needle) in [
            (r#"{"models": {}}"#, "missing field `as_of`"),
            (r#"{"as_of": 1, "models": {}}"#, "as_of"),
            (r#"{"as_of": "x", "source": null, "models": {}}"#, "source"),
            (r#"{"as_of": "x"}"#, "missing field `models`"),
            (r#"{"as_of": "x", "models": []}"#, "models"),
            (
                r#"{"as_of": "x", "models": {"m": {"input": 1}}}"#,
                "m: missing field `output`",
            ),
            (
                r#"{"as_of": "x", "models": {"m": {"input": "1", "output": 1}}}"#,
                "`input`",
            ),
            (r#"{"as_of": "x", "models": {"m": 3}}"#, "m: "),
            ("[]", "object"),
        ] {
            let e = PriceTable::from_json(text).unwrap_err();
            assert!(
                e.starts_with("invalid price table") && e.contains(needle),
                "{text}: {e}"
            );
        }
        let price = ModelPrice {
            input: 0.5,
            output: 1.5,
        };
        let text = serde_json::to_string(&price).unwrap();
        assert_eq!(serde_json::from_str::<ModelPrice>(&text).unwrap(), price);
        let mut table = PriceTable::embedded();
        let e = table
            .apply_overrides(r#"{"m": {"output": 1}}"#)
            .unwrap_err();
        assert!(e.contains("m: missing field `input`"), "{e}");
        let e = table.apply_overrides("[1]").unwrap_err();
        assert!(e.starts_with("expected {"), "{e}");
    }
}

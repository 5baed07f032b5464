//! Price table (embedded data file with its date) and the cost arithmetic.

use serde::{Deserialize, Serialize};

use crate::named::Named;

/// The embedded list-price table; see `data/prices.json` for its date and source.
const EMBEDDED_PRICES: &str = include_str!("../../../data/prices.json");

/// Price of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// USD per 1M prompt tokens.
    pub input: f64,
    /// USD per 1M completion tokens.
    pub output: f64,
}

impl ModelPrice {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Read through serde_json's `Map` (already in the worker for requests) rather than a
    /// derived map visitor of its own.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut named = Self::default();
        for (model, value) in &map {
            let side = |field: &str| {
                value
                    .get(field)
                    .and_then(serde_json::Value::as_f64)
                    .ok_or_else(|| {
                        D::Error::custom(format!("{model}: missing or non-numeric field `{field}`"))
                    })
            };
            let price = ModelPrice {
                input: side("input")?,
                output: side("output")?,
            };
            named.insert(model, price);
        }
        Ok(named)
    }
}

impl PriceTable {
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
        let table: PriceTable = serde_json::from_slice(text.as_bytes())
            .map_err(|e| format!("invalid price table: {e}"))?;
        for (model, price) in &table.models.0 {
            price.validate(model)?;
        }
        Ok(table)
    }

    /// Applies operator overrides given as `{"model-id": {"input": 0.1, "output": 0.3}, ...}`.
    pub fn apply_overrides(&mut self, json: &str) -> Result<(), String> {
        let overrides: Named<ModelPrice> = serde_json::from_slice(json.as_bytes())
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
}

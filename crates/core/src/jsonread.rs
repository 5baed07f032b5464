//! Reading stored and configured JSON field by field from a `serde_json::Value`, instead of
//! through serde's derived visitors.
//!
//! Every derived `Deserialize` instantiated against serde_json's deserializer costs the
//! worker one visitor of its own (1-7 KB of wasm each), and serde_json's typed entry points
//! (`deserialize_struct`, `_map`, `_seq`, `_u64`, ...) report a wrong type through serde's
//! `Unexpected`, whose `Display` formats floats with core's float-to-decimal code (Grisu
//! and Dragon, ~15 KB). Parsing a `Value` goes through `deserialize_any` alone; the readers
//! here then accept what the derived readers accepted (an object with the fields named,
//! unknown fields ignored unless the reader refuses them, `null` or a missing field as
//! `None` for an `Option`) and name the field in their errors.
//!
//! The pattern: `T::from_value(&Value) -> Result<T, String>` next to the type, and where the
//! type must still implement `Deserialize` (tests, the eval CLI, types deriving it around
//! it), `impl Deserialize for T` through [`deserialize_via_value`].

use serde_json::{Map, Value};

/// A JSON object, read field by field. Errors name the field.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The fields of `v`, which must be an object.
    pub fn of(v: &'a Value) -> Result<Self, String> {
        v.as_object()
            .map(Fields)
            .ok_or_else(|| String::from("expected a JSON object"))
    }

    /// The value of `field`; an error when it is missing.
    pub fn get(&self, field: &str) -> Result<&'a Value, String> {
        self.0
            .get(field)
            .ok_or_else(|| format!("missing field `{field}`"))
    }

    /// The value of `field` when present and not `null` (an `Option` field's reading).
    pub fn opt(&self, field: &str) -> Option<&'a Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// An unsigned integer field.
    pub fn u64(&self, field: &str) -> Result<u64, String> {
        as_u64(self.get(field)?, field)
    }

    /// An unsigned integer field that must fit `usize`.
    pub fn usize(&self, field: &str) -> Result<usize, String> {
        usize::try_from(self.u64(field)?).map_err(|_| out_of_range(field))
    }

    /// An unsigned integer field that must fit `u8`.
    pub fn u8(&self, field: &str) -> Result<u8, String> {
        u8::try_from(self.u64(field)?).map_err(|_| out_of_range(field))
    }

    /// A number field (an integer or not).
    pub fn f64(&self, field: &str) -> Result<f64, String> {
        as_f64(self.get(field)?, field)
    }

    /// A boolean field.
    pub fn bool(&self, field: &str) -> Result<bool, String> {
        self.get(field)?
            .as_bool()
            .ok_or_else(|| invalid_type(field, "a boolean"))
    }

    /// A string field.
    pub fn str(&self, field: &str) -> Result<&'a str, String> {
        as_str(self.get(field)?, field)
    }

    /// A string field, owned.
    pub fn string(&self, field: &str) -> Result<String, String> {
        self.str(field).map(str::to_string)
    }

    /// An array field.
    pub fn array(&self, field: &str) -> Result<&'a Vec<Value>, String> {
        self.get(field)?
            .as_array()
            .ok_or_else(|| invalid_type(field, "an array"))
    }

    /// An object field.
    pub fn object(&self, field: &str) -> Result<&'a Map<String, Value>, String> {
        self.get(field)?
            .as_object()
            .ok_or_else(|| invalid_type(field, "an object"))
    }

    /// An optional unsigned integer field (missing or `null`: `None`).
    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>, String> {
        self.opt(field).map(|v| as_u64(v, field)).transpose()
    }

    /// An optional number field (missing or `null`: `None`).
    pub fn opt_f64(&self, field: &str) -> Result<Option<f64>, String> {
        self.opt(field).map(|v| as_f64(v, field)).transpose()
    }

    /// An optional string field (missing or `null`: `None`).
    pub fn opt_string(&self, field: &str) -> Result<Option<String>, String> {
        self.opt(field)
            .map(|v| as_str(v, field).map(str::to_string))
            .transpose()
    }

    /// The first field not in `known`, as serde's `deny_unknown_fields` reports it.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "unknown field `{k}`, expected one of `{}`",
                known.join("`, `")
            )),
            None => Ok(()),
        }
    }
}

/// `v` as an unsigned integer; the error names `field`.
pub fn as_u64(v: &Value, field: &str) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| invalid_type(field, "an unsigned integer"))
}

/// `v` as a number; the error names `field`.
pub fn as_f64(v: &Value, field: &str) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| invalid_type(field, "a number"))
}

/// `v` as a string; the error names `field`.
pub fn as_str<'a>(v: &'a Value, field: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| invalid_type(field, "a string"))
}

/// The numbers of an array field (`null` or any other element is an error).
pub fn f64_array(v: &Value, field: &str) -> Result<Vec<f64>, String> {
    v.as_array()
        .ok_or_else(|| invalid_type(field, "an array of numbers"))?
        .iter()
        .map(|x| as_f64(x, field))
        .collect()
}

/// `[u64; 2]` from a two-element array.
pub fn u64_pair(v: &Value, field: &str) -> Result<[u64; 2], String> {
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => Ok([as_u64(a, field)?, as_u64(b, field)?]),
        _ => Err(invalid_type(field, "an array of two unsigned integers")),
    }
}

/// The error of a field of the wrong type.
pub fn invalid_type(field: &str, expected: &str) -> String {
    format!("invalid type for field `{field}`: expected {expected}")
}

fn out_of_range(field: &str) -> String {
    format!("field `{field}`: number out of range")
}

/// `Deserialize::deserialize` through a `Value` and `from_value`: only serde_json's
/// `deserialize_any` is instantiated against the deserializer.
pub fn deserialize_via_value<'de, D, T>(
    deserializer: D,
    from_value: fn(&Value) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::{Deserialize, Error};
    let value = Value::deserialize(deserializer)?;
    from_value(&value).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_read_and_name_the_field_in_errors() {
        let v = json!({"n": 3, "x": 1.5, "i": 2, "s": "a", "b": true, "none": null, "big": 300,
                       "neg": -1, "arr": [1, 2.5], "pair": [1, 2], "obj": {}});
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.u64("n"), Ok(3));
        assert_eq!(f.usize("n"), Ok(3));
        assert_eq!(f.u8("n"), Ok(3));
        assert_eq!(f.f64("x"), Ok(1.5));
        assert_eq!(f.f64("i"), Ok(2.0));
        assert_eq!(f.str("s"), Ok("a"));
        assert_eq!(f.bool("b"), Ok(true));
        assert_eq!(f.opt_u64("none"), Ok(None));
        assert_eq!(f.opt_u64("absent"), Ok(None));
        assert_eq!(f.opt_f64("x"), Ok(Some(1.5)));
        assert_eq!(f.opt_string("s"), Ok(Some("a".into())));
        assert_eq!(f64_array(&v["arr"], "arr"), Ok(vec![1.0, 2.5]));
        assert_eq!(u64_pair(&v["pair"], "pair"), Ok([1, 2]));
        assert!(f.object("obj").is_ok());
        for (result, field) in [
            (f.u64("absent").map(|_| ()), "absent"),
            (f.u64("x").map(|_| ()), "x"),
            (f.u64("neg").map(|_| ()), "neg"),
            (f.u8("big").map(|_| ()), "big"),
            (f.f64("s").map(|_| ()), "s"),
            (f.f64("none").map(|_| ()), "none"),
            (f.bool("n").map(|_| ()), "n"),
            (f.str("n").map(|_| ()), "n"),
            (f.array("obj").map(|_| ()), "obj"),
            (f.object("arr").map(|_| ()), "arr"),
            (f.opt_u64("s").map(|_| ()), "s"),
            (f64_array(&v["pair"], "pair").map(|_| ()), "-"),
            (f64_array(&json!([1, null]), "arr").map(|_| ()), "arr"),
            (u64_pair(&v["arr"], "arr").map(|_| ()), "arr"),
            (u64_pair(&json!([1, 2, 3]), "three").map(|_| ()), "three"),
        ] {
            if field == "-" {
                assert!(result.is_ok());
                continue;
            }
            let e = result.unwrap_err();
            assert!(e.contains(&format!("`{field}`")), "{e}");
        }
        assert!(Fields::of(&json!([1])).is_err());
        assert!(f
            .deny_unknown(&["n", "x"])
            .unwrap_err()
            .starts_with("unknown field `"));
        assert!(Fields::of(&json!({"n": 1}))
            .unwrap()
            .deny_unknown(&["n"])
            .is_ok());
    }
}

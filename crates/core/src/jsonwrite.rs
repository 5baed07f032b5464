//! Building JSON objects without `serde_json::json!`.
//!
//! Each `json!({...})` expands in place to one `String` allocation, one `to_value(..)
//! .unwrap()` (with its panic path) and one `Map::insert` per key: a few hundred bytes of
//! wasm per object. [`object!`](crate::object) passes the pairs to [`object`], one copy of
//! that loop for all of them; the values go in through `Value::from`.

use serde_json::{Map, Value};

/// The JSON object of `pairs` (a key given twice keeps its last value, as with `json!`);
/// the values are taken, leaving `null` behind.
pub fn object(pairs: &mut [(&str, Value)]) -> Value {
    let mut map = Map::new();
    for (key, value) in pairs.iter_mut() {
        map.insert((*key).to_string(), std::mem::take(value));
    }
    Value::Object(map)
}

/// `value` as compact JSON text, as `value.to_string()` writes it, but through serde_json's
/// writer into a `Vec` (which the worker has anyway) rather than through `Display`, which
/// instantiates the serializer again over a formatter (and its pretty-printing).
pub fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `object!{"key": value, ...}`: a JSON object through [`object`], each value converted
/// with `serde_json::Value::from`.
#[macro_export]
macro_rules! object {
    ($($key:literal: $value:expr),* $(,)?) => {
        $crate::jsonwrite::object(&mut [$(($key, ::serde_json::Value::from($value))),*])
    };
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn same_value_as_json_macro() {
        let name = String::from("n");
        let built = crate::object! {
            "type": "tool",
            "name": name.as_str(),
            "index": 3usize,
            "list": vec![Value::from(1)],
            "inner": crate::object! {},
            "null": Value::Null,
        };
        assert_eq!(
            built,
            json!({"type": "tool", "name": "n", "index": 3, "list": [1], "inner": {}, "null": null})
        );
        assert_eq!(built.to_string(), json!({"type": "tool", "name": "n", "index": 3, "list": [1], "inner": {}, "null": null}).to_string());
    }
}

//! [`Named`]: values by name in a sorted `Vec`, written as a JSON object.

use serde::{Deserialize, Serialize};

/// Values by name, sorted by name, written as a JSON object. A `Vec` rather than a
/// `BTreeMap`: every new `BTreeMap` value type costs the worker several KB of B-tree code.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Default> Named<T> {
    /// The value named `name`, inserted (default) in order if missing.
    pub fn entry(&mut self, name: &str) -> &mut T {
        let at = match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (name.to_string(), T::default()));
                at
            }
        };
        &mut self.0[at].1
    }
}

impl<T> Named<T> {
    /// Sets the value named `name`.
    pub fn insert(&mut self, name: &str, value: T) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(at) => self.0[at].1 = value,
            Err(at) => self.0.insert(at, (name.to_string(), value)),
        }
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// No value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl Named<u64> {
    /// The sum of the values.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// Adds `n` to the value named `name`.
    pub fn add(&mut self, name: &str, n: u64) {
        *self.entry(name) += n;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Named<u64>) {
        for (name, n) in &other.0 {
            self.add(name, *n);
        }
    }

    /// Counts from `(name, count)` pairs (tests and literals).
    pub fn from_pairs(pairs: &[(&str, u64)]) -> Self {
        let mut named = Self::default();
        for (name, n) in pairs {
            named.add(name, *n);
        }
        named
    }
}

impl std::ops::Index<&str> for Named<u64> {
    type Output = u64;

    /// The count named `name`; 0 when there is none.
    fn index(&self, name: &str) -> &u64 {
        self.get(name).unwrap_or(&0)
    }
}

impl<'de> Deserialize<'de> for Named<u64> {
    /// Counts read from a `serde_json::Value` (`crate::jsonread`), not through serde_json's
    /// typed map reader; values that are not counts are refused.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl Named<u64> {
    /// Counts from a JSON object of unsigned integers; errors name the entry.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, String> {
        let map = v
            .as_object()
            .ok_or_else(|| String::from("expected a JSON object of counts"))?;
        let mut named = Self::default();
        for (name, value) in map {
            let n = value
                .as_u64()
                .ok_or_else(|| format!("{name}: expected a count"))?;
            named.insert(name, n);
        }
        Ok(named)
    }
}

impl<T> FromIterator<(String, T)> for Named<T> {
    /// In order; a later value of a name replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        let mut named = Self::default();
        for (name, value) in iter {
            named.insert(&name, value);
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back_as_written_and_refuse_non_counts() {
        let counts = Named::from_pairs(&[("b", 2), ("a", 1), ("zero", 0)]);
        let text = serde_json::to_string(&counts).unwrap();
        assert_eq!(text, r#"{"a":1,"b":2,"zero":0}"#);
        assert_eq!(serde_json::from_str::<Named<u64>>(&text).unwrap(), counts);
        assert_eq!(
            serde_json::from_str::<Named<u64>>("{}").unwrap(),
            Named::default()
        );
        for (text, needle) in [
            (r#"{"a": -1}"#, "a: expected a count"),
            (r#"{"a": 1.5}"#, "a: expected a count"),
            (r#"{"a": null}"#, "a: expected a count"),
            ("[]", "expected a JSON object"),
            ("3", "expected a JSON object"),
        ] {
            let e = serde_json::from_str::<Named<u64>>(text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}

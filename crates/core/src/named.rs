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
    /// Counts read through serde_json's `Map` (already in the worker) rather than a
    /// derived map visitor; values that are not counts are refused.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut named = Self::default();
        for (name, value) in &map {
            let n = value
                .as_u64()
                .ok_or_else(|| D::Error::custom(format!("{name}: expected a count")))?;
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

//! Secrets and client authentication: the [`Secret`] type, which prints as `*****`, the
//! parsing of LLM_MUX_API_KEYS into the accepted bearer tokens, and
//! [`Config::authorize`], which compares a request's token against every key in constant
//! time. It must never let a secret's value reach `Debug`, `Display` or an error message,
//! and must not stop comparing early on a match (timing must not say which key matched).

use std::fmt;

use subtle::ConstantTimeEq;

use super::Config;
use crate::error::GatewayError;

/// A secret string that never prints its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that must send it (the upstream request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// The bearer tokens of LLM_MUX_API_KEYS (comma-separated, blanks dropped); none when
/// unset.
pub(super) fn api_keys(raw: Option<String>) -> Vec<Secret> {
    raw.map(|raw| {
        raw.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect()
    })
    .unwrap_or_default()
}

/// LLM_MUX_API_KEYS (its raw value) read on its own, so that a request can be
/// authenticated before an invalid configuration (whose message may name configured
/// values) is revealed to it.
pub fn api_keys_from_lookup(raw: Option<String>) -> Vec<Secret> {
    api_keys(raw)
}

impl Config {
    /// Checks an `Authorization` header against LLM_MUX_API_KEYS in constant time per key.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        check_bearer(&self.api_keys, authorization).map(|_| ())
    }

    /// The id of the key an authorized request presented (`None` without keys).
    pub fn key_id_of(&self, authorization: Option<&str>) -> Option<&str> {
        let index = check_bearer(&self.api_keys, authorization).ok()??;
        self.cost.key_ids.get(index).map(String::as_str)
    }
}

/// Checks an `Authorization: Bearer` header against `keys` (none: every request passes),
/// in constant time per key; the index of the key that matched.
pub fn check_bearer(
    keys: &[Secret],
    authorization: Option<&str>,
) -> Result<Option<usize>, GatewayError> {
    use subtle::ConditionallySelectable;
    if keys.is_empty() {
        return Ok(None);
    }
    let token = authorization
        .and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or(GatewayError::Unauthorized)?;
    // Compare against every key without stopping early, so timing says nothing
    // about which key (or which prefix) matched.
    let mut matched = subtle::Choice::from(0u8);
    let mut index = 0u32;
    for (i, key) in keys.iter().enumerate() {
        let equal = key.expose().as_bytes().ct_eq(token.as_bytes());
        index.conditional_assign(&(i as u32), equal);
        matched |= equal;
    }
    if bool::from(matched) {
        Ok(Some(index as usize))
    } else {
        Err(GatewayError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::config;
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = config(&[
            ("MISTRAL_API_KEY", "sk-supersecret"),
            ("LLM_MUX_API_KEYS", "tok-1"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("sk-supersecret"));
        assert!(!printed.contains("tok-1"));
    }

    #[test]
    fn auth_checks_bearer_tokens() {
        let open = config(&[]).unwrap();
        assert!(open.authorize(None).is_ok());
        let c = config(&[("LLM_MUX_API_KEYS", "alpha,beta")]).unwrap();
        assert!(c.authorize(Some("Bearer alpha")).is_ok());
        assert!(c.authorize(Some("bearer beta")).is_ok());
        assert_eq!(
            c.key_id_of(Some("Bearer beta")),
            Some(c.cost.key_ids[1].as_str())
        );
        assert_eq!(
            c.key_id_of(Some("Bearer alpha")),
            Some(c.cost.key_ids[0].as_str())
        );
        assert_eq!(c.key_id_of(Some("Bearer gamma")), None);
        assert_eq!(open.key_id_of(Some("Bearer alpha")), None);
        assert_eq!(c.authorize(None), Err(GatewayError::Unauthorized));
        assert_eq!(
            c.authorize(Some("Bearer alph")),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(
            c.authorize(Some("Bearer alphax")),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(
            c.authorize(Some("Basic alpha")),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(c.authorize(Some("alpha")), Err(GatewayError::Unauthorized));
        assert_eq!(
            c.authorize(Some("Bearer ")),
            Err(GatewayError::Unauthorized)
        );
    }
}

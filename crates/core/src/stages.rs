//! The pipeline's decisions that need no I/O, one function per stage, in the order the
//! shell's pipeline (`src/pipeline.rs`) runs them.
//!
//! Authorization lives here once for every protected route. The admission (rate limits),
//! budget and cache stages have no policy yet: they admit every request and find nothing
//! cached, and are where those policies will go. These functions must not touch the
//! network or the clock; what they need of the runtime is passed in.

use crate::config::{check_bearer, Config, Secret};
use crate::error::GatewayError;
use crate::plan::Plan;
use crate::upstream::CallPolicy;

/// authorize: the request carries an accepted bearer key (when `LLM_MUX_API_KEYS` is set)
/// and the configuration is valid. The one place a request is authorized. The key is
/// checked first, against `keys` (LLM_MUX_API_KEYS read on its own) when the rest of the
/// configuration is invalid: what is wrong with it (a configured URL, say) is told only
/// to a caller with a key, and to the log.
pub fn authorize<'c>(
    config: &'c Result<Config, GatewayError>,
    keys: &[Secret],
    authorization: Option<&str>,
) -> Result<&'c Config, GatewayError> {
    match config {
        Ok(config) => {
            config.authorize(authorization)?;
            Ok(config)
        }
        Err(error) => {
            check_bearer(keys, authorization)?;
            Err(error.clone())
        }
    }
}

/// authorize an admin action (`DELETE /metrics`): the bearer token must be
/// LLM_MUX_ADMIN_KEY. Without an admin key, or with an invalid configuration (whose
/// message is not for an unauthenticated caller), the action is off.
pub fn authorize_admin<'c>(
    config: &'c Result<Config, GatewayError>,
    authorization: Option<&str>,
) -> Result<&'c Config, GatewayError> {
    let Some((config, admin_key)) = config
        .as_ref()
        .ok()
        .and_then(|c| Some((c, c.admin_key.as_ref()?)))
    else {
        return Err(GatewayError::Forbidden(
            "admin actions are off: set the secret LLM_MUX_ADMIN_KEY".into(),
        ));
    };
    // Present and equal (check_bearer passes everything only for an empty key list).
    let presented = authorization.is_some_and(|h| !h.trim().is_empty());
    if !presented || check_bearer(std::slice::from_ref(admin_key), authorization).is_err() {
        return Err(GatewayError::Forbidden(
            "DELETE /metrics needs 'Authorization: Bearer <LLM_MUX_ADMIN_KEY>'".into(),
        ));
    }
    Ok(config)
}

/// admit: rate limits. No limit is configured yet, so every authorized request is admitted.
pub fn admit(_config: &Config) -> Result<(), GatewayError> {
    Ok(())
}

/// budget: spend caps, checked against the plan's worst case. None is configured yet.
pub fn budget(_config: &Config, _plan: &Plan) -> Result<(), GatewayError> {
    Ok(())
}

/// call: how the upstream call may spend its time.
pub fn call_policy(config: &Config) -> CallPolicy {
    CallPolicy::with_timeout(config.upstream_timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::api_keys_from_lookup;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, GatewayError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn authorize_checks_the_key_then_the_configuration() {
        let open = config(&[]);
        assert!(authorize(&open, &[], None).is_ok());
        let keyed = config(&[("LLM_MUX_API_KEYS", "k1,k2")]);
        assert_eq!(
            authorize(&keyed, &[], None).err(),
            Some(GatewayError::Unauthorized)
        );
        assert_eq!(
            authorize(&keyed, &[], Some("Bearer nope")).err(),
            Some(GatewayError::Unauthorized)
        );
        assert!(authorize(&keyed, &[], Some("Bearer k2")).is_ok());
        // An invalid configuration names a configured value: only a caller with a key
        // learns it.
        let vars = [
            ("MISTRAL_BASE_URL", "ftp://internal.example:21"),
            ("LLM_MUX_API_KEYS", "k1"),
        ];
        let broken = config(&vars);
        let keys = api_keys_from_lookup(Some("k1".to_string()));
        assert_eq!(
            authorize(&broken, &keys, None).err(),
            Some(GatewayError::Unauthorized)
        );
        assert_eq!(
            authorize(&broken, &keys, Some("Bearer k2")).err(),
            Some(GatewayError::Unauthorized)
        );
        assert!(matches!(
            authorize(&broken, &keys, Some("Bearer k1")),
            Err(GatewayError::InvalidConfig {
                variable: "MISTRAL_BASE_URL",
                ..
            })
        ));
        // Without keys, the configuration error is everyone's answer (as before).
        let open_broken = config(&[("MAX_QUERY_BYTES", "0")]);
        assert!(matches!(
            authorize(&open_broken, &[], None),
            Err(GatewayError::InvalidConfig {
                variable: "MAX_QUERY_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn admin_actions_need_the_admin_key() {
        let off = config(&[("LLM_MUX_API_KEYS", "k1")]);
        assert_eq!(
            authorize_admin(&off, Some("Bearer k1"))
                .unwrap_err()
                .status(),
            403
        );
        let on = config(&[("LLM_MUX_ADMIN_KEY", "adm-1"), ("LLM_MUX_API_KEYS", "k1")]);
        assert!(authorize_admin(&on, Some("Bearer adm-1")).is_ok());
        for wrong in [None, Some("Bearer k1"), Some("Bearer adm-"), Some("adm-1")] {
            let error = authorize_admin(&on, wrong).unwrap_err();
            assert_eq!(error.status(), 403, "{wrong:?}");
            assert!(!error.client_message().contains("adm-1"));
        }
        // An invalid configuration is not revealed: the action is off.
        let broken = config(&[("MAX_QUERY_BYTES", "0"), ("LLM_MUX_ADMIN_KEY", "adm-2")]);
        let error = authorize_admin(&broken, Some("Bearer adm-2")).unwrap_err();
        assert_eq!(error.status(), 403);
        assert!(!error.client_message().contains("MAX_QUERY_BYTES"));
    }

    #[test]
    fn the_call_policy_follows_the_configured_deadline() {
        let c = config(&[("UPSTREAM_TIMEOUT_MS", "1234")]).unwrap();
        assert_eq!(call_policy(&c), CallPolicy::with_timeout(1234));
        assert!(admit(&c).is_ok());
    }
}

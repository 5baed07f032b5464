//! The pipeline's decisions that need no I/O, one function per stage, in the order the
//! shell's pipeline (`src/pipeline.rs`) runs them.
//!
//! Authorization lives here once for every protected route. The admission (rate limits),
//! budget and cache stages have no policy yet: they admit every request and find nothing
//! cached, and are where those policies will go. These functions must not touch the
//! network or the clock; what they need of the runtime is passed in.

use crate::config::Config;
use crate::error::GatewayError;
use crate::plan::Plan;
use crate::upstream::CallPolicy;

/// authorize: the configuration is valid and the request carries an accepted bearer key
/// (when `LLM_MUX_API_KEYS` is set). The one place a request is authorized.
pub fn authorize<'c>(
    config: &'c Result<Config, GatewayError>,
    authorization: Option<&str>,
) -> Result<&'c Config, GatewayError> {
    let config = config.as_ref().map_err(Clone::clone)?;
    config.authorize(authorization)?;
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
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, GatewayError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn authorize_checks_the_configuration_then_the_key() {
        let open = config(&[]);
        assert!(authorize(&open, None).is_ok());
        let keyed = config(&[("LLM_MUX_API_KEYS", "k1,k2")]);
        assert_eq!(
            authorize(&keyed, None).err(),
            Some(GatewayError::Unauthorized)
        );
        assert_eq!(
            authorize(&keyed, Some("Bearer nope")).err(),
            Some(GatewayError::Unauthorized)
        );
        assert!(authorize(&keyed, Some("Bearer k2")).is_ok());
        let broken = config(&[("MAX_QUERY_BYTES", "0"), ("LLM_MUX_API_KEYS", "k1")]);
        assert!(matches!(
            authorize(&broken, Some("Bearer k1")),
            Err(GatewayError::InvalidConfig {
                variable: "MAX_QUERY_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn the_call_policy_follows_the_configured_deadline() {
        let c = config(&[("UPSTREAM_TIMEOUT_MS", "1234")]).unwrap();
        assert_eq!(call_policy(&c), CallPolicy::with_timeout(1234));
        assert!(admit(&c).is_ok());
    }
}

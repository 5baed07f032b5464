//! The quality-control variables: how many automatically routed requests are shadowed and
//! judged (`QUALITY_SAMPLE_RATE`, `QUALITY_MAX_SAMPLES_PER_HOUR`), who judges
//! (`JUDGE_TIER`), and the one target the threshold controller holds (`QUALITY_TARGET`,
//! `TARGET_LARGE_SHARE` or `TARGET_COST_PER_1K`).
//!
//! It owns the validation of those variables and nothing else: it must not sample, judge
//! or move a threshold (that is `crate::quality` and the shell's quality store).

use super::tiers::TierConfig;
use super::vars::{self, invalid, Lookup};
use crate::error::GatewayError;

/// Default cap on judged samples per hour (`QUALITY_MAX_SAMPLES_PER_HOUR`).
pub const DEFAULT_MAX_SAMPLES_PER_HOUR: u64 = 120;
/// Largest accepted `QUALITY_MAX_SAMPLES_PER_HOUR`.
pub const MAX_MAX_SAMPLES_PER_HOUR: u64 = 1_000_000;

/// What the threshold controller holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QualityTarget {
    /// Quality retained versus the top tier, at the estimate's lower 95% bound
    /// (`QUALITY_TARGET`, in (0, 1]).
    Quality(f64),
    /// Share of automatically routed requests sent to the top tier (`TARGET_LARGE_SHARE`).
    LargeShare(f64),
    /// Expected serving cost per 1,000 requests, in USD (`TARGET_COST_PER_1K`).
    CostPer1k(f64),
}

/// The validated quality-control settings.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    /// Largest share of automatically routed requests that are shadowed and judged;
    /// 0 turns sampling off.
    pub sample_rate: f64,
    /// Cap on samples accepted per hour (the spend bound).
    pub max_samples_per_hour: u64,
    /// Index of the tier that judges (default: the top tier).
    pub judge_tier: usize,
    /// The controller's target; `None`: the configured threshold is used as is.
    pub target: Option<QualityTarget>,
}

impl QualityConfig {
    /// Whether any quality work is configured (sampling or a target).
    pub fn enabled(&self) -> bool {
        self.sample_rate > 0.0 || self.target.is_some()
    }
}

/// Reads the quality variables; `tiers` and `top` resolve `JUDGE_TIER`.
pub(super) fn quality(
    get: Lookup,
    tiers: &[TierConfig],
    top: usize,
) -> Result<QualityConfig, GatewayError> {
    let sample_rate = vars::decimal_in(get, "QUALITY_SAMPLE_RATE", 0.0, 1.0)?.unwrap_or(0.0);
    let max_samples_per_hour = vars::bounded(
        get,
        "QUALITY_MAX_SAMPLES_PER_HOUR",
        DEFAULT_MAX_SAMPLES_PER_HOUR,
        0,
        MAX_MAX_SAMPLES_PER_HOUR,
    )?;
    let judge_tier = match get("JUDGE_TIER").filter(|v| !v.is_empty()) {
        None => top,
        Some(name) => tiers.iter().position(|t| t.name() == name).ok_or_else(|| {
            let names: Vec<&str> = tiers.iter().map(TierConfig::name).collect();
            invalid(
                "JUDGE_TIER",
                format!(
                    "{name:?} is not a tier; expected one of {}",
                    names.join(", ")
                ),
            )
        })?,
    };
    let quality = vars::decimal_in(get, "QUALITY_TARGET", 0.0, 1.0)?;
    if quality == Some(0.0) {
        return Err(invalid(
            "QUALITY_TARGET",
            "expected a number above 0 and at most 1, got 0".into(),
        ));
    }
    let share = vars::decimal_in(get, "TARGET_LARGE_SHARE", 0.0, 1.0)?;
    let cost = vars::decimal_in(get, "TARGET_COST_PER_1K", 0.0, 1.0e9)?;
    let targets = [
        quality.map(QualityTarget::Quality),
        share.map(QualityTarget::LargeShare),
        cost.map(QualityTarget::CostPer1k),
    ];
    let mut set = targets.iter().flatten();
    let target = set.next().copied();
    if set.next().is_some() {
        let variable = if quality.is_some() {
            "QUALITY_TARGET"
        } else {
            "TARGET_LARGE_SHARE"
        };
        return Err(invalid(
            variable,
            "set only one of QUALITY_TARGET, TARGET_LARGE_SHARE and TARGET_COST_PER_1K".into(),
        ));
    }
    Ok(QualityConfig {
        sample_rate,
        max_samples_per_hour,
        judge_tier,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, invalid_variable};
    use super::*;

    #[test]
    fn off_by_default() {
        let q = config(&[]).unwrap().quality;
        assert_eq!(q.sample_rate, 0.0);
        assert_eq!(q.max_samples_per_hour, DEFAULT_MAX_SAMPLES_PER_HOUR);
        assert_eq!(q.judge_tier, 1);
        assert_eq!(q.target, None);
        assert!(!q.enabled());
    }

    #[test]
    fn values_are_read() {
        let q = config(&[
            ("QUALITY_SAMPLE_RATE", "0.02"),
            ("QUALITY_MAX_SAMPLES_PER_HOUR", "30"),
            ("JUDGE_TIER", "small"),
            ("QUALITY_TARGET", "0.95"),
        ])
        .unwrap()
        .quality;
        assert_eq!(q.sample_rate, 0.02);
        assert_eq!(q.max_samples_per_hour, 30);
        assert_eq!(q.judge_tier, 0);
        assert_eq!(q.target, Some(QualityTarget::Quality(0.95)));
        assert!(q.enabled());
        let q = config(&[("TARGET_LARGE_SHARE", "0.3")]).unwrap().quality;
        assert_eq!(q.target, Some(QualityTarget::LargeShare(0.3)));
        let q = config(&[("TARGET_COST_PER_1K", "0.05")]).unwrap().quality;
        assert_eq!(q.target, Some(QualityTarget::CostPer1k(0.05)));
        assert!(q.enabled());
        assert!(config(&[("QUALITY_SAMPLE_RATE", "1")])
            .unwrap()
            .quality
            .enabled());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value) in [
            ("QUALITY_SAMPLE_RATE", "1.5"),
            ("QUALITY_SAMPLE_RATE", "-0.1"),
            ("QUALITY_SAMPLE_RATE", "often"),
            ("QUALITY_MAX_SAMPLES_PER_HOUR", "-1"),
            ("QUALITY_MAX_SAMPLES_PER_HOUR", "1000001"),
            ("JUDGE_TIER", "medium"),
            ("QUALITY_TARGET", "0"),
            ("QUALITY_TARGET", "1.01"),
            ("TARGET_LARGE_SHARE", "2"),
            ("TARGET_COST_PER_1K", "-1"),
        ] {
            assert_eq!(
                invalid_variable(config(&[(name, value)])),
                name,
                "{name}={value}"
            );
        }
        assert_eq!(
            invalid_variable(config(&[
                ("QUALITY_TARGET", "0.9"),
                ("TARGET_LARGE_SHARE", "0.3")
            ])),
            "QUALITY_TARGET"
        );
        assert_eq!(
            invalid_variable(config(&[
                ("TARGET_LARGE_SHARE", "0.3"),
                ("TARGET_COST_PER_1K", "1")
            ])),
            "TARGET_LARGE_SHARE"
        );
    }
}

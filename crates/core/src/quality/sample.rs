//! One judged sample: a routed request answered by both tiers and graded by the judge.
//!
//! It owns the sample's fields and the grade scale only (grades 1..10, mapped to quality
//! in [0, 1] by [`grade_to_quality`]); estimating from samples is [`super::estimator`]'s job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jsonread::Fields;

/// Which tier served the sampled request (the other one made the extra call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServedBy {
    /// A tier below the top one served; the top tier made the extra call.
    Lower,
    /// The top tier served; the tier below made the extra call.
    Top,
}

/// A judged sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct JudgedSample {
    /// When the request was served (ms since the epoch, or simulated time).
    pub time_ms: u64,
    /// The router's score of the request, in [0, 1].
    pub score: f64,
    /// Which tier served it.
    pub served: ServedBy,
    /// The judge's grade (1..10) of the lower tier's answer.
    pub grade_lower: u8,
    /// The judge's grade (1..10) of the top tier's answer.
    pub grade_top: u8,
    /// The probability with which this request was drawn (for inverse-probability weights).
    pub probability: f64,
    /// USD of the serving call.
    pub serving_cost_usd: f64,
    /// USD of the extra call to the other tier.
    pub extra_cost_usd: f64,
    /// USD of the judge call.
    pub judge_cost_usd: f64,
}

impl ServedBy {
    /// Reads the name [`Serialize`] writes (`lower`, `top`).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        match v.as_str() {
            Some("lower") => Ok(ServedBy::Lower),
            Some("top") => Ok(ServedBy::Top),
            _ => Err(String::from("served: expected \"lower\" or \"top\"")),
        }
    }
}

impl<'de> Deserialize<'de> for ServedBy {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl<'de> Deserialize<'de> for JudgedSample {
    /// Read field by field from a `serde_json::Value` (`crate::jsonread`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::jsonread::deserialize_via_value(deserializer, Self::from_value)
    }
}

impl JudgedSample {
    /// Reads a sample as [`Serialize`] writes it (every field required).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(JudgedSample {
            time_ms: f.u64("time_ms")?,
            score: f.f64("score")?,
            served: ServedBy::from_value(f.get("served")?)?,
            grade_lower: f.u8("grade_lower")?,
            grade_top: f.u8("grade_top")?,
            probability: f.f64("probability")?,
            serving_cost_usd: f.f64("serving_cost_usd")?,
            extra_cost_usd: f.f64("extra_cost_usd")?,
            judge_cost_usd: f.f64("judge_cost_usd")?,
        })
    }

    /// The evaluation spend of this sample: the extra call plus the judge.
    pub fn evaluation_cost_usd(&self) -> f64 {
        self.extra_cost_usd + self.judge_cost_usd
    }

    /// Whether the sample can be used: grades in 1..=10, a probability in (0, 1], a
    /// finite score.
    pub fn is_valid(&self) -> bool {
        (1..=10).contains(&self.grade_lower)
            && (1..=10).contains(&self.grade_top)
            && self.probability > 0.0
            && self.probability <= 1.0
            && self.score.is_finite()
    }
}

/// A judge's grade 1..10 as quality in [0, 1]: `(grade - 1) / 9` (grade 1 is no quality,
/// so "quality retained" is a ratio of qualities, not of raw grades).
#[inline]
pub fn grade_to_quality(grade: u8) -> f64 {
    (f64::from(grade.clamp(1, 10)) - 1.0) / 9.0
}

/// The integer grade a judge would give an answer of quality `q` in [0, 1] plus `noise`
/// (in grade points): `1 + 9 q + noise`, rounded and clamped to 1..10. The simulator's
/// stand-in for a judge.
pub fn quality_to_grade(q: f64, noise: f64) -> u8 {
    let g = (1.0 + 9.0 * q.clamp(0.0, 1.0) + noise).round();
    if g.is_nan() {
        return 1;
    }
    g.clamp(1.0, 10.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_scale_round_trips() {
        assert_eq!(grade_to_quality(1), 0.0);
        assert_eq!(grade_to_quality(10), 1.0);
        assert_eq!(grade_to_quality(0), 0.0);
        assert_eq!(quality_to_grade(0.0, 0.0), 1);
        assert_eq!(quality_to_grade(1.0, 0.0), 10);
        assert_eq!(quality_to_grade(0.5, 0.0), 6);
        assert_eq!(quality_to_grade(1.0, 3.0), 10);
        assert_eq!(quality_to_grade(0.0, -3.0), 1);
        assert_eq!(quality_to_grade(f64::NAN, f64::NAN), 1);
        for g in 1..=10u8 {
            assert_eq!(quality_to_grade(grade_to_quality(g), 0.0), g);
        }
    }
}

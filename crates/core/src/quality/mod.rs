//! Quality estimation and threshold control from judged samples (issue 10, parts 3 and 4).
//!
//! A small share of automatically routed requests is also answered by the other tier and a
//! judge grades both answers (1..10). From those paired grades this module estimates the
//! share of the top tier's quality the routing keeps ([`estimator`]), decides which
//! requests to sample ([`sampler`]), keeps a cheap decayed histogram of every routed
//! request's score ([`histogram`]) and moves the routing threshold to hold a target
//! ([`controller`]).
//!
//! Everything here is pure: the clock (`now_ms`) and randomness (a `u64` per decision) are
//! inputs, nothing does I/O, and the state the worker persists (in its Durable Object) is
//! serde-serialisable. The per-request path ([`sampler::SamplingPolicy::probability`],
//! [`sampler::SamplingPolicy::decide`]) does not allocate. The offline simulator
//! (`llm-mux-eval simulate`) drives this same code with recorded outcomes.
//!
//! This module must not call models, read the clock, or know about the worker's queue:
//! the worker shell makes the extra tier call and the judge call and hands the grades in.

pub mod controller;
pub mod estimator;
pub mod histogram;
pub mod sample;
pub mod sampler;

pub use controller::{
    ControllerConfig, Published, QualityController, QualityReport, Target, ThresholdSource,
};
pub use estimator::{Estimate, QualityCurve};
pub use histogram::ScoreHistogram;
pub use sample::{grade_to_quality, JudgedSample, ServedBy};
pub use sampler::{HourlyCap, SamplingPolicy};

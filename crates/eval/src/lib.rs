//! llm-mux-eval: the offline evaluation, calibration and training of llm-mux's routers.
//!
//! It reads per-prompt outcomes of a small and a large model (routing-eval format) and
//! measures routers on them, tunes the heuristic's weights, trains the learned router and
//! calibrates thresholds. It must never be compiled into the worker (it has its own
//! dependencies and is built with opt-level 3, `--profile eval`), must not touch the test
//! split when tuning, training or choosing settings, and scores prompts only through
//! `llm_mux_core` so that what it measures is what the worker runs. The library is pure;
//! the `llm-mux-eval` binary (`main.rs`) parses arguments and does the file I/O.
//!
//! Modules, one job each:
//! - [`data`]: records, splits, JSONL parsing, priced items, the [`data::Dataset`];
//! - [`routers`]: the heuristic and learned routers' scores and default thresholds;
//! - [`metrics`]: quality curve, PGR, APGR, CPT, operating points, baselines;
//! - [`calibration`]: the threshold meeting a share, quality or cost target;
//! - [`tuning`]: the heuristic's weight search;
//! - [`lobo`]: leave-one-benchmark-out evaluation (fit on the others, measure on one);
//! - [`training`]: fitting and writing the learned router's weights;
//! - [`selection`]: choosing the learned router's settings and threshold by cross-validation;
//! - [`simulate`]: traffic through the core's quality estimator and controller;
//! - [`report`]: the `report` command's tables, JSON and charts;
//! - [`plots`]: SVG drawing;
//! - [`speed`]: the scorers' speed table.

pub mod calibration;
pub mod data;
pub mod lobo;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod routers;
pub mod selection;
pub mod simulate;
pub mod speed;
pub mod training;
pub mod tuning;

#[cfg(test)]
mod test_fixtures;

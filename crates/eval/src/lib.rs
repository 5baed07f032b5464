//! llm-mux-eval: the offline evaluation, calibration and training of llm-mux's routers.
//! Reads per-prompt outcomes of a small and a large model (routing-eval format) and
//! measures routers on them. Never compiled into the worker: it has its own dependencies
//! and is built with opt-level 3 (`--profile eval`).

pub mod eval;
pub mod training;

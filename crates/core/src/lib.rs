//! llm-mux-core: everything the gateway decides, as plain Rust with no JS calls.
//!
//! It owns scoring, routing, pricing, planning the upstream call, the providers' wire
//! translation, the retry/deadline policy of the upstream call (behind the
//! [`upstream::Upstream`] seam), the endpoints' request and answer shapes, and the
//! metrics fold. It must not depend on `worker`, `js_sys` or `web_sys`, read the clock,
//! or do I/O of any kind: the worker shell (the top-level `llm-mux` package) moves bytes
//! between the runtime and this crate, and native tests exercise all of it.

pub mod accounting;
pub mod api;
pub mod cache;
pub mod chat;
pub mod config;
pub mod cors;
pub mod endpoint;
pub mod error;
pub mod fallback;
pub mod hash;
pub mod jsonread;
pub mod jsonwrite;
pub mod judge;
pub mod learned;
pub mod ledger;
pub mod metrics;
pub mod models;
pub mod named;
pub mod numfmt;
pub mod plan;
pub mod pricing;
pub mod providers;
pub mod quality;
pub mod quality_state;
pub mod request_log;
pub mod routes;
pub mod routing;
pub mod scoring;
pub mod shadow;
pub mod stages;
pub mod streaming;
pub mod upstream;

//! The endpoints outside the request pipeline: `GET /` (what this service is),
//! `GET /metrics` (the aggregate), `GET /dashboard` (the page that draws it) and
//! `GET /v1/models` (what a client may request). Each
//! turns an authorized request into a response and nothing else; the API endpoints
//! (`/query`, `/v1/chat/completions`) are served by [`crate::pipeline`].

pub mod dashboard;
pub mod index;
pub mod metrics;
pub mod models;

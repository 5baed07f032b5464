//! Usage metrics: a pure, mergeable aggregate (fold of events) and the Durable Object
//! that owns it.

pub mod aggregate;
pub mod expose;
pub mod outbox;
pub mod prometheus;
pub mod sketch;
pub mod window;

pub use aggregate::{
    Aggregate, BudgetStatus, FailureCost, FallbackRecord, KeyUsage, MetricsEvent, MetricsReport,
};

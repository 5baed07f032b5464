//! Time windows of the metrics: which time buckets the metrics object keeps, which of them
//! a `?window=` query reads, and the series a chart draws from them.
//!
//! Every batch of events is folded into the all-time aggregate (exact forever) and into
//! two bucket aggregates of the moment the object records it: a **5-minute** bucket (kept
//! [`FINE_RETENTION_S`], two hours) and an **hourly** one (kept [`COARSE_RETENTION_S`], 31
//! days). A window is the buckets whose start lies in it: `1h` reads the twelve latest
//! 5-minute buckets (55 to 60 minutes, the current one partial), `24h`, `7d` and `30d` the
//! latest 24, 168 and 720 hourly buckets. `all` is the all-time aggregate.

use serde::Serialize;

use crate::error::GatewayError;

/// Width of a fine bucket (s).
pub const FINE_SPAN_S: u64 = 300;
/// Width of a coarse bucket (s).
pub const COARSE_SPAN_S: u64 = 3_600;
/// How long fine buckets are kept (s).
pub const FINE_RETENTION_S: u64 = 2 * 3_600;
/// How long coarse buckets are kept (s).
pub const COARSE_RETENTION_S: u64 = 31 * 86_400;
/// The bucket widths written per batch, each with its retention.
pub const SPANS: [(u64, u64); 2] = [
    (FINE_SPAN_S, FINE_RETENTION_S),
    (COARSE_SPAN_S, COARSE_RETENTION_S),
];

/// A `?window=` of `/metrics` and `/metrics/series`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last hour.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
    /// Since the metrics were created (or reset).
    All,
}

impl Window {
    /// Every window, by name.
    pub const ALL: [Window; 5] = [
        Window::Hour,
        Window::Day,
        Window::Week,
        Window::Month,
        Window::All,
    ];

    /// Reads the `window` query parameter (absent: `all`); an unknown one is a 400.
    pub fn parse(value: Option<&str>) -> Result<Self, GatewayError> {
        let Some(value) = value else {
            return Ok(Window::All);
        };
        Self::ALL
            .into_iter()
            .find(|w| w.name() == value)
            .ok_or_else(|| GatewayError::InvalidParam {
                param: "window".into(),
                message: format!("unknown window {value:?}: expected one of 1h, 24h, 7d, 30d, all"),
            })
    }

    /// The window's name (`1h`, `24h`, `7d`, `30d`, `all`).
    pub fn name(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
            Window::All => "all",
        }
    }

    /// The buckets this window reads at `now_s` (unix seconds): their width and the
    /// earliest start included. `None` for `all` (the all-time aggregate).
    pub fn buckets(self, now_s: u64) -> Option<(u64, u64)> {
        let (span, count) = match self {
            Window::Hour => (FINE_SPAN_S, 12),
            Window::Day => (COARSE_SPAN_S, 24),
            Window::Week => (COARSE_SPAN_S, 168),
            Window::Month => (COARSE_SPAN_S, 720),
            Window::All => return None,
        };
        Some((
            span,
            bucket_start(now_s, span).saturating_sub((count - 1) * span),
        ))
    }

    /// The buckets a series of this window reads (`all`: every hourly bucket kept), and
    /// the width of its points (s): 5 minutes for `1h`, an hour for `24h` and `7d`, a day
    /// for `30d` and `all`.
    pub fn series(self, now_s: u64) -> ((u64, u64), u64) {
        let step = match self {
            Window::Hour => FINE_SPAN_S,
            Window::Day | Window::Week => COARSE_SPAN_S,
            Window::Month | Window::All => 86_400,
        };
        let kept =
            bucket_start(now_s, COARSE_SPAN_S).saturating_sub(COARSE_RETENTION_S - COARSE_SPAN_S);
        (self.buckets(now_s).unwrap_or((COARSE_SPAN_S, kept)), step)
    }
}

/// The start (unix seconds) of the `span`-wide bucket holding `now_s`.
pub fn bucket_start(now_s: u64, span: u64) -> u64 {
    now_s - now_s % span
}

/// One bucket's figures for a series: `[start, requests, failed, cost_usd,
/// cost_if_always_large_usd]` as the metrics object sends them.
pub type BucketFigures = (u64, u64, u64, f64, f64);

/// A point of `/metrics/series`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Start of the point's interval (unix seconds).
    pub t: u64,
    /// Completed requests.
    pub requests: u64,
    /// Failed requests.
    pub failed: u64,
    /// Cost (USD).
    pub cost_usd: f64,
    /// The same tokens at the top tier's prices (USD).
    pub cost_if_always_large_usd: f64,
}

/// Buckets (of any shards, in any order) summed into points `step` seconds wide, sorted
/// by time; only intervals with traffic appear.
pub fn points(buckets: &[BucketFigures], step: u64) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    for &(start, requests, failed, cost, cost_large) in buckets {
        let t = bucket_start(start, step);
        let at = match points.binary_search_by_key(&t, |p| p.t) {
            Ok(at) => at,
            Err(at) => {
                points.insert(
                    at,
                    Point {
                        t,
                        requests: 0,
                        failed: 0,
                        cost_usd: 0.0,
                        cost_if_always_large_usd: 0.0,
                    },
                );
                at
            }
        };
        let p = &mut points[at];
        p.requests += requests;
        p.failed += failed;
        p.cost_usd += cost;
        p.cost_if_always_large_usd += cost_large;
    }
    points.retain(|p| p.requests + p.failed > 0);
    points
}

/// The body of `/metrics/series`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The window's name.
    pub window: &'static str,
    /// Width of each point (s).
    pub bucket_seconds: u64,
    /// The points, oldest first.
    pub points: Vec<Point>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_by_name_and_unknown_ones_are_refused() {
        assert_eq!(Window::parse(None).unwrap(), Window::All);
        for w in Window::ALL {
            assert_eq!(Window::parse(Some(w.name())).unwrap(), w);
        }
        for bad in ["", "2h", "ALL", "1d", "24H"] {
            let e = Window::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(
                e.client_message().contains("1h, 24h, 7d, 30d, all"),
                "{bad}"
            );
        }
    }

    #[test]
    fn windows_read_the_latest_buckets_of_their_width() {
        let now = 1_764_700_000 + 1_234; // some moment, not on a boundary
        let hour = bucket_start(now, 3_600);
        let fine = bucket_start(now, 300);
        assert_eq!(Window::Hour.buckets(now), Some((300, fine - 11 * 300)));
        assert_eq!(Window::Day.buckets(now), Some((3_600, hour - 23 * 3_600)));
        assert_eq!(Window::Week.buckets(now), Some((3_600, hour - 167 * 3_600)));
        assert_eq!(
            Window::Month.buckets(now),
            Some((3_600, hour - 719 * 3_600))
        );
        assert_eq!(Window::All.buckets(now), None);
        // every window's buckets are still kept when it is read
        for w in [Window::Hour, Window::Day, Window::Week, Window::Month] {
            let (span, from) = w.buckets(now).unwrap();
            let retention = SPANS.iter().find(|(s, _)| *s == span).unwrap().1;
            assert!(now - from <= retention, "{w:?}");
        }
        assert_eq!(Window::Hour.series(now).1, 300);
        assert_eq!(Window::Week.series(now).1, 3_600);
        assert_eq!(Window::Month.series(now).1, 86_400);
        let ((span, from), step) = Window::All.series(now);
        assert_eq!((span, step), (3_600, 86_400));
        assert_eq!(hour - from, COARSE_RETENTION_S - 3_600);
    }

    #[test]
    fn points_sum_buckets_of_every_shard_per_interval() {
        let day = 86_400;
        let buckets = [
            (2 * day + 3_600, 2, 1, 0.25, 1.0),
            (day, 1, 0, 0.5, 0.75),
            (2 * day, 3, 0, 0.125, 0.5), // same day as the first, another shard
            (day + 7_200, 0, 0, 0.0, 0.0), // no traffic
            (3 * day, 0, 0, 0.0, 0.0),
        ];
        let p = points(&buckets, day);
        assert_eq!(
            p,
            vec![
                Point {
                    t: day,
                    requests: 1,
                    failed: 0,
                    cost_usd: 0.5,
                    cost_if_always_large_usd: 0.75
                },
                Point {
                    t: 2 * day,
                    requests: 5,
                    failed: 1,
                    cost_usd: 0.375,
                    cost_if_always_large_usd: 1.5
                },
            ]
        );
        // at the buckets' own width nothing is summed
        assert_eq!(points(&buckets, 3_600).len(), 3);
    }
}

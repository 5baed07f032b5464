//! The Durable Object that owns the metrics aggregate (SQLite-backed), and the worker-side
//! client that sends it events and reads snapshots.
//!
//! Storage design: the whole aggregate is one row (`id = 1`, JSON), kept in memory and
//! rewritten per batch of events (the worker batches them per isolate, see
//! [`llm_mux_core::metrics::outbox`]); so are the current 5-minute and hourly bucket
//! aggregates of the time windows (table `buckets`, [`llm_mux_core::metrics::window`]).
//! A batch costs three rows written however many requests it holds; the aggregates are
//! read from storage only on start (and a bucket when its period begins, when the
//! buckets past their retention are deleted). Events are spread over `METRICS_SHARDS`
//! such objects (one per isolate); a read merges them. A Durable Object runs one request at a time and
//! `SqlStorage::exec` is synchronous, so the read-modify-write below never interleaves
//! with another batch.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use serde::Serialize;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State,
};

use crate::metrics::window::{self, Window};
use crate::metrics::{Aggregate, MetricsEvent};

/// Binding name of the Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "METRICS";

/// Name of shard `shard`'s object: the first keeps the name of the single object of
/// versions before sharding (`global`), so its totals carry over.
pub fn shard_name(shard: u32) -> String {
    if shard == 0 {
        "global".to_string()
    } else {
        format!("shard-{shard}")
    }
}

/// Ids of recently recorded events, so that a retried delivery is counted once.
#[derive(Debug, Default)]
pub struct RecentIds {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl RecentIds {
    /// How many ids are remembered.
    /// Far more than one batch (a retry after 1.1 s must still be recognised under load).
    pub const CAPACITY: usize = 16_384;

    /// Whether `id` was recorded recently.
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Remembers `id`; false if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }
}

/// Storage work done by this object since it was created (for the benchmarks). Kept in
/// the aggregate's row, so it survives the object's restarts (an idle object is evicted
/// after seconds); the persisted copy omits the row write that stores it (1 row written
/// and 1 read per restart go uncounted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageCounters {
    /// Events recorded.
    pub events: u64,
    /// Batches that recorded at least one event (one row write each).
    pub batches: u64,
    /// Duplicate deliveries ignored.
    pub duplicates: u64,
    /// SQLite rows written (the batches' rows and the finished buckets').
    pub rows_written: u64,
    /// SQLite rows read.
    pub rows_read: u64,
    /// Of `rows_written`, those of finished time buckets (and of the old ones deleted):
    /// two or so per 5 minutes, whatever the traffic.
    pub bucket_rows_written: u64,
}

impl StorageCounters {
    /// As stored: the numbers, comma-separated (no JSON parser needed to read back).
    pub fn to_text(&self) -> String {
        let Self {
            events,
            batches,
            duplicates,
            rows_written,
            rows_read,
            bucket_rows_written,
        } = self;
        format!("{events},{batches},{duplicates},{rows_written},{rows_read},{bucket_rows_written}")
    }

    /// Reads [`Self::to_text`] (also the five numbers of versions before time buckets);
    /// anything else (an older row without counters) is zeros.
    pub fn from_text(text: &str) -> Self {
        let numbers: Vec<u64> = text.split(',').filter_map(|n| n.parse().ok()).collect();
        match numbers[..] {
            [events, batches, duplicates, rows_written, rows_read, ref rest @ ..]
                if rest.len() <= 1 =>
            {
                Self {
                    events,
                    batches,
                    duplicates,
                    rows_written,
                    rows_read,
                    bucket_rows_written: rest.first().copied().unwrap_or(0),
                }
            }
            _ => Self::default(),
        }
    }
}

/// The current time buckets: `(span, start, aggregate)` of each width.
type Current = Vec<(u64, u64, Aggregate)>;

/// The metrics Durable Object.
#[durable_object(fetch)]
pub struct MetricsStore {
    state: State,
    /// The all-time aggregate and the current buckets, once loaded.
    loaded: RefCell<Option<(Aggregate, Current)>>,
    recent: RefCell<RecentIds>,
    counters: RefCell<StorageCounters>,
}

impl MetricsStore {
    fn ensure_schema(&self) -> Result<()> {
        let sql = self.state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS aggregate \
             (id INTEGER PRIMARY KEY, state TEXT NOT NULL, storage TEXT, current TEXT)",
            None,
        )?;
        // Tables created before the counters (or the time buckets) were kept lack columns.
        for column in ["storage", "current"] {
            if sql
                .exec(&format!("SELECT {column} FROM aggregate LIMIT 0"), None)
                .is_err()
            {
                sql.exec(
                    &format!("ALTER TABLE aggregate ADD COLUMN {column} TEXT"),
                    None,
                )?;
            }
        }
        sql.exec(
            "CREATE TABLE IF NOT EXISTS buckets (span INTEGER NOT NULL, start INTEGER NOT NULL, \
             state TEXT NOT NULL, PRIMARY KEY (span, start))",
            None,
        )?;
        Ok(())
    }

    /// The all-time aggregate and the current buckets, loaded from storage on first use
    /// after a (re)start.
    fn load(&self) -> Result<(Aggregate, Current)> {
        if let Some(cached) = self.loaded.borrow().as_ref() {
            return Ok(cached.clone());
        }
        let cursor = self.state.storage().sql().exec(
            "SELECT state, storage, current FROM aggregate WHERE id = 1",
            None,
        )?;
        // Raw values rather than `to_array::<Row>()`, which would deserialize through
        // serde_wasm_bindgen: with `fetch` reading batches with serde_json, that leaves
        // none of its deserializer in the wasm.
        let rows = cursor.raw().collect::<Result<Vec<_>>>()?;
        let text = |v: &SqlStorageValue| match v {
            SqlStorageValue::String(text) => Some(text.clone()),
            _ => None,
        };
        let (aggregate, stored, current) = match rows.first().map(Vec::as_slice) {
            Some([SqlStorageValue::String(state), storage, current]) => (
                serde_json::from_slice(state.as_bytes())?,
                text(storage)
                    .map_or_else(StorageCounters::default, |t| StorageCounters::from_text(&t)),
                match text(current) {
                    Some(t) => current_from_value(&serde_json::from_slice(t.as_bytes())?),
                    None => Vec::new(),
                },
            ),
            Some(_) => {
                return Err(worker::Error::RustError(
                    "aggregate row: expected a text state, storage and current column".into(),
                ))
            }
            None => (Aggregate::default(), StorageCounters::default(), Vec::new()),
        };
        // Nothing is counted before the first load (every use of the counters loads first).
        *self.counters.borrow_mut() = StorageCounters {
            rows_read: stored.rows_read + cursor.rows_read() as u64,
            ..stored
        };
        *self.loaded.borrow_mut() = Some((aggregate.clone(), current.clone()));
        Ok((aggregate, current))
    }

    /// Makes `current` the buckets holding `now_s`: a bucket whose period has ended is
    /// written to the `buckets` table (once), the new one starts empty (or from a row of
    /// its own period, should the clock have gone back), and buckets past their retention
    /// are deleted. Returns the rows this wrote.
    fn roll(&self, current: &mut Current, now_s: u64) -> Result<u64> {
        let sql = self.state.storage().sql();
        let mut written = 0;
        for (span, retention) in window::SPANS {
            let start = window::bucket_start(now_s, span);
            let at = current.iter().position(|b| b.0 == span);
            if matches!(at, Some(i) if current[i].1 == start) {
                continue;
            }
            if let Some(i) = at {
                let (_, old_start, old) = current.remove(i);
                let cursor = sql.exec(
                    "INSERT INTO buckets (span, start, state) VALUES (?, ?, ?) \
                     ON CONFLICT(span, start) DO UPDATE SET state = excluded.state",
                    vec![
                        (span as i64).into(),
                        (old_start as i64).into(),
                        serde_json::to_string(&old)?.into(),
                    ],
                )?;
                written += cursor.rows_written() as u64;
            }
            let mut fresh = Aggregate::default();
            for (_, state) in self.stored_buckets(span, start, Some(start))? {
                fresh = serde_json::from_slice(state.as_bytes())?;
            }
            let cursor = sql.exec(
                "DELETE FROM buckets WHERE span = ? AND (start < ? OR start = ?)",
                vec![
                    (span as i64).into(),
                    (now_s.saturating_sub(retention) as i64).into(),
                    (start as i64).into(),
                ],
            )?;
            written += cursor.rows_written() as u64;
            current.push((span, start, fresh));
        }
        Ok(written)
    }

    /// The finished buckets of `span` from `from` on (up to `to`): `(start, state)`.
    fn stored_buckets(&self, span: u64, from: u64, to: Option<u64>) -> Result<Vec<(u64, String)>> {
        let rows = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT start, state FROM buckets WHERE span = ? AND start >= ? AND start <= ?",
                vec![
                    (span as i64).into(),
                    (from as i64).into(),
                    (to.unwrap_or(i64::MAX as u64) as i64).into(),
                ],
            )?
            .raw()
            .collect::<Result<Vec<_>>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [SqlStorageValue::Integer(start), SqlStorageValue::String(state)] => {
                    Some((*start as u64, state.clone()))
                }
                _ => None,
            })
            .collect())
    }

    /// The buckets of `span` from `from` on: the finished ones stored, and the current one.
    fn buckets_from(&self, span: u64, from: u64) -> Result<Vec<(u64, Aggregate)>> {
        let (_, current) = self.load()?;
        let mut found = Vec::new();
        for (start, state) in self.stored_buckets(span, from, None)? {
            found.push((start, serde_json::from_slice(state.as_bytes())?));
        }
        found.extend(
            current
                .into_iter()
                .filter(|b| b.0 == span && b.1 >= from)
                .map(|(_, start, aggregate)| (start, aggregate)),
        );
        Ok(found)
    }

    /// The aggregate of `window` (all time, or the merge of its buckets).
    fn window_aggregate(&self, window: Window) -> Result<Aggregate> {
        let Some((span, from)) = window.buckets(crate::runtime::now_ms() / 1000) else {
            return Ok(self.load()?.0);
        };
        let mut merged = Aggregate::default();
        for (_, aggregate) in self.buckets_from(span, from)? {
            merged.merge(&aggregate);
        }
        Ok(merged)
    }

    /// The figures of each bucket a series of `window` reads.
    fn series_buckets(&self, window: Window) -> Result<Vec<window::BucketFigures>> {
        let ((span, from), _) = window.series(crate::runtime::now_ms() / 1000);
        Ok(self
            .buckets_from(span, from)?
            .into_iter()
            .map(|(start, a)| {
                (
                    start,
                    a.total_requests,
                    a.failed_requests.total(),
                    a.total_cost_usd,
                    a.cost_if_always_large_usd,
                )
            })
            .collect())
    }

    /// Writes the one row (aggregate, current buckets and storage counters) and keeps them
    /// in memory.
    fn write(
        &self,
        aggregate: Aggregate,
        current: Current,
        mut counters: StorageCounters,
    ) -> Result<()> {
        let buckets: Vec<(u64, u64, &Aggregate)> = current
            .iter()
            .map(|(span, start, a)| (*span, *start, a))
            .collect();
        let cursor = self.state.storage().sql().exec(
            "INSERT INTO aggregate (id, state, storage, current) VALUES (1, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, storage = excluded.storage, \
             current = excluded.current",
            vec![
                SqlStorageValue::from(serde_json::to_string(&aggregate)?),
                SqlStorageValue::from(counters.to_text()),
                SqlStorageValue::from(serde_json::to_string(&buckets)?),
            ],
        )?;
        counters.rows_written += cursor.rows_written() as u64;
        counters.rows_read += cursor.rows_read() as u64;
        *self.counters.borrow_mut() = counters;
        *self.loaded.borrow_mut() = Some((aggregate, current));
        Ok(())
    }

    /// Folds in the events not seen before and writes the row once; returns how many
    /// were new.
    fn record(&self, events: &[MetricsEvent]) -> Result<u64> {
        let (mut aggregate, mut current) = self.load()?;
        // Ids are remembered only once the row is written: if the write fails, the
        // client's retry must not be taken for a duplicate.
        // (A batch holds at most a few hundred events: a list is enough to catch an id
        // repeated within it.)
        let mut new_ids: Vec<&str> = Vec::with_capacity(events.len());
        let mut duplicates = 0;
        for event in events {
            let id = event.id();
            if self.recent.borrow().contains(id) || new_ids.contains(&id) {
                duplicates += 1;
            } else {
                new_ids.push(id);
            }
        }
        self.counters.borrow_mut().duplicates += duplicates;
        let recorded = new_ids.len() as u64;
        if recorded == 0 {
            return Ok(0);
        }
        // A finished bucket is written once, by the first batch after its period; if this
        // batch's row then fails, the next batch writes the same row again.
        let bucket_rows = self.roll(&mut current, crate::runtime::now_ms() / 1000)?;
        let mut seen: Vec<&str> = Vec::with_capacity(events.len());
        for event in events {
            let id = event.id();
            if self.recent.borrow().contains(id) || seen.contains(&id) {
                continue;
            }
            seen.push(id);
            aggregate.apply(event);
            for bucket in &mut current {
                bucket.2.apply(event);
            }
        }
        let mut counters = *self.counters.borrow();
        counters.events += recorded;
        counters.batches += 1;
        counters.rows_written += bucket_rows;
        counters.bucket_rows_written += bucket_rows;
        self.write(aggregate, current, counters)?;
        let mut recent = self.recent.borrow_mut();
        for id in new_ids {
            recent.insert(id);
        }
        Ok(recorded)
    }

    /// Sets the aggregate and the time buckets back to empty (the storage counters and
    /// the recent ids stay: a late retry of an old batch is still a duplicate).
    fn reset(&self) -> Result<()> {
        self.load()?;
        self.state
            .storage()
            .sql()
            .exec("DELETE FROM buckets", None)?;
        let counters = *self.counters.borrow();
        self.write(Aggregate::default(), Vec::new(), counters)
    }
}

/// The current buckets as stored: `[[span, start, aggregate], ...]`.
fn current_from_value(value: &serde_json::Value) -> Current {
    value
        .as_array()
        .map(|buckets| {
            buckets
                .iter()
                .filter_map(|b| {
                    Some((
                        b.get(0)?.as_u64()?,
                        b.get(1)?.as_u64()?,
                        Aggregate::from_value(b.get(2)?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl DurableObject for MetricsStore {
    fn new(state: State, _env: Env) -> Self {
        let store = Self {
            state,
            loaded: RefCell::new(None),
            recent: RefCell::new(RecentIds::default()),
            counters: RefCell::new(StorageCounters::default()),
        };
        if let Err(e) = store.ensure_schema() {
            worker::console_error!("metrics store: cannot create schema: {e}");
        }
        store
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/record") => {
                // serde_json over the text: `req.json()` would parse in JS and then walk
                // the JS objects back into Rust.
                let events = parse_batch(&req.text().await?)?;
                let recorded = self.record(&events)?;
                Response::from_json(&serde_json::json!({ "recorded": recorded }))
            }
            (Method::Post, "/reset") => {
                self.reset()?;
                Response::from_json(&serde_json::json!({ "reset": true }))
            }
            (Method::Get, "/snapshot") => {
                let aggregate = self.window_aggregate(window_of(&req)?)?;
                let counters = *self.counters.borrow();
                Response::from_json(&serde_json::json!({
                    "aggregate": aggregate,
                    "storage": counters,
                }))
            }
            (Method::Get, "/series") => {
                let figures = self.series_buckets(window_of(&req)?)?;
                Response::from_json(&serde_json::json!({ "buckets": figures }))
            }
            _ => Response::error("not found", 404),
        }
    }
}

/// The `window` parameter of a request to the object (validated by the worker before).
fn window_of(req: &Request) -> Result<Window> {
    // The URL as text (`Request::url` would parse it with the `url` crate and its IDNA
    // tables, ~90 KB of wasm).
    let url = req.inner().url();
    Window::parse(llm_mux_core::routes::query_param(&url, "window"))
        .map_err(|e| worker::Error::RustError(e.client_message()))
}

/// Worker-side client of the metrics object.
pub struct MetricsClient {
    stub: worker::Stub,
}

impl MetricsClient {
    /// Connects to shard `shard`'s object.
    pub fn connect(env: &Env, shard: u32) -> Result<Self> {
        let namespace = env.durable_object(BINDING)?;
        let stub = namespace.id_from_name(&shard_name(shard))?.get_stub()?;
        Ok(Self { stub })
    }

    /// Records a batch of events; a failed delivery is retried after 100 ms and 1 s (the
    /// object ignores events it has already recorded, so a retry never counts twice).
    pub async fn record(&self, events: &[MetricsEvent]) -> Result<()> {
        let body = serde_json::to_string(&BatchRef { events })?;
        let mut result = self.send(&body).await;
        for backoff_ms in [100, 1_000] {
            if result.is_ok() {
                break;
            }
            worker::Delay::from(std::time::Duration::from_millis(backoff_ms)).await;
            result = self.send(&body).await;
        }
        result
    }

    async fn send(&self, body: &str) -> Result<()> {
        crate::runtime::post_to_object(&self.stub, "https://metrics/record", body, "metrics store")
            .await
            .map(|_| ())
    }

    /// Sets every total back to zero.
    pub async fn reset(&self) -> Result<()> {
        crate::runtime::post_to_object(&self.stub, "https://metrics/reset", "", "metrics store")
            .await
            .map(|_| ())
    }

    /// Reads the aggregate of `window` and the object's storage counters.
    pub async fn snapshot(&self, window: Window) -> Result<Snapshot> {
        let value = self.get("snapshot", window).await?;
        Snapshot::from_value(&value).map_err(worker::Error::RustError)
    }

    /// Reads the figures of the buckets of `window`'s series.
    pub async fn series(&self, window: Window) -> Result<Vec<window::BucketFigures>> {
        let value = self.get("series", window).await?;
        let buckets = value
            .get("buckets")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| worker::Error::RustError("series: no buckets".into()))?;
        Ok(buckets
            .iter()
            .filter_map(|b| {
                let n = |i: usize| b.get(i).and_then(serde_json::Value::as_u64);
                let x = |i: usize| b.get(i).and_then(serde_json::Value::as_f64);
                Some((n(0)?, n(1)?, n(2)?, x(3)?, x(4)?))
            })
            .collect())
    }

    async fn get(&self, what: &str, window: Window) -> Result<serde_json::Value> {
        let url = format!("https://metrics/{what}?window={}", window.name());
        let mut response = self.stub.fetch_with_str(&url).await?;
        if response.status_code() != 200 {
            return Err(worker::Error::RustError(format!(
                "{what}: status {}",
                response.status_code()
            )));
        }
        Ok(serde_json::from_slice(response.text().await?.as_bytes())?)
    }
}

/// The events of a `POST /record` body (`{"events": [...]}`, [`BatchRef`]). Also accepts
/// one bare event, the body of versions before batching (isolates of the previous version
/// can still be running during a deployment). Read from a `serde_json::Value`, without a
/// derived reader (llm_mux_core::jsonread).
pub fn parse_batch(body: &str) -> serde_json::Result<Vec<MetricsEvent>> {
    let value: serde_json::Value = serde_json::from_slice(body.as_bytes())?;
    let batch = llm_mux_core::jsonread::Fields::of(&value)
        .and_then(|f| f.array("events"))
        .and_then(|events| events.iter().map(MetricsEvent::from_value).collect());
    match batch {
        Ok(events) => Ok(events),
        Err(batch_error) => match MetricsEvent::from_value(&value) {
            Ok(event) => Ok(vec![event]),
            Err(_) => Err(serde::de::Error::custom(batch_error)),
        },
    }
}

/// [`Batch`] as sent, borrowing the events.
#[derive(Serialize)]
struct BatchRef<'a> {
    events: &'a [MetricsEvent],
}

/// What the metrics object returns for `/snapshot`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The aggregate.
    pub aggregate: Aggregate,
    /// Storage work since the object started.
    pub storage: serde_json::Value,
}

impl Snapshot {
    /// Reads `{"aggregate": {...}, "storage": ...}` (both required).
    pub fn from_value(v: &serde_json::Value) -> std::result::Result<Self, String> {
        let f = llm_mux_core::jsonread::Fields::of(v)?;
        Ok(Snapshot {
            aggregate: Aggregate::from_value(f.get("aggregate")?),
            storage: f.get("storage")?.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_bare_events_are_accepted() {
        let ok = r#"{"kind":"failed","id":"a","reason":"bad_request"}"#;
        let events = parse_batch(&format!(r#"{{"events":[{ok},{ok}]}}"#)).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id(), "a");
        assert_eq!(parse_batch(ok).unwrap().len(), 1);
        assert!(parse_batch("not json").is_err());
        assert!(parse_batch(r#"{"events":3}"#).is_err());
    }

    #[test]
    fn batch_errors_name_the_field_and_snapshots_read_back() {
        let e = parse_batch(r#"{"events":[{"kind":"failed","id":"a"}]}"#).unwrap_err();
        assert!(e.to_string().contains("reason"), "{e}");
        let e = parse_batch(r#"{"events":3}"#).unwrap_err();
        assert!(e.to_string().contains("events"), "{e}");
        let e = parse_batch("[]").unwrap_err();
        assert!(e.to_string().contains("object"), "{e}");
        let ok = r#"{"kind":"failed","id":"a","reason":"bad_request"}"#;
        let events = parse_batch(&format!(r#"{{"events":[{ok}],"extra":1}}"#)).unwrap();
        let text = serde_json::to_string(&BatchRef { events: &events }).unwrap();
        assert_eq!(parse_batch(&text).unwrap(), events);

        let mut aggregate = Aggregate::default();
        aggregate.apply(&events[0]);
        let storage = serde_json::json!({"events": 1, "rows_read": 2});
        let value = serde_json::json!({"aggregate": aggregate, "storage": storage});
        let snapshot = Snapshot::from_value(&value).unwrap();
        assert_eq!(snapshot.aggregate, aggregate);
        assert_eq!(snapshot.storage, storage);
        for field in ["aggregate", "storage"] {
            let mut missing = value.clone();
            missing.as_object_mut().unwrap().remove(field);
            let e = Snapshot::from_value(&missing).unwrap_err();
            assert!(e.contains(&format!("missing field `{field}`")), "{e}");
        }
        assert!(Snapshot::from_value(&serde_json::json!([])).is_err());
    }

    #[test]
    fn storage_counters_round_trip_as_text() {
        let c = StorageCounters {
            events: 54_400,
            batches: 680,
            duplicates: 2,
            rows_written: 681,
            rows_read: 682,
            bucket_rows_written: 3,
        };
        assert_eq!(c.to_text(), "54400,680,2,681,682,3");
        assert_eq!(StorageCounters::from_text(&c.to_text()), c);
        // a row of the versions before time buckets: five numbers
        assert_eq!(
            StorageCounters::from_text("54400,680,2,681,682"),
            StorageCounters {
                bucket_rows_written: 0,
                ..c
            }
        );
        for old in ["", "x", "1,2,3", "1,2,3,4,5,6,7"] {
            assert_eq!(StorageCounters::from_text(old), StorageCounters::default());
        }
    }

    #[test]
    fn recent_ids_dedupe_and_forget_the_oldest() {
        let mut ids = RecentIds::default();
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        for i in 0..RecentIds::CAPACITY {
            assert!(ids.insert(&format!("n{i}")));
        }
        // "a" was evicted, so it counts as new again
        assert!(ids.insert("a"));
        assert_eq!(ids.order.len(), RecentIds::CAPACITY);
        assert_eq!(ids.seen.len(), RecentIds::CAPACITY);
    }
}

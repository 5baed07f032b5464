//! The Durable Object that owns the metrics aggregate (SQLite-backed), and the worker-side
//! client that sends it events and reads snapshots.
//!
//! Storage design: the whole aggregate is one row (`id = 1`, JSON), kept in memory and
//! rewritten per batch of events (the worker batches them per isolate, see
//! [`llm_mux_core::metrics::outbox`]), so a batch costs one row written (and the one row read by the
//! upsert's conflict check) however many requests it holds; the aggregate is read from
//! storage only on start. A Durable Object runs one request at a time and
//! `SqlStorage::exec` is synchronous, so the read-modify-write below never interleaves
//! with another batch.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use serde::Serialize;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State,
};

use crate::metrics::{Aggregate, MetricsEvent};

/// Binding name of the Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "METRICS";
/// Name of the single aggregate object.
const OBJECT_NAME: &str = "global";

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
    /// SQLite rows written.
    pub rows_written: u64,
    /// SQLite rows read.
    pub rows_read: u64,
}

impl StorageCounters {
    /// As stored: the five numbers, comma-separated (no JSON parser needed to read back).
    pub fn to_text(&self) -> String {
        let Self {
            events,
            batches,
            duplicates,
            rows_written,
            rows_read,
        } = self;
        format!("{events},{batches},{duplicates},{rows_written},{rows_read}")
    }

    /// Reads [`Self::to_text`]; anything else (an older row without counters) is zeros.
    pub fn from_text(text: &str) -> Self {
        let numbers: Vec<u64> = text.split(',').filter_map(|n| n.parse().ok()).collect();
        match numbers[..] {
            [events, batches, duplicates, rows_written, rows_read] => Self {
                events,
                batches,
                duplicates,
                rows_written,
                rows_read,
            },
            _ => Self::default(),
        }
    }
}

/// The metrics Durable Object.
#[durable_object]
pub struct MetricsStore {
    state: State,
    aggregate: RefCell<Option<Aggregate>>,
    recent: RefCell<RecentIds>,
    counters: RefCell<StorageCounters>,
}

impl MetricsStore {
    fn ensure_schema(&self) -> Result<()> {
        let sql = self.state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS aggregate \
             (id INTEGER PRIMARY KEY, state TEXT NOT NULL, storage TEXT)",
            None,
        )?;
        // Tables created before the counters were kept lack the column.
        if sql
            .exec("SELECT storage FROM aggregate LIMIT 0", None)
            .is_err()
        {
            sql.exec("ALTER TABLE aggregate ADD COLUMN storage TEXT", None)?;
        }
        Ok(())
    }

    /// The aggregate, loaded from storage on first use after a (re)start.
    fn load(&self) -> Result<Aggregate> {
        if let Some(cached) = self.aggregate.borrow().as_ref() {
            return Ok(cached.clone());
        }
        let cursor = self
            .state
            .storage()
            .sql()
            .exec("SELECT state, storage FROM aggregate WHERE id = 1", None)?;
        // Raw values rather than `to_array::<Row>()`, which would deserialize through
        // serde_wasm_bindgen: with `fetch` reading batches with serde_json, that leaves
        // none of its deserializer in the wasm.
        let rows = cursor.raw().collect::<Result<Vec<_>>>()?;
        let (aggregate, stored) = match rows.first().map(Vec::as_slice) {
            Some([SqlStorageValue::String(state), storage]) => (
                serde_json::from_slice(state.as_bytes())?,
                match storage {
                    SqlStorageValue::String(text) => StorageCounters::from_text(text),
                    _ => StorageCounters::default(),
                },
            ),
            Some(_) => {
                return Err(worker::Error::RustError(
                    "aggregate row: expected a text state and storage column".into(),
                ))
            }
            None => (Aggregate::default(), StorageCounters::default()),
        };
        // Nothing is counted before the first load (every use of the counters loads first).
        *self.counters.borrow_mut() = StorageCounters {
            rows_read: stored.rows_read + cursor.rows_read() as u64,
            ..stored
        };
        *self.aggregate.borrow_mut() = Some(aggregate.clone());
        Ok(aggregate)
    }

    /// Writes the one row (aggregate and storage counters) and keeps both in memory.
    fn write(&self, aggregate: Aggregate, mut counters: StorageCounters) -> Result<()> {
        let cursor = self.state.storage().sql().exec(
            "INSERT INTO aggregate (id, state, storage) VALUES (1, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, storage = excluded.storage",
            vec![
                SqlStorageValue::from(serde_json::to_string(&aggregate)?),
                SqlStorageValue::from(counters.to_text()),
            ],
        )?;
        counters.rows_written += cursor.rows_written() as u64;
        counters.rows_read += cursor.rows_read() as u64;
        *self.counters.borrow_mut() = counters;
        *self.aggregate.borrow_mut() = Some(aggregate);
        Ok(())
    }

    /// Folds in the events not seen before and writes the row once; returns how many
    /// were new.
    fn record(&self, events: &[MetricsEvent]) -> Result<u64> {
        let mut aggregate = self.load()?;
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
                aggregate.apply(event);
            }
        }
        self.counters.borrow_mut().duplicates += duplicates;
        let recorded = new_ids.len() as u64;
        if recorded == 0 {
            return Ok(0);
        }
        let mut counters = *self.counters.borrow();
        counters.events += recorded;
        counters.batches += 1;
        self.write(aggregate, counters)?;
        let mut recent = self.recent.borrow_mut();
        for id in new_ids {
            recent.insert(id);
        }
        Ok(recorded)
    }
}

impl MetricsStore {
    /// Sets the aggregate back to empty (the storage counters and the recent ids stay: a
    /// late retry of an old batch is still a duplicate).
    fn reset(&self) -> Result<()> {
        self.load()?;
        let counters = *self.counters.borrow();
        self.write(Aggregate::default(), counters)
    }
}

impl DurableObject for MetricsStore {
    fn new(state: State, _env: Env) -> Self {
        let store = Self {
            state,
            aggregate: RefCell::new(None),
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
                let aggregate = self.load()?;
                let counters = *self.counters.borrow();
                Response::from_json(&serde_json::json!({
                    "aggregate": aggregate,
                    "storage": counters,
                }))
            }
            _ => Response::error("not found", 404),
        }
    }
}

/// Worker-side client of the metrics object.
pub struct MetricsClient {
    stub: worker::Stub,
}

impl MetricsClient {
    /// Connects to the single aggregate object.
    pub fn connect(env: &Env) -> Result<Self> {
        let namespace = env.durable_object(BINDING)?;
        let stub = namespace.id_from_name(OBJECT_NAME)?.get_stub()?;
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

    /// Reads the current aggregate and the object's storage counters.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut response = self.stub.fetch_with_str("https://metrics/snapshot").await?;
        let value: serde_json::Value = serde_json::from_slice(response.text().await?.as_bytes())?;
        Snapshot::from_value(&value).map_err(worker::Error::RustError)
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
        };
        assert_eq!(c.to_text(), "54400,680,2,681,682");
        assert_eq!(StorageCounters::from_text(&c.to_text()), c);
        for old in ["", "x", "1,2,3", "1,2,3,4,5,6"] {
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

//! The ledger Durable Object (rate limits and spend budgets, [`llm_mux_core::ledger`]), and
//! the worker-side client that admits and settles requests through it.
//!
//! One object per scope that must be exact: `global` when a global cap is configured
//! (every request meets there), else one per key (`key:<id>`). A Durable Object runs one
//! request at a time, so an admission (check and reserve) is atomic however many
//! requests arrive at once. Only settled spend is stored (one SQLite row, rewritten per
//! settlement); rate windows and reservations are kept in memory.
//!
//! It owns the storage and the wire; the decisions are the core's. It must not read the
//! configuration: caps arrive with each admission.

use std::cell::RefCell;

use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State,
};

use llm_mux_core::ledger::{self, Admit, Ledger, Settle, Spend, Verdict};
use llm_mux_core::metrics::outbox::FlushWindow;

/// Binding name of the Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "LEDGER";

/// The ledger of one scope. Only `fetch` is exported to the runtime (no alarm, WebSocket or
/// `connect` handlers: each would add an unused export and its glue to the bundle).
#[durable_object(fetch)]
pub struct LedgerStore {
    state: State,
    ledger: RefCell<Option<Ledger>>,
}

impl LedgerStore {
    /// The ledger, read from storage on first use (one copy of this code, not one per
    /// caller as a generic closure would make).
    fn ledger(&self) -> Result<std::cell::RefMut<'_, Ledger>> {
        let mut slot = self.ledger.borrow_mut();
        if slot.is_none() {
            let sql = self.state.storage().sql();
            sql.exec(
                "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, state TEXT NOT NULL)",
                None,
            )?;
            // Raw values: `to_array` would pull serde_wasm_bindgen's deserializer in.
            let rows = sql
                .exec("SELECT state FROM ledger WHERE id = 1", None)?
                .raw()
                .collect::<Result<Vec<_>>>()?;
            let text = match rows.first().map(Vec::as_slice) {
                Some([SqlStorageValue::String(text)]) => text.as_str(),
                _ => "",
            };
            *slot = Some(Ledger::from_text(text));
        }
        Ok(std::cell::RefMut::map(slot, |s| {
            s.get_or_insert_with(Ledger::default)
        }))
    }

    fn persist(&self) -> Result<()> {
        let text = self.ledger()?.to_text();
        self.state.storage().sql().exec(
            "INSERT INTO ledger (id, state) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state",
            Some(vec![text.into()]),
        )?;
        Ok(())
    }
}

impl DurableObject for LedgerStore {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            ledger: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let now_ms = crate::runtime::now_ms();
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/admit") => {
                let admit = ledger::admit_from_text(&req.text().await?)
                    .ok_or_else(|| worker::Error::RustError("unreadable admission".into()))?;
                let verdict = self.ledger()?.admit(&admit, now_ms);
                Response::ok(ledger::verdict_to_text(&verdict))
            }
            (Method::Post, "/settle") => {
                // A batch of settlements, one per line; one row written for all of them.
                let text = req.text().await?;
                {
                    let mut ledger = self.ledger()?;
                    for line in text.lines() {
                        let settle = Settle::from_text(line).ok_or_else(|| {
                            worker::Error::RustError("unreadable settlement".into())
                        })?;
                        ledger.settle(&settle.id, &settle.scopes, settle.actual, now_ms);
                    }
                }
                self.persist()?;
                Response::ok("settled")
            }
            (Method::Get, "/spend") => {
                let spend = self.ledger()?.spend(now_ms);
                let mut text = String::new();
                for (scope, s) in spend {
                    text.push_str(&format!(
                        "{scope} {} {} {}\n",
                        s.day_spent, s.month_spent, s.reserved
                    ));
                }
                Response::ok(text)
            }
            _ => Response::error("not found", 404),
        }
    }
}

fn stub(env: &Env, object: &str) -> Result<worker::Stub> {
    env.durable_object(BINDING)?
        .id_from_name(object)?
        .get_stub()
}

/// Asks the ledger object of `admit` for a verdict (one Durable Object round trip).
pub async fn admit(env: &Env, admit: &Admit) -> Result<Verdict> {
    let stub = stub(env, admit.object())?;
    let mut response = crate::runtime::post_to_object(
        &stub,
        "https://ledger/admit",
        &ledger::admit_to_text(admit),
        "ledger",
    )
    .await?;
    ledger::verdict_from_text(&response.text().await?)
        .ok_or_else(|| worker::Error::RustError("unreadable ledger verdict".into()))
}

thread_local! {
    /// This isolate's settlements not yet sent, and whether a flusher waits for them (the
    /// metrics outbox's window policy).
    static SETTLEMENTS: std::cell::RefCell<(Vec<Settle>, FlushWindow)> =
        std::cell::RefCell::new((Vec::new(), FlushWindow::default()));
}

/// Settles a request at its real cost after the response: settlements are gathered per
/// isolate for `window_ms` (METRICS_BATCH_MS) and sent per ledger object in one call, so
/// that the ledger adds one round trip per request (the admission) and one call and one
/// row write per batch. `GET /metrics` sends what is queued before reading ([`flush`]).
pub fn settle_after_response(env: &Env, ctx: &worker::Context, settle: Settle, window_ms: u64) {
    if let Some(flusher) = enqueue(env, settle, window_ms) {
        crate::runtime::after_response(ctx, flusher);
    }
}

/// Queues `settle` now; returns the flusher to keep alive in some `wait_until` when this
/// settlement starts a batch.
pub fn enqueue(
    env: &Env,
    settle: Settle,
    window_ms: u64,
) -> Option<impl std::future::Future<Output = ()> + 'static> {
    let now = crate::runtime::now_ms();
    let window_ms = crate::metrics_shipping::window(window_ms);
    let start = SETTLEMENTS.with(|cell| {
        let (queue, flusher) = &mut *cell.borrow_mut();
        queue.push(settle);
        flusher.start(now, window_ms)
    });
    let env = env.clone();
    start.then_some(async move {
        worker::Delay::from(std::time::Duration::from_millis(window_ms)).await;
        let queued = take(true);
        let _guard = crate::metrics_shipping::send_guard();
        send_all(env, queued).await;
    })
}

/// How many settlements wait in this isolate's queue.
pub fn queued() -> usize {
    SETTLEMENTS.with(|cell| cell.borrow().0.len())
}

/// The queued settlements (`flusher`: taken by the flusher, so the next one starts anew).
fn take(flusher: bool) -> Vec<Settle> {
    SETTLEMENTS.with(|cell| {
        let (queue, window) = &mut *cell.borrow_mut();
        if flusher {
            window.taken();
        }
        std::mem::take(queue)
    })
}

/// Sends this isolate's queued settlements now (before `/metrics` reads the ledger; the
/// caller then waits for every send under way, see `metrics_shipping::flush`).
pub fn flush(env: &Env, ctx: &worker::Context) {
    let queued = take(false);
    if !queued.is_empty() {
        let env = env.clone();
        // Counted as under way now, before the task first runs.
        let guard = crate::metrics_shipping::send_guard();
        crate::runtime::after_response(ctx, async move {
            send_all(env, queued).await;
            drop(guard);
        });
    }
}

/// Sends `settlements`, one call per ledger object.
async fn send_all(env: Env, settlements: Vec<Settle>) {
    let mut objects: Vec<&str> = settlements.iter().map(|s| s.object.as_str()).collect();
    objects.sort_unstable();
    objects.dedup();
    for object in objects {
        let batch: Vec<&Settle> = settlements.iter().filter(|s| s.object == object).collect();
        send(&env, object, &batch).await;
    }
}

/// Sends one object's settlements (one per line); retried once (the object ignores ids
/// it has settled already, so a retry never charges twice).
async fn send(env: &Env, object: &str, settlements: &[&Settle]) {
    let mut body = String::new();
    for s in settlements {
        body.push_str(&s.to_text());
        body.push('\n');
    }
    let mut result = Err(worker::Error::RustError(String::new()));
    for attempt in 0..2 {
        if attempt > 0 {
            worker::Delay::from(std::time::Duration::from_millis(200)).await;
        }
        result = match stub(env, object) {
            Ok(stub) => {
                crate::runtime::post_to_object(&stub, "https://ledger/settle", &body, "ledger")
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        };
        if result.is_ok() {
            return;
        }
    }
    if let Err(e) = result {
        worker::console_error!(
            "ledger: {} settlements not recorded: {e}",
            settlements.len()
        );
    }
}

/// The spend of every scope the object `object` keeps.
pub async fn spend(env: &Env, object: &str) -> Result<Vec<(String, Spend)>> {
    let mut response = stub(env, object)?
        .fetch_with_str("https://ledger/spend")
        .await?;
    let text = response.text().await?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let [scope, day, month, reserved] = f[..] else {
                return None;
            };
            Some((
                scope.to_string(),
                Spend {
                    day_spent: day.parse().ok()?,
                    month_spent: month.parse().ok()?,
                    reserved: reserved.parse().ok()?,
                    ..Spend::default()
                },
            ))
        })
        .collect())
}

//! The quality Durable Object: it takes the shadow jobs of sampled requests, answers each
//! with the other tier and has the judge grade both answers (in its alarm, after the
//! requests that caused them, with bounded retries), keeps the judged samples without any
//! text, and serves the quality state: the estimate, the evaluation spend and the
//! controller's threshold.
//!
//! Prompt and answer text never reach storage: a job's text lives in the object's memory
//! only, until it is judged or dropped (SQLite keeps deleted rows in its journal and free
//! pages, so "deleted" text would still be on disk). SQLite holds, per job, a text-free
//! entry (id, attempts, when due), so that a job whose text was lost with a restart of the
//! object is counted (`lost_on_restart`) rather than forgotten; `judged` holds judged
//! samples (grades, tokens, costs); one `state` row holds the counters and the controller's
//! state. A job is judged at most once: its id is refused when a job or a sample of that
//! id exists, and its entry is deleted when its outcome is written. It must not decide
//! anything itself: sampling, the judge's contract, the estimate and the controller are
//! the core's.

use std::cell::RefCell;

use serde::Serialize;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorageValue, State,
};

use llm_mux_core::accounting;
use llm_mux_core::config::Config;
use llm_mux_core::jsonread::Fields;
use llm_mux_core::judge;
use llm_mux_core::plan::{self, Plan};
use llm_mux_core::providers::ChatResponse;
use llm_mux_core::quality::{
    ControllerConfig, JudgedSample as ControllerSample, QualityController, ServedBy,
};
use llm_mux_core::quality_state::{self as bridge, Published, StoreCounts, ThresholdSource};
use llm_mux_core::shadow::{self, CallCost, JudgedSample, OtherAnswer, ShadowJob};
use llm_mux_core::stages;
use llm_mux_core::upstream::{self, Answer};

use crate::error::GatewayError;
use crate::runtime;
use crate::upstream::Fetch;

/// Binding name of the Durable Object namespace (wrangler.toml).
pub const BINDING: &str = "QUALITY";
/// Name of the single quality object.
const OBJECT_NAME: &str = "global";
/// Attempts of a job whose calls fail (the first try and two retries).
pub const MAX_JOB_ATTEMPTS: u64 = 3;
/// Jobs judged per alarm run (the rest wait for the next run, at once).
const JOBS_PER_RUN: usize = 4;
/// Judged samples kept (the newest); older ones are deleted (their counts stay in the
/// counters). The estimate and the controller read these.
pub const SAMPLES_KEPT: u64 = 5_000;
/// Delay before a failed job is tried again, by attempt (ms).
const RETRY_DELAYS_MS: [u64; 2] = [1_000, 4_000];

/// Counters kept in the state row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Jobs accepted.
    pub accepted: u64,
    /// Jobs refused by `QUALITY_MAX_SAMPLES_PER_HOUR`.
    pub capped: u64,
    /// Jobs refused because their id was already taken (a retried hand-over).
    pub duplicates: u64,
    /// Samples dropped, by reason.
    pub failed: llm_mux_core::named::Named<u64>,
    /// Job attempts retried.
    pub retries: u64,
    /// Spend on shadow calls and judge calls, judged or not.
    pub evaluation_cost_usd: f64,
    /// Start of the current hour window (ms) and jobs accepted in it.
    pub hour_start_ms: u64,
    /// Jobs accepted since `hour_start_ms`.
    pub hour_accepted: u64,
}

impl Counters {
    /// Reads the counters as [`Serialize`] writes them, every field required (the store
    /// starts from zero when they do not read).
    pub fn from_value(v: &serde_json::Value) -> std::result::Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(Counters {
            accepted: f.u64("accepted")?,
            capped: f.u64("capped")?,
            duplicates: f.u64("duplicates")?,
            failed: llm_mux_core::named::Named::<u64>::from_value(f.get("failed")?)
                .map_err(|e| format!("failed: {e}"))?,
            retries: f.u64("retries")?,
            evaluation_cost_usd: f.f64("evaluation_cost_usd")?,
            hour_start_ms: f.u64("hour_start_ms")?,
            hour_accepted: f.u64("hour_accepted")?,
        })
    }
}

/// Parses JSON text and reads it with `read` (no derived reader: llm_mux_core::jsonread).
fn read_json<T>(
    text: &str,
    read: fn(&serde_json::Value) -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_slice(text.as_bytes()).map_err(|e| e.to_string())?;
    read(&value)
}

/// The quality Durable Object. Only `fetch` and `alarm` are exported to the runtime (no
/// WebSocket or `connect` handlers: each would add an unused export and its glue).
#[durable_object(alarm)]
pub struct QualityStore {
    state: State,
    env: Env,
    counters: RefCell<Option<Counters>>,
    controller: RefCell<Option<QualityController>>,
    /// The jobs' texts, one per id (memory only). A `Vec` searched by id rather than a
    /// `HashMap`: a few jobs at a time, and no hash table code of its own in the bundle.
    texts: RefCell<Vec<ShadowJob>>,
}

/// What a job's attempt came to.
enum Outcome {
    /// Judged: the sample to keep.
    Judged(JudgedSample, f64),
    /// Dropped for good (`reason`), after spending `cost`.
    Dropped(&'static str, f64),
    /// A call failed; worth another attempt. `cost` was spent.
    Retry(&'static str, f64),
}

impl QualityStore {
    fn ensure_schema(&self) -> Result<()> {
        let sql = self.state.storage().sql();
        sql.exec(
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, \
             attempts INTEGER NOT NULL, due_ms INTEGER NOT NULL)",
            None,
        )?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS judged (id TEXT PRIMARY KEY, time_ms INTEGER NOT NULL, \
             score REAL NOT NULL, served_top INTEGER NOT NULL, grade_lower INTEGER NOT NULL, \
             grade_top INTEGER NOT NULL, probability REAL NOT NULL, serving_cost REAL NOT NULL, \
             extra_cost REAL NOT NULL, judge_cost REAL NOT NULL, body TEXT NOT NULL)",
            None,
        )?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY, counters TEXT NOT NULL, \
             controller TEXT NOT NULL)",
            None,
        )?;
        Ok(())
    }

    fn config(&self) -> std::result::Result<Config, GatewayError> {
        Config::from_lookup(|name| self.env.var(name).ok().map(|v| v.to_string()))
    }

    /// Counters and controller state, loaded on first use after a (re)start. The
    /// controller's samples are not in its stored state: they are read back from the
    /// `samples` table (the newest `settings.window`).
    fn load(&self, settings: &ControllerConfig) -> Result<(Counters, QualityController)> {
        if let (Some(c), Some(q)) = (
            self.counters.borrow().as_ref(),
            self.controller.borrow().as_ref(),
        ) {
            return Ok((c.clone(), q.clone()));
        }
        let rows = self
            .state
            .storage()
            .sql()
            .exec("SELECT counters, controller FROM state WHERE id = 1", None)?
            .raw()
            .collect::<Result<Vec<_>>>()?;
        let (counters, mut controller) = match rows.first().map(Vec::as_slice) {
            Some([SqlStorageValue::String(c), SqlStorageValue::String(q)]) => (
                read_json(c, Counters::from_value).unwrap_or_default(),
                read_json(q, QualityController::from_value)
                    .unwrap_or_else(|_| QualityController::new(settings)),
            ),
            _ => (Counters::default(), QualityController::new(settings)),
        };
        controller.samples = self.samples(settings.window as u64)?.into();
        *self.counters.borrow_mut() = Some(counters.clone());
        *self.controller.borrow_mut() = Some(controller.clone());
        Ok((counters, controller))
    }

    fn save(&self, counters: &Counters, controller: &QualityController) -> Result<()> {
        let mut stored = controller.clone();
        stored.samples.clear();
        self.state.storage().sql().exec(
            "INSERT INTO state (id, counters, controller) VALUES (1, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET counters = excluded.counters, \
             controller = excluded.controller",
            vec![
                SqlStorageValue::from(serde_json::to_string(counters)?),
                SqlStorageValue::from(serde_json::to_string(&stored)?),
            ],
        )?;
        *self.counters.borrow_mut() = Some(counters.clone());
        *self.controller.borrow_mut() = Some(controller.clone());
        Ok(())
    }

    fn exists(&self, id: &str) -> Result<bool> {
        let sql = self.state.storage().sql();
        for table in ["jobs", "judged"] {
            let rows = sql
                .exec(
                    &format!("SELECT 1 FROM {table} WHERE id = ?"),
                    vec![SqlStorageValue::from(id.to_string())],
                )?
                .raw()
                .count();
            if rows > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes a job: refused when its id is taken or the hour's cap is reached.
    async fn accept(&self, job: ShadowJob, config: &Config) -> Result<&'static str> {
        let (mut counters, controller) = self.load(&bridge::controller_config(config))?;
        let now = runtime::now_ms();
        if self.exists(&job.id)? {
            counters.duplicates += 1;
            self.save(&counters, &controller)?;
            return Ok("duplicate");
        }
        if now.saturating_sub(counters.hour_start_ms) >= 3_600_000 {
            counters.hour_start_ms = now;
            counters.hour_accepted = 0;
        }
        if counters.hour_accepted >= config.quality.max_samples_per_hour {
            counters.capped += 1;
            self.save(&counters, &controller)?;
            return Ok("capped");
        }
        counters.hour_accepted += 1;
        counters.accepted += 1;
        self.state.storage().sql().exec(
            "INSERT INTO jobs (id, attempts, due_ms) VALUES (?, 0, ?)",
            vec![
                SqlStorageValue::from(job.id.clone()),
                SqlStorageValue::from(now as i64),
            ],
        )?;
        {
            let mut texts = self.texts.borrow_mut();
            texts.retain(|held| held.id != job.id);
            texts.push(job);
        }
        self.save(&counters, &controller)?;
        // Due now: an alarm set for a later retry is brought forward (the run reschedules
        // whatever is not due yet).
        let due_later = self
            .state
            .storage()
            .get_alarm()
            .await?
            .is_none_or(|at| at > now as i64);
        if due_later {
            self.state.storage().set_alarm(0i64).await?;
        }
        Ok("accepted")
    }

    /// Runs the due jobs (a few per run) and schedules the next run.
    async fn run_jobs(&self) -> Result<()> {
        let config = match self.config() {
            Ok(config) => config,
            Err(e) => {
                worker::console_error!(
                    "quality store: configuration invalid: {}",
                    e.client_message()
                );
                return Ok(());
            }
        };
        let now = runtime::now_ms();
        let rows = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT id, attempts FROM jobs WHERE due_ms <= ? ORDER BY due_ms LIMIT ?",
                vec![
                    SqlStorageValue::from(now as i64),
                    SqlStorageValue::from(JOBS_PER_RUN as i64),
                ],
            )?
            .raw()
            .collect::<Result<Vec<_>>>()?;
        for row in rows {
            let (id, attempts) = match row.as_slice() {
                [SqlStorageValue::String(id), attempts] => {
                    let attempts = match attempts {
                        SqlStorageValue::Integer(n) => *n as u64,
                        _ => 0,
                    };
                    (id.clone(), attempts)
                }
                _ => continue,
            };
            let job = self
                .texts
                .borrow()
                .iter()
                .find(|held| held.id == id)
                .cloned();
            let outcome = match job {
                Some(job) => self.judge_job(&config, job).await?,
                None => Outcome::Dropped("lost_on_restart", 0.0),
            };
            self.settle(&config, &id, attempts, outcome)?;
        }
        self.schedule_next().await
    }

    /// Writes a job's outcome: the sample kept and the job deleted, or the job retried.
    fn settle(&self, config: &Config, id: &str, attempts: u64, outcome: Outcome) -> Result<()> {
        let settings = bridge::controller_config(config);
        let (mut counters, mut controller) = self.load(&settings)?;
        let sql = self.state.storage().sql();
        let now = runtime::now_ms();
        let delete = |sql: &worker::SqlStorage| {
            self.texts.borrow_mut().retain(|held| held.id != id);
            sql.exec(
                "DELETE FROM jobs WHERE id = ?",
                vec![SqlStorageValue::from(id.to_string())],
            )
            .map(|_| ())
        };
        match outcome {
            Outcome::Judged(sample, cost) => {
                counters.evaluation_cost_usd += cost;
                sql.exec(
                    "INSERT OR IGNORE INTO judged (id, time_ms, score, served_top, grade_lower, \
                     grade_top, probability, serving_cost, extra_cost, judge_cost, body) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        SqlStorageValue::from(sample.id.clone()),
                        SqlStorageValue::from(sample.time_ms as i64),
                        SqlStorageValue::from(sample.score),
                        SqlStorageValue::from(i64::from(sample.served_top)),
                        SqlStorageValue::from(i64::from(sample.grade_lower())),
                        SqlStorageValue::from(i64::from(sample.grade_top())),
                        SqlStorageValue::from(sample.sample_probability),
                        SqlStorageValue::from(sample.served_cost_usd),
                        SqlStorageValue::from(sample.other_cost_usd),
                        SqlStorageValue::from(sample.judge_cost_usd),
                        SqlStorageValue::from(serde_json::to_string(&sample)?),
                    ],
                )?;
                delete(&sql)?;
                sql.exec(
                    "DELETE FROM judged WHERE id IN (SELECT id FROM judged \
                     ORDER BY time_ms DESC LIMIT -1 OFFSET ?)",
                    vec![SqlStorageValue::from(SAMPLES_KEPT as i64)],
                )?;
                controller.record_sample(bridge::controller_sample(&sample), &settings);
            }
            Outcome::Dropped(reason, cost) => {
                counters.evaluation_cost_usd += cost;
                counters.failed.add(reason, 1);
                controller.record_failure(cost);
                delete(&sql)?;
            }
            Outcome::Retry(reason, cost) => {
                counters.evaluation_cost_usd += cost;
                let attempts = attempts + 1;
                if attempts >= MAX_JOB_ATTEMPTS {
                    counters.failed.add(reason, 1);
                    controller.record_failure(cost);
                    delete(&sql)?;
                } else {
                    counters.retries += 1;
                    let delay = RETRY_DELAYS_MS
                        .get(attempts as usize - 1)
                        .copied()
                        .unwrap_or(10_000);
                    sql.exec(
                        "UPDATE jobs SET attempts = ?, due_ms = ? WHERE id = ?",
                        vec![
                            SqlStorageValue::from(attempts as i64),
                            SqlStorageValue::from((now + delay) as i64),
                            SqlStorageValue::from(id.to_string()),
                        ],
                    )?;
                }
            }
        }
        controller.update(now, &settings);
        self.save(&counters, &controller)
    }

    async fn schedule_next(&self) -> Result<()> {
        let rows = self
            .state
            .storage()
            .sql()
            .exec("SELECT MIN(due_ms) FROM jobs", None)?
            .raw()
            .collect::<Result<Vec<_>>>()?;
        if let Some([SqlStorageValue::Integer(due)]) = rows.first().map(Vec::as_slice) {
            let wait = (*due as u64).saturating_sub(runtime::now_ms());
            self.state.storage().set_alarm(wait as i64).await?;
        }
        Ok(())
    }

    /// The newest `limit` judged samples, oldest first, in the controller's form (read
    /// from their columns: the full record's JSON is written for people, never read back).
    fn samples(&self, limit: u64) -> Result<Vec<ControllerSample>> {
        let rows = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT time_ms, score, served_top, grade_lower, grade_top, probability, \
                 serving_cost, extra_cost, judge_cost FROM (SELECT * FROM judged \
                 ORDER BY time_ms DESC LIMIT ?) ORDER BY time_ms",
                vec![SqlStorageValue::from(limit as i64)],
            )?
            .raw()
            .collect::<Result<Vec<_>>>()?;
        // The runtime hands SQLite numbers over as JS numbers: an integer may arrive as
        // either variant, a real with an integral value too.
        let int = |v: &SqlStorageValue| match v {
            SqlStorageValue::Integer(n) => Some(*n),
            SqlStorageValue::Float(x) if x.fract() == 0.0 => Some(*x as i64),
            SqlStorageValue::Boolean(b) => Some(i64::from(*b)),
            _ => None,
        };
        let real = |v: &SqlStorageValue| match v {
            SqlStorageValue::Float(x) => Some(*x),
            SqlStorageValue::Integer(n) => Some(*n as f64),
            _ => None,
        };
        Ok(rows
            .iter()
            .filter_map(|row| match row.as_slice() {
                [time, score, top, lower_grade, top_grade, p, serving, extra, judge] => {
                    Some(ControllerSample {
                        time_ms: u64::try_from(int(time)?).ok()?,
                        score: real(score)?,
                        served: if int(top)? != 0 {
                            ServedBy::Top
                        } else {
                            ServedBy::Lower
                        },
                        grade_lower: u8::try_from(int(lower_grade)?).ok()?,
                        grade_top: u8::try_from(int(top_grade)?).ok()?,
                        probability: real(p)?,
                        serving_cost_usd: real(serving)?,
                        extra_cost_usd: real(extra)?,
                        judge_cost_usd: real(judge)?,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn pending(&self) -> Result<u64> {
        Ok(self
            .state
            .storage()
            .sql()
            .exec("SELECT id FROM jobs", None)?
            .raw()
            .count() as u64)
    }
}

impl QualityStore {
    /// The shadow call (unless an earlier attempt made it) and the judge call of one job.
    async fn judge_job(&self, config: &Config, mut job: ShadowJob) -> Result<Outcome> {
        let mut spent = 0.0;
        let other = match job.other.take() {
            Some(other) => other,
            None => match call(config, &job.chat_request(), job.other_tier).await {
                Ok((completion, cost)) => {
                    spent += cost.cost_usd;
                    let other = OtherAnswer {
                        answer: completion.answer,
                        cost,
                    };
                    // Kept with the job, so that a retry only repeats the judge.
                    job.other = Some(other.clone());
                    let mut texts = self.texts.borrow_mut();
                    if let Some(held) = texts.iter_mut().find(|held| held.id == job.id) {
                        held.other = Some(other.clone());
                    }
                    other
                }
                Err(_) => return Ok(Outcome::Retry("shadow_call_failed", spent)),
            },
        };
        let judge_tier = config.quality.judge_tier;
        let backend = match config.tiers.get(judge_tier) {
            Some(tier) => tier.backend,
            None => return Ok(Outcome::Dropped("judge_tier_missing", spent)),
        };
        let judge_request = judge::request(
            &job.query,
            &job.served_answer,
            &other.answer,
            job.served_first,
            backend,
        );
        let (reply, judge_cost) = match call(config, &judge_request, judge_tier).await {
            Ok(answer) => answer,
            Err(_) => return Ok(Outcome::Retry("judge_call_failed", spent)),
        };
        spent += judge_cost.cost_usd;
        Ok(match judge::read_reply(&reply.answer, job.served_first) {
            Ok(grades) => Outcome::Judged(
                shadow::judged(config, &job, grades, other.cost, judge_cost),
                spent,
            ),
            Err(failure) => Outcome::Dropped(failure.label(), spent),
        })
    }
}

/// One whole (unstreamed) call to tier `tier`, priced.
async fn call(
    config: &Config,
    request: &llm_mux_core::chat::ChatRequest,
    tier: usize,
) -> std::result::Result<(ChatResponse, CallCost), GatewayError> {
    let plan: Plan = plan::direct(config, request, tier)?;
    let request = plan.upstream_request();
    let answer = upstream::call(
        &Fetch,
        &request,
        stages::call_policy(config),
        plan.provider(),
        plan.key.expose(),
    )
    .await?;
    let Answer::Whole(raw) = answer else {
        return Err(GatewayError::Internal("a shadow call was streamed".into()));
    };
    let completion = plan.provider().parse_response(&raw)?;
    let priced = accounting::account(
        config,
        &plan,
        &accounting::Answered {
            reported_model: &completion.model,
            usage: completion.usage,
            completion_chars: completion.answer.chars().count(),
            request_bytes: request.body.len(),
            received_bytes: raw.len(),
            dropped_events: 0,
        },
    )?;
    let cost = CallCost {
        tokens_in: priced.tokens_in,
        tokens_out: priced.tokens_out,
        cost_usd: priced.cost_usd,
    };
    Ok((completion, cost))
}

impl DurableObject for QualityStore {
    fn new(state: State, env: Env) -> Self {
        let store = Self {
            state,
            env,
            counters: RefCell::new(None),
            controller: RefCell::new(None),
            texts: RefCell::new(Vec::new()),
        };
        if let Err(e) = store.ensure_schema() {
            worker::console_error!("quality store: cannot create schema: {e}");
        }
        store
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let config = match self.config() {
            Ok(config) => config,
            Err(e) => return Response::error(e.client_message(), 500),
        };
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/job") => {
                let job = read_json(&req.text().await?, ShadowJob::from_value)
                    .map_err(|e| worker::Error::RustError(format!("shadow job: {e}")))?;
                let outcome = self.accept(job, &config).await?;
                Response::from_json(&llm_mux_core::object! {"outcome": outcome})
            }
            (Method::Post, "/traffic") => {
                // An isolate's traffic since its last report; the answer is what it
                // applies next.
                let settings = bridge::controller_config(&config);
                let body: serde_json::Value = serde_json::from_slice(req.text().await?.as_bytes())?;
                let (counters, mut controller) = self.load(&settings)?;
                if let Some(batch) = bridge::traffic_from_wire(&body) {
                    if batch.bins() == controller.histogram.bins() {
                        controller.merge_traffic(&batch);
                    }
                }
                let published = controller.update(runtime::now_ms(), &settings);
                self.save(&counters, &controller)?;
                Response::from_json(&published)
            }
            (Method::Get, "/state") => {
                let settings = bridge::controller_config(&config);
                let (counters, controller) = self.load(&settings)?;
                let counts = StoreCounts {
                    failed: counters.failed.clone(),
                    capped: counters.capped,
                    pending: self.pending()?,
                    evaluation_cost_usd: counters.evaluation_cost_usd,
                };
                let published = controller.published();
                Response::from_json(&Snapshot {
                    report: bridge::block(&controller.report(&settings), &published, &counts),
                    published,
                    evaluation_cost_usd: counters.evaluation_cost_usd,
                })
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.run_jobs().await?;
        Response::ok("done")
    }
}

/// What `GET /state` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The quality block of /metrics.
    pub report: bridge::QualityBlock,
    /// What isolates apply: threshold and sampling policy.
    pub published: Published,
    /// Evaluation spend so far.
    pub evaluation_cost_usd: f64,
}

/// Worker-side client of the quality object.
pub struct QualityClient {
    stub: worker::Stub,
}

impl QualityClient {
    /// Connects to the single quality object.
    pub fn connect(env: &Env) -> Result<Self> {
        let namespace = env.durable_object(BINDING)?;
        let stub = namespace.id_from_name(OBJECT_NAME)?.get_stub()?;
        Ok(Self { stub })
    }

    /// Hands a job over (after the response of the request that was sampled).
    pub async fn submit(&self, job: &ShadowJob) -> Result<()> {
        let body = serde_json::to_string(job)?;
        runtime::post_to_object(&self.stub, "https://quality/job", &body, "quality store")
            .await
            .map(|_| ())
    }

    /// Sends this isolate's traffic batch; answers what the isolate should apply next.
    pub async fn report_traffic(&self, batch: &serde_json::Value) -> Result<Option<Published>> {
        let body = serde_json::to_string(batch)?;
        let mut response = runtime::post_to_object(
            &self.stub,
            "https://quality/traffic",
            &body,
            "quality store",
        )
        .await?;
        let value: serde_json::Value = serde_json::from_slice(response.text().await?.as_bytes())?;
        Ok(published_of(&value))
    }

    /// The quality state, as the object wrote it ([`Snapshot`]'s JSON). Read as a
    /// generic JSON value and picked apart by [`StateView`]: a derived reader of the whole
    /// snapshot would cost the worker several KB of wasm for three fields.
    pub async fn snapshot(&self) -> Result<StateView> {
        let mut response = self.stub.fetch_with_str("https://quality/state").await?;
        let text = response.text().await?;
        Ok(StateView(serde_json::from_slice(text.as_bytes())?))
    }
}

/// A snapshot as the worker reads it.
pub struct StateView(pub serde_json::Value);

impl StateView {
    /// What isolates should apply (`None` if the snapshot lacks it).
    pub fn published(&self) -> Option<Published> {
        published_of(self.0.get("published")?)
    }

    /// Evaluation spend so far.
    pub fn evaluation_cost_usd(&self) -> f64 {
        self.0
            .get("evaluation_cost_usd")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    }

    /// The quality block of /metrics, as written.
    pub fn report(&self) -> serde_json::Value {
        self.0
            .get("report")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }
}

/// A [`Published`] read field by field from JSON (the worker has no derived reader of it).
pub fn published_of(value: &serde_json::Value) -> Option<Published> {
    let number = |v: &serde_json::Value, name: &str| v.get(name)?.as_f64();
    let policy = value.get("policy")?;
    Some(Published {
        threshold: number(value, "threshold")?,
        source: match value.get("source")?.as_str()? {
            "controller" => ThresholdSource::Controller,
            _ => ThresholdSource::Configured,
        },
        policy: llm_mux_core::quality_state::SamplingPolicy {
            threshold: number(policy, "threshold")?,
            near_high: number(policy, "near_high")?,
            p_below: number(policy, "p_below")?,
            p_near: number(policy, "p_near")?,
            p_far: number(policy, "p_far")?,
        },
        version: value.get("version")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_back_as_written_and_refuse_damaged_fields() {
        let mut counters = Counters {
            accepted: 12,
            capped: 1,
            duplicates: 2,
            retries: 3,
            evaluation_cost_usd: 0.375,
            hour_start_ms: 3_600_000,
            hour_accepted: 4,
            ..Counters::default()
        };
        counters.failed.add("judge_error", 2);
        counters.failed.add("upstream_error", 1);
        let text = serde_json::to_string(&counters).unwrap();
        assert_eq!(read_json(&text, Counters::from_value), Ok(counters.clone()));
        let default = serde_json::to_string(&Counters::default()).unwrap();
        assert_eq!(
            read_json(&default, Counters::from_value),
            Ok(Counters::default())
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "accepted",
            "capped",
            "duplicates",
            "failed",
            "retries",
            "evaluation_cost_usd",
            "hour_start_ms",
            "hour_accepted",
        ] {
            let mut missing = value.clone();
            missing.as_object_mut().unwrap().remove(field);
            let e = Counters::from_value(&missing).unwrap_err();
            assert!(e.contains(&format!("missing field `{field}`")), "{e}");
            let mut wrong = value.clone();
            wrong[field] = serde_json::Value::from("1");
            let e = Counters::from_value(&wrong).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        let mut bad_count = value.clone();
        bad_count["failed"]["judge_error"] = serde_json::Value::from(-1);
        let e = Counters::from_value(&bad_count).unwrap_err();
        assert!(e.contains("failed: judge_error"), "{e}");
        assert!(read_json("[]", Counters::from_value).is_err());
        assert!(read_json("{", Counters::from_value).is_err());
    }

    #[test]
    fn the_stored_controller_reads_back_through_read_json() {
        let settings = ControllerConfig::new(0.5);
        let controller = QualityController::new(&settings);
        let text = serde_json::to_string(&controller).unwrap();
        assert_eq!(
            read_json(&text, QualityController::from_value),
            Ok(controller)
        );
        assert!(read_json("{}", QualityController::from_value).is_err());
    }
}

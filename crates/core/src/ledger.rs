//! The ledger: request rates and spend per scope (all traffic, or one key), reservations
//! of a request's worst-case cost before its upstream call, and their settlement with the
//! real cost after the answer.
//!
//! Run inside one Durable Object (the shell's `LedgerStore`), which takes one request at
//! a time, so an admission and its reservation are one atomic step: concurrent requests
//! can never together reserve more than a cap, and spend can overshoot a cap only by what
//! the real costs exceed their reservations. Money is counted in whole picodollars
//! (`u64`, 1e-12 USD), so sums are exact and the same in any order.
//!
//! Periods are UTC days and UTC calendar months; rate limits a sliding 60-second window
//! (exact: the times of the last `limit` admissions are kept). Only spend is persisted
//! ([`Ledger::to_text`]); reservations and rate windows live in memory (lost when the
//! object restarts: a restart forgets in-flight reservations, whose settlements are still
//! charged, and resets rate windows).
//!
//! Pure: the caller passes the clock. It must not read the configuration: the caps come
//! with each admission ([`ScopeCaps`]), built by [`admission`] from the configuration.

use std::collections::VecDeque;

// Scopes and reservations are kept in `Vec`s (a few scopes, reservations as many as
// requests in flight): each new `BTreeMap` key/value type costs the worker several KB of
// B-tree code.

use crate::config::{BudgetAction, Caps, Config};
use crate::error::GatewayError;
use crate::metrics::aggregate::Named;
use crate::metrics::BudgetStatus;
use crate::plan::Plan;

/// Picodollars per dollar.
const PICO: f64 = 1e12;
/// Milliseconds per day.
const DAY_MS: u64 = 86_400_000;
/// The rate limit window.
const WINDOW_MS: u64 = 60_000;
/// A reservation not settled after this long is released (its request died unsettled).
pub const RESERVATION_TTL_MS: u64 = 2 * 3_600_000;

/// `usd` in picodollars (rounded; negative and non-finite amounts are 0).
pub fn pico(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * PICO).round() as u64
    } else {
        0
    }
}

/// `pico` picodollars in USD.
pub fn usd(pico: u64) -> f64 {
    pico as f64 / PICO
}

/// One scope's caps as the ledger applies them: `global` or `key:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCaps {
    /// The scope's name.
    pub scope: String,
    /// Requests per 60 seconds.
    pub rate_per_minute: Option<u64>,
    /// Spend per UTC day, picodollars.
    pub daily: Option<u64>,
    /// Spend per UTC month, picodollars.
    pub monthly: Option<u64>,
}

impl ScopeCaps {
    fn of(scope: String, caps: &Caps) -> Self {
        Self {
            scope,
            rate_per_minute: caps.rate_limit_per_minute,
            daily: caps.daily_budget_usd.map(pico),
            monthly: caps.monthly_budget_usd.map(pico),
        }
    }
}

/// A request asking to be admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admit {
    /// The request id (names the reservation).
    pub id: String,
    /// The scopes whose caps apply.
    pub scopes: Vec<ScopeCaps>,
    /// Tiers the request may go to, in order of preference, with their worst-case cost
    /// (picodollars).
    pub candidates: Vec<(usize, u64)>,
    /// A reservation of the same request to release first (a fallback to another tier);
    /// such a re-admission is not counted against the rate limits again.
    pub replace: Option<String>,
}

/// Which budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The UTC day.
    Day,
    /// The UTC calendar month.
    Month,
}

impl Period {
    /// `daily` or `monthly`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Day => "daily",
            Self::Month => "monthly",
        }
    }
}

/// The ledger's answer to an [`Admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted to `tier`, with `reserved` picodollars held until settlement.
    Admitted { tier: usize, reserved: u64 },
    /// Over the rate limit of `scope` (`limit` per minute); retry after this many seconds.
    RateLimited {
        scope: String,
        limit: u64,
        retry_after_s: u64,
    },
    /// No candidate fits the `period` budget of `scope` (`cap` picodollars), which resets
    /// at `resets_at_ms`.
    OverBudget {
        scope: String,
        period: Period,
        cap: u64,
        resets_at_ms: u64,
    },
}

/// Spend of one scope in its current periods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    /// Day number (days since 1970-01-01, UTC) of `day_spent`.
    pub day: u64,
    /// Settled spend of that day, picodollars.
    pub day_spent: u64,
    /// Month number (year * 12 + month - 1) of `month_spent`.
    pub month: u64,
    /// Settled spend of that month, picodollars.
    pub month_spent: u64,
    /// Reserved for requests in flight, picodollars.
    pub reserved: u64,
}

impl Spend {
    /// Moves to the periods of `now_ms`, dropping the spend of ended ones.
    fn roll(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            self.day = day;
            self.day_spent = 0;
        }
        let month = month_of_day(day);
        if month != self.month {
            self.month = month;
            self.month_spent = 0;
        }
    }
}

#[derive(Debug, Default)]
struct Scope {
    spend: Spend,
    /// Times of the admissions in the last minute (at most the limit).
    hits: VecDeque<u64>,
}

#[derive(Debug)]
struct Reservation {
    scopes: Vec<String>,
    amount: u64,
    at_ms: u64,
}

/// The ledger of one Durable Object.
#[derive(Debug, Default)]
pub struct Ledger {
    scopes: Vec<(String, Scope)>,
    reservations: Vec<(String, Reservation)>,
    /// Ids settled lately, so that a retried settlement is charged once.
    settled: VecDeque<String>,
}

/// How many settled ids are remembered.
const SETTLED_MEMORY: usize = 4096;

impl Ledger {
    /// Admits `request` at `now_ms`, or says which limit it hits.
    pub fn admit(&mut self, request: &Admit, now_ms: u64) -> Verdict {
        if let Some(old) = &request.replace {
            self.release(old);
        }
        self.expire(now_ms);
        // Rate limits first: a limited request reserves nothing.
        if request.replace.is_none() {
            for caps in &request.scopes {
                let Some(limit) = caps.rate_per_minute else {
                    continue;
                };
                let scope = self.scope(&caps.scope, now_ms);
                while scope.hits.front().is_some_and(|&t| t + WINDOW_MS <= now_ms) {
                    scope.hits.pop_front();
                }
                if scope.hits.len() as u64 >= limit {
                    let oldest = scope.hits.front().copied().unwrap_or(now_ms);
                    let wait_ms = (oldest + WINDOW_MS).saturating_sub(now_ms);
                    return Verdict::RateLimited {
                        scope: caps.scope.clone(),
                        limit,
                        retry_after_s: wait_ms.div_ceil(1000).max(1),
                    };
                }
            }
        }
        let mut refusal = None;
        for &(tier, amount) in &request.candidates {
            match self.first_exceeded(&request.scopes, amount, now_ms) {
                None => {
                    self.reserve(request, amount, now_ms);
                    return Verdict::Admitted {
                        tier,
                        reserved: amount,
                    };
                }
                Some(over) => {
                    refusal.get_or_insert(over);
                }
            }
        }
        refusal.unwrap_or(Verdict::OverBudget {
            scope: String::from("global"),
            period: Period::Day,
            cap: 0,
            resets_at_ms: (now_ms / DAY_MS + 1) * DAY_MS,
        })
    }

    /// The first cap that `amount` more would exceed, as a refusal.
    fn first_exceeded(
        &mut self,
        scopes: &[ScopeCaps],
        amount: u64,
        now_ms: u64,
    ) -> Option<Verdict> {
        for caps in scopes {
            let spend = &self.scope(&caps.scope, now_ms).spend;
            for (period, cap, spent) in [
                (Period::Day, caps.daily, spend.day_spent),
                (Period::Month, caps.monthly, spend.month_spent),
            ] {
                let Some(cap) = cap else { continue };
                if spent.saturating_add(spend.reserved).saturating_add(amount) > cap {
                    return Some(Verdict::OverBudget {
                        scope: caps.scope.clone(),
                        period,
                        cap,
                        resets_at_ms: period_end_ms(period, now_ms),
                    });
                }
            }
        }
        None
    }

    fn reserve(&mut self, request: &Admit, amount: u64, now_ms: u64) {
        for caps in &request.scopes {
            let scope = self.scope(&caps.scope, now_ms);
            scope.spend.reserved += amount;
            if request.replace.is_none() && caps.rate_per_minute.is_some() {
                scope.hits.push_back(now_ms);
            }
        }
        self.reservations.push((
            request.id.clone(),
            Reservation {
                scopes: request.scopes.iter().map(|c| c.scope.clone()).collect(),
                amount,
                at_ms: now_ms,
            },
        ));
    }

    /// Settles request `id` at its real cost `actual`: its reservation is released and
    /// `actual` is added to the spend of its scopes (`scopes` when the reservation is
    /// unknown, e.g. after a restart of the object). Returns the amount charged.
    pub fn settle(&mut self, id: &str, scopes: &[String], actual: u64, now_ms: u64) -> u64 {
        if self.settled.iter().any(|s| s == id) {
            return 0;
        }
        if self.settled.len() == SETTLED_MEMORY {
            self.settled.pop_front();
        }
        self.settled.push_back(id.to_string());
        let charged = self
            .reservations
            .iter()
            .find(|(r, _)| r == id)
            .map_or_else(|| scopes.to_vec(), |(_, r)| r.scopes.clone());
        self.release(id);
        for name in &charged {
            let spend = &mut self.scope(name, now_ms).spend;
            spend.day_spent += actual;
            spend.month_spent += actual;
        }
        actual
    }

    fn release(&mut self, id: &str) {
        if let Some(at) = self.reservations.iter().position(|(r, _)| r == id) {
            let (_, r) = self.reservations.swap_remove(at);
            for (name, scope) in &mut self.scopes {
                if r.scopes.contains(name) {
                    scope.spend.reserved = scope.spend.reserved.saturating_sub(r.amount);
                }
            }
        }
    }

    /// Releases reservations older than [`RESERVATION_TTL_MS`].
    fn expire(&mut self, now_ms: u64) {
        let stale: Vec<String> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.at_ms + RESERVATION_TTL_MS < now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.release(&id);
        }
    }

    fn scope(&mut self, name: &str, now_ms: u64) -> &mut Scope {
        let at = match self.scopes.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.scopes.push((name.to_string(), Scope::default()));
                self.scopes.len() - 1
            }
        };
        let scope = &mut self.scopes[at].1;
        scope.spend.roll(now_ms);
        scope
    }

    /// Every scope's spend in the periods of `now_ms`.
    pub fn spend(&mut self, now_ms: u64) -> Vec<(String, Spend)> {
        self.scopes
            .iter_mut()
            .map(|(name, scope)| {
                scope.spend.roll(now_ms);
                (name.clone(), scope.spend.clone())
            })
            .collect()
    }

    /// The persisted form: a line per scope, `name day day_spent month month_spent`.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (name, scope) in &self.scopes {
            let s = &scope.spend;
            text.push_str(&format!(
                "{name} {} {} {} {}\n",
                s.day, s.day_spent, s.month, s.month_spent
            ));
        }
        text
    }

    /// The ledger of [`Ledger::to_text`]; unreadable lines are skipped.
    pub fn from_text(text: &str) -> Self {
        let mut ledger = Self::default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let [name, day, day_spent, month, month_spent] = parts[..] else {
                continue;
            };
            let n = |s: &str| s.parse::<u64>().ok();
            if let (Some(day), Some(day_spent), Some(month), Some(month_spent)) =
                (n(day), n(day_spent), n(month), n(month_spent))
            {
                ledger.scopes.push((
                    name.to_string(),
                    Scope {
                        spend: Spend {
                            day,
                            day_spent,
                            month,
                            month_spent,
                            reserved: 0,
                        },
                        hits: VecDeque::new(),
                    },
                ));
            }
        }
        ledger
    }
}

/// When the period of `now_ms` ends (ms since the epoch).
pub fn period_end_ms(period: Period, now_ms: u64) -> u64 {
    let day = now_ms / DAY_MS;
    match period {
        Period::Day => (day + 1) * DAY_MS,
        Period::Month => {
            let month = month_of_day(day) + 1;
            days_from_civil(month / 12, month % 12 + 1) * DAY_MS
        }
    }
}

/// `year * 12 + month - 1` of day number `day` (days since 1970-01-01), from the
/// proleptic Gregorian calendar (H. Hinnant's civil_from_days).
pub fn month_of_day(day: u64) -> u64 {
    let z = day + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    year * 12 + month - 1
}

/// Day number of the first of `month` (1-12) of `year` (days_from_civil).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let m = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * m + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// The scope name of a key id.
pub fn key_scope(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// The admission stage's request to the ledger for `plan` by key `key_id`, or `None`
/// when no cap applies (no ledger call at all). Candidates: the plan's tier at its worst
/// case (prompt tokens bounded by the upstream body's bytes, completion by `max_tokens`,
/// which [`cap_completion`] has set), then with BUDGET_ACTION=downgrade the cheaper
/// allowed tiers, cheapest first.
pub fn admission(config: &Config, key_id: Option<&str>, plan: &Plan, id: &str) -> Option<Admit> {
    let cost = &config.cost;
    let mut scopes = Vec::new();
    if cost.global.any() {
        scopes.push(ScopeCaps::of(String::from("global"), &cost.global));
    }
    if let (Some(key), Some(policy)) = (key_id, cost.policy(key_id)) {
        if policy.caps.any() {
            scopes.push(ScopeCaps::of(key_scope(key), &policy.caps));
        }
    }
    if scopes.is_empty() {
        return None;
    }
    let planned = plan.decision.tier;
    let mut candidates = vec![(planned, worst_case(config, plan, planned))];
    if cost.action == BudgetAction::Downgrade && cost.budget_applies(key_id) {
        for tier in 0..planned {
            if cost.tier_allowed(key_id, tier) {
                candidates.push((tier, worst_case(config, plan, tier)));
            }
        }
    }
    Some(Admit {
        id: id.to_string(),
        scopes,
        candidates,
        replace: None,
    })
}

/// The most a call of `plan`'s request on `tier` can cost, in picodollars: every byte of
/// the upstream body a prompt token (no tokenizer makes more tokens than bytes), and the
/// completion's `max_tokens` (the budget stage sets it when the client did not).
pub fn worst_case(config: &Config, plan: &Plan, tier: usize) -> u64 {
    let prompt = crate::jsonwrite::text(&plan.body).len() as u64;
    let completion = completion_limit(&plan.body).unwrap_or(config.cost.completion_ceiling);
    let model = config.tiers.get(tier).map_or("", |t| t.model.as_str());
    config
        .price_of(tier, model)
        .map_or(0, |price| pico(price.cost_usd(prompt, completion)))
}

fn completion_limit(body: &serde_json::Value) -> Option<u64> {
    ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|field| body.get(*field).and_then(serde_json::Value::as_u64))
}

/// Caps a budgeted request's completion at BUDGET_MAX_COMPLETION_TOKENS when the client
/// set no `max_tokens`, so that its reservation bounds its cost.
pub fn cap_completion(config: &Config, plan: &mut Plan) {
    if completion_limit(&plan.body).is_none() {
        if let Some(body) = plan.body.as_object_mut() {
            body.insert(
                String::from("max_tokens"),
                serde_json::Value::from(config.cost.completion_ceiling),
            );
        }
    }
}

impl Admit {
    /// The Durable Object that decides it: `global` when a global cap applies (every
    /// request must meet there), else the key's own (`key:<id>`), so keys without global
    /// caps spread over objects.
    pub fn object(&self) -> &str {
        self.scopes.first().map_or("global", |s| s.scope.as_str())
    }

    /// The settlement of this admission at the real cost `actual` (picodollars).
    pub fn settle(&self, actual: u64) -> Settle {
        Settle {
            object: self.object().to_string(),
            id: self.id.clone(),
            scopes: self.scopes.iter().map(|s| s.scope.clone()).collect(),
            actual,
        }
    }
}

/// A request's real cost, sent to its ledger object after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// The ledger object.
    pub object: String,
    /// The request id (its reservation).
    pub id: String,
    /// The scopes charged (when the reservation is no longer known).
    pub scopes: Vec<String>,
    /// The real cost, picodollars.
    pub actual: u64,
}

impl Settle {
    /// Wire format: `settle <id> <actual> <scope>...`.
    pub fn to_text(&self) -> String {
        let mut text = format!("settle {} {}", self.id, self.actual);
        for scope in &self.scopes {
            text.push(' ');
            text.push_str(scope);
        }
        text
    }

    /// A settlement from [`Settle::to_text`]'s format (`object` left empty).
    pub fn from_text(text: &str) -> Option<Self> {
        let mut f = text.trim().split(' ');
        if f.next()? != "settle" {
            return None;
        }
        Some(Self {
            object: String::new(),
            id: f.next()?.to_string(),
            actual: f.next()?.parse().ok()?,
            scopes: f.map(str::to_string).collect(),
        })
    }
}

/// The client's error for a refusal: 429, which limit or budget, and when a retry can
/// pass (`Retry-After`). `key_id` is the request's key id.
pub fn refusal(verdict: &Verdict, key_id: Option<&str>, now_ms: u64) -> Option<GatewayError> {
    let whose = |scope: &str| match scope.strip_prefix("key:") {
        Some(id) => format!("key {id}"),
        None => String::from("all traffic (GLOBAL_*)"),
    };
    let (reason, message, retry_after) = match verdict {
        Verdict::Admitted { .. } => return None,
        Verdict::RateLimited {
            scope,
            limit,
            retry_after_s,
        } => (
            "rate_limited",
            format!(
                "rate limit reached: {} allows {limit} requests per minute; retry in {retry_after_s} s",
                whose(scope)
            ),
            *retry_after_s,
        ),
        Verdict::OverBudget {
            scope,
            period,
            cap,
            resets_at_ms,
        } => (
            "budget_exceeded",
            format!(
                "the {} budget of {} (${}) cannot cover this request; it resets at {}",
                period.label(),
                whose(scope),
                crate::numfmt::short(usd(*cap)),
                iso_utc(*resets_at_ms)
            ),
            resets_at_ms.saturating_sub(now_ms).div_ceil(1000).max(1),
        ),
    };
    Some(GatewayError::OverLimit {
        reason,
        message,
        retry_after,
        key_id: key_id.map(str::to_string),
    })
}

/// `2026-12-04T00:00:00Z` of `ms` since the epoch.
pub fn iso_utc(ms: u64) -> String {
    let day = ms / DAY_MS;
    let month = month_of_day(day);
    let (year, month_number) = (month / 12, month % 12 + 1);
    let first = days_from_civil(year, month_number);
    let secs = (ms % DAY_MS) / 1000;
    format!(
        "{year:04}-{month_number:02}-{:02}T{:02}:{:02}:{:02}Z",
        day - first + 1,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The ledger objects that hold the configured scopes: `global` (which holds every scope)
/// when a global cap is set, else each capped key's own.
pub fn objects(config: &Config) -> Vec<String> {
    let cost = &config.cost;
    if cost.global.any() {
        return vec![String::from("global")];
    }
    cost.key_ids
        .iter()
        .filter(|id| cost.policy(Some(id)).is_some_and(|p| p.caps.any()))
        .map(|id| key_scope(id))
        .collect()
}

/// `/metrics`' `budgets`: each capped scope's caps and its spend (`spend`, as the ledger
/// objects report it; a scope without any yet has spent nothing).
pub fn budget_report(config: &Config, spend: &[(String, Spend)]) -> Named<BudgetStatus> {
    let cost = &config.cost;
    let mut scopes: Vec<(String, Caps)> = Vec::new();
    if cost.global.any() {
        scopes.push((String::from("global"), cost.global));
    }
    for id in &cost.key_ids {
        if let Some(policy) = cost.policy(Some(id)).filter(|p| p.caps.any()) {
            scopes.push((key_scope(id), policy.caps));
        }
    }
    let statuses = scopes
        .into_iter()
        .map(|(scope, caps)| {
            let s = spend
                .iter()
                .find(|(name, _)| *name == scope)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            let status = BudgetStatus {
                daily_budget_usd: caps.daily_budget_usd,
                daily_spent_usd: usd(s.day_spent),
                daily_spent_picousd: s.day_spent,
                monthly_budget_usd: caps.monthly_budget_usd,
                monthly_spent_usd: usd(s.month_spent),
                monthly_spent_picousd: s.month_spent,
                reserved_usd: usd(s.reserved),
                rate_limit_per_minute: caps.rate_limit_per_minute,
            };
            (scope, status)
        })
        .collect::<Vec<_>>();
    Named(statuses)
}

/// The wire format of an [`Admit`] (shell to Durable Object): lines of space-separated
/// fields, `-` for none.
pub fn admit_to_text(a: &Admit) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| String::from("-"), |v| v.to_string());
    let mut text = format!("admit {} {}\n", a.id, a.replace.as_deref().unwrap_or("-"));
    for s in &a.scopes {
        text.push_str(&format!(
            "scope {} {} {} {}\n",
            s.scope,
            opt(s.rate_per_minute),
            opt(s.daily),
            opt(s.monthly)
        ));
    }
    for (tier, amount) in &a.candidates {
        text.push_str(&format!("tier {tier} {amount}\n"));
    }
    text
}

/// An [`Admit`] from [`admit_to_text`]'s format.
pub fn admit_from_text(text: &str) -> Option<Admit> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split(' ').collect();
    let ["admit", id, replace] = head[..] else {
        return None;
    };
    let opt = |s: &str| -> Option<Option<u64>> {
        if s == "-" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let mut admit = Admit {
        id: id.to_string(),
        scopes: Vec::new(),
        candidates: Vec::new(),
        replace: (replace != "-").then(|| replace.to_string()),
    };
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["scope", scope, rate, daily, monthly] => admit.scopes.push(ScopeCaps {
                scope: scope.to_string(),
                rate_per_minute: opt(rate)?,
                daily: opt(daily)?,
                monthly: opt(monthly)?,
            }),
            ["tier", tier, amount] => admit
                .candidates
                .push((tier.parse().ok()?, amount.parse().ok()?)),
            _ => return None,
        }
    }
    Some(admit)
}

/// The wire format of a [`Verdict`].
pub fn verdict_to_text(v: &Verdict) -> String {
    match v {
        Verdict::Admitted { tier, reserved } => format!("admitted {tier} {reserved}"),
        Verdict::RateLimited {
            scope,
            limit,
            retry_after_s,
        } => format!("rate {scope} {limit} {retry_after_s}"),
        Verdict::OverBudget {
            scope,
            period,
            cap,
            resets_at_ms,
        } => format!("budget {scope} {} {cap} {resets_at_ms}", period.label()),
    }
}

/// A [`Verdict`] from [`verdict_to_text`]'s format.
pub fn verdict_from_text(text: &str) -> Option<Verdict> {
    let f: Vec<&str> = text.trim().split(' ').collect();
    Some(match f[..] {
        ["admitted", tier, reserved] => Verdict::Admitted {
            tier: tier.parse().ok()?,
            reserved: reserved.parse().ok()?,
        },
        ["rate", scope, limit, retry] => Verdict::RateLimited {
            scope: scope.to_string(),
            limit: limit.parse().ok()?,
            retry_after_s: retry.parse().ok()?,
        },
        ["budget", scope, period, cap, resets] => Verdict::OverBudget {
            scope: scope.to_string(),
            period: if period == "monthly" {
                Period::Month
            } else {
                Period::Day
            },
            cap: cap.parse().ok()?,
            resets_at_ms: resets.parse().ok()?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_763_200_000; // 2025-12-03T12:00:00Z

    fn scope(rate: Option<u64>, daily: Option<u64>, monthly: Option<u64>) -> ScopeCaps {
        ScopeCaps {
            scope: String::from("global"),
            rate_per_minute: rate,
            daily,
            monthly,
        }
    }

    fn spent(l: &mut Ledger, now_ms: u64, scope: &str) -> Spend {
        l.spend(now_ms)
            .into_iter()
            .find(|(name, _)| name == scope)
            .map(|(_, s)| s)
            .unwrap_or_default()
    }

    fn admit(id: &str, scopes: Vec<ScopeCaps>, candidates: Vec<(usize, u64)>) -> Admit {
        Admit {
            id: id.into(),
            scopes,
            candidates,
            replace: None,
        }
    }

    #[test]
    fn rate_limit_is_a_sliding_minute() {
        let mut l = Ledger::default();
        let caps = vec![scope(Some(2), None, None)];
        for i in 0..2 {
            let v = l.admit(
                &admit(&format!("r{i}"), caps.clone(), vec![(0, 0)]),
                T0 + i * 10_000,
            );
            assert_eq!(
                v,
                Verdict::Admitted {
                    tier: 0,
                    reserved: 0
                }
            );
        }
        // Third within the minute: limited until the first leaves the window (T0 + 60 s).
        assert_eq!(
            l.admit(&admit("r2", caps.clone(), vec![(0, 0)]), T0 + 30_500),
            Verdict::RateLimited {
                scope: "global".into(),
                limit: 2,
                retry_after_s: 30
            }
        );
        // A limited request took no slot: at T0 + 60 s exactly one slot is free.
        assert!(matches!(
            l.admit(&admit("r3", caps.clone(), vec![(0, 0)]), T0 + 60_000),
            Verdict::Admitted { .. }
        ));
        assert!(matches!(
            l.admit(&admit("r4", caps.clone(), vec![(0, 0)]), T0 + 60_001),
            Verdict::RateLimited {
                retry_after_s: 10,
                ..
            }
        ));
        // A fallback's re-admission is not counted again.
        let mut again = admit("r3b", caps, vec![(1, 0)]);
        again.replace = Some("r3".into());
        assert!(matches!(
            l.admit(&again, T0 + 60_002),
            Verdict::Admitted { tier: 1, .. }
        ));
    }

    #[test]
    fn reservations_hold_a_budget_under_concurrency() {
        let mut l = Ledger::default();
        let caps = vec![scope(None, Some(1_000), None)];
        // 200 requests in flight at once, worst case 20 each: exactly 50 fit.
        let admitted: Vec<usize> = (0..200)
            .filter(|i| {
                matches!(
                    l.admit(&admit(&format!("r{i}"), caps.clone(), vec![(1, 20)]), T0),
                    Verdict::Admitted { .. }
                )
            })
            .collect();
        assert_eq!(admitted.len(), 50);
        // They settle below their worst case: the rest is released.
        for i in &admitted {
            l.settle(&format!("r{i}"), &[], 12, T0 + 1);
        }
        let spend = spent(&mut l, T0 + 2, "global");
        assert_eq!((spend.day_spent, spend.reserved), (600, 0));
        // 400 left: 20 more fit.
        let more = (200..300)
            .filter(|i| {
                matches!(
                    l.admit(
                        &admit(&format!("r{i}"), caps.clone(), vec![(1, 20)]),
                        T0 + 3
                    ),
                    Verdict::Admitted { .. }
                )
            })
            .count();
        assert_eq!(more, 20);
    }

    #[test]
    fn over_budget_names_the_period_and_its_end() {
        let mut l = Ledger::default();
        let caps = vec![
            scope(None, Some(100), None),
            ScopeCaps {
                scope: "key:abc".into(),
                rate_per_minute: None,
                daily: None,
                monthly: Some(50),
            },
        ];
        l.settle("x", &["key:abc".into()], 45, T0);
        assert_eq!(
            l.admit(&admit("a", caps.clone(), vec![(1, 10)]), T0),
            Verdict::OverBudget {
                scope: "key:abc".into(),
                period: Period::Month,
                cap: 50,
                resets_at_ms: 1_767_225_600_000 // 2026-01-01T00:00:00Z
            }
        );
        // Downgrade: the cheaper candidate fits.
        assert_eq!(
            l.admit(&admit("b", caps.clone(), vec![(1, 10), (0, 5)]), T0),
            Verdict::Admitted {
                tier: 0,
                reserved: 5
            }
        );
        l.settle("b", &[], 5, T0);
        assert!(matches!(
            l.admit(&admit("c", caps, vec![(0, 1)]), T0),
            Verdict::OverBudget {
                period: Period::Month,
                ..
            }
        ));
    }

    #[test]
    fn budgets_reset_at_the_period_boundary() {
        let mut l = Ledger::default();
        let caps = vec![scope(None, Some(100), Some(150))];
        l.settle("a", &["global".into()], 100, T0);
        let v = l.admit(&admit("b", caps.clone(), vec![(0, 1)]), T0);
        let Verdict::OverBudget {
            period,
            resets_at_ms,
            ..
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!((period, resets_at_ms), (Period::Day, 1_764_806_400_000));
        // The next UTC day: the daily budget is new, the month's spend stays.
        assert!(matches!(
            l.admit(&admit("c", caps.clone(), vec![(0, 40)]), resets_at_ms),
            Verdict::Admitted { .. }
        ));
        l.settle("c", &[], 40, resets_at_ms);
        let v = l.admit(&admit("d", caps.clone(), vec![(0, 20)]), resets_at_ms + 1);
        assert!(
            matches!(
                v,
                Verdict::OverBudget {
                    period: Period::Month,
                    ..
                }
            ),
            "{v:?}"
        );
        // The next month (2026-01-01): both are new.
        assert!(matches!(
            l.admit(&admit("e", caps, vec![(0, 100)]), 1_767_225_600_000),
            Verdict::Admitted { .. }
        ));
    }

    #[test]
    fn unsettled_reservations_expire_and_unknown_settlements_still_charge() {
        let mut l = Ledger::default();
        let caps = vec![scope(None, Some(100), None)];
        assert!(matches!(
            l.admit(&admit("a", caps.clone(), vec![(0, 100)]), T0),
            Verdict::Admitted { .. }
        ));
        assert!(matches!(
            l.admit(&admit("b", caps.clone(), vec![(0, 1)]), T0 + 1),
            Verdict::OverBudget { .. }
        ));
        assert!(matches!(
            l.admit(&admit("c", caps, vec![(0, 1)]), T0 + RESERVATION_TTL_MS + 1),
            Verdict::Admitted { .. }
        ));
        assert_eq!(
            l.settle("zzz", &["global".into()], 7, T0 + RESERVATION_TTL_MS + 2),
            7
        );
        assert_eq!(
            spent(&mut l, T0 + RESERVATION_TTL_MS + 3, "global").day_spent,
            7
        );
    }

    #[test]
    fn spend_survives_as_text() {
        let mut l = Ledger::default();
        l.settle("a", &["global".into(), "key:abc".into()], 123_456, T0);
        let text = l.to_text();
        let mut back = Ledger::from_text(&text);
        assert_eq!(back.spend(T0), l.spend(T0));
        assert_eq!(back.to_text(), text);
        assert!(Ledger::from_text("garbage\nx 1 2").spend(T0).is_empty());
    }

    #[test]
    fn months_and_days_match_the_calendar() {
        // 2024-02-29 (leap day) is day 19_782; 2024-03-01 day 19_783.
        assert_eq!(month_of_day(19_782), 2024 * 12 + 1);
        assert_eq!(month_of_day(19_783), 2024 * 12 + 2);
        assert_eq!(days_from_civil(2024, 3), 19_783);
        assert_eq!(days_from_civil(1970, 1), 0);
        assert_eq!(
            period_end_ms(Period::Month, 19_782 * DAY_MS),
            19_783 * DAY_MS
        );
        assert_eq!(
            period_end_ms(Period::Month, 1_767_225_599_999),
            1_767_225_600_000
        );
    }

    #[test]
    fn wire_formats_round_trip() {
        let a = Admit {
            id: "00ff".into(),
            scopes: vec![
                scope(Some(5), None, Some(9)),
                ScopeCaps {
                    scope: "key:abc".into(),
                    rate_per_minute: None,
                    daily: Some(1),
                    monthly: None,
                },
            ],
            candidates: vec![(2, 100), (0, 3)],
            replace: Some("old".into()),
        };
        assert_eq!(admit_from_text(&admit_to_text(&a)), Some(a));
        assert_eq!(admit_from_text("admit x -\nbogus"), None);
        for v in [
            Verdict::Admitted {
                tier: 1,
                reserved: 5,
            },
            Verdict::RateLimited {
                scope: "global".into(),
                limit: 3,
                retry_after_s: 4,
            },
            Verdict::OverBudget {
                scope: "key:a".into(),
                period: Period::Month,
                cap: 7,
                resets_at_ms: 8,
            },
        ] {
            assert_eq!(verdict_from_text(&verdict_to_text(&v)), Some(v));
        }
    }

    #[test]
    fn refusals_say_which_limit_and_when_it_resets() {
        let v = Verdict::OverBudget {
            scope: "key:06aa3438ca66".into(),
            period: Period::Day,
            cap: pico(1.5),
            resets_at_ms: 1_764_806_400_000,
        };
        let e = refusal(&v, Some("06aa3438ca66"), 1_764_806_400_000 - 90_500).unwrap();
        assert_eq!(e.status(), 429);
        assert_eq!(e.metric_label(), "budget_exceeded");
        assert_eq!(e.retry_after().as_deref(), Some("91"));
        assert_eq!(e.key_id(), Some("06aa3438ca66"));
        assert_eq!(
            e.client_message(),
            "the daily budget of key 06aa3438ca66 ($1.5) cannot cover this request; it resets at 2025-12-04T00:00:00Z"
        );
        let v = Verdict::RateLimited {
            scope: "global".into(),
            limit: 10,
            retry_after_s: 3,
        };
        let e = refusal(&v, None, 0).unwrap();
        assert_eq!(
            (e.metric_label(), e.retry_after().as_deref()),
            ("rate_limited", Some("3"))
        );
        assert!(
            e.client_message().contains("all traffic"),
            "{}",
            e.client_message()
        );
        assert!(refusal(
            &Verdict::Admitted {
                tier: 0,
                reserved: 0
            },
            None,
            0
        )
        .is_none());
        assert_eq!(iso_utc(951_782_400_000 + 3_723_000), "2000-02-29T01:02:03Z");
    }

    #[test]
    fn settlements_round_trip_and_name_their_object() {
        let a = Admit {
            id: "r1".into(),
            scopes: vec![
                scope(None, Some(1), None),
                ScopeCaps {
                    scope: "key:k".into(),
                    rate_per_minute: Some(1),
                    daily: None,
                    monthly: None,
                },
            ],
            candidates: vec![(0, 1)],
            replace: None,
        };
        assert_eq!(a.object(), "global");
        let s = a.settle(42);
        assert_eq!(s.object, "global");
        let mut back = Settle::from_text(&s.to_text()).unwrap();
        back.object = s.object.clone();
        assert_eq!(back, s);
        let key_only = Admit {
            scopes: a.scopes[1..].to_vec(),
            ..a
        };
        assert_eq!(key_only.object(), "key:k");
    }

    #[test]
    fn money_is_counted_in_picodollars() {
        assert_eq!(pico(1.0), 1_000_000_000_000);
        assert_eq!(pico(0.000_000_3), 300_000);
        assert_eq!(pico(-1.0), 0);
        assert_eq!(pico(f64::NAN), 0);
        assert_eq!(usd(2_500_000_000_000), 2.5);
    }
}

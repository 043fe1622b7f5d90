//! Deterministic crash and fault simulation against an oracle.
//!
//! A [`Workload`] is a fixed sequence of transactions (inserts, updates,
//! deletes, multi-statement transactions, transactions too big for one KV
//! batch, VACUUM, schema changes, sleep/wake), built from a seed or from raw
//! fuzzer bytes. The same statements run on an actor over a [`FaultKv`] and on
//! an in-memory native SQLite (the oracle).
//!
//! - [`crash_at`] kills the actor at KV operation `k` (the operation and all
//!   later ones are lost, and the Store is dropped mid-call), wakes it again
//!   on the surviving KV, and checks `integrity_check` and that the database
//!   equals the oracle after the last acknowledged transaction; or after the
//!   one in flight, whose acknowledgement the crash may have cut off after
//!   its commit point.
//! - [`fault_at`] fails KV operation `k` once. The failing call must report
//!   an I/O error naming the storage failure, and a plain error only for a
//!   transaction that did not commit ([`Error::OutcomeUnknown`] where it
//!   may have); afterwards the actor (or a fresh wake, if it was poisoned)
//!   must hold exactly the committed data, and the workload carries on to
//!   the end.
//! - [`cancel_at`] drops the future of the step being polled for the `k`th
//!   time, as a `tokio::time::timeout` or a `select!` would, and carries on:
//!   the next call must work and find the step wholly applied or not at
//!   all, and the database at the end must equal the oracle's.
//!
//! Everything is seeded: the same workload and `k` always take the same path.
//!
//! [`vfs_model`] checks the file layer alone against a model of byte files;
//! [`hostile_guest`] calls the host's imports as a compromised guest would;
//! [`stored_data`] opens databases whose stored bytes are arbitrary.

pub mod hostile_guest;
pub mod stored_data;
pub mod vfs_model;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::kv::{FaultKv, FaultPlan, KvLimits, KvStore, MemoryKv, RedbKv};
use crate::{Actor, Error, Host, HostConfig, Value};

/// The actor every simulation runs.
const ACTOR: &str = "sim";

/// One statement and its bound values.
#[derive(Clone, Debug)]
pub struct Statement {
    /// SQL text, with `?N` placeholders.
    pub sql: String,
    /// Values for the placeholders.
    pub params: Vec<Value>,
}

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Step {
    /// The statements, in one transaction (a lone statement autocommits).
    Transaction(Vec<Statement>),
    /// `VACUUM`.
    Vacuum,
    /// Sleep the actor and wake it again.
    SleepWake,
}

/// A fixed sequence of steps.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Draws choices from fuzzer bytes, then zeros.
struct Choices<'a> {
    bytes: &'a [u8],
}

impl Choices<'_> {
    fn next(&mut self, below: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..2 {
            let (b, rest) = self.bytes.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
            self.bytes = rest;
            v = (v << 8) | u32::from(b);
        }
        v % below.max(1)
    }
}

fn stmt(sql: impl Into<String>, params: Vec<Value>) -> Statement {
    Statement { sql: sql.into(), params }
}

impl Workload {
    /// A workload of `steps` steps from a seed.
    pub fn generate(seed: u64, steps: usize) -> Workload {
        let mut rng = SmallRng::seed_from_u64(seed);
        let bytes: Vec<u8> = (0..steps * 16).map(|_| rng.random()).collect();
        Workload::from_bytes(&bytes, steps)
    }

    /// A workload of at most `max_steps` steps decoded from arbitrary bytes
    /// (for fuzzers): every input decodes to a valid workload.
    pub fn from_bytes(bytes: &[u8], max_steps: usize) -> Workload {
        let mut c = Choices { bytes };
        let mut tables = vec!["t0".to_string()];
        let mut next_table = 1;
        let mut next_column = 0;
        let mut steps = vec![Step::Transaction(vec![stmt(
            "CREATE TABLE t0(k INTEGER PRIMARY KEY, v TEXT, n REAL)",
            vec![],
        )])];
        let steps_wanted = max_steps.min(bytes.len() / 4 + 1);
        while steps.len() < steps_wanted {
            let table = tables[c.next(tables.len() as u32) as usize].clone();
            let step = match c.next(20) {
                0..=4 => Step::Transaction(vec![dml(&mut c, &table)]),
                5..=8 => {
                    let n = 2 + c.next(5);
                    Step::Transaction((0..n).map(|_| {
                        let t = tables[c.next(tables.len() as u32) as usize].clone();
                        dml(&mut c, &t)
                    }).collect())
                }
                9 => {
                    // ~140 pages of rewritten rows: more than one 128-key
                    // batch, so the commit takes the journal path. The keys
                    // stay in one range, so the database stays small enough
                    // for SQLite's page cache.
                    let base = 1000 + i64::from(c.next(20));
                    Step::Transaction(vec![stmt(
                        format!(
                            "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
                             INSERT OR REPLACE INTO {table}(k, v, n) \
                             SELECT ?2 + x, printf('%.*c', ?3, char(97 + (x + ?2) % 26)), x * 0.5 FROM c"
                        ),
                        vec![Value::Integer(135), Value::Integer(base), Value::Integer(3000)],
                    )])
                }
                10 if c.next(3) == 0 => Step::Vacuum,
                11..=12 => Step::SleepWake,
                14 if tables.len() < 4 => {
                    let name = format!("t{next_table}");
                    next_table += 1;
                    tables.push(name.clone());
                    Step::Transaction(vec![stmt(format!("CREATE TABLE {name}(k INTEGER PRIMARY KEY, v TEXT, n REAL)"), vec![])])
                }
                15 => {
                    let column = format!("c{next_column}");
                    next_column += 1;
                    Step::Transaction(vec![stmt(format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER DEFAULT 7"), vec![])])
                }
                16 => Step::Transaction(vec![stmt(
                    format!("CREATE INDEX IF NOT EXISTS {table}_v ON {table}(v)"),
                    vec![],
                )]),
                17 if tables.len() > 1 && table != "t0" => {
                    tables.retain(|t| *t != table);
                    Step::Transaction(vec![stmt(format!("DROP TABLE {table}"), vec![])])
                }
                _ => Step::Transaction(vec![dml(&mut c, &table)]),
            };
            steps.push(step);
        }
        Workload { steps }
    }
}

/// A random insert, update or delete on `table`.
fn dml(c: &mut Choices<'_>, table: &str) -> Statement {
    match c.next(4) {
        0 | 1 => {
            let len = 1 + c.next(400) as usize;
            let k = i64::from(c.next(200));
            let start = c.next(26) as usize;
            let text: String = (0..len).map(|i| char::from(b'a' + ((i * 7 + start) % 26) as u8)).collect();
            stmt(
                format!("INSERT OR REPLACE INTO {table}(k, v, n) VALUES (?1, ?2, ?3)"),
                vec![Value::Integer(k), Value::Text(text), Value::Real(f64::from(c.next(1000)) / 8.0)],
            )
        }
        2 => stmt(
            format!("UPDATE {table} SET v = v || ?1, n = n + 1 WHERE k % ?2 = ?3"),
            vec![Value::Text("+".repeat(1 + c.next(40) as usize)), Value::Integer(2 + i64::from(c.next(9))), Value::Integer(1)],
        ),
        _ => stmt(
            format!("DELETE FROM {table} WHERE k % ?1 = ?2"),
            vec![Value::Integer(3 + i64::from(c.next(20))), Value::Integer(i64::from(c.next(3)))],
        ),
    }
}

/// Native SQLite in memory, fed the same statements.
struct Oracle {
    conn: rusqlite::Connection,
}

/// A value as native SQLite (rusqlite) takes it: for oracles and
/// differential tests.
pub fn to_native(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as N;
    match v {
        Value::Null => N::Null,
        Value::Integer(i) => N::Integer(*i),
        Value::Real(f) => N::Real(*f),
        Value::Text(s) => N::Text(s.clone()),
        Value::Blob(b) => N::Blob(b.clone()),
    }
}

/// A value native SQLite (rusqlite) returned.
pub fn from_native(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as N;
    match v {
        N::Null => Value::Null,
        N::Integer(i) => Value::Integer(i),
        N::Real(f) => Value::Real(f),
        N::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        N::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Oracle {
    fn new() -> Oracle {
        Oracle { conn: rusqlite::Connection::open_in_memory().expect("in-memory SQLite") }
    }

    fn apply(&mut self, step: &Step) -> Result<(), String> {
        let Step::Transaction(statements) = step else {
            return Ok(());
        };
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        for s in statements {
            tx.execute(&s.sql, rusqlite::params_from_iter(s.params.iter().map(to_native)))
                .map_err(|e| format!("oracle: {}: {e}", s.sql))?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// The error `step` meets on the oracle, if any (nothing is kept).
    fn error_of(&mut self, step: &Step) -> Result<Option<String>, String> {
        let Step::Transaction(statements) = step else {
            return Ok(None);
        };
        self.conn.execute_batch("SAVEPOINT probe").map_err(|e| e.to_string())?;
        let mut error = None;
        for s in statements {
            if let Err(e) = self.conn.execute(&s.sql, rusqlite::params_from_iter(s.params.iter().map(to_native))) {
                error = Some(match e {
                    rusqlite::Error::SqliteFailure(_, Some(message)) => message,
                    other => other.to_string(),
                });
                break;
            }
        }
        self.conn.execute_batch("ROLLBACK TO probe; RELEASE probe").map_err(|e| e.to_string())?;
        Ok(error)
    }

    /// The dump after applying `step`, without keeping it.
    fn dump_with(&mut self, step: &Step) -> Result<Vec<String>, String> {
        self.conn.execute_batch("SAVEPOINT probe").map_err(|e| e.to_string())?;
        if let Step::Transaction(statements) = step {
            for s in statements {
                self.conn
                    .execute(&s.sql, rusqlite::params_from_iter(s.params.iter().map(to_native)))
                    .map_err(|e| format!("oracle: {}: {e}", s.sql))?;
            }
        }
        let dump = self.dump();
        self.conn.execute_batch("ROLLBACK TO probe; RELEASE probe").map_err(|e| e.to_string())?;
        dump
    }

    fn dump(&self) -> Result<Vec<String>, String> {
        let query = |sql: &str| -> Result<Vec<Vec<Value>>, String> {
            let mut st = self.conn.prepare(sql).map_err(|e| e.to_string())?;
            let n = st.column_count();
            let rows = st
                .query_map([], |r| (0..n).map(|i| r.get_ref(i).map(from_native)).collect::<Result<Vec<_>, _>>())
                .map_err(|e| e.to_string())?;
            rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
        };
        let mut out = Vec::new();
        for table in dump_plan(query(SCHEMA_QUERY)?, &mut out) {
            for row in query(&format!("SELECT * FROM {table} ORDER BY rowid"))? {
                out.push(format!("{table}: {row:?}"));
            }
        }
        Ok(out)
    }
}

const SCHEMA_QUERY: &str = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name";

/// Records the schema rows in `out` and returns the tables to dump.
fn dump_plan(schema: Vec<Vec<Value>>, out: &mut Vec<String>) -> Vec<String> {
    let mut tables = Vec::new();
    for row in schema {
        if let (Value::Text(kind), Value::Text(name)) = (&row[0], &row[1])
            && kind == "table"
            && !name.starts_with("sqlite_")
        {
            tables.push(name.clone());
        }
        out.push(format!("schema: {row:?}"));
    }
    tables
}

async fn dump_actor(actor: &mut Actor) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let schema = actor.query(SCHEMA_QUERY, ()).await?;
    let schema: Vec<Vec<Value>> = schema.into_iter().map(|r| r.into_values()).collect();
    for table in dump_plan(schema, &mut out) {
        for row in actor.query(&format!("SELECT * FROM {table} ORDER BY rowid"), ()).await? {
            out.push(format!("{table}: {:?}", row.values()));
        }
    }
    Ok(out)
}

async fn integrity(actor: &mut Actor) -> Result<String, Error> {
    let rows = actor.query("PRAGMA integrity_check", ()).await?;
    Ok(rows.iter().map(|r| r.get::<String>(0).unwrap_or_default()).collect::<Vec<_>>().join("; "))
}

async fn apply(host: &Host, actor: &mut Option<Actor>, step: &Step) -> Result<(), Error> {
    if actor.is_none() {
        *actor = Some(host.wake(ACTOR).await?);
    }
    let a = actor.as_mut().expect("woken above");
    match step {
        Step::Transaction(statements) if statements.len() == 1 => {
            a.execute(&statements[0].sql, statements[0].params.clone()).await.map(drop)
        }
        Step::Transaction(statements) => {
            let mut tx = a.transaction().await?;
            for s in statements {
                tx.execute(&s.sql, s.params.clone()).await?;
            }
            tx.commit().await
        }
        Step::Vacuum => a.execute_batch("VACUUM").await,
        Step::SleepWake => {
            let a = actor.take().expect("awake");
            a.sleep().await?;
            *actor = Some(host.wake(ACTOR).await?);
            Ok(())
        }
    }
}

fn host_over(kv: Arc<dyn KvStore>) -> Host {
    // No yields mid-call: every cancellation point is then a KV await, and
    // the same k cancels at the same place in every run.
    let limits = crate::Limits { time_slice: None, ..Default::default() };
    Host::with_config(kv, HostConfig { seed: Some(7), limits, ..HostConfig::default() }).expect("host")
}

/// Counts the KV operations a fault-free run of `workload` makes.
///
/// # Errors
///
/// A description of any step that fails without faults.
pub async fn count_ops(workload: &Workload, limits: KvLimits) -> Result<u64, String> {
    count_ops_on(workload, Arc::new(MemoryKv::with_limits(limits))).await
}

/// As [`count_ops`], over `store` (fresh, holding nothing of the workload's
/// actor).
///
/// # Errors
///
/// As [`count_ops`].
pub async fn count_ops_on(workload: &Workload, store: Arc<dyn KvStore>) -> Result<u64, String> {
    let kv = Arc::new(FaultKv::new(store));
    let host = host_over(kv.clone());
    let mut actor = None;
    for (i, step) in workload.steps.iter().enumerate() {
        apply(&host, &mut actor, step).await.map_err(|e| format!("step {i} ({step:?}) failed without faults: {e}"))?;
    }
    // The steps' operations only: the final sleep (which releases the
    // lease) is no step, and the crash and fault runs never reach it.
    let ops = kv.ops();
    if let Some(a) = actor {
        a.sleep().await.map_err(|e| e.to_string())?;
    }
    Ok(ops)
}

/// Checks the woken actor against the oracle, accepting the in-flight step
/// if the KV shows it; returns whether it was there.
async fn check_recovered(actor: &mut Actor, oracle: &mut Oracle, inflight: Option<&Step>, when: &str) -> Result<bool, String> {
    let ok = integrity(actor).await.map_err(|e| format!("{when}: integrity_check failed to run: {e}"))?;
    if ok != "ok" {
        return Err(format!("{when}: integrity_check: {ok}"));
    }
    let got = dump_actor(actor).await.map_err(|e| format!("{when}: dump failed: {e}"))?;
    let acked = oracle.dump()?;
    if got == acked {
        return Ok(false);
    }
    if let Some(step) = inflight
        && got == oracle.dump_with(step)?
    {
        return Ok(true);
    }
    let diff = got.iter().zip(&acked).position(|(a, b)| a != b).unwrap_or(got.len().min(acked.len()));
    Err(format!(
        "{when}: database differs from the last acknowledged state (and from the in-flight step); first difference at line {diff}: got {:?}, want {:?}",
        got.get(diff).map(|s| truncate(s)),
        acked.get(diff).map(|s| truncate(s))
    ))
}

fn truncate(s: &str) -> String {
    if s.len() > 160 { format!("{}...", &s[..s.floor_char_boundary(160)]) } else { s.to_owned() }
}

/// The verdict at the end of a run: sleep the actor (waking it if the run
/// left none), wake it afresh and compare it with the oracle.
async fn check_final(host: &Host, actor: Option<Actor>, oracle: &mut Oracle, run: &str) -> Result<(), String> {
    let a = match actor {
        Some(a) => a,
        None => host.wake(ACTOR).await.map_err(|e| e.to_string())?,
    };
    a.sleep().await.map_err(|e| format!("{run}: sleep at the end failed: {e}"))?;
    let mut a = host.wake(ACTOR).await.map_err(|e| e.to_string())?;
    check_recovered(&mut a, oracle, None, &format!("{run}, after the workload and a sleep/wake")).await?;
    a.sleep().await.map_err(|e| e.to_string())
}

/// What a crash run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashOutcome {
    /// The step the crash interrupted, if it struck before the end.
    pub step: Option<usize>,
    /// Whether that step turned out committed.
    pub inflight_committed: bool,
}

/// Runs `workload`, kills the actor at KV operation `k`, wakes it again and
/// checks it against the oracle.
///
/// # Errors
///
/// A description of the first broken promise.
pub async fn crash_at(workload: &Workload, limits: KvLimits, k: u64) -> Result<CrashOutcome, String> {
    crash_at_on(workload, Arc::new(MemoryKv::with_limits(limits)), k).await
}

/// As [`crash_at`], over `store` (fresh, holding nothing of the workload's
/// actor): redb, a Redis Cluster, a backend of your own.
///
/// # Errors
///
/// As [`crash_at`].
pub async fn crash_at_on(workload: &Workload, store: Arc<dyn KvStore>, k: u64) -> Result<CrashOutcome, String> {
    let kv = Arc::new(FaultKv::new(store));
    let host = host_over(kv.clone());
    let mut oracle = Oracle::new();
    let mut actor = None;
    let mut inflight = None;
    kv.set_plan(FaultPlan::CrashAt(k));
    let finished = {
        let run = async {
            for (i, step) in workload.steps.iter().enumerate() {
                inflight = Some(i);
                apply(&host, &mut actor, step).await.map_err(|e| format!("step {i} failed before the crash: {e}"))?;
                oracle.apply(step)?;
            }
            inflight = None;
            Ok::<(), String>(())
        };
        tokio::select! {
            biased;
            () = kv.crashed() => false,
            r = run => { r?; true }
        }
    };
    // The process is gone: drop the Store mid-call, never sleeping it.
    drop(actor);
    kv.set_plan(FaultPlan::Healthy);
    let step = if finished { None } else { inflight };
    let mut a = host.wake(ACTOR).await.map_err(|e| format!("crash at op {k}: wake after the crash failed: {e}"))?;
    let inflight_step = step.map(|i| &workload.steps[i]);
    let inflight_committed = check_recovered(&mut a, &mut oracle, inflight_step, &format!("crash at op {k} in step {step:?}")).await?;
    a.sleep().await.map_err(|e| e.to_string())?;
    Ok(CrashOutcome { step, inflight_committed })
}

/// What a fault run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultOutcome {
    /// Steps that returned an error.
    pub failed_steps: usize,
    /// Failed steps whose transaction turned out committed anyway (the
    /// fault struck after the commit point); each reported
    /// [`Error::OutcomeUnknown`].
    pub failed_but_committed: usize,
    /// Failed steps that reported [`Error::OutcomeUnknown`], committed or
    /// not.
    pub outcome_unknown: usize,
    /// Times the actor had to be woken again.
    pub rewakes: usize,
}

/// Runs `workload` with KV operation `k` failing once; checks every failure
/// and the final state against the oracle.
///
/// # Errors
///
/// A description of the first broken promise.
pub async fn fault_at(workload: &Workload, limits: KvLimits, k: u64) -> Result<FaultOutcome, String> {
    fault_at_on(workload, Arc::new(MemoryKv::with_limits(limits)), k).await
}

/// As [`fault_at`], over `store` (fresh, holding nothing of the workload's
/// actor).
///
/// # Errors
///
/// As [`fault_at`].
pub async fn fault_at_on(workload: &Workload, store: Arc<dyn KvStore>, k: u64) -> Result<FaultOutcome, String> {
    let kv = Arc::new(FaultKv::new(store));
    let host = host_over(kv.clone());
    let mut oracle = Oracle::new();
    let mut actor: Option<Actor> = None;
    let mut outcome = FaultOutcome::default();
    kv.set_plan(FaultPlan::FailOnce(k));
    for (i, step) in workload.steps.iter().enumerate() {
        let when = format!("fault at op {k}, step {i}");
        match apply(&host, &mut actor, step).await {
            Ok(()) => oracle.apply(step).map_err(|e| format!("{when}: the actor succeeded where the oracle failed: {e}"))?,
            Err(e) => {
                // An earlier failed step (a CREATE TABLE, say) can make this
                // one fail for a plain SQL reason; the oracle must agree.
                if let Some(expected) = oracle.error_of(step)? {
                    if !e.to_string().contains(&expected) {
                        return Err(format!("{when}: oracle fails with {expected:?}, the actor with: {e}"));
                    }
                    continue;
                }
                outcome.failed_steps += 1;
                if !(e.is_io_error() && e.to_string().contains("injected fault")) {
                    return Err(format!("{when}: expected an I/O error naming the injected fault, got: {e}"));
                }
                let unknown = matches!(e, Error::OutcomeUnknown { .. });
                outcome.outcome_unknown += usize::from(unknown);
                // The actor keeps working, or is poisoned and wakes clean.
                let usable = match actor.as_mut() {
                    Some(a) => a.is_autocommit().await.is_ok(),
                    None => false,
                };
                if !usable {
                    if let Some(a) = actor.take() {
                        drop(a);
                    }
                    outcome.rewakes += 1;
                    actor = Some(host.wake(ACTOR).await.map_err(|e| format!("{when}: wake after the fault failed: {e}"))?);
                }
                let a = actor.as_mut().expect("awake");
                if check_recovered(a, &mut oracle, Some(step), &when).await? {
                    if !unknown {
                        return Err(format!("{when}: the step committed, yet its error does not say the outcome is unknown: {e}"));
                    }
                    outcome.failed_but_committed += 1;
                    oracle.apply(step)?;
                }
            }
        }
    }
    // The verdict is read with a healthy KV: a fault injected into the
    // checking itself would only test the checker.
    kv.set_plan(FaultPlan::Healthy);
    check_final(&host, actor, &mut oracle, &format!("fault at op {k}")).await?;
    Ok(outcome)
}

/// Where a cancellation run keeps the actor's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelStore {
    /// [`MemoryKv`] with these limits behind a [`FaultKv`] whose every
    /// operation yields once, so that calls run on fibers and wait at each
    /// KV call. On a current-thread runtime the same `k` always cancels at
    /// the same point.
    Memory(KvLimits),
    /// A fresh redb file: a real writer thread, so the poll at which a
    /// given KV call is in flight varies from run to run.
    Redb,
}

impl CancelStore {
    fn open(self) -> Result<(Arc<dyn KvStore>, Option<tempfile::TempDir>), String> {
        match self {
            CancelStore::Memory(limits) => {
                let kv = FaultKv::new(MemoryKv::with_limits(limits));
                kv.set_delay(Some(Duration::ZERO));
                Ok((Arc::new(kv), None))
            }
            CancelStore::Redb => {
                let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
                let kv = RedbKv::open(dir.path().join("kv.redb")).map_err(|e| e.to_string())?;
                Ok((Arc::new(kv), Some(dir)))
            }
        }
    }
}

/// Polls `future` to its end, unless the shared count of polls reaches
/// `cancel_at` first: then it is dropped there, not polled again, and the
/// answer is `None`.
async fn unless_cancelled<F: Future>(future: F, polls: &AtomicU64, cancel_at: u64) -> Option<F::Output> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        if polls.fetch_add(1, Ordering::Relaxed) == cancel_at {
            return Poll::Ready(None);
        }
        future.as_mut().poll(cx).map(Some)
    })
    .await
}

/// What a cancellation run saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelOutcome {
    /// The step whose future was dropped, if the run got that far.
    pub step: Option<usize>,
    /// Whether that step turned out applied.
    pub landed: bool,
}

/// Polls a run of `workload` makes with nothing cancelled: every `k` below
/// it cancels some step in [`cancel_at`].
///
/// # Errors
///
/// A description of any step that fails.
pub async fn count_polls(workload: &Workload, store: CancelStore) -> Result<u64, String> {
    let polls = AtomicU64::new(0);
    let outcome = run_cancelling(workload, store, &polls, u64::MAX).await?;
    debug_assert!(outcome.step.is_none());
    Ok(polls.load(Ordering::Relaxed))
}

/// Runs `workload`, dropping the future of whichever step is being polled
/// for the `k`th time (from 0), and carries on with the rest. Right after
/// the cancellation the actor must answer, with the step wholly applied or
/// not at all (and `integrity_check` ok); at the end, after a sleep and a
/// fresh wake, the database must equal the oracle's.
///
/// # Errors
///
/// A description of the first broken promise.
pub async fn cancel_at(workload: &Workload, store: CancelStore, k: u64) -> Result<CancelOutcome, String> {
    run_cancelling(workload, store, &AtomicU64::new(0), k).await
}

async fn run_cancelling(workload: &Workload, store: CancelStore, polls: &AtomicU64, k: u64) -> Result<CancelOutcome, String> {
    let (kv, _dir) = store.open()?;
    let host = host_over(kv);
    let mut oracle = Oracle::new();
    let mut actor: Option<Actor> = None;
    let mut outcome = CancelOutcome { step: None, landed: false };
    for (i, step) in workload.steps.iter().enumerate() {
        let when = format!("cancel at poll {k}, step {i}");
        match unless_cancelled(apply(&host, &mut actor, step), polls, k).await {
            Some(Ok(())) => oracle.apply(step)?,
            Some(Err(e)) => match oracle.error_of(step)? {
                // A cancelled step that did not land (a CREATE TABLE, say)
                // can make a later one fail; the oracle must fail it too.
                Some(expected) if e.to_string().contains(&expected) => {}
                _ => return Err(format!("{when}: the step failed where the oracle did not fail it that way: {e}")),
            },
            None => {
                // A cancelled wake or sleep leaves no actor; waking must work.
                if actor.is_none() {
                    actor = Some(host.wake(ACTOR).await.map_err(|e| format!("{when}: wake after the cancellation failed: {e}"))?);
                }
                let a = actor.as_mut().expect("awake");
                outcome = CancelOutcome { step: Some(i), landed: check_recovered(a, &mut oracle, Some(step), &when).await? };
                if outcome.landed {
                    oracle.apply(step)?;
                }
            }
        }
    }
    check_final(&host, actor, &mut oracle, &format!("cancel at poll {k}")).await?;
    Ok(outcome)
}

/// Runs one input of the `sql_faults` fuzz target (and of its regression
/// test): byte 0 picks the check (bit 1 set: [`cancel_at`] poll `k`;
/// otherwise bit 0 clear: [`crash_at`] operation `k`, set: [`fault_at`]
/// operation `k`), bytes 1-2 are `k` (little-endian), and the rest decodes
/// to a workload of at most 24 steps under Rivet's limits. Run it on a
/// current-thread runtime for a cancellation point that repeats.
///
/// # Errors
///
/// The checker's description of the first broken promise.
pub async fn run_fuzz_input(data: &[u8]) -> Result<(), String> {
    let [mode, k0, k1, rest @ ..] = data else { return Ok(()) };
    let k = u64::from(u16::from_le_bytes([*k0, *k1]));
    let workload = Workload::from_bytes(rest, 24);
    if mode & 2 != 0 {
        cancel_at(&workload, CancelStore::Memory(KvLimits::RIVET), k).await.map(drop)
    } else if mode & 1 == 0 {
        crash_at(&workload, KvLimits::RIVET, k).await.map(drop)
    } else {
        fault_at(&workload, KvLimits::RIVET, k).await.map(drop)
    }
}

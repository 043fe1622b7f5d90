//! `wasqlite bench sql`: SQL throughput on wasqlite against native SQLite,
//! in the same process, one after the other.
//!
//! Backends: wasqlite over `MemoryKv` (`memory`), wasqlite over the default
//! persistent store, redb with group commit, in a temporary directory
//! (`redb`: every commit is fsync'd), and two native references, SQLite
//! 3.54.1 through rusqlite, bundled, with the guest's page size, locking
//! mode and foreign-key setting, and SQLite's global memory statistics
//! off as in the guest's build:
//!
//! - `native-memory`, the like-for-like one: SQLite's memory VFS (memdb),
//!   a memory journal, `synchronous = FULL` as in the guest;
//! - `native-file`: a file in the temporary directory, a rollback journal
//!   on disk, `synchronous = OFF`.
//!
//! The run records how each side is configured, as each reports it
//! (pragmas, and the compile options only one side has). See `sql_db.rs`
//! for what each side does per statement.
//!
//! Workloads, on a table `t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT)`
//! of `--rows` rows (10,000 by default) where they need one:
//!
//! - `point-select`: `SELECT a, b FROM t WHERE id = ?` with random ids,
//!   back to back for `--seconds`; SELECTs per second.
//! - `autocommit-update`: `UPDATE t SET a = a + 1 WHERE id = ?` with random
//!   ids, each its own transaction; UPDATEs per second.
//! - `bulk-insert-25k`: 25,000 INSERTs into a fresh table in one
//!   transaction, COMMIT included; milliseconds. Each side takes its own
//!   bulk path: `Actor::execute_many` on wasqlite, one prepared statement
//!   run per row on native (a loop over a C call costs nothing there).
//! - `bulk-insert-25k-each`: the same with one `execute` per row on
//!   wasqlite too, to show what a crossing per statement costs.
//! - `bulk-insert-25k-sql`: 25,000 rows made by one `INSERT ... SELECT`
//!   over a recursive CTE: SQLite's own speed, with no parameters and one
//!   statement, so nothing crosses into the guest per row.
//! - `mixed`: seven speedtest1-style steps (mixed.rs); milliseconds.
//!
//! Each workload runs `--rounds` rounds; in each round every backend runs
//! once, in turn, with the same random sequence. Figures are medians over
//! rounds; a ratio is wasqlite's figure over a native reference's in the
//! same round, and the median of those is quoted: for throughput, the share
//! of native's throughput (higher is better); for time, the multiple of
//! native's time (lower is better).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as Json, json};
use wasqlite::{EngineConfig, Host, HostConfig, Limits, MemoryKv, Value};

use super::measure::{median, round};
use super::mixed;
use super::sql_db::{Db, native_memstatus_off};

#[derive(Args, Debug)]
pub(crate) struct SqlArgs {
    /// Which workload.
    #[arg(long, value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Rows in the table of point-select and autocommit-update, and the
    /// size of the mixed workload.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Rounds per workload; figures are medians.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Backends, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "memory,redb,native-memory,native-file")]
    backends: Vec<Backend>,
    /// The Redis Cluster of the `redis` backend (`redis://HOST:PORT,...`);
    /// the run's keys get a fresh prefix.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Where to put the temporary redb and native files (default: the
    /// system temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Compile the guest without epoch checks (no call deadlines), to show
    /// what the sandbox's deadlines cost.
    #[arg(long)]
    uninterruptible: bool,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    All,
    PointSelect,
    AutocommitUpdate,
    #[value(name = "bulk-insert-25k")]
    BulkInsert25k,
    #[value(name = "bulk-insert-25k-each")]
    BulkInsert25kEach,
    #[value(name = "bulk-insert-25k-sql")]
    BulkInsert25kSql,
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::All => "all",
            Workload::PointSelect => "point-select",
            Workload::AutocommitUpdate => "autocommit-update",
            Workload::BulkInsert25k => "bulk-insert-25k",
            Workload::BulkInsert25kEach => "bulk-insert-25k-each",
            Workload::BulkInsert25kSql => "bulk-insert-25k-sql",
            Workload::Mixed => "mixed",
        }
    }

    /// Whether it works on the filled table `t` (the others make their own).
    fn reads_the_table(self) -> bool {
        self.is_throughput()
    }

    /// Throughput (ops/s, higher is better) or time (ms, lower is better).
    fn is_throughput(self) -> bool {
        matches!(self, Workload::PointSelect | Workload::AutocommitUpdate)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Memory,
    Redis,
    Redb,
    NativeMemory,
    /// `native` in commands written before there were two references.
    #[value(alias = "native")]
    NativeFile,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
            Backend::Redb => "redb",
            Backend::NativeMemory => "native-memory",
            Backend::NativeFile => "native-file",
        }
    }

    fn is_native(self) -> bool {
        matches!(self, Backend::NativeMemory | Backend::NativeFile)
    }

    /// Where its pages live, for the configuration table.
    fn medium(self) -> &'static str {
        match self {
            Backend::Memory => "wasqlite's memory KV (a BTreeMap)",
            Backend::Redis => "Redis Cluster",
            Backend::Redb => "redb file, fsync per commit (group commit)",
            Backend::NativeMemory => "SQLite's memdb VFS (a heap buffer)",
            Backend::NativeFile => "a file (page cache, no fsync)",
        }
    }
}

const BULK_ROWS: usize = 25_000;
const POINT_SELECT: &str = "SELECT a, b FROM t WHERE id = ?1";
const UPDATE: &str = "UPDATE t SET a = a + 1 WHERE id = ?1";
const BULK_SETUP: &str =
    "DROP TABLE IF EXISTS bulk; CREATE TABLE bulk(id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b TEXT NOT NULL)";
const BULK_INSERT: &str = "INSERT INTO bulk(a, b) VALUES (?1, ?2)";

/// Where each backend's databases come from.
struct Backends {
    dir: tempfile::TempDir,
    memory: Host,
    redb: Option<Host>,
    redis: Option<Host>,
}

impl Backends {
    fn new(args: &SqlArgs) -> Result<Backends> {
        let dir = match &args.dir {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .context("creating a temporary directory")?;
        let config = || match args.uninterruptible {
            false => HostConfig::default(),
            true => HostConfig {
                engine: EngineConfig { interruptible: false, ..Default::default() },
                limits: Limits { call_timeout: None, ..Default::default() },
                ..Default::default()
            },
        };
        let host = |kv| Host::with_config(kv, config()).context("starting the WebAssembly host");
        let memory = host(Arc::new(MemoryKv::new()))?;
        let redb = match args.backends.contains(&Backend::Redb) {
            true => {
                let url = format!("redb:{}", dir.path().join("kv.redb").display());
                Some(host(wasqlite::kv::open_store(&url)?)?)
            }
            false => None,
        };
        let redis = match (args.backends.contains(&Backend::Redis), &args.redis) {
            (false, _) => None,
            (true, None) => bail!("the redis backend needs --redis URL"),
            (true, Some(url)) => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{separator}prefix=bench-{:08x}", rand::random::<u32>());
                Some(host(wasqlite::kv::open_store(&url)?)?)
            }
        };
        Ok(Backends { dir, memory, redb, redis })
    }

    /// A fresh database named `name` on `backend`.
    async fn open(&self, backend: Backend, name: &str) -> Result<Db> {
        Ok(match backend {
            Backend::Memory => Db::Wasm(Box::new(self.memory.wake(name).await?)),
            Backend::Redb => Db::Wasm(Box::new(self.redb.as_ref().context("no redb host")?.wake(name).await?)),
            Backend::Redis => Db::Wasm(Box::new(self.redis.as_ref().context("no redis host")?.wake(name).await?)),
            Backend::NativeMemory => Db::open_native_memory(name)?,
            Backend::NativeFile => Db::open_native_file(&self.dir.path().join(format!("{name}.sqlite")))?,
        })
    }
}

/// Fills `t` with `rows` rows in one transaction.
async fn fill(db: &mut Db, rows: usize) -> Result<()> {
    db.batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b TEXT NOT NULL)").await?;
    let mut rng = SmallRng::seed_from_u64(1);
    db.batch("BEGIN").await?;
    for id in 1..=rows as i64 {
        let a = rng.random_range(0..1_000_000_000u64);
        db.execute(
            "INSERT INTO t(id, a, b) VALUES (?1, ?2, ?3)",
            vec![Value::Integer(id), Value::Integer(a as i64), Value::Text(mixed::words(a))],
        )
        .await?;
    }
    db.batch("COMMIT").await
}

/// Runs `sql` with a random id, back to back for `seconds`; per second.
async fn throughput(db: &mut Db, sql: &str, rows: usize, seconds: f64, seed: u64, read: bool) -> Result<f64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < budget {
        let params = vec![Value::Integer(rng.random_range(1..=rows as i64))];
        if read {
            db.query(sql, params).await?;
        } else {
            db.execute(sql, params).await?;
        }
        ops += 1;
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// 25,000 INSERTs in one transaction into a fresh table, through the bulk
/// path or one `execute` per row; milliseconds.
async fn bulk_insert(db: &mut Db, data: &[(i64, String)], bulk_path: bool) -> Result<f64> {
    db.batch(BULK_SETUP).await?;
    let row = |(a, b): &(i64, String)| vec![Value::Integer(*a), Value::Text(b.clone())];
    let start = Instant::now();
    db.batch("BEGIN").await?;
    if bulk_path {
        db.execute_many(BULK_INSERT, data.iter().map(row)).await?;
    } else {
        for r in data {
            db.execute(BULK_INSERT, row(r)).await?;
        }
    }
    db.batch("COMMIT").await?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// The same 25,000 rows' worth of work as one statement: SQLite alone.
async fn bulk_insert_sql(db: &mut Db) -> Result<f64> {
    db.batch(BULK_SETUP).await?;
    let start = Instant::now();
    db.batch(&format!(
        "BEGIN; \
         INSERT INTO bulk(a, b) \
           WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BULK_ROWS}) \
           SELECT (i * 7919) % 1000000000, 'row ' || i || ' of the bulk insert' FROM n; \
         COMMIT"
    ))
    .await?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// One workload's figures: `values[backend][round]`, and for `mixed` the
/// step times `steps[backend][round][step]`.
struct Measured {
    values: Vec<Vec<f64>>,
    steps: Vec<Vec<[f64; mixed::STEPS.len()]>>,
}

async fn measure(
    workload: Workload,
    args: &SqlArgs,
    backends: &Backends,
    seen: &mut Vec<Seen>,
) -> Result<Measured> {
    let name = format!("sql-{}", workload.name());
    let mut dbs = Vec::with_capacity(args.backends.len());
    for &backend in &args.backends {
        let mut db = backends.open(backend, &name).await.with_context(|| format!("opening {}", backend.name()))?;
        if !seen.iter().any(|s| s.backend == backend) {
            seen.push(Seen::of(backend, &mut db).await.with_context(|| format!("configuration of {}", backend.name()))?);
        }
        if workload.reads_the_table() {
            fill(&mut db, args.rows).await.with_context(|| format!("filling the table on {}", backend.name()))?;
        }
        dbs.push(db);
    }
    let bulk: Vec<(i64, String)> = match workload {
        Workload::BulkInsert25k | Workload::BulkInsert25kEach => {
            let mut rng = SmallRng::seed_from_u64(25);
            (0..BULK_ROWS)
                .map(|_| {
                    let a = rng.random_range(0..1_000_000_000u64);
                    (a as i64, mixed::words(a))
                })
                .collect()
        }
        _ => Vec::new(),
    };

    let mut measured = Measured { values: vec![Vec::new(); dbs.len()], steps: vec![Vec::new(); dbs.len()] };
    for r in 0..args.rounds {
        let plan = (workload == Workload::Mixed).then(|| mixed::Plan::new(args.rows, r as u64));
        let mut checksums = Vec::new();
        for (b, db) in dbs.iter_mut().enumerate() {
            let backend = args.backends[b].name();
            let value = match workload {
                Workload::PointSelect => throughput(db, POINT_SELECT, args.rows, args.seconds, r as u64, true).await,
                Workload::AutocommitUpdate => throughput(db, UPDATE, args.rows, args.seconds, r as u64, false).await,
                Workload::BulkInsert25k => bulk_insert(db, &bulk, true).await,
                Workload::BulkInsert25kEach => bulk_insert(db, &bulk, false).await,
                Workload::BulkInsert25kSql => bulk_insert_sql(db).await,
                Workload::Mixed | Workload::All => {
                    mixed::run(db, plan.as_ref().expect("a plan for mixed")).await.map(|outcome| {
                        checksums.push((backend, outcome.checksum));
                        measured.steps[b].push(outcome.step_ms);
                        outcome.step_ms.iter().sum::<f64>()
                    })
                }
            }
            .with_context(|| format!("{} on {backend}, round {}", workload.name(), r + 1))?;
            measured.values[b].push(value);
            if !args.json {
                let unit = if workload.is_throughput() { "/s" } else { " ms" };
                eprintln!("  {} round {}/{}: {backend:<6} {value:>10.1}{unit}", workload.name(), r + 1, args.rounds);
            }
        }
        if let Some((first, sum)) = checksums.first()
            && let Some((other, _)) = checksums.iter().find(|(_, s)| s != sum)
        {
            bail!("mixed round {}: {first} and {other} returned different results", r + 1);
        }
    }
    for db in dbs {
        db.close().await?;
    }
    Ok(measured)
}

/// What a backend reported about itself when first opened.
struct Seen {
    backend: Backend,
    version: String,
    pragmas: Vec<(&'static str, String)>,
    compile_options: Vec<String>,
}

impl Seen {
    async fn of(backend: Backend, db: &mut Db) -> Result<Seen> {
        Ok(Seen {
            backend,
            version: db.sqlite_version().await?,
            pragmas: db.configuration().await?,
            compile_options: db.compile_options().await?,
        })
    }

    /// The configuration table's entry: pragmas, medium, statement cache,
    /// and the compile options `other` lacks.
    fn describe(&self, other: Option<&Seen>) -> Json {
        let mut entry: Map<String, Json> = self.pragmas.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        entry.insert("sqlite_version".into(), json!(self.version));
        entry.insert("medium".into(), json!(self.backend.medium()));
        let cache = if self.backend.is_native() { "rusqlite prepare_cached, 64" } else { "the actor's, by SQL text" };
        entry.insert("statement_cache".into(), json!(cache));
        if let Some(other) = other {
            let only: Vec<&String> = self.compile_options.iter().filter(|o| !other.compile_options.contains(o)).collect();
            entry.insert("compile_options_only_here".into(), json!(only));
        }
        Json::Object(entry)
    }
}

pub(crate) async fn run(args: SqlArgs) -> Result<ExitCode> {
    if args.rounds == 0 || args.rows == 0 {
        bail!("--rounds and --rows must be at least 1");
    }
    if args.backends.is_empty() {
        bail!("--backends names none");
    }
    let workloads: Vec<Workload> = match args.workload {
        Workload::All => {
            vec![
                Workload::PointSelect,
                Workload::AutocommitUpdate,
                Workload::BulkInsert25k,
                Workload::BulkInsert25kEach,
                Workload::BulkInsert25kSql,
                Workload::Mixed,
            ]
        }
        w => vec![w],
    };
    let memstatus_off = native_memstatus_off();
    let backends = Backends::new(&args)?;
    // Ratios are taken against each native reference present, the
    // like-for-like one first.
    let references: Vec<(usize, Backend)> = [Backend::NativeMemory, Backend::NativeFile]
        .into_iter()
        .filter_map(|r| Some((args.backends.iter().position(|&b| b == r)?, r)))
        .collect();
    let compared: Vec<(usize, Backend)> =
        args.backends.iter().copied().enumerate().filter(|(_, b)| !b.is_native()).collect();
    let mut seen = Vec::new();

    let mut results = Vec::new();
    let mut table = Vec::new();
    for &workload in &workloads {
        let m = measure(workload, &args, &backends, &mut seen).await?;
        let medians: Vec<f64> = m.values.iter().map(|v| median(v.clone())).collect();
        // Per round wasqlite/native, then the median; for each reference.
        let per_round = |b: usize, n: usize, f: &dyn Fn(usize, usize) -> f64| -> f64 {
            median((0..args.rounds).map(|r| f(b, r) / f(n, r)).collect())
        };
        let ratios: Vec<Vec<f64>> = references
            .iter()
            .map(|&(n, _)| compared.iter().map(|&(b, _)| per_round(b, n, &|i, r| m.values[i][r])).collect())
            .collect();

        let mut per_backend = Map::new();
        for (b, backend) in args.backends.iter().enumerate() {
            let mut entry = json!({
                "median": round(medians[b], 2),
                "rounds": m.values[b].iter().map(|v| round(*v, 2)).collect::<Vec<_>>(),
            });
            if workload == Workload::Mixed {
                let steps: Map<String, Json> = mixed::STEPS
                    .iter()
                    .enumerate()
                    .map(|(s, step)| {
                        ((*step).to_owned(), json!(round(median(m.steps[b].iter().map(|r| r[s]).collect()), 2)))
                    })
                    .collect();
                entry["steps_ms"] = Json::Object(steps);
            }
            per_backend.insert(backend.name().to_owned(), entry);
        }
        let ratio_json: Map<String, Json> = references
            .iter()
            .zip(&ratios)
            .map(|((_, reference), row)| {
                let row: Map<String, Json> =
                    compared.iter().zip(row).map(|((_, b), r)| (b.name().to_owned(), json!(round(*r, 3)))).collect();
                (reference.name().to_owned(), Json::Object(row))
            })
            .collect();
        results.push(json!({
            "name": workload.name(),
            "unit": if workload.is_throughput() { "ops_per_s" } else { "ms" },
            "higher_is_better": workload.is_throughput(),
            "results": per_backend,
            "ratio_to": ratio_json,
        }));
        let step_ratios: Vec<Vec<Vec<f64>>> = match workload {
            Workload::Mixed => (0..mixed::STEPS.len())
                .map(|s| {
                    references
                        .iter()
                        .map(|&(n, _)| compared.iter().map(|&(b, _)| per_round(b, n, &|i, r| m.steps[i][r][s])).collect())
                        .collect()
                })
                .collect(),
            _ => Vec::new(),
        };
        table.push((workload, medians, ratios, step_ratios, m));
    }

    // The configuration of each side; compile options are compared with
    // wasqlite's (memory) and native-memory's.
    let wasm_seen = seen.iter().find(|s| !s.backend.is_native());
    let native_seen = seen.iter().find(|s| s.backend == Backend::NativeMemory);
    let configuration: Map<String, Json> = seen
        .iter()
        .map(|s| {
            let other = if s.backend.is_native() { wasm_seen } else { native_seen };
            (s.backend.name().to_owned(), s.describe(other))
        })
        .collect();

    if args.json {
        let versions: Map<String, Json> =
            seen.iter().map(|s| (s.backend.name().to_owned(), json!(s.version))).collect();
        let out = json!({
            "sqlite_version": versions,
            "native_memstatus": if memstatus_off { "off" } else { "on" },
            "epoch_checks": !args.uninterruptible,
            "configuration": configuration,
            "rows": args.rows,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "bulk_rows": BULK_ROWS,
            "workloads": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    let versions: Vec<String> = seen.iter().map(|s| format!("{} {}", s.backend.name(), s.version)).collect();
    println!("SQLite versions: {}", versions.join(", "));
    for s in &seen {
        let pragmas: Vec<String> = s.pragmas.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{}: {}; {}", s.backend.name(), pragmas.join(" "), s.backend.medium());
    }
    let mut header = "| workload | unit |".to_owned();
    let mut rule = "|---|---|".to_owned();
    for backend in &args.backends {
        header += &format!(" {} |", backend.name());
        rule += "---:|";
    }
    for (_, reference) in &references {
        for (_, backend) in &compared {
            header += &format!(" {}/{} |", backend.name(), reference.name());
            rule += "---:|";
        }
    }
    println!("{header}\n{rule}");
    let row = |name: &str, unit: &str, medians: &[f64], ratios: &[Vec<f64>], digits: usize| {
        let mut line = format!("| {name} | {unit} |");
        for v in medians {
            line += &format!(" {v:.digits$} |");
        }
        for r in ratios.iter().flatten() {
            line += &format!(" {r:.2}x |");
        }
        println!("{line}");
    };
    for (workload, medians, ratios, step_ratios, m) in &table {
        let unit = if workload.is_throughput() { "ops/s" } else { "ms" };
        row(workload.name(), unit, medians, ratios, if workload.is_throughput() { 0 } else { 1 });
        if *workload == Workload::Mixed {
            for (s, step) in mixed::STEPS.iter().enumerate() {
                let per_round = |b: usize| -> Vec<f64> { m.steps[b].iter().map(|r| r[s]).collect() };
                let step_medians: Vec<f64> = (0..args.backends.len()).map(|b| median(per_round(b))).collect();
                row(&format!("mixed: {step}"), "ms", &step_medians, &step_ratios[s], 1);
            }
        }
    }
    println!(
        "\nMedians of {} rounds ({} s per throughput round, {} rows). Ratios: wasqlite over native in the same round, median; \
         for ops/s the share of native (higher is better), for ms the multiple of native's time (lower is better). \
         Native memory statistics: {}.",
        args.rounds,
        args.seconds,
        args.rows,
        if memstatus_off { "off, as in the guest" } else { "on (could not be turned off)" }
    );
    Ok(ExitCode::SUCCESS)
}

//! `wasqlite bench churn`: wake/sleep memory churn and wake latency.
//!
//! Before the run, N actors each get a small database of ten tables
//! (`--tables`; the host's one migration step creates and fills them on an
//! actor's first wake). Then each cycle takes the next actor in turn and:
//!
//! 1. wakes it: a new Store and instance, the database opened, the
//!    migration check (`PRAGMA user_version`, a no-op), then one point
//!    SELECT: this is the *wake latency* (also reported in its two parts,
//!    `Host::wake` alone and the first SELECT alone);
//! 2. makes one small write, an autocommit UPDATE of one row;
//! 3. sleeps it: the instance is dropped and its linear memory unmapped:
//!    the *sleep latency*.
//!
//! With `--concurrency C`, C tasks on the multi-thread runtime each cycle
//! their own subset of the actors. Process RSS, live instances and live
//! linear memory are sampled while the sampling cycle's actor is awake
//! (about 1,000 samples per run), so the RSS line shows memory with C
//! actors awake; drift is measured from the end of warm-up (the first 10% of
//! cycles by default) to the last cycle. After the run, with every actor
//! asleep, the host must report zero live instances and zero bytes of
//! linear memory. Then K actors are held awake at once to measure the RSS
//! each awake actor costs.
//!
//! The native reference, in the same run (unless `--no-native`): after each
//! cycle, native SQLite opens a database with the same schema and rows from
//! memory (SQLite's memdb VFS, a named database shared in the process, so
//! opening copies nothing), reads `PRAGMA user_version`, runs the same first
//! SELECT (which parses the schema, as in the guest), and closes. The wake is
//! quoted as a multiple of that, p50 over p50.
//!
//! At the end every actor is woken once more and its counter checked: the
//! sum of the UPDATEs must equal the number of cycles, so a benchmark that
//! lost writes fails instead of reporting.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;
use tokio::task::JoinSet;
use wasqlite::{EngineConfig, Host, HostConfig, Migrations, params};

use super::measure::{Latency, Rss, cpu_time, load_average, mib, progress, round};
use super::plot;
use super::sql_db::native_memstatus_off;

#[derive(Args, Debug, Clone)]
pub(crate) struct ChurnArgs {
    /// Actors, each with its own 10-table database.
    #[arg(long, default_value_t = 1000)]
    actors: usize,
    /// Wake/write/sleep cycles in all.
    #[arg(long, default_value_t = 100_000)]
    cycles: u64,
    /// Tasks cycling at once, each over its own subset of the actors.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Actors held awake at once to measure RSS per awake actor.
    #[arg(long, default_value_t = 100)]
    awake: usize,
    /// Tables (each with an index) in each actor's database.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=500))]
    tables: u16,
    /// Where actors live: `memory`, `redb:PATH` or `redis://HOST:PORT,...`.
    #[arg(long, value_name = "STORE", default_value = "memory")]
    store: String,
    /// Allocate instances on demand instead of from wasmtime's pooling
    /// allocator (the default).
    #[arg(long)]
    on_demand: bool,
    /// Pool slots (default: enough for the run).
    #[arg(long, value_name = "N", conflicts_with = "on_demand")]
    pool_slots: Option<u32>,
    /// Bytes of each pool slot's memory kept resident between actors
    /// (default: the engine's, 1 MiB; 0 releases it all at every sleep).
    #[arg(long, value_name = "BYTES", conflicts_with = "on_demand")]
    keep_resident: Option<usize>,
    /// Turn copy-on-write memory images off.
    #[arg(long)]
    no_cow: bool,
    /// The share of cycles that is warm-up, in percent.
    #[arg(long, default_value_t = 10.0)]
    warmup_percent: f64,
    /// Skip the native reference (a native open and first SELECT after
    /// each cycle).
    #[arg(long)]
    no_native: bool,
    /// Print one JSON object with every figure instead of text.
    #[arg(long)]
    json: bool,
    /// Draw RSS and live instances against cycles (SVG if FILE ends in
    /// .svg, else PNG).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// Rows in each table.
const ROWS: u64 = 8;
/// RSS samples per run, about.
const SAMPLES: u64 = 1000;

const SELECT: &str = "SELECT value FROM t0 WHERE id = ?1";
const UPDATE: &str = "UPDATE t0 SET value = value + 1, updated = ?2 WHERE id = ?1";
const SUM: &str = "SELECT sum(value) FROM t0";

/// The one migration step: `tables` tables with an index each, `ROWS` rows
/// each.
fn schema(tables: u16) -> String {
    let mut sql = String::new();
    for t in 0..tables {
        let _ = write!(
            sql,
            "CREATE TABLE t{t}(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL, updated INTEGER); \
             CREATE INDEX t{t}_name ON t{t}(name); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
             INSERT INTO t{t}(id, name, value) SELECT i, 'row ' || i || ' of t{t}', i * 10 FROM n; "
        );
    }
    sql
}

fn name(i: usize) -> String {
    format!("churn-{i:06}")
}

/// One point of the RSS line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Cycles finished when it was taken.
    pub(crate) cycle: u64,
    pub(crate) rss: Rss,
    pub(crate) live_instances: usize,
    pub(crate) live_memory: usize,
}

/// What the cycling tasks share.
struct Shared {
    host: Host,
    done: AtomicU64,
    samples: Mutex<Vec<Sample>>,
    sample_every: u64,
    warmup: u64,
    total: u64,
    bar: ProgressBar,
    /// How many native reference databases there are (none: no reference).
    native_databases: Option<usize>,
}

impl Shared {
    /// Counts a finished cycle, and samples when it is due. Called while
    /// the cycle's actor is awake.
    fn finished_cycle(&self) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.sample_every) || n == self.warmup || n == self.total {
            let sample = Sample {
                cycle: n,
                rss: Rss::now(),
                live_instances: self.host.live_instances(),
                live_memory: self.host.live_memory_bytes(),
            };
            self.samples.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
        }
        self.bar.inc(1);
    }
}

struct Latencies {
    /// `Host::wake` and the first SELECT: what BENCHMARKS.md calls a wake.
    wake: Latency,
    /// `Host::wake` alone (instantiate, open, migration check).
    wake_call: Latency,
    /// The first SELECT alone.
    first_select: Latency,
    write: Latency,
    sleep: Latency,
    /// Native SQLite: open, `PRAGMA user_version`, the first SELECT.
    native_wake: Latency,
    native_close: Latency,
}

impl Latencies {
    fn new() -> Result<Latencies> {
        Ok(Latencies {
            wake: Latency::new()?,
            wake_call: Latency::new()?,
            first_select: Latency::new()?,
            write: Latency::new()?,
            sleep: Latency::new()?,
            native_wake: Latency::new()?,
            native_close: Latency::new()?,
        })
    }

    fn add(&mut self, other: &Latencies) -> Result<()> {
        self.wake.add(&other.wake)?;
        self.wake_call.add(&other.wake_call)?;
        self.first_select.add(&other.first_select)?;
        self.write.add(&other.write)?;
        self.sleep.add(&other.sleep)?;
        self.native_wake.add(&other.native_wake)?;
        self.native_close.add(&other.native_close)
    }
}

/// Runs `cycles` cycles over `actors`, in turn.
async fn cycle(shared: Arc<Shared>, actors: Vec<usize>, cycles: u64) -> Result<Latencies> {
    let mut lat = Latencies::new()?;
    for c in 0..cycles {
        let i = actors[(c % actors.len() as u64) as usize];
        let id = name(i);
        let row = (c / actors.len() as u64) % ROWS + 1;

        let start = Instant::now();
        let mut actor = shared.host.wake(&id).await.with_context(|| format!("waking {id}"))?;
        let woke = start.elapsed();
        let _: i64 = actor
            .query_row(SELECT, params![row as i64])
            .await
            .with_context(|| format!("{id}: first SELECT"))?
            .get(0)?;
        let wake = start.elapsed();
        lat.wake.record(wake)?;
        lat.wake_call.record(woke)?;
        lat.first_select.record(wake - woke)?;

        let start = Instant::now();
        actor.execute(UPDATE, params![row as i64, c as i64]).await.with_context(|| format!("{id}: UPDATE"))?;
        lat.write.record(start.elapsed())?;

        shared.finished_cycle();

        let start = Instant::now();
        actor.sleep().await.with_context(|| format!("sleeping {id}"))?;
        lat.sleep.record(start.elapsed())?;

        if let Some(databases) = shared.native_databases {
            native_wake(&native_uri(i % databases), row, &mut lat).context("the native reference")?;
        }
    }
    Ok(lat)
}

/// Native reference databases: at most this many, shared by the actors in
/// turn (they all hold the same schema and rows).
const NATIVE_DATABASES: usize = 64;

fn native_uri(k: usize) -> String {
    format!("file:/wasqlite-churn-{k}?vfs=memdb")
}

/// Creates the native reference databases, as the migration creates the
/// actors': the same pragmas that matter and the same SQL. memdb frees a
/// shared database with its last connection, so the returned connections
/// keep them.
fn native_setup(databases: usize, tables: u16) -> Result<Vec<rusqlite::Connection>> {
    (0..databases)
        .map(|k| {
            let conn = rusqlite::Connection::open(native_uri(k))?;
            conn.execute_batch(&format!(
                "PRAGMA page_size = 4096; PRAGMA journal_mode = MEMORY; BEGIN; {} PRAGMA user_version = 1; COMMIT;",
                schema(tables)
            ))?;
            Ok(conn)
        })
        .collect::<Result<_, rusqlite::Error>>()
        .context("creating the native reference databases")
}

/// One native wake: open, the migration check, the first SELECT; then close.
fn native_wake(uri: &str, row: u64, lat: &mut Latencies) -> Result<()> {
    let start = Instant::now();
    let conn = rusqlite::Connection::open(uri)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let _: i64 = conn.query_row(SELECT, [row as i64], |r| r.get(0))?;
    let woke = start.elapsed();
    conn.close().map_err(|(_, e)| e)?;
    lat.native_wake.record(woke)?;
    lat.native_close.record(start.elapsed() - woke)?;
    if version != 1 {
        bail!("{uri}: user_version {version}, expected 1");
    }
    Ok(())
}

/// Sum of the counters of every actor; wakes each once.
async fn counter_total(host: &Host, actors: usize, phase: &'static str) -> Result<i64> {
    let bar = progress(actors as u64, phase);
    let mut total = 0i64;
    for i in 0..actors {
        let mut actor = host.wake(&name(i)).await.with_context(|| format!("waking {}", name(i)))?;
        total += actor.query_row(SUM, ()).await?.get::<i64>(0)?;
        actor.sleep().await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(total)
}

/// `a` over `b` at quantile `q`.
fn ratio(a: &Latency, b: &Latency, q: f64) -> f64 {
    a.quantile(q) as f64 / b.quantile(q).max(1) as f64
}

/// Least-squares slope of RSS against cycles over `samples`, in bytes per
/// cycle; 0 with fewer than two distinct cycles.
fn slope(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mx = samples.iter().map(|s| s.cycle as f64).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.rss.total as f64).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.cycle as f64 - mx).powi(2)).sum();
    let sxy: f64 = samples.iter().map(|s| (s.cycle as f64 - mx) * (s.rss.total as f64 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

pub(crate) async fn run(args: ChurnArgs) -> Result<ExitCode> {
    if args.actors == 0 || args.cycles == 0 || args.concurrency == 0 {
        bail!("--actors, --cycles and --concurrency must be at least 1");
    }
    if args.concurrency > args.actors {
        bail!("--concurrency {} needs at least as many actors (--actors {})", args.concurrency, args.actors);
    }
    if !(0.0..100.0).contains(&args.warmup_percent) {
        bail!("--warmup-percent must be in [0, 100)");
    }
    let held = args.awake.min(args.actors);
    let slots = args.pool_slots.unwrap_or((held.max(args.concurrency) + args.concurrency + 8) as u32);
    let defaults = EngineConfig::default();
    let engine = EngineConfig {
        pooling: (!args.on_demand).then_some(slots),
        keep_resident: args.keep_resident.unwrap_or(defaults.keep_resident),
        memory_init_cow: !args.no_cow,
        ..defaults
    };
    let keep_resident = engine.keep_resident;
    let config = HostConfig { engine, migrations: Migrations::new([schema(args.tables)]), ..Default::default() };

    let process_start_rss = Rss::now();
    let kv = wasqlite::kv::open_store(&args.store)?;
    let started = Instant::now();
    let host = Host::with_config(kv, config).context("starting the WebAssembly host")?;
    let host_build = started.elapsed();
    let allocation = match args.on_demand {
        false => format!("pooling allocator ({slots} slots, {} KiB kept resident)", keep_resident >> 10),
        true => "on-demand allocation".to_owned(),
    };
    if !args.json {
        println!(
            "churn: {} actors in {}, {} cycles, concurrency {}, {allocation}, copy-on-write images {}",
            args.actors,
            args.store,
            args.cycles,
            args.concurrency,
            if args.no_cow { "off" } else { "on" }
        );
    }

    // Setup: every actor's database exists (the migration made it) and its
    // counter is known.
    let started = Instant::now();
    let before = counter_total(&host, args.actors, "setup").await?;
    let setup = started.elapsed();

    let native_databases = (!args.no_native).then(|| args.actors.min(NATIVE_DATABASES));
    let memstatus_off = native_memstatus_off();
    let _native_keepers = native_setup(native_databases.unwrap_or(0), args.tables)?;

    // The run.
    let baseline = Rss::now();
    let warmup = ((args.cycles as f64 * args.warmup_percent / 100.0).ceil() as u64).clamp(1, args.cycles);
    let shared = Arc::new(Shared {
        host: host.clone(),
        done: AtomicU64::new(0),
        samples: Mutex::new(Vec::with_capacity(SAMPLES as usize + 2)),
        sample_every: (args.cycles / SAMPLES).max(1),
        warmup,
        total: args.cycles,
        bar: progress(args.cycles, "churn"),
        native_databases,
    });
    let c = args.concurrency as u64;
    let mut tasks = JoinSet::new();
    let load_before = load_average();
    let cpu_before = cpu_time();
    let started = Instant::now();
    for t in 0..args.concurrency {
        let actors: Vec<usize> = (t..args.actors).step_by(args.concurrency).collect();
        let cycles = args.cycles / c + u64::from((t as u64) < args.cycles % c);
        tasks.spawn(cycle(shared.clone(), actors, cycles));
    }
    let mut lat = Latencies::new()?;
    while let Some(done) = tasks.join_next().await {
        lat.add(&done.context("a churn task panicked")??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cores_used = (cpu_time() - cpu_before).as_secs_f64() / elapsed;
    let load_after = load_average();
    shared.bar.finish_and_clear();
    let final_rss = Rss::now();
    let asleep_instances = host.live_instances();
    let asleep_memory = host.live_memory_bytes();

    let mut samples = std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|p| p.into_inner()));
    samples.sort_by_key(|s| s.cycle);
    let at = |cycle: u64| samples.iter().find(|s| s.cycle >= cycle).copied();
    let (Some(warm), Some(end)) = (at(warmup), samples.last().copied()) else {
        bail!("no RSS samples were taken");
    };
    let peak = samples.iter().map(|s| s.rss.total).max().unwrap_or(0).max(final_rss.total);
    let peak_instances = samples.iter().map(|s| s.live_instances).max().unwrap_or(0);
    let peak_memory = samples.iter().map(|s| s.live_memory).max().unwrap_or(0);
    let drift = end.rss.total as i64 - warm.rss.total as i64;
    let after_warmup: Vec<Sample> = samples.iter().copied().filter(|s| s.cycle >= warmup).collect();
    let slope_mib_per_million = mib(slope(&after_warmup) * 1e6);

    // RSS per awake actor: K held awake at once, against all asleep.
    let asleep = Rss::now();
    let bar = progress(held as u64, "hold");
    let mut awake = Vec::with_capacity(held);
    for i in 0..held {
        let mut actor = host.wake(&name(i)).await.with_context(|| format!("waking {}", name(i)))?;
        let _: i64 = actor.query_row(SELECT, params![1]).await?.get(0)?;
        awake.push(actor);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let held_rss = Rss::now();
    let held_instances = host.live_instances();
    let held_memory = host.live_memory_bytes();
    for actor in awake {
        actor.sleep().await?;
    }
    let released = Rss::now();
    let per_actor = |a: u64, b: u64| if held == 0 { 0.0 } else { (a as f64 - b as f64) / held as f64 };
    let rss_per_awake = per_actor(held_rss.total, asleep.total);
    let anon_per_awake = per_actor(held_rss.anon, asleep.anon);
    let linear_per_awake = if held == 0 { 0.0 } else { held_memory as f64 / held as f64 };
    let sleeping_linear_memory = host.live_memory_bytes();

    // Every write must have landed.
    let after = counter_total(&host, args.actors, "verify").await?;
    if (after - before) as u64 != args.cycles {
        bail!("the counters grew by {}, expected {} (one per cycle)", after - before, args.cycles);
    }

    if let Some(path) = &args.plot {
        let title = format!(
            "wasqlite churn: {} actors, {} cycles, concurrency {}, {allocation}",
            args.actors, args.cycles, args.concurrency
        );
        plot::churn(path, &title, &samples, warmup)?;
    }

    let cycles_per_s = args.cycles as f64 / elapsed;
    if args.json {
        let out = json!({
            "store": args.store,
            "actors": args.actors,
            "tables": args.tables,
            "cycles": args.cycles,
            "concurrency": args.concurrency,
            "pooling": !args.on_demand,
            "pool_slots": (!args.on_demand).then_some(slots),
            "keep_resident_bytes": (!args.on_demand).then_some(keep_resident),
            "memory_init_cow": !args.no_cow,
            "code_from_cache": host.code_from_cache(),
            "host_build_ms": round(host_build.as_secs_f64() * 1e3, 2),
            "setup_s": round(setup.as_secs_f64(), 3),
            "elapsed_s": round(elapsed, 3),
            "cycles_per_s": round(cycles_per_s, 1),
            "cores_used": round(cores_used, 2),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "wake_us": lat.wake.json(),
            "wake_call_us": lat.wake_call.json(),
            "first_select_us": lat.first_select.json(),
            "write_us": lat.write.json(),
            "sleep_us": lat.sleep.json(),
            "native": native_databases.map(|databases| json!({
                "databases": databases,
                "medium": "SQLite's memdb VFS, a shared named database",
                "memstatus": if memstatus_off { "off" } else { "on" },
                "wake_us": lat.native_wake.json(),
                "close_us": lat.native_close.json(),
                "wake_p50_ratio": round(ratio(&lat.wake, &lat.native_wake, 0.5), 3),
                "wake_p99_ratio": round(ratio(&lat.wake, &lat.native_wake, 0.99), 3),
            })),
            "rss": {
                "process_start_bytes": process_start_rss.total,
                "baseline_bytes": baseline.total,
                "peak_bytes": peak,
                "high_water_mark_bytes": Rss::high_water_mark(),
                "final_bytes": final_rss.total,
                "warmup_cycles": warmup,
                "warmup_end_bytes": warm.rss.total,
                "end_bytes": end.rss.total,
                "drift_bytes": drift,
                "drift_mib": round(mib(drift as f64), 3),
                "slope_mib_per_million_cycles": round(slope_mib_per_million, 3),
                "samples": samples.len(),
            },
            "linear_memory": {
                "peak_live_bytes": peak_memory,
                "peak_live_instances": peak_instances,
                "all_asleep_bytes": asleep_memory,
                "all_asleep_instances": asleep_instances,
            },
            "awake": {
                "held": held,
                "live_instances": held_instances,
                "rss_all_asleep_bytes": asleep.total,
                "rss_held_bytes": held_rss.total,
                "rss_after_sleep_bytes": released.total,
                "rss_per_actor_bytes": rss_per_awake.round(),
                "anon_per_actor_bytes": anon_per_awake.round(),
                "linear_memory_per_actor_bytes": linear_per_awake.round(),
            },
            "sleeping_actor_linear_memory_bytes": sleeping_linear_memory,
            "plot": args.plot.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    let m = |b: u64| format!("{:.1} MiB", mib(b as f64));
    println!(
        "  setup:   {} actors ({} tables of {ROWS} rows each) woken, checked and slept in {:.2} s; host built in {:.0} ms (code {})",
        args.actors,
        args.tables,
        setup.as_secs_f64(),
        host_build.as_secs_f64() * 1e3,
        if host.code_from_cache() { "from the disk cache" } else { "compiled" }
    );
    println!(
        "  cycles:  {} in {elapsed:.2} s = {cycles_per_s:.0} cycles/s ({cores_used:.2} cores used; load average {load_before:.2} before, {load_after:.2} after)",
        args.cycles
    );
    println!("  wake + first SELECT: {}", lat.wake.summary());
    println!("    of which wake():   {}", lat.wake_call.summary());
    println!("    first SELECT:      {}", lat.first_select.summary());
    println!("  write (UPDATE):      {}", lat.write.summary());
    println!("  sleep:               {}", lat.sleep.summary());
    if native_databases.is_some() {
        println!("  native open + first SELECT: {}", lat.native_wake.summary());
        println!("    native close:             {}", lat.native_close.summary());
        println!(
            "  wake / native: {:.2}x at p50, {:.2}x at p99",
            ratio(&lat.wake, &lat.native_wake, 0.5),
            ratio(&lat.wake, &lat.native_wake, 0.99)
        );
    }
    println!(
        "  RSS: baseline {}, peak {}, final {}; from the end of warm-up (cycle {warmup}) {} to the end {}: drift {:+.3} MiB (trend {slope_mib_per_million:+.3} MiB per million cycles)",
        m(baseline.total),
        m(peak),
        m(final_rss.total),
        m(warm.rss.total),
        m(end.rss.total),
        mib(drift as f64),
    );
    println!(
        "  wasm linear memory: peak {} in {peak_instances} live instances; all asleep: {asleep_instances} instances, {asleep_memory} bytes",
        m(peak_memory as u64)
    );
    if held == 0 {
        println!("  RSS per awake actor: not measured (--awake 0)");
    } else {
        println!(
            "  {held} actors awake at once: RSS {} -> {} = {:.0} KiB per awake actor ({:.0} KiB private), linear memory {:.0} KiB each; after they sleep: {}, {sleeping_linear_memory} bytes of linear memory",
            m(asleep.total),
            m(held_rss.total),
            rss_per_awake / 1024.0,
            anon_per_awake / 1024.0,
            linear_per_awake / 1024.0,
            m(released.total),
        );
    }
    if let Some(path) = &args.plot {
        println!("  plot: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

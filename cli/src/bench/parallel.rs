//! `wasqlite bench parallel`: how throughput scales with cores when many
//! actors work at once (256 by default), on a tokio runtime with 1 worker
//! thread against one with 2, in the same run.
//!
//! Two kinds of work, each actor its own task, yielding after every
//! operation so that all of them take turns:
//!
//! - `sql`: every actor is awake and alternates a point SELECT and an
//!   autocommit UPDATE of a random row of its 100-row table; operations/s.
//! - `churn`: every actor cycles wake (with the migration check), point
//!   SELECT, autocommit UPDATE, sleep; cycles/s.
//!
//! Stores are `MemoryKv`, so the work is CPU (the guest's SQL, host calls,
//! instance setup and teardown). Each measurement runs on a fresh runtime
//! with that many worker threads; the rounds alternate thread counts, and
//! the scaling figure is the median over rounds of (most threads) /
//! (fewest threads) from the same round. Each measurement also reports the
//! cores the process actually got (its CPU time over the wall time): on a
//! shared machine, 2 worker threads may get much less than 2 cores. The
//! work per CPU-second then tells whether the second thread costs
//! efficiency (locks, TLB shootdowns, cache traffic) apart from how many
//! cores the machine could spare.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};
use tokio::task::JoinSet;
use wasqlite::{Actor, DEFAULT_POOL_SLOTS, EngineConfig, Host, HostConfig, MemoryKv, Migrations, params};

use super::measure::{cpu_time, load_average, median, round};

#[derive(Args, Debug)]
pub(crate) struct ParallelArgs {
    /// Actors working at once.
    #[arg(long, default_value_t = 256)]
    actors: usize,
    /// Worker thread counts to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Kinds of work, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sql,churn")]
    work: Vec<Work>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds; figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Allocate instances on demand instead of from wasmtime's pooling
    /// allocator (the default).
    #[arg(long)]
    on_demand: bool,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Work {
    Sql,
    Churn,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Sql => "sql",
            Work::Churn => "churn",
        }
    }
}

const ROWS: i64 = 100;
const SELECT: &str = "SELECT a, b FROM t WHERE id = ?1";
const UPDATE: &str = "UPDATE t SET a = a + 1 WHERE id = ?1";

fn schema() -> String {
    format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b TEXT NOT NULL); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
         INSERT INTO t SELECT i, i * 7, 'row ' || i FROM n;"
    )
}

fn name(i: usize) -> String {
    format!("parallel-{i:04}")
}

/// One SQL operation: a point SELECT on even `k`, an UPDATE on odd.
async fn sql_op(actor: &mut Actor, rng: &mut SmallRng, k: u64) -> Result<()> {
    let id = rng.random_range(1..=ROWS);
    if k.is_multiple_of(2) {
        actor.query_row(SELECT, params![id]).await?;
    } else {
        actor.execute(UPDATE, params![id]).await?;
    }
    Ok(())
}

/// Runs `work` on a fresh runtime with `threads` worker threads, on a
/// thread of its own (a runtime cannot be started from inside another).
async fn on_runtime<F, Fut, T>(threads: usize, work: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .context("starting a measurement runtime")?;
            runtime.block_on(work())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("a measurement thread panicked"))?
    })
    .await
    .context("a measurement task panicked")?
}

/// One measurement: work per second of wall time, and the cores the
/// process got meanwhile (CPU time over wall time).
#[derive(Clone, Copy, Debug)]
struct Rate {
    per_s: f64,
    cores: f64,
}

impl Rate {
    fn new(work: u64, cpu_before: Duration, start: Instant) -> Rate {
        let wall = start.elapsed().as_secs_f64();
        Rate { per_s: work as f64 / wall, cores: (cpu_time().saturating_sub(cpu_before)).as_secs_f64() / wall }
    }

    /// Work per CPU-second: what one core does, however many it got.
    fn per_cpu_s(&self) -> f64 {
        self.per_s / self.cores
    }
}

/// Every awake actor does SQL until the deadline; the actors come back.
async fn measure_sql(actors: Vec<Actor>, threads: usize, seconds: f64) -> Result<(Vec<Actor>, Rate)> {
    on_runtime(threads, move || async move {
        let (cpu, start) = (cpu_time(), Instant::now());
        let deadline = start + Duration::from_secs_f64(seconds);
        let mut tasks = JoinSet::new();
        for (i, mut actor) in actors.into_iter().enumerate() {
            tasks.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(i as u64);
                let mut k = 0u64;
                while Instant::now() < deadline {
                    sql_op(&mut actor, &mut rng, k).await?;
                    k += 1;
                    tokio::task::yield_now().await;
                }
                anyhow::Ok((actor, k))
            });
        }
        let mut back = Vec::new();
        let mut ops = 0u64;
        while let Some(done) = tasks.join_next().await {
            let (actor, k) = done.context("an actor task panicked")??;
            back.push(actor);
            ops += k;
        }
        Ok((back, Rate::new(ops, cpu, start)))
    })
    .await
}

/// Every actor cycles wake, SELECT, UPDATE, sleep until the deadline.
async fn measure_churn(host: Host, actors: usize, threads: usize, seconds: f64) -> Result<Rate> {
    on_runtime(threads, move || async move {
        let (cpu, start) = (cpu_time(), Instant::now());
        let deadline = start + Duration::from_secs_f64(seconds);
        let mut tasks = JoinSet::new();
        for i in 0..actors {
            let host = host.clone();
            tasks.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(i as u64);
                let id = name(i);
                let mut cycles = 0u64;
                while Instant::now() < deadline {
                    let mut actor = host.wake(&id).await.with_context(|| format!("waking {id}"))?;
                    sql_op(&mut actor, &mut rng, 0).await?;
                    sql_op(&mut actor, &mut rng, 1).await?;
                    actor.sleep().await?;
                    cycles += 1;
                    tokio::task::yield_now().await;
                }
                anyhow::Ok(cycles)
            });
        }
        let mut cycles = 0u64;
        while let Some(done) = tasks.join_next().await {
            cycles += done.context("an actor task panicked")??;
        }
        Ok(Rate::new(cycles, cpu, start))
    })
    .await
}

pub(crate) async fn run(args: ParallelArgs) -> Result<ExitCode> {
    if args.actors == 0 || args.rounds == 0 || args.threads.is_empty() || args.threads.contains(&0) {
        bail!("--actors, --rounds and every --threads count must be at least 1");
    }
    let engine = EngineConfig {
        pooling: (!args.on_demand).then_some(DEFAULT_POOL_SLOTS.max(args.actors as u32 + 16)),
        ..EngineConfig::default()
    };
    let config = HostConfig { engine, migrations: Migrations::new([schema()]), ..HostConfig::default() };
    let load_before = load_average();
    let host = Host::with_config(Arc::new(MemoryKv::new()), config).context("starting the WebAssembly host")?;
    // Every actor's database exists before anything is measured.
    for i in 0..args.actors {
        host.wake(&name(i)).await?.sleep().await?;
    }

    let (fewest, most) = (0, args.threads.len() - 1);
    let mut results = Vec::new();
    let mut table = Vec::new();
    for &work in &args.work {
        // rates[t][round]
        let mut rates: Vec<Vec<Rate>> = vec![Vec::new(); args.threads.len()];
        for round in 1..=args.rounds {
            // Alternate the order so that neither count always goes first.
            let order: Vec<usize> = match round % 2 {
                1 => (0..args.threads.len()).collect(),
                _ => (0..args.threads.len()).rev().collect(),
            };
            for t in order {
                let threads = args.threads[t];
                let rate = match work {
                    Work::Sql => {
                        let mut awake = Vec::with_capacity(args.actors);
                        for i in 0..args.actors {
                            awake.push(host.wake(&name(i)).await?);
                        }
                        let (awake, rate) = measure_sql(awake, threads, args.seconds).await?;
                        for actor in awake {
                            actor.sleep().await?;
                        }
                        rate
                    }
                    Work::Churn => measure_churn(host.clone(), args.actors, threads, args.seconds).await?,
                };
                if !args.json {
                    eprintln!(
                        "round {round}/{}: {:<5} {threads} thread(s): {:>9.0} {}/s, {:.2} cores used, {:>9.0} per CPU-second, load average {:.2}",
                        args.rounds,
                        work.name(),
                        rate.per_s,
                        if work == Work::Sql { "ops" } else { "cycles" },
                        rate.cores,
                        rate.per_cpu_s(),
                        load_average(),
                    );
                }
                rates[t].push(rate);
            }
        }
        let per_round =
            |f: fn(&Rate) -> f64| median((0..args.rounds).map(|r| f(&rates[most][r]) / f(&rates[fewest][r])).collect());
        let scaling = per_round(|r| r.per_s);
        let efficiency = per_round(Rate::per_cpu_s);
        let of = |t: usize, f: fn(&Rate) -> f64| median(rates[t].iter().map(f).collect());
        let threads_json: Vec<Json> = args
            .threads
            .iter()
            .enumerate()
            .map(|(t, &n)| {
                json!({
                    "threads": n,
                    "median": round(of(t, |r| r.per_s), 1),
                    "rounds": rates[t].iter().map(|r| round(r.per_s, 1)).collect::<Vec<_>>(),
                    "cores_used": round(of(t, |r| r.cores), 2),
                    "per_cpu_second": round(of(t, Rate::per_cpu_s), 1),
                })
            })
            .collect();
        results.push(json!({
            "work": work.name(),
            "unit": if work == Work::Sql { "ops_per_s" } else { "cycles_per_s" },
            "threads": threads_json,
            "scaling": round(scaling, 3),
            "per_core_efficiency": round(efficiency, 3),
        }));
        let medians: Vec<(f64, f64, f64)> =
            (0..args.threads.len()).map(|t| (of(t, |r| r.per_s), of(t, |r| r.cores), of(t, Rate::per_cpu_s))).collect();
        table.push((work, medians, scaling, efficiency));
    }

    if args.json {
        let out = json!({
            "actors": args.actors,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "pooling": !args.on_demand,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "work": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (hi, lo) = (args.threads[most], args.threads[fewest]);
    let mut header = "| work | unit |".to_owned();
    let mut rule = "|---|---|".to_owned();
    for n in &args.threads {
        header += &format!(" {n} thread(s): per s (cores used; per CPU-second) |");
        rule += "---:|";
    }
    println!("{header} {hi} / {lo} threads | per-CPU-second, {hi} / {lo} |\n{rule}---:|---:|");
    for (work, medians, scaling, efficiency) in table {
        let unit = if work == Work::Sql { "ops" } else { "cycles" };
        let cells: Vec<String> = medians.iter().map(|(p, c, e)| format!("{p:.0} ({c:.2}; {e:.0})")).collect();
        println!("| {} | {unit} | {} | {scaling:.2}x | {efficiency:.2}x |", work.name(), cells.join(" | "));
    }
    println!(
        "\n{} actors, {}, {} s per measurement, medians of {} rounds; ratios are medians of per-round ratios. \
         Cores used: CPU time over wall time. Load average {load_before:.2} before, {:.2} after.",
        args.actors,
        if args.on_demand { "on-demand allocation" } else { "pooling allocator" },
        args.seconds,
        args.rounds,
        load_average()
    );
    Ok(ExitCode::SUCCESS)
}

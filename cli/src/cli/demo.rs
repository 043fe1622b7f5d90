//! `wasqlite demo`: the product in one command. Through the actor manager
//! (which wakes actors on demand and keeps at most `--budget` awake), it
//! gives N actors a schema through `Migrations` and some writes; holds a
//! sample of them awake in sessions to measure memory; then calls every
//! actor again from the store and checks every row, and prints a summary:
//! wake latency, RSS per awake actor, RSS once all sleep, and KV keys.
//!
//! Actors are named `demo-000000`, `demo-000001`, ...; a run first deletes
//! the `demo-*` actors an earlier run left in the store.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wasqlite::{Host, HostConfig, Manager, ManagerConfig, Migrations, Session, Value, params};

use super::{StoreArg, ToolClaim};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// How many actors.
    #[arg(long, default_value_t = 1000)]
    actors: usize,
    /// How many actors are called at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How many actors the manager keeps awake at most.
    #[arg(long, default_value_t = 64)]
    budget: usize,
    /// How many actors to hold awake at once to measure memory per actor.
    #[arg(long, default_value_t = 100)]
    hold: usize,
    /// Notes each actor writes.
    #[arg(long, default_value_t = 20)]
    rows: usize,
    #[command(flatten)]
    store: StoreArg,
}

const PREFIX: &str = "demo-";

/// Autocommit counter updates each actor makes after its notes.
const HITS: i64 = 3;

fn migrations() -> Migrations {
    Migrations::new([
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, author TEXT NOT NULL, body TEXT NOT NULL, n INTEGER NOT NULL)",
        "CREATE TABLE counter(id INTEGER PRIMARY KEY CHECK (id = 1), hits INTEGER NOT NULL); \
         INSERT INTO counter VALUES (1, 0)",
    ])
}

fn name(i: usize) -> String {
    format!("{PREFIX}{i:06}")
}

/// The note `j` of actor `i`: (body, n).
fn note(i: usize, j: usize) -> (String, i64) {
    (format!("note {j} of {}", name(i)), (i * 1000 + j) as i64)
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn rss_text(rss: Option<u64>) -> String {
    rss.map_or_else(|| "n/a".to_owned(), |r| mib(r as f64))
}

fn bar(len: usize, phase: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(phase);
    bar
}

/// Runs `work` for every actor index, `concurrency` at a time, and returns
/// the durations each reported, in no particular order.
async fn for_each_actor<F, Fut>(count: usize, concurrency: usize, phase: &'static str, work: F) -> Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Duration>> + Send + 'static,
{
    let bar = bar(count, phase);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let permits = permits.clone();
        let job = work(i);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            job.await.with_context(|| format!("actor {}", name(i)))
        });
    }
    let mut times = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        times.push(done.context("a demo task panicked")??);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(times)
}

fn histogram(times: &[Duration]) -> Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new(3).context("creating a histogram")?;
    for t in times {
        h.record(t.as_micros().max(1) as u64).context("recording a latency")?;
    }
    Ok(h)
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// Writes actor `i`'s notes in one transaction and bumps its counter in
/// autocommit statements, through the manager, which wakes it (migrating a
/// new one). Returns how long the call waited for its actor to be awake.
async fn write_actor(actors: Manager, i: usize, rows: usize) -> Result<Duration> {
    let start = Instant::now();
    let woke = actors
        .with(&name(i), async move |actor| {
            let woke = start.elapsed();
            let mut tx = actor.transaction().await?;
            for j in 0..rows {
                let (body, n) = note(i, j);
                tx.execute(
                    "INSERT INTO notes(id, author, body, n) VALUES (?1, ?2, ?3, ?4)",
                    params![j as i64, name(i), body, n],
                )
                .await?;
            }
            tx.commit().await?;
            for _ in 0..HITS {
                actor.execute("UPDATE counter SET hits = hits + 1", ()).await?;
            }
            Ok::<_, anyhow::Error>(woke)
        })
        .await?;
    Ok(woke)
}

/// Checks every row actor `i` wrote, through the manager.
async fn verify_actor(actors: Manager, i: usize, rows: usize) -> Result<Duration> {
    let start = Instant::now();
    actors
        .with(&name(i), async move |actor| {
            let woke = start.elapsed();
            let found = actor.query("SELECT id, author, body, n FROM notes ORDER BY id", ()).await?;
            if found.len() != rows {
                bail!("has {} notes, expected {rows}", found.len());
            }
            for (j, row) in found.iter().enumerate() {
                let (body, n) = note(i, j);
                let expected = [Value::Integer(j as i64), Value::Text(name(i)), Value::Text(body), Value::Integer(n)];
                if row.values() != expected {
                    bail!("note {j} is {:?}, expected {expected:?}", row.values());
                }
            }
            let hits: i64 = actor.query_row("SELECT hits FROM counter", ()).await?.get(0)?;
            if hits != HITS {
                bail!("counter is {hits}, expected {HITS}");
            }
            let check: String = actor.query_row("PRAGMA integrity_check", ()).await?.get(0)?;
            if check != "ok" {
                bail!("integrity_check says {check}");
            }
            Ok(woke)
        })
        .await
}

/// A manager of `host`'s actors with `budget` awake at most.
fn manager(host: &Host, budget: usize) -> Result<Manager> {
    Ok(Manager::new(host.clone(), ManagerConfig { max_awake: budget.max(1), ..ManagerConfig::default() })?)
}

pub(crate) async fn run(args: DemoArgs) -> Result<ExitCode> {
    let kv = args.store.open()?;
    let host = Host::with_config(kv.clone(), HostConfig { migrations: migrations(), ..HostConfig::default() })
        .context("starting the WebAssembly host")?;
    let (n, rows) = (args.actors, args.rows);
    println!("demo: {n} actors in {} ({} at a time, {rows} notes each)", args.store.store, args.concurrency);

    // Deleted concurrently, so that a store with group commit shares fsyncs.
    let old: Vec<_> = kv.list_actors().await?.into_iter().filter(|id| id.as_str().starts_with(PREFIX)).collect();
    let removed = old.len();
    let mut deletes = JoinSet::new();
    for id in old {
        let kv = kv.clone();
        deletes.spawn(async move {
            let claim = ToolClaim::take(&kv, &id, args.store.take_over).await?;
            let deleted = kv.delete_actor(&id, claim.fence).await;
            claim.release().await;
            deleted.with_context(|| format!("deleting actor {id} of an earlier run"))
        });
    }
    while let Some(done) = deletes.join_next().await {
        done.context("a delete task panicked")??;
    }
    if removed > 0 {
        println!("  removed {removed} actors of an earlier demo run");
    }

    let start = Instant::now();
    let actors = manager(&host, args.budget)?;
    let first_wakes = for_each_actor(n, args.concurrency, "write", |i| write_actor(actors.clone(), i, rows)).await?;
    actors.shutdown().await?;
    let write_time = start.elapsed();
    let written = actors.stats();
    let first = histogram(&first_wakes)?;

    // Memory: a sample held awake at once in sessions, against the
    // all-asleep baseline.
    let held_count = args.hold.min(n);
    let baseline = rss_bytes();
    let holder = manager(&host, held_count)?;
    let mut held: Vec<Session> = Vec::with_capacity(held_count);
    let bar = bar(held_count, "hold");
    for i in 0..held_count {
        let mut session = holder.session(&name(i), Duration::from_secs(600)).await.with_context(|| format!("waking actor {}", name(i)))?;
        session.with(async |actor| actor.query("SELECT count(*) FROM notes", ()).await).await?;
        held.push(session);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let with_held = rss_bytes();
    let linear_memory = host.live_memory_bytes();
    drop(held);
    holder.shutdown().await?;

    let start = Instant::now();
    let actors = manager(&host, args.budget)?;
    let wakes = for_each_actor(n, args.concurrency, "verify", |i| verify_actor(actors.clone(), i, rows)).await?;
    actors.shutdown().await?;
    let verify_time = start.elapsed();
    let wake = histogram(&wakes)?;
    let after_sleep = rss_bytes();

    let mut keys = 0usize;
    for i in 0..n {
        let id = super::actor_id(&name(i))?;
        keys += kv.list_prefix(&id, b"").await?.len();
    }

    println!(
        "  write:   {:>8.2} s  wake (new actor, migrations) p50 {}, p99 {}; {rows} notes in one transaction, then {HITS} autocommit updates",
        write_time.as_secs_f64(),
        ms(first.value_at_quantile(0.5)),
        ms(first.value_at_quantile(0.99))
    );
    println!(
        "  manager: at most {} awake (budget {}), {} sleeps to make room",
        written.peak_awake, args.budget, written.budget_sleeps
    );
    println!("  verify:  {:>8.2} s  every note of every actor checked, integrity_check ok", verify_time.as_secs_f64());
    println!(
        "  wake (from the store) p50 {}, p99 {}, max {}",
        ms(wake.value_at_quantile(0.5)),
        ms(wake.value_at_quantile(0.99)),
        ms(wake.max())
    );
    match (baseline, with_held) {
        (Some(base), Some(held)) if held_count > 0 => println!(
            "  RSS per awake actor: {} ({held_count} held awake: {} -> {}; wasm linear memory {} each)",
            mib(held.saturating_sub(base) as f64 / held_count as f64),
            mib(base as f64),
            mib(held as f64),
            mib(linear_memory as f64 / held_count as f64),
        ),
        _ => println!("  RSS per awake actor: n/a"),
    }
    println!("  RSS with every actor asleep: {} (live instances: {})", rss_text(after_sleep), host.live_instances());
    println!("  KV keys: {keys} ({:.1} per actor)", keys as f64 / n.max(1) as f64);
    Ok(ExitCode::SUCCESS)
}

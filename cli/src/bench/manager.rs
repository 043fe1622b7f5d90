//! `wasqlite bench manager`: calls over many actors through the actor
//! manager, with a budget of awake actors far below their number.
//!
//! Setup gives `--actors` actors the same small one-table database: one is
//! built with SQL, the others get copies of its keys. Then `--concurrency`
//! tasks make `--calls` calls between them, each on an actor drawn from a
//! Zipf distribution over the actors (`--zipf` is its exponent; 0 draws
//! uniformly): 80% point SELECTs, 20% autocommit UPDATEs. Reported: calls/s,
//! p50/p99 call latency including waits and wakes, peak awake actors, peak
//! RSS, wakes and the sleeps the budget forced; the run fails if a call
//! fails or the budget was exceeded, and it checks at the end that every
//! acknowledged UPDATE is in the store.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Uniform, Zipf};
use serde_json::json;
use tokio::task::JoinSet;
use wasqlite::{ActorId, Fence, Host, Manager, ManagerConfig, params};

use super::measure::{Latency, Rss, mib, progress, round};
use crate::cli::StoreArg;

#[derive(Args, Debug)]
pub(crate) struct ManagerArgs {
    /// Actors, each with a small one-table database.
    #[arg(long, default_value_t = 100_000)]
    actors: u64,
    /// At most this many actors awake at once.
    #[arg(long, default_value_t = 1000)]
    budget: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Calls in all.
    #[arg(long, default_value_t = 200_000)]
    calls: u64,
    /// Exponent of the Zipf distribution actors are drawn from (0: uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Seconds without a call before an actor sleeps.
    #[arg(long, default_value_t = 10.0)]
    idle_timeout: f64,
    /// Seed of the draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArg,
}

const PREFIX: &str = "bench-manager-";

fn name(i: u64) -> String {
    format!("{PREFIX}{i:07}")
}

/// Builds actor 0 with SQL, then copies its keys to every other actor.
async fn setup(host: &Host, actors: u64) -> Result<()> {
    let template = name(0);
    let mut actor = host.wake(&template).await?;
    actor
        .execute_batch("DROP TABLE IF EXISTS t; CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, note TEXT); INSERT INTO t VALUES (1, 0, 'hello')")
        .await?;
    actor.sleep().await?;
    let kv = host.kv().clone();
    let entries = kv.list_prefix(&ActorId::new(&template)?, b"").await?;
    let bar = progress(actors, "setup");
    let mut copies = JoinSet::new();
    for i in 1..actors {
        let (kv, entries) = (kv.clone(), entries.clone());
        copies.spawn(async move {
            // Never claimed: the copies are new actors.
            kv.batch_put(&ActorId::new(&name(i))?, Fence::UNCLAIMED, &entries).await.with_context(|| format!("copying to {}", name(i)))
        });
        if copies.len() >= 256
            && let Some(done) = copies.join_next().await
        {
            done.context("a setup task panicked")??;
            bar.inc(1);
        }
    }
    while let Some(done) = copies.join_next().await {
        done.context("a setup task panicked")??;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

pub(crate) async fn run(args: ManagerArgs) -> Result<ExitCode> {
    if args.actors == 0 || args.concurrency == 0 {
        bail!("--actors and --concurrency must be at least 1");
    }
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout).context("--idle-timeout is not a number of seconds")?;
    let host = args.store.host()?;
    let started = Instant::now();
    setup(&host, args.actors).await?;
    let setup_time = started.elapsed();

    let config = ManagerConfig { max_awake: args.budget, idle_timeout, wait_for_room: Duration::from_secs(120), ..ManagerConfig::default() };
    let manager = Manager::new(host.clone(), config)?;
    let next = Arc::new(AtomicU64::new(0));
    let updates: Arc<Vec<AtomicU64>> = Arc::new((0..args.actors).map(|_| AtomicU64::new(0)).collect());
    let rss_before = Rss::high_water_mark();
    let bar = progress(args.calls, "calls");
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for w in 0..args.concurrency {
        let (manager, next, updates, bar) = (manager.clone(), next.clone(), updates.clone(), bar.clone());
        let (calls, actors, zipf, seed) = (args.calls, args.actors, args.zipf, args.seed);
        workers.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
            let zipf = Zipf::new(actors as f64, zipf.max(0.0)).context("the Zipf distribution")?;
            let uniform = Uniform::new(0u32, 100).context("a uniform distribution")?;
            let mut latency = Latency::new()?;
            let mut failures = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                // Zipf draws 1..=actors; rank 1 is the busiest actor.
                let i = (zipf.sample(&mut rng) as u64).clamp(1, actors) - 1;
                let write = uniform.sample(&mut rng) < 20;
                let call = Instant::now();
                let result = if write {
                    manager.with(&name(i), async |a| a.execute("UPDATE t SET n = n + 1 WHERE id = 1", ()).await.map(drop)).await
                } else {
                    manager.with(&name(i), async |a| a.query_row("SELECT n, note FROM t WHERE id = ?1", params![1]).await.map(drop)).await
                };
                latency.record(call.elapsed())?;
                match result {
                    Ok(()) if write => {
                        updates[i as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(()) => {}
                    Err(e) => failures.push(format!("{}: {e}", name(i))),
                }
                bar.inc(1);
            }
            anyhow::Ok((latency, failures))
        });
    }
    let mut latency = Latency::new()?;
    let mut failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (l, f) = done.context("a worker panicked")??;
        latency.add(&l)?;
        failures.extend(f);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let stats = manager.stats();
    let peak_rss = Rss::high_water_mark();
    let usage = manager.usage();

    // The checker: every acknowledged UPDATE is in the store.
    let touched: Vec<u64> = (0..args.actors).filter(|i| updates[*i as usize].load(Ordering::Relaxed) > 0).collect();
    let check = Instant::now();
    let mut lost = Vec::new();
    for i in &touched {
        let n: i64 = manager.with(&name(*i), async |a| a.query_row("SELECT n FROM t WHERE id = 1", ()).await?.get(0)).await?;
        let expected = updates[*i as usize].load(Ordering::Relaxed);
        if n as u64 != expected {
            lost.push(format!("{}: n = {n}, {expected} updates acknowledged", name(*i)));
        }
    }
    let check_time = check.elapsed();
    manager.shutdown().await?;

    let calls_per_s = args.calls as f64 / elapsed.as_secs_f64();
    if args.json {
        let report = json!({
            "store": args.store.store,
            "actors": args.actors,
            "budget": args.budget,
            "concurrency": args.concurrency,
            "calls": args.calls,
            "zipf": args.zipf,
            "setup_s": round(setup_time.as_secs_f64(), 2),
            "run_s": round(elapsed.as_secs_f64(), 2),
            "calls_per_s": round(calls_per_s, 0),
            "call_latency_us": latency.json(),
            "peak_awake": stats.peak_awake,
            "wakes": stats.wakes,
            "budget_sleeps": stats.budget_sleeps,
            "idle_sleeps": stats.idle_sleeps,
            "waits_for_room": stats.waits_for_room,
            "failed_calls": failures.len(),
            "peak_rss_mib": round(mib(peak_rss as f64), 1),
            "peak_rss_before_calls_mib": round(mib(rss_before as f64), 1),
            "actors_checked": touched.len(),
            "lost_updates": lost.len(),
            "guest_reported_rows_read": usage.reported.rows_read,
            "guest_reported_rows_written": usage.reported.rows_written,
            "kv_read_bytes": usage.kv_read_bytes,
            "kv_written_bytes": usage.kv_written_bytes,
        });
        println!("{report}");
    } else {
        println!(
            "bench manager: {} actors in {}, budget {}, {} calls {} at a time, Zipf exponent {}",
            args.actors, args.store.store, args.budget, args.calls, args.concurrency, args.zipf
        );
        println!("  setup          {:.2} s", setup_time.as_secs_f64());
        println!("  calls          {:.0}/s over {:.2} s; latency {}", calls_per_s, elapsed.as_secs_f64(), latency.summary());
        println!("  awake          peak {} (budget {}); {} wakes, {} sleeps forced by the budget, {} idle sleeps, {} wakes waited for room", stats.peak_awake, args.budget, stats.wakes, stats.budget_sleeps, stats.idle_sleeps, stats.waits_for_room);
        println!("  peak RSS       {:.1} MiB ({:.1} MiB after setup)", mib(peak_rss as f64), mib(rss_before as f64));
        println!("  failures       {} calls; {} lost updates over {} actors checked in {:.2} s", failures.len(), lost.len(), touched.len(), check_time.as_secs_f64());
    }
    if let Some(first) = failures.first() {
        bail!("{} calls failed, the first: {first}", failures.len());
    }
    if let Some(first) = lost.first() {
        bail!("{} actors lost acknowledged updates, the first: {first}", lost.len());
    }
    if stats.peak_awake > args.budget {
        bail!("{} actors were awake at once, over the budget of {}", stats.peak_awake, args.budget);
    }
    Ok(ExitCode::SUCCESS)
}

//! `wasqlite bench commit`: commits per second when N actors commit at
//! once, through the whole stack (SQL in the guest, the VFS, `RedbKv`), with
//! and without group commit.
//!
//! Each measurement gets a fresh redb store in a temporary directory and N
//! awake actors. After a barrier every actor runs small autocommit
//! statements back to back for the set time, alternating an UPDATE of one
//! row and an INSERT of a new one; each is one durable commit. Within a run
//! the two modes are measured back to back for each N, so their ratio
//! compares like with like on a noisy machine; `--runs` repeats everything
//! and the table shows medians.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use wasqlite::kv::{RedbKv, RedbOptions};
use wasqlite::{Host, params};

use super::measure::{Latency, median};

#[derive(Args, Debug)]
pub(crate) struct CommitArgs {
    /// Concurrently committing actors, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    actors: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Measure only without group commit.
    #[arg(long, conflicts_with = "group_only")]
    no_group_commit: bool,
    /// Measure only with group commit.
    #[arg(long)]
    group_only: bool,
    /// Repeat every measurement this many times; the table shows medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Where to put the temporary stores (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Sample {
    commits_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    /// KV writes that shared each redb commit (one fsync each).
    writes_per_fsync: f64,
}

async fn measure(actors: usize, group_commit: bool, seconds: f64, dir: Option<&PathBuf>) -> Result<Sample> {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")?;
    let options = RedbOptions { group_commit, ..RedbOptions::default() };
    let kv = Arc::new(RedbKv::open_with(tmp.path().join("kv.redb"), options)?);
    let host = Host::new(kv.clone()).context("starting the WebAssembly host")?;

    let mut awake = Vec::with_capacity(actors);
    for i in 0..actors {
        let mut actor = host.wake(&format!("bench-{i}")).await?;
        actor
            .execute_batch(
                "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO c VALUES (1, 0); \
                 CREATE TABLE log(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);",
            )
            .await?;
        awake.push(actor);
    }

    let before = kv.stats();
    let barrier = Arc::new(Barrier::new(actors + 1));
    let run_for = Duration::from_secs_f64(seconds);
    let mut tasks = JoinSet::new();
    for mut actor in awake {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let mut latencies = Latency::new()?;
            barrier.wait().await;
            let deadline = Instant::now() + run_for;
            let mut k = 0i64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if k % 2 == 0 {
                    actor.execute("UPDATE c SET n = n + 1 WHERE id = 1", ()).await?;
                } else {
                    actor.execute("INSERT INTO log(v) VALUES (?1)", params![k]).await?;
                }
                latencies.record(t.elapsed())?;
                k += 1;
            }
            actor.sleep().await?;
            anyhow::Ok((k as u64, latencies))
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut commits = 0u64;
    let mut latencies = Latency::new()?;
    while let Some(done) = tasks.join_next().await {
        let (n, h) = done.context("a benchmark task panicked")??;
        commits += n;
        latencies.add(&h)?;
    }
    // The last statement of each actor may end a little after the
    // deadline; the elapsed time covers it. Sleeping is not a commit, but
    // it is counted in the time; it writes nothing here.
    let elapsed = start.elapsed().as_secs_f64();
    let after = kv.stats();
    let fsyncs = after.commits - before.commits;
    let writes = after.writes - before.writes;
    drop(host);
    drop(kv);
    Ok(Sample {
        commits_per_s: commits as f64 / elapsed,
        p50_us: latencies.quantile(0.5),
        p99_us: latencies.quantile(0.99),
        writes_per_fsync: writes as f64 / fsyncs.max(1) as f64,
    })
}

pub(crate) async fn run(args: CommitArgs) -> Result<ExitCode> {
    let modes: Vec<bool> = match (args.no_group_commit, args.group_only) {
        (true, _) => vec![false],
        (_, true) => vec![true],
        _ => vec![false, true],
    };
    let runs = args.runs.max(1);
    // samples[actor index][mode index] = one sample per run
    let mut samples = vec![vec![Vec::<Sample>::new(); modes.len()]; args.actors.len()];
    for run in 1..=runs {
        for (a, &actors) in args.actors.iter().enumerate() {
            for (m, &group) in modes.iter().enumerate() {
                let s = measure(actors, group, args.seconds, args.dir.as_ref())
                    .await
                    .with_context(|| format!("measuring {actors} actors, group commit {group}"))?;
                eprintln!(
                    "run {run}/{runs}: {actors:>4} actors, group commit {:<3}: {:>8.0} commits/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} writes per fsync",
                    if group { "on" } else { "off" },
                    s.commits_per_s,
                    s.p50_us as f64 / 1000.0,
                    s.p99_us as f64 / 1000.0,
                    s.writes_per_fsync
                );
                samples[a][m].push(s);
            }
        }
    }

    println!(
        "| actors | group commit | commits/s | p50 latency | p99 latency | KV writes per fsync | on/off (same run) |"
    );
    println!("|---:|:---:|---:|---:|---:|---:|---:|");
    for (a, &actors) in args.actors.iter().enumerate() {
        let ratio = (modes.len() == 2).then(|| {
            median((0..runs).map(|r| samples[a][1][r].commits_per_s / samples[a][0][r].commits_per_s).collect())
        });
        for (m, &group) in modes.iter().enumerate() {
            let of = |f: fn(&Sample) -> f64| median(samples[a][m].iter().map(f).collect());
            let ratio_cell = match ratio {
                Some(r) if group => format!("{r:.2}x"),
                _ => String::new(),
            };
            println!(
                "| {actors} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} | {ratio_cell} |",
                if group { "on" } else { "off" },
                of(|s| s.commits_per_s),
                of(|s| s.p50_us as f64) / 1000.0,
                of(|s| s.p99_us as f64) / 1000.0,
                of(|s| s.writes_per_fsync),
            );
        }
    }
    if runs > 1 {
        println!("\nMedians of {runs} runs of {} s each; the ratio is the median of per-run ratios.", args.seconds);
    }
    Ok(ExitCode::SUCCESS)
}

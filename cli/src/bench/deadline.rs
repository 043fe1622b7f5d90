//! `wasqlite bench deadline`: how late past its deadline a runaway call
//! returns `Error::Timeout`, for a read that never ends and for a write that
//! never ends inside a transaction whose pages spilled to the KV (whose
//! rollback the overshoot includes).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use wasqlite::{Error, Host, HostConfig, Limits, MemoryKv, params};

use super::measure::Latency;

#[derive(Args, Debug)]
pub(crate) struct DeadlineArgs {
    /// Runs per case.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// The call timeout, in milliseconds.
    #[arg(long, default_value_t = 100)]
    timeout_ms: u64,
    /// MiB the spilled transaction writes before its runaway statement.
    #[arg(long, default_value_t = 32)]
    spill_mib: u64,
}

const ENDLESS_READ: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
const ENDLESS_WRITE: &str =
    "INSERT INTO t(v) SELECT 'x' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c)";

pub(crate) async fn run(args: DeadlineArgs) -> Result<ExitCode> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let limits = Limits { call_timeout: Some(timeout), ..Default::default() };
    let host = Host::with_config(Arc::new(MemoryKv::new()), HostConfig { limits, ..Default::default() })?;
    let mut actor = host.wake("deadline").await?;
    actor.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)").await?;
    let mut read = Latency::new()?;
    let mut write = Latency::new()?;
    for _ in 0..args.runs {
        let started = Instant::now();
        let result = actor.query(ENDLESS_READ, ()).await.map(drop);
        read.record(overshoot(result, started, timeout)?)?;
    }
    let rows = args.spill_mib * 1024 * 1024 / 4000;
    for _ in 0..args.runs {
        actor.set_call_timeout(None);
        actor.execute_batch("PRAGMA cache_size=100; BEGIN").await?;
        actor.execute_many("INSERT INTO t(v) VALUES (randomblob(?1))", (0..rows).map(|_| params![4000])).await?;
        actor.set_call_timeout(Some(timeout));
        let started = Instant::now();
        let result = actor.execute(ENDLESS_WRITE, ()).await.map(drop);
        write.record(overshoot(result, started, timeout)?)?;
        if !actor.is_autocommit().await? {
            bail!("the runaway write left its transaction open");
        }
    }
    actor.sleep().await?;
    println!("Past a {timeout:?} deadline, over {} runs each (µs):", args.runs);
    println!("  runaway read:                                {}", read.summary());
    println!("  runaway write after {} MiB spilled, rolled back: {}", args.spill_mib, write.summary());
    Ok(ExitCode::SUCCESS)
}

/// How long after `started + timeout` the call returned, which must be a
/// timeout.
fn overshoot(result: Result<(), Error>, started: Instant, timeout: Duration) -> Result<Duration> {
    let elapsed = started.elapsed();
    match result {
        Err(Error::Timeout { .. }) => Ok(elapsed.saturating_sub(timeout)),
        Err(e) => Err(e).context("the runaway call failed otherwise"),
        Ok(()) => bail!("the runaway call returned"),
    }
}

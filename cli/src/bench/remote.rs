//! `wasqlite bench remote`: what a KV round trip costs the paths that wait
//! on it. Every KV call waits `--latency-ms` first (`LatencyKv` over
//! `MemoryKv`), as a call to a KV across a network would, and is counted:
//!
//! - a wake with its first point SELECT, on databases of 10 and 30 tables
//!   (`--tables`), repeated `--wakes` times: latency and round trips;
//! - an autocommit UPDATE on a warm actor, `--writes` times: latency and
//!   round trips;
//! - a cold scan of a `--scan-mib` MiB table right after a wake: time and
//!   round trips.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;
use wasqlite::kv::LatencyKv;
use wasqlite::{Host, MemoryKv, params};

use super::measure::{Latency, round};

#[derive(Args, Debug)]
pub(crate) struct RemoteArgs {
    /// Round-trip time of every KV call, in milliseconds.
    #[arg(long, default_value_t = 0.5)]
    latency_ms: f64,
    /// Databases to wake, by table count, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,30")]
    tables: Vec<u16>,
    /// Wakes per database.
    #[arg(long, default_value_t = 200)]
    wakes: u32,
    /// Autocommit UPDATEs.
    #[arg(long, default_value_t = 500)]
    writes: u32,
    /// Size of the scanned table, in MiB.
    #[arg(long, default_value_t = 50)]
    scan_mib: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const ROWS: u32 = 200;

async fn build(host: &Host, name: &str, tables: u16) -> Result<()> {
    let mut actor = host.wake(name).await?;
    for t in 0..tables {
        actor
            .execute_batch(&format!(
                "CREATE TABLE t{t}(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL); \
                 CREATE INDEX t{t}_name ON t{t}(name); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
                 INSERT INTO t{t}(id, name, value) SELECT i, 'row ' || i, i * 10 FROM n;"
            ))
            .await?;
    }
    actor.sleep().await?;
    Ok(())
}

pub(crate) async fn run(args: RemoteArgs) -> Result<ExitCode> {
    let latency = Duration::from_secs_f64(args.latency_ms / 1000.0);
    let kv = Arc::new(LatencyKv::new(MemoryKv::new(), Duration::ZERO));
    let host = Host::new(kv.clone())?;
    let mut wakes = Vec::new();
    for &tables in &args.tables {
        let name = format!("remote-{tables}");
        build(&host, &name, tables).await?;
        kv.set_latency(latency);
        let mut times = Latency::new()?;
        let mut trips = Vec::new();
        for i in 0..args.wakes {
            kv.reset_counters();
            let started = Instant::now();
            let mut actor = host.wake(&name).await?;
            let id = i64::from(i % ROWS) + 1;
            actor.query_row(&format!("SELECT value FROM t{} WHERE id = ?1", i % u32::from(tables)), params![id]).await?;
            times.record(started.elapsed())?;
            trips.push(kv.counters().calls());
            actor.sleep().await?;
        }
        kv.set_latency(Duration::ZERO);
        trips.sort_unstable();
        wakes.push((tables, times, trips[trips.len() / 2], trips[trips.len() - 1]));
    }

    kv.set_latency(latency);
    let mut actor = host.wake("remote-10").await?;
    actor.query_row("SELECT count(*) FROM t0", ()).await?;
    let mut writes = Latency::new()?;
    let mut write_trips = Vec::new();
    for i in 0..args.writes {
        kv.reset_counters();
        let started = Instant::now();
        actor.execute("UPDATE t0 SET value = value + 1 WHERE id = ?1", params![i64::from(i % ROWS) + 1]).await?;
        writes.record(started.elapsed())?;
        write_trips.push(kv.counters().calls());
    }
    actor.sleep().await?;
    write_trips.sort_unstable();

    kv.set_latency(Duration::ZERO);
    let rows = args.scan_mib * 1024 * 1024 / 4000;
    let mut actor = host.wake("remote-scan").await?;
    actor
        .execute_batch(&format!(
            "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO big(b) SELECT randomblob(4000) FROM n;"
        ))
        .await?;
    actor.sleep().await?;
    kv.set_latency(latency);
    kv.reset_counters();
    let started = Instant::now();
    let mut actor = host.wake("remote-scan").await?;
    let bytes: i64 = actor.query_row("SELECT sum(length(b)) FROM big", ()).await?.get(0)?;
    let scan = started.elapsed();
    let scan_trips = kv.counters();
    actor.sleep().await?;

    let write_p50 = write_trips[write_trips.len() / 2];
    if args.json {
        let wakes: Vec<_> = wakes
            .iter()
            .map(|(tables, times, p50, max)| json!({"tables": tables, "latency_us": times.json(), "round_trips_p50": p50, "round_trips_max": max}))
            .collect();
        let out = json!({
            "latency_ms": args.latency_ms,
            "wake_and_first_select": wakes,
            "autocommit_update": {"latency_us": writes.json(), "round_trips_p50": write_p50, "round_trips_max": write_trips[write_trips.len() - 1]},
            "cold_scan": {"mib": round(bytes as f64 / 1048576.0, 1), "ms": round(scan.as_secs_f64() * 1000.0, 1), "round_trips": scan_trips.calls(), "keys_read": scan_trips.keys_read},
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Every KV call waits {} ms (LatencyKv over MemoryKv):", args.latency_ms);
    for (tables, times, p50, max) in &wakes {
        println!("  wake + first SELECT, {tables:>2} tables: {} ; round trips p50 {p50}, max {max}", times.summary());
    }
    println!(
        "  autocommit UPDATE:               {} ; round trips p50 {write_p50}, max {}",
        writes.summary(),
        write_trips[write_trips.len() - 1]
    );
    println!(
        "  cold scan of {:.1} MiB after a wake: {:.1} ms, {} round trips ({} keys read)",
        bytes as f64 / 1048576.0,
        scan.as_secs_f64() * 1000.0,
        scan_trips.calls(),
        scan_trips.keys_read
    );
    Ok(ExitCode::SUCCESS)
}

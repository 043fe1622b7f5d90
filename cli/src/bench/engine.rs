//! `wasqlite bench engine`: how the engine's settings change wake latency
//! and memory, and what a process pays to start.
//!
//! Allocation: the four combinations of wasmtime's pooling allocator (or
//! on-demand allocation) and copy-on-write memory images (on or off), each
//! measured by a `bench churn --json` run in a fresh child process of this
//! same executable, so that no variant inherits another's mappings, malloc
//! arenas or engine (the engine is cached per process and per
//! `EngineConfig`). Within a round the variants run back to back; ratios
//! are against the default configuration of the same round.
//!
//! Cold start: a fresh child process builds a `Host` (engine, module,
//! linker, `InstancePre`) and wakes one actor, three ways: with the code
//! cache disabled (Cranelift compiles), with an empty cache directory
//! (compiles, then writes the cache), and with that directory again (loads
//! the compiled code). The child reports its own timings; the parent adds
//! the child's wall time, spawn to exit. `bench cold-start` is the hidden
//! child command.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value as Json, json};
use wasqlite::{CodeCache, EngineConfig, Host, HostConfig, MemoryKv};

use super::measure::{Rss, median, round};

#[derive(Args, Debug)]
pub(crate) struct EngineArgs {
    /// Actors in each churn run.
    #[arg(long, default_value_t = 200)]
    actors: usize,
    /// Cycles in each churn run.
    #[arg(long, default_value_t = 20_000)]
    cycles: u64,
    /// Actors held awake at once to measure RSS per awake actor.
    #[arg(long, default_value_t = 100)]
    awake: usize,
    /// Rounds of the allocation comparison; figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Rounds of the cold-start measurement.
    #[arg(long, default_value_t = 5)]
    cold_runs: usize,
    /// Skip the allocation comparison.
    #[arg(long)]
    skip_allocation: bool,
    /// Skip the cold-start measurement.
    #[arg(long)]
    skip_cold_start: bool,
    /// Print one JSON object with every figure instead of tables.
    #[arg(long)]
    json: bool,
}

/// The hidden child of the cold-start measurement.
#[derive(Args, Debug)]
pub(crate) struct ColdStartArgs {
    /// Cache compiled code in this directory; without it the cache is off.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// One engine configuration to compare.
struct Variant {
    name: &'static str,
    pooling: bool,
    /// With pooling: keep a slot's pages resident between actors (1 MiB).
    keep_resident: bool,
    cow: bool,
}

/// The first is the default configuration, which ratios are taken against.
const VARIANTS: [Variant; 5] = [
    Variant { name: "pooling, resident, CoW (default)", pooling: true, keep_resident: true, cow: true },
    Variant { name: "pooling, released, CoW", pooling: true, keep_resident: false, cow: true },
    Variant { name: "pooling, resident, no CoW", pooling: true, keep_resident: true, cow: false },
    Variant { name: "on-demand, CoW", pooling: false, keep_resident: false, cow: true },
    Variant { name: "on-demand, no CoW", pooling: false, keep_resident: false, cow: false },
];

/// Runs this executable with `args`; its stdout as JSON, and its wall time.
fn child(args: Vec<String>) -> Result<(Json, Duration)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let start = Instant::now();
    let out = Command::new(&exe)
        .args(&args)
        .output()
        .with_context(|| format!("running {} {}", exe.display(), args.join(" ")))?;
    let wall = start.elapsed();
    if !out.status.success() {
        bail!("`wasqlite {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let json = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the JSON of `wasqlite {}`", args.join(" ")))?;
    Ok((json, wall))
}

async fn child_async(args: Vec<String>) -> Result<(Json, Duration)> {
    tokio::task::spawn_blocking(move || child(args)).await.context("a child-process task panicked")?
}

fn field(json: &Json, path: &[&str]) -> Result<f64> {
    let mut v = json;
    for key in path {
        v = v.get(key).with_context(|| format!("the child's JSON has no {}", path.join(".")))?;
    }
    v.as_f64().with_context(|| format!("{} is not a number", path.join(".")))
}

/// What one churn child reported.
#[derive(Clone, Copy, Debug)]
struct ChurnFigures {
    wake_p50: f64,
    wake_p99: f64,
    sleep_p50: f64,
    cycles_per_s: f64,
    rss_per_awake: f64,
    anon_per_awake: f64,
    linear_per_awake: f64,
}

impl ChurnFigures {
    fn from_json(j: &Json) -> Result<ChurnFigures> {
        Ok(ChurnFigures {
            wake_p50: field(j, &["wake_us", "p50"])?,
            wake_p99: field(j, &["wake_us", "p99"])?,
            sleep_p50: field(j, &["sleep_us", "p50"])?,
            cycles_per_s: field(j, &["cycles_per_s"])?,
            rss_per_awake: field(j, &["awake", "rss_per_actor_bytes"])?,
            anon_per_awake: field(j, &["awake", "anon_per_actor_bytes"])?,
            linear_per_awake: field(j, &["awake", "linear_memory_per_actor_bytes"])?,
        })
    }
}

async fn allocation(args: &EngineArgs) -> Result<Json> {
    let mut figures: Vec<Vec<ChurnFigures>> = vec![Vec::new(); VARIANTS.len()];
    for round in 1..=args.rounds {
        for (v, variant) in VARIANTS.iter().enumerate() {
            let mut child_args: Vec<String> =
                ["bench", "churn", "--store", "memory", "--json"].iter().map(|s| (*s).to_owned()).collect();
            child_args.extend([
                "--actors".to_owned(),
                args.actors.to_string(),
                "--cycles".to_owned(),
                args.cycles.to_string(),
                "--awake".to_owned(),
                args.awake.to_string(),
            ]);
            if !variant.pooling {
                child_args.push("--on-demand".to_owned());
            } else if !variant.keep_resident {
                child_args.extend(["--keep-resident".to_owned(), "0".to_owned()]);
            }
            if !variant.cow {
                child_args.push("--no-cow".to_owned());
            }
            let (json, _) = child_async(child_args).await.with_context(|| format!("measuring {}", variant.name))?;
            let f = ChurnFigures::from_json(&json)?;
            if !args.json {
                eprintln!(
                    "round {round}/{}: {:<33} wake p50 {:>5.0} µs p99 {:>6.0} µs, {:>6.0} cycles/s, {:>5.0} KiB RSS per awake actor",
                    args.rounds,
                    variant.name,
                    f.wake_p50,
                    f.wake_p99,
                    f.cycles_per_s,
                    f.rss_per_awake / 1024.0
                );
            }
            figures[v].push(f);
        }
    }

    let of = |v: usize, f: fn(&ChurnFigures) -> f64| median(figures[v].iter().map(f).collect());
    let ratio = |v: usize, f: fn(&ChurnFigures) -> f64| {
        median(figures[v].iter().zip(&figures[0]).map(|(a, b)| f(a) / f(b)).collect())
    };
    let mut rows = Vec::new();
    for (v, variant) in VARIANTS.iter().enumerate() {
        rows.push(json!({
            "variant": variant.name,
            "pooling": variant.pooling,
            "keep_resident": variant.keep_resident,
            "memory_init_cow": variant.cow,
            "wake_p50_us": of(v, |f| f.wake_p50),
            "wake_p99_us": of(v, |f| f.wake_p99),
            "sleep_p50_us": of(v, |f| f.sleep_p50),
            "cycles_per_s": round(of(v, |f| f.cycles_per_s), 1),
            "rss_per_awake_actor_bytes": of(v, |f| f.rss_per_awake).round(),
            "anon_per_awake_actor_bytes": of(v, |f| f.anon_per_awake).round(),
            "linear_memory_per_awake_actor_bytes": of(v, |f| f.linear_per_awake).round(),
            "wake_p50_vs_default": round(ratio(v, |f| f.wake_p50), 3),
            "cycles_per_s_vs_default": round(ratio(v, |f| f.cycles_per_s), 3),
            "rss_per_awake_vs_default": round(ratio(v, |f| f.rss_per_awake), 3),
        }));
    }
    Ok(json!({
        "actors": args.actors,
        "cycles": args.cycles,
        "awake": args.awake,
        "rounds": args.rounds,
        "variants": rows,
    }))
}

/// What one cold-start child reported, plus its wall time.
#[derive(Clone, Copy, Debug)]
struct ColdFigures {
    host_build_ms: f64,
    first_wake_us: f64,
    wall_ms: f64,
}

const COLD_MODES: [(&str, &str); 3] =
    [("compile, no cache", "off"), ("compile, write cache", "empty"), ("load from cache", "warm")];

async fn cold_start(args: &EngineArgs) -> Result<Json> {
    let mut figures: Vec<Vec<ColdFigures>> = vec![Vec::new(); COLD_MODES.len()];
    for run in 1..=args.cold_runs {
        let dir = tempfile::tempdir().context("creating a temporary cache directory")?;
        for (m, (name, mode)) in COLD_MODES.iter().enumerate() {
            let mut child_args = vec!["bench".to_owned(), "cold-start".to_owned()];
            if *mode != "off" {
                child_args.push("--cache-dir".to_owned());
                child_args.push(dir.path().display().to_string());
            }
            let (json, wall) = child_async(child_args).await.with_context(|| format!("cold start: {name}"))?;
            let from_cache = json.get("code_from_cache").and_then(Json::as_bool).unwrap_or(false);
            if from_cache != (*mode == "warm") {
                bail!("cold start: {name}: the child says code_from_cache = {from_cache}");
            }
            let f = ColdFigures {
                host_build_ms: field(&json, &["host_build_ms"])?,
                first_wake_us: field(&json, &["first_wake_us"])?,
                wall_ms: wall.as_secs_f64() * 1e3,
            };
            if !args.json {
                eprintln!(
                    "cold start {run}/{}: {name:<22} host built in {:>7.1} ms, first wake {:>6.0} µs, process {:>7.1} ms",
                    args.cold_runs, f.host_build_ms, f.first_wake_us, f.wall_ms
                );
            }
            figures[m].push(f);
        }
    }
    let of = |m: usize, f: fn(&ColdFigures) -> f64| median(figures[m].iter().map(f).collect());
    let ratio = |m: usize, f: fn(&ColdFigures) -> f64| {
        median(figures[m].iter().zip(&figures[COLD_MODES.len() - 1]).map(|(a, b)| f(a) / f(b)).collect())
    };
    let rows: Vec<Json> = COLD_MODES
        .iter()
        .enumerate()
        .map(|(m, (name, _))| {
            json!({
                "mode": name,
                "host_build_ms": round(of(m, |f| f.host_build_ms), 2),
                "first_wake_us": round(of(m, |f| f.first_wake_us), 0),
                "process_wall_ms": round(of(m, |f| f.wall_ms), 2),
                "host_build_vs_cached": round(ratio(m, |f| f.host_build_ms), 2),
            })
        })
        .collect();
    Ok(json!({ "runs": args.cold_runs, "modes": rows }))
}

pub(crate) async fn run(args: EngineArgs) -> Result<ExitCode> {
    if args.rounds == 0 || args.cold_runs == 0 {
        bail!("--rounds and --cold-runs must be at least 1");
    }
    let alloc = match args.skip_allocation {
        true => Json::Null,
        false => allocation(&args).await?,
    };
    let cold = match args.skip_cold_start {
        true => Json::Null,
        false => cold_start(&args).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "allocation": alloc, "cold_start": cold }))?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(variants) = alloc.get("variants").and_then(Json::as_array) {
        println!(
            "\nAllocation: `bench churn --actors {} --cycles {} --awake {}` per variant, each in a fresh process; medians of {} rounds, ratios against the default in the same round.\n",
            args.actors, args.cycles, args.awake, args.rounds
        );
        println!(
            "| engine | wake p50 | wake p99 | sleep p50 | cycles/s | RSS per awake actor | linear memory per awake actor | wake p50 vs default | cycles/s vs default | RSS/actor vs default |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for v in variants {
            let n = |k: &str| v.get(k).and_then(Json::as_f64).unwrap_or(f64::NAN);
            println!(
                "| {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} | {:.0} KiB | {:.0} KiB | {:.2}x | {:.2}x | {:.2}x |",
                v.get("variant").and_then(Json::as_str).unwrap_or("?"),
                n("wake_p50_us"),
                n("wake_p99_us"),
                n("sleep_p50_us"),
                n("cycles_per_s"),
                n("rss_per_awake_actor_bytes") / 1024.0,
                n("linear_memory_per_awake_actor_bytes") / 1024.0,
                n("wake_p50_vs_default"),
                n("cycles_per_s_vs_default"),
                n("rss_per_awake_vs_default"),
            );
        }
    }
    if let Some(modes) = cold.get("modes").and_then(Json::as_array) {
        println!(
            "\nCold start: a fresh process builds a Host and wakes one actor; medians of {} runs.\n",
            args.cold_runs
        );
        println!("| compiled code | Host build | first wake | process wall time | Host build vs cached |");
        println!("|---|---:|---:|---:|---:|");
        for m in modes {
            let n = |k: &str| m.get(k).and_then(Json::as_f64).unwrap_or(f64::NAN);
            println!(
                "| {} | {:.1} ms | {:.0} µs | {:.1} ms | {:.1}x |",
                m.get("mode").and_then(Json::as_str).unwrap_or("?"),
                n("host_build_ms"),
                n("first_wake_us"),
                n("process_wall_ms"),
                n("host_build_vs_cached"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The child: builds a Host with the given code cache, wakes one actor
/// twice, and prints its timings as JSON.
pub(crate) async fn cold_start_child(args: ColdStartArgs) -> Result<ExitCode> {
    let code_cache = match args.cache_dir {
        Some(dir) => CodeCache::Dir(dir),
        None => CodeCache::Disabled,
    };
    let config = HostConfig { engine: EngineConfig { code_cache, ..EngineConfig::default() }, ..HostConfig::default() };
    let start = Instant::now();
    let host = Host::with_config(Arc::new(MemoryKv::new()), config).context("starting the WebAssembly host")?;
    let host_build = start.elapsed();
    let mut wakes = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let mut actor = host.wake("cold-start").await?;
        let _: i64 = actor.query_row("SELECT 1", ()).await?.get(0)?;
        wakes.push(start.elapsed());
        actor.sleep().await?;
    }
    let out = json!({
        "code_from_cache": host.code_from_cache(),
        "host_build_ms": round(host_build.as_secs_f64() * 1e3, 3),
        "first_wake_us": wakes[0].as_micros() as u64,
        "second_wake_us": wakes[1].as_micros() as u64,
        "rss_bytes": Rss::now().total,
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

//! The command tree (clap derive) and what the commands share: opening a
//! store and a host, checking actor ids, running SQL text statement by
//! statement.
//!
//! Every command's failure is an `anyhow::Error` whose context chain reads
//! as one line; `main` prints it and exits 1. Nothing here prints an error
//! itself, except the shell, which reports and carries on like `sqlite3`.

mod actors;
mod debug;
mod demo;
mod exec;
mod format;
mod kv;
mod shell;
mod sql;
mod transfer;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use wasqlite::kv::DEFAULT_STORE;
use wasqlite::vfs::layout::{FileTag, meta_key};
use wasqlite::{ActorId, Host, HostConfig, KvStore};

/// SQLite in WebAssembly, one isolated instance per actor, every database
/// kept in a key-value store.
#[derive(Parser, Debug)]
#[command(name = "wasqlite", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Serve Prometheus metrics at http://ADDR/metrics while the command
    /// runs (for long-running ones: shell, demo, bench).
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run SQL in one actor and print the rows.
    Exec(exec::ExecArgs),
    /// An interactive SQL shell on one actor, like `sqlite3`.
    Shell(shell::ShellArgs),
    /// Write an actor's database as a standard SQLite file.
    Export(transfer::ExportArgs),
    /// Load a standard SQLite file as an actor's database.
    Import(transfer::ImportArgs),
    /// An actor's raw keys and values, as JSON lines.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// List or destroy actors.
    #[command(subcommand)]
    Actors(actors::ActorsCommand),
    /// Serve every actor over HTTP to the libSQL clients (Hrana over HTTP).
    Serve(crate::serve::ServeArgs),
    /// Wake many actors, write, sleep, wake and verify, and report.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Tools for tests.
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCommand),
}

/// The `--store` option every command takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct StoreArg {
    /// Where actors live: `memory`, `redb:PATH` or
    /// `redis://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, value_name = "STORE", default_value = DEFAULT_STORE)]
    pub(crate) store: String,
    /// Wake the actor even while another process holds its lease: that
    /// process can write nothing more to it. Only when it is gone or must
    /// let go.
    #[arg(long)]
    pub(crate) take_over: bool,
}

impl StoreArg {
    /// Wakes `id` on `host`, taking it over if `--take-over` says so.
    pub(crate) async fn wake(&self, host: &Host, id: &ActorId) -> Result<wasqlite::Actor> {
        let woken = if self.take_over { host.take_over(id.as_str()).await } else { host.wake(id.as_str()).await };
        woken.with_context(|| format!("waking actor {id}"))
    }

    /// Opens the store.
    pub(crate) fn open(&self) -> Result<Arc<dyn KvStore>> {
        Ok(wasqlite::kv::open_store(&self.store)?)
    }

    /// Opens the store and a host over it. Calls get no timeout: the
    /// commands' own SQL (integrity_check, the checks of import and export)
    /// runs as long as the database needs; `exec` and `shell` set one for the
    /// user's SQL (`--timeout`).
    pub(crate) fn host(&self) -> Result<Host> {
        let limits = wasqlite::Limits { call_timeout: None, ..Default::default() };
        // Named after the process, so that a refused wake elsewhere says
        // which one holds the actor.
        let lease = wasqlite::LeaseConfig { owner: Some(owner_name()), ..Default::default() };
        let engine = wasqlite::EngineConfig { pooling: None, ..Default::default() };
        Host::with_config(self.open()?, HostConfig { limits, lease, engine, ..Default::default() })
            .context("starting the WebAssembly host")
    }
}

/// The `--timeout` option of the commands that run the user's SQL.
#[derive(Args, Debug, Clone)]
pub(crate) struct TimeoutArg {
    /// Stop a statement that runs longer than this many seconds, rolling it
    /// back (0: no limit).
    #[arg(long, value_name = "SECONDS", default_value_t = wasqlite::DEFAULT_CALL_TIMEOUT.as_secs_f64())]
    timeout: f64,
}

impl TimeoutArg {
    /// The timeout, `None` for none.
    pub(crate) fn get(&self) -> Result<Option<Duration>> {
        match Duration::try_from_secs_f64(self.timeout) {
            Ok(d) if d.is_zero() => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(_) => anyhow::bail!("--timeout {} is not a number of seconds", self.timeout),
        }
    }
}

/// Whether `id` has a database: a meta key of any of its files. Asking for
/// those four keys keeps a large actor's pages out of memory.
pub(crate) async fn has_database(kv: &dyn KvStore, id: &ActorId) -> Result<bool> {
    let metas: Vec<bytes::Bytes> = FileTag::ALL.iter().map(|t| meta_key(*t)).collect();
    Ok(kv.batch_get(id, &metas).await?.iter().any(Option::is_some))
}

/// A claim the command line holds on an actor while it writes the actor's
/// keys directly (`kv load`, `actors destroy`): a host waking the actor
/// meanwhile is told who holds it, and a host that held it is fenced out.
pub(crate) struct ToolClaim {
    kv: Arc<dyn KvStore>,
    id: ActorId,
    pub(crate) fence: wasqlite::Fence,
}

impl ToolClaim {
    /// Claims `id`, failing while a host holds a live lease on it unless
    /// `take_over`.
    pub(crate) async fn take(kv: &Arc<dyn KvStore>, id: &ActorId, take_over: bool) -> Result<ToolClaim> {
        let owner = owner_name();
        let request = wasqlite::kv::ClaimRequest {
            owner: &owner,
            ttl: Duration::from_secs(60),
            takeover: if take_over { wasqlite::kv::Takeover::Force } else { wasqlite::kv::Takeover::IfFree },
            read: &[],
        };
        let claimed = kv.claim(id, &request).await.with_context(|| format!("claiming actor {id}"))?;
        Ok(ToolClaim { kv: kv.clone(), id: id.clone(), fence: claimed.fence })
    }

    /// Gives the claim up; one left behind runs out in a minute.
    pub(crate) async fn release(self) {
        let _ = self.kv.release(&self.id, self.fence).await;
    }
}

/// This process's name in the leases it takes.
fn owner_name() -> String {
    format!("wasqlite-cli-{}", std::process::id())
}

/// Parses the command line's actor id, with the rule it broke.
pub(crate) fn actor_id(id: &str) -> Result<ActorId> {
    Ok(ActorId::new(id)?)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    // The one-shot commands handle one actor at a time, on one thread: no
    // worker threads to start. The shell, the demo and the benchmarks run
    // work in parallel.
    let one_shot = matches!(
        cli.command,
        Command::Exec(_) | Command::Export(_) | Command::Import(_) | Command::Kv(_) | Command::Actors(_)
    );
    let mut builder = match one_shot {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().build().context("starting tokio")?;
    if let Command::Serve(args) = cli.command {
        if cli.metrics_listen.is_some() {
            anyhow::bail!("serve answers /metrics on its own address; drop --metrics-listen");
        }
        let _entered = runtime.enter();
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
        let upkeep = metrics.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        return runtime.block_on(crate::serve::run(args, metrics));
    }
    if let Some(addr) = cli.metrics_listen {
        let _entered = runtime.enter();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("serving metrics on {addr}"))?;
    }
    match cli.command {
        Command::Exec(args) => runtime.block_on(exec::run(args)),
        Command::Shell(args) => shell::run(args, &runtime),
        Command::Export(args) => runtime.block_on(transfer::export(args)),
        Command::Import(args) => runtime.block_on(transfer::import(args)),
        Command::Kv(command) => runtime.block_on(kv::run(command)),
        Command::Actors(command) => runtime.block_on(actors::run(command)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Bench(command) => runtime.block_on(crate::bench::run(command)),
        Command::Debug(command) => runtime.block_on(debug::run(command)),
        Command::Serve(_) => unreachable!("served above"),
    }
}

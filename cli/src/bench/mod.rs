//! `wasqlite bench`: benchmarks that run through the whole stack, one
//! workload per file.
//!
//! | command | file | measures |
//! |---|---|---|
//! | `bench commit` | commit.rs | durable commits/s with N actors, redb group commit on and off |
//! | `bench churn` | churn.rs | wake/sleep cycles: wake and sleep latency, RSS drift, RSS per awake actor |
//! | `bench sql` | sql.rs, mixed.rs, sql_db.rs | SQL throughput on wasqlite (memory, redb) against native SQLite |
//! | `bench engine` | engine.rs | pooling vs on-demand allocation, copy-on-write images, cold start |
//! | `bench parallel` | parallel.rs | throughput of many actors on 1 worker thread against 2 |
//! | `bench remote` | remote.rs | wakes, writes and a cold scan over a KV with a round-trip time |
//! | `bench manager` | manager.rs | calls over many actors through the actor manager, inside a budget |
//! | `bench serve` | serve.rs | requests/s and latency of `wasqlite serve` over HTTP, against the real server process |
//!
//! measure.rs holds what they share (RSS, histograms, medians, progress
//! bars) and plot.rs draws the churn plot. BENCHMARKS.md has the method and
//! the results.

mod churn;
mod commit;
mod deadline;
mod engine;
mod manager;
mod measure;
mod mixed;
mod parallel;
mod remote;
mod plot;
mod serve;
mod sql;
mod sql_db;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Commits per second with N actors committing at once, with and
    /// without redb group commit.
    Commit(commit::CommitArgs),
    /// How late past its deadline a runaway call is stopped.
    Deadline(deadline::DeadlineArgs),
    /// Wake/sleep churn: wake and sleep latency, RSS over the run, RSS per
    /// awake actor.
    Churn(churn::ChurnArgs),
    /// SQL workloads on wasqlite (memory and redb stores) and native SQLite,
    /// side by side.
    Sql(sql::SqlArgs),
    /// Pooling vs on-demand allocation and copy-on-write images (each in a
    /// fresh process), and the process cold start with and without the
    /// code cache.
    Engine(engine::EngineArgs),
    /// Throughput of many actors working at once on 1 worker thread
    /// against 2.
    Parallel(parallel::ParallelArgs),
    /// Wakes, writes and a cold scan over a KV with a round-trip time:
    /// latency and round trips.
    Remote(remote::RemoteArgs),
    /// Calls over many actors through the actor manager, with a budget of
    /// awake actors: throughput, latency, peak awake, peak RSS.
    Manager(manager::ManagerArgs),
    /// Requests over HTTP to a `wasqlite serve` child process, as the libSQL
    /// clients send them, over many actors: requests/s, latency, wakes.
    Serve(serve::ServeArgs),
    /// The child process of `bench engine`'s cold-start measurement.
    #[command(hide = true)]
    ColdStart(engine::ColdStartArgs),
}

pub(crate) async fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Commit(args) => commit::run(args).await,
        BenchCommand::Deadline(args) => deadline::run(args).await,
        BenchCommand::Churn(args) => churn::run(args).await,
        BenchCommand::Sql(args) => sql::run(args).await,
        BenchCommand::Engine(args) => engine::run(args).await,
        BenchCommand::Parallel(args) => parallel::run(args).await,
        BenchCommand::Remote(args) => remote::run(args).await,
        BenchCommand::Manager(args) => manager::run(args).await,
        BenchCommand::Serve(args) => serve::run(args).await,
        BenchCommand::ColdStart(args) => engine::cold_start_child(args).await,
    }
}

//! `wasqlite bench`: benchmarks that run through the whole stack, one
//! workload per file.

mod commit;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Commits per second with N actors committing at once, with and
    /// without redb group commit.
    Commit(commit::CommitArgs),
}

pub(crate) async fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Commit(args) => commit::run(args).await,
    }
}

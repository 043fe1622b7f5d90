//! The `wasqlite` command line: run SQL in an actor, open a shell, move
//! databases in and out as ordinary SQLite files or raw KV dumps, list and
//! destroy actors, serve every actor over HTTP to the libSQL clients, and run
//! the demo and the benchmarks.
//!
//! Every command names its store with `--store` (see `wasqlite::kv::open_store`);
//! the default is a redb file under `./wasqlite-data/`. Errors end the
//! process with one line on stderr and exit code 1.

mod bench;
mod cli;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("wasqlite: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

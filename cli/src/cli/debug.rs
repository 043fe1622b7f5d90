//! Hidden commands for tests. `wasqlite debug write-loop` commits numbered
//! transactions and prints each number once its commit has returned, so a
//! test that kills the process knows exactly which ones were acknowledged.
//!
//! Transaction `n` inserts rows `(n, 0)` .. `(n, rows - 1)` of table `txn`,
//! each with a 1500-byte random payload, so one transaction spans several
//! pages and a partly applied one would show as a short group.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wasqlite::params;

use super::{StoreArg, actor_id};

#[derive(Subcommand, Debug)]
pub(crate) enum DebugCommand {
    /// Commit numbered transactions, printing each number once durable.
    WriteLoop(WriteLoopArgs),
}

#[derive(Args, Debug)]
pub(crate) struct WriteLoopArgs {
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    /// Rows per transaction.
    #[arg(long, default_value_t = 4)]
    rows: u32,
    /// Stop after this many transactions (0: never).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

pub(crate) async fn run(command: DebugCommand) -> Result<ExitCode> {
    let DebugCommand::WriteLoop(args) = command;
    let id = actor_id(&args.actor)?;
    let host = args.store.host()?;
    let mut actor = args.store.wake(&host, &id).await?;
    actor
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS txn(n INTEGER NOT NULL, part INTEGER NOT NULL, \
             payload BLOB NOT NULL, PRIMARY KEY (n, part))",
        )
        .await?;
    let first: i64 = actor.query_row("SELECT coalesce(max(n), 0) + 1 FROM txn", ()).await?.get(0)?;
    let mut stdout = std::io::stdout().lock();
    let mut n = first;
    loop {
        let mut tx = actor.transaction().await?;
        for part in 0..args.rows {
            tx.execute("INSERT INTO txn(n, part, payload) VALUES (?1, ?2, randomblob(1500))", params![n, part]).await?;
        }
        tx.commit().await.with_context(|| format!("committing transaction {n}"))?;
        writeln!(stdout, "{n}").and_then(|()| stdout.flush()).context("writing to stdout")?;
        if args.count != 0 && (n - first + 1) as u64 >= args.count {
            break;
        }
        n += 1;
    }
    actor.sleep().await?;
    Ok(ExitCode::SUCCESS)
}

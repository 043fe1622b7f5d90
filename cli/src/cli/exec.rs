//! `wasqlite exec`: wakes one actor, runs SQL, prints rows, sleeps it.
//!
//! SQL with several statements runs them in order and prints the rows of
//! each statement that returns columns. Parameters (`--param`, bound to
//! `?1`, `?2`... in order) need exactly one statement.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{StoreArg, TimeoutArg, actor_id, format, sql};

#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// The actor to run in (A-Z a-z 0-9 . _ : -).
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    timeout: TimeoutArg,
    /// Print rows as JSON lines ({"column": value}; blobs as {"blob": hex}).
    #[arg(long)]
    json: bool,
    /// Bind every --param as text.
    #[arg(long)]
    text: bool,
    /// A value for the next positional parameter: NULL is null, a whole
    /// number an integer, a decimal number a real, anything else text.
    #[arg(long = "param", value_name = "VALUE", allow_hyphen_values = true)]
    params: Vec<String>,
    /// The SQL to run.
    sql: String,
}

pub(crate) async fn run(args: ExecArgs) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    let host = args.store.host()?;
    let params = args.params.iter().map(|p| sql::parse_param(p, args.text)).collect();
    let timeout = args.timeout.get()?;
    let mut actor = args.store.wake(&host, &id).await?;
    actor.set_call_timeout(timeout);
    let stdout = std::io::stdout();
    let result = sql::run_statements(&mut actor, &args.sql, params, sql::Delivery::Batches, |rows, first| {
        let text = if args.json { format::json_lines(rows) } else { format::tsv(rows, first) };
        let mut out = stdout.lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    })
    .await
    .with_context(|| format!("running SQL in actor {id}"));
    // Sleep even after an error: whatever committed is already durable, and
    // sleeping closes the database cleanly.
    let slept = actor.sleep().await.with_context(|| format!("sleeping actor {id}"));
    result?;
    slept?;
    Ok(ExitCode::SUCCESS)
}

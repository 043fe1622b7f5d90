//! `wasqlite actors list` and `wasqlite actors destroy`: the actors a store
//! holds, straight from the store (no guest is started).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::{StoreArg, ToolClaim, actor_id};

#[derive(Subcommand, Debug)]
pub(crate) enum ActorsCommand {
    /// Print every actor that has data, one id per line.
    List(ListArgs),
    /// Delete every key of an actor.
    Destroy(DestroyArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Args, Debug)]
pub(crate) struct DestroyArgs {
    /// The actor to destroy.
    id: String,
    #[command(flatten)]
    store: StoreArg,
}

pub(crate) async fn run(command: ActorsCommand) -> Result<ExitCode> {
    match command {
        ActorsCommand::List(args) => {
            let kv = args.store.open()?;
            for id in kv.list_actors().await.context("listing actors")? {
                println!("{id}");
            }
        }
        ActorsCommand::Destroy(args) => {
            let id = actor_id(&args.id)?;
            let kv = args.store.open()?;
            let keys = kv.list_prefix(&id, b"").await?.len();
            if keys == 0 {
                bail!("actor {id} has no data in {}", args.store.store);
            }
            let claim = ToolClaim::take(&kv, &id, args.store.take_over).await?;
            let deleted = kv.delete_actor(&id, claim.fence).await.with_context(|| format!("destroying actor {id}"));
            claim.release().await;
            deleted?;
            println!("destroyed actor {id} ({keys} keys)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `wasqlite kv dump` and `wasqlite kv load`: an actor's raw keys and values
//! as JSON lines, one `{"key": "<hex>", "value": "<hex>"}` per key, in key
//! order.
//!
//! Load reads and checks every line before it writes anything, so a
//! malformed file changes nothing; the error names the line and what is
//! wrong with it. It refuses an actor that has keys unless `--force`, which
//! deletes them first.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use wasqlite::kv::KvEntry;
use wasqlite::vfs::layout::hex;

use super::{StoreArg, actor_id};

#[derive(Subcommand, Debug)]
pub(crate) enum KvCommand {
    /// Write an actor's keys and values as JSON lines.
    Dump(DumpArgs),
    /// Load keys and values from JSON lines into an actor.
    Load(LoadArgs),
}

#[derive(Args, Debug)]
pub(crate) struct DumpArgs {
    /// The actor to dump.
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    /// Where to write; stdout when absent.
    file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The actor to load into.
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    /// Replace the actor's keys if it has any.
    #[arg(long)]
    force: bool,
    /// Where to read; stdin when absent.
    file: Option<PathBuf>,
}

/// One line of a dump.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    value: String,
}

/// Most entries in one `batch_put` when the store sets no lower limit.
const ENTRIES_PER_BATCH: usize = 1024;

pub(crate) async fn run(command: KvCommand) -> Result<ExitCode> {
    match command {
        KvCommand::Dump(args) => dump(args).await,
        KvCommand::Load(args) => load(args).await,
    }
}

async fn dump(args: DumpArgs) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    let kv = args.store.open()?;
    let entries = kv.list_prefix(&id, b"").await.with_context(|| format!("reading actor {id}"))?;
    let out: Box<dyn Write> = match &args.file {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    for (key, value) in &entries {
        serde_json::to_writer(&mut out, &Line { key: hex(key), value: hex(value) })?;
        out.write_all(b"\n")?;
    }
    out.flush().context("writing the dump")?;
    if let Some(path) = &args.file {
        eprintln!("dumped {} keys of actor {id} to {}", entries.len(), path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn load(args: LoadArgs) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    let (source, text) = match &args.file {
        Some(path) => {
            (path.display().to_string(), std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => {
            let mut text = Vec::new();
            std::io::stdin().read_to_end(&mut text).context("reading stdin")?;
            ("stdin".to_owned(), text)
        }
    };
    let text = String::from_utf8(text).map_err(|e| anyhow::anyhow!("{source} is not UTF-8 text: {e}"))?;
    let entries = parse(&text).with_context(|| format!("reading {source}"))?;

    let kv = args.store.open()?;
    let existing = kv.list_prefix(&id, b"").await?.len();
    if existing > 0 {
        if !args.force {
            bail!("actor {id} already has {existing} keys; pass --force to replace them");
        }
        kv.delete_actor(&id).await.with_context(|| format!("deleting the keys of actor {id}"))?;
    }
    let limits = kv.limits();
    let mut batch: Vec<KvEntry> = Vec::new();
    let mut bytes = 0usize;
    for (key, value) in entries.iter().cloned() {
        let size = key.len() + value.len();
        if !batch.is_empty()
            && (batch.len() >= ENTRIES_PER_BATCH.min(limits.max_keys_per_batch)
                || bytes + size > limits.max_batch_bytes)
        {
            kv.batch_put(&id, &batch).await.with_context(|| format!("writing actor {id}"))?;
            batch.clear();
            bytes = 0;
        }
        bytes += size;
        batch.push((key, value));
    }
    if !batch.is_empty() {
        kv.batch_put(&id, &batch).await.with_context(|| format!("writing actor {id}"))?;
    }
    println!("loaded {} keys into actor {id}", entries.len());
    Ok(ExitCode::SUCCESS)
}

/// Every entry of a dump, or the first problem, naming its line.
fn parse(text: &str) -> Result<Vec<KvEntry>> {
    let mut entries = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| anyhow::anyhow!("line {n}: {}", json_problem(&e)))?;
        let key = unhex(&line.key).map_err(|why| anyhow::anyhow!("line {n}: \"key\" {why}"))?;
        let value = unhex(&line.value).map_err(|why| anyhow::anyhow!("line {n}: \"value\" {why}"))?;
        if let Some(first) = seen.insert(key.clone(), n) {
            bail!("line {n}: key {} already appeared on line {first}", line.key);
        }
        entries.push((Bytes::from(key), Bytes::from(value)));
    }
    Ok(entries)
}

/// serde_json's message without its "at line 1 column N" (every dump line
/// is its own document), with the column put first.
fn json_problem(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    let kind = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
        _ => "not a {\"key\": hex, \"value\": hex} object",
    };
    format!("{kind} (column {}): {message}", e.column())
}

/// Bytes from hex text (either case), or what is wrong with it.
fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("is not hex: it has an odd number of digits ({})", text.len()));
    }
    let digit = |c: u8| -> Result<u8, String> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("is not hex: {:?} is not a hex digit", c as char))
    };
    text.as_bytes().chunks(2).map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_lines_and_names_bad_ones() {
        let good = "{\"key\":\"0801\",\"value\":\"FF00\"}\n\n{\"value\":\"\",\"key\":\"00\"}\n";
        let entries = parse(good).unwrap();
        assert_eq!(
            entries,
            vec![
                (Bytes::from_static(&[8, 1]), Bytes::from_static(&[255, 0])),
                (Bytes::from_static(&[0]), Bytes::new())
            ]
        );

        let cases = [
            ("{\"key\":\"00\",\"value\":\"00\"}\nnot json\n", "line 2: invalid JSON"),
            ("{\"key\":\"00\"}", "line 1: not a {\"key\": hex, \"value\": hex} object"),
            ("{\"key\":\"0\",\"value\":\"\"}", "line 1: \"key\" is not hex: it has an odd number"),
            ("{\"key\":\"00\",\"value\":\"zz\"}", "line 1: \"value\" is not hex: 'z'"),
            ("{\"key\":\"00\",\"value\":\"\",\"extra\":1}", "line 1: not a"),
            (
                "{\"key\":\"00\",\"value\":\"\"}\n{\"key\":\"00\",\"value\":\"01\"}",
                "line 2: key 00 already appeared on line 1",
            ),
        ];
        for (text, expected) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.starts_with(expected), "{text:?} gave {err:?}");
            assert!(!err.contains('\n'));
        }
    }
}

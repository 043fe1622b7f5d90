//! `wasqlite kv dump` and `wasqlite kv load`: an actor's raw keys and values
//! as JSON lines, one `{"key": "<hex>", "value": "<hex>"}` per key, in key
//! order.
//!
//! Load reads and checks every line before it writes anything, so a
//! malformed file changes nothing; the error names the line and what is
//! wrong with it. It reads the input twice (stdin is copied to a temporary
//! file), holding one line and one batch in memory, and refuses a line
//! longer than any key and value the store takes. It refuses an actor that
//! has a database unless `--force`, which deletes its keys first: unlike
//! `import --force`, a raw load is not atomic.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use wasqlite::kv::{Fence, KvEntry};
use wasqlite::{ActorId, KvStore};
use wasqlite::vfs::layout::hex;

use super::{StoreArg, ToolClaim, actor_id, has_database};

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
    let kv = args.store.open()?;
    let limits = kv.limits();
    // A line holds one key and one value in hex, each within the store's
    // limits (and within 64 KiB and 16 MiB, for stores with no limit of
    // their own); anything longer is refused before it is held in memory.
    let max_line = 2 * (limits.max_key_size.min(64 << 10) + limits.max_value_size.min(16 << 20)) + 64;
    // The file is read twice, to check every line before writing any; stdin
    // cannot be, so it is copied to a temporary file first.
    let (source, mut file) = match &args.file {
        Some(path) => (path.display().to_string(), File::open(path).with_context(|| format!("reading {}", path.display()))?),
        None => ("stdin".to_owned(), spool_stdin(max_line)?),
    };
    let mut count = 0;
    let mut check = DumpReader::new(&mut file, max_line);
    while check.next_entry().with_context(|| format!("reading {source}"))?.is_some() {
        count += 1;
    }

    let claim = ToolClaim::take(&kv, &id, args.store.take_over).await?;
    let loaded = write_entries(&*kv, &id, claim.fence, &mut file, &source, max_line, args.force).await;
    claim.release().await;
    loaded?;
    println!("loaded {count} keys into actor {id}");
    Ok(ExitCode::SUCCESS)
}

/// Replaces the keys of `id` with the dump in `file`, under `fence`.
async fn write_entries(
    kv: &dyn KvStore,
    id: &ActorId,
    fence: Fence,
    file: &mut File,
    source: &str,
    max_line: usize,
    force: bool,
) -> Result<()> {
    let limits = kv.limits();
    if has_database(kv, id).await? {
        if !force {
            bail!("actor {id} already has a database; pass --force to replace its keys");
        }
        kv.delete_actor(id, fence).await.with_context(|| format!("deleting the keys of actor {id}"))?;
    }
    file.seek(SeekFrom::Start(0)).with_context(|| format!("rereading {source}"))?;
    let mut entries = DumpReader::new(file, max_line);
    let mut batch: Vec<KvEntry> = Vec::new();
    let mut bytes = 0usize;
    while let Some((key, value)) = entries.next_entry().with_context(|| format!("rereading {source}"))? {
        let size = key.len() + value.len();
        if !batch.is_empty()
            && (batch.len() >= ENTRIES_PER_BATCH.min(limits.max_keys_per_batch) || bytes + size > limits.max_batch_bytes)
        {
            kv.batch_put(id, fence, &batch).await.with_context(|| format!("writing actor {id}"))?;
            batch.clear();
            bytes = 0;
        }
        bytes += size;
        batch.push((key, value));
    }
    if !batch.is_empty() {
        kv.batch_put(id, fence, &batch).await.with_context(|| format!("writing actor {id}"))?;
    }
    Ok(())
}

/// Copies stdin to an unnamed temporary file, refusing a line longer than
/// `max_line` as it goes (so `/dev/zero` fails at once instead of filling
/// the disk).
fn spool_stdin(max_line: usize) -> Result<File> {
    let mut spool = tempfile::tempfile().context("creating a temporary file for stdin")?;
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let read = (&mut input).take(max_line as u64 + 1).read_until(b'\n', &mut line).context("reading stdin")?;
        if read == 0 {
            break;
        }
        if line.len() > max_line {
            bail!("reading stdin: line {n} is longer than {max_line} bytes, more than any key and value this store takes");
        }
        spool.write_all(&line).context("copying stdin to a temporary file")?;
    }
    spool.seek(SeekFrom::Start(0))?;
    Ok(spool)
}

/// Reads a dump line by line, checking each (see `parse_line`); memory
/// holds one line, and the keys seen so far.
struct DumpReader<'a> {
    input: BufReader<&'a mut File>,
    max_line: usize,
    seen: std::collections::HashMap<Vec<u8>, usize>,
    line: Vec<u8>,
    number: usize,
}

impl<'a> DumpReader<'a> {
    fn new(file: &'a mut File, max_line: usize) -> DumpReader<'a> {
        DumpReader { input: BufReader::new(file), max_line, seen: Default::default(), line: Vec::new(), number: 0 }
    }

    /// The next entry, `None` at the end, or the first problem.
    fn next_entry(&mut self) -> Result<Option<KvEntry>> {
        loop {
            self.line.clear();
            self.number += 1;
            let n = self.number;
            let read = (&mut self.input).take(self.max_line as u64 + 1).read_until(b'\n', &mut self.line)?;
            if read == 0 {
                return Ok(None);
            }
            if self.line.len() > self.max_line {
                bail!("line {n} is longer than {} bytes, more than any key and value this store takes", self.max_line);
            }
            let text = std::str::from_utf8(&self.line).map_err(|e| anyhow::anyhow!("line {n} is not UTF-8 text: {e}"))?;
            if let Some(entry) = parse_line(text, n, &mut self.seen)? {
                return Ok(Some(entry));
            }
        }
    }
}

/// Every entry of a dump, or the first problem, naming its line.
#[cfg(test)]
fn parse(text: &str) -> Result<Vec<KvEntry>> {
    let mut seen = std::collections::HashMap::new();
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        entries.extend(parse_line(raw, i + 1, &mut seen)?);
    }
    Ok(entries)
}

/// One line of a dump as an entry (`None` for a blank line), or what is
/// wrong with it; `seen` remembers the line of every key so far.
fn parse_line(raw: &str, n: usize, seen: &mut std::collections::HashMap<Vec<u8>, usize>) -> Result<Option<KvEntry>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let line: Line = serde_json::from_str(raw.trim_end()).map_err(|e| anyhow::anyhow!("line {n}: {}", json_problem(&e)))?;
    let key = unhex(&line.key).map_err(|why| anyhow::anyhow!("line {n}: \"key\" {why}"))?;
    let value = unhex(&line.value).map_err(|why| anyhow::anyhow!("line {n}: \"value\" {why}"))?;
    if let Some(first) = seen.insert(key.clone(), n) {
        bail!("line {n}: key {} already appeared on line {first}", line.key);
    }
    Ok(Some((Bytes::from(key), Bytes::from(value))))
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

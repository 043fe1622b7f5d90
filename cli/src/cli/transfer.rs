//! `wasqlite export` and `wasqlite import`: an actor's database as an
//! ordinary SQLite file, in either direction.
//!
//! The main database file is kept as chunks (`wasqlite::vfs::layout`), so
//! the file's bytes are the meta key's size and the chunks concatenated,
//! with missing chunks reading as zeros. Both directions are checked by
//! SQLite before they report success: export opens the written file with
//! native SQLite (rusqlite) and runs `PRAGMA integrity_check`; import runs
//! it natively on the file before it touches the actor, and inside the
//! guest after. Both stream, a batch of pages at a time.
//!
//! Import replaces an existing database (`--force`) with
//! `Actor::replace_database`, which journals the old pages first: a crash
//! or an error part-way leaves the old database, never an empty or mixed
//! one.
//!
//! Export always writes a rollback-journal database: a WAL-mode header is
//! switched to journal mode DELETE, which is exact because the actor's WAL
//! is empty once it sleeps. Import takes any SQLite file: one with another
//! page size or in WAL mode is first rewritten by native SQLite (`VACUUM
//! INTO`, then `journal_mode=DELETE` and `page_size=4096` with `VACUUM`);
//! the given file is only read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use rusqlite::{Connection, OpenFlags};
use wasqlite::vfs::layout::{CHUNK_SIZE, ChunkIndex, FileTag, chunk_key, decode_meta, meta_key};
use wasqlite::{Actor, ActorId, KvStore};

use super::{StoreArg, actor_id, has_database};

/// Every SQLite database starts with these 16 bytes.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Bytes of the database header.
const HEADER_LEN: usize = 100;

/// Most chunks read in one `batch_get` (4 MiB), within the store's limits.
const CHUNKS_PER_BATCH: usize = 1024;

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// The actor whose database to write.
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    /// The SQLite file to write: a new file, or a regular file it replaces.
    /// Device nodes, FIFOs, sockets, directories and symbolic links are
    /// refused (name the link's target instead).
    file: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The actor to load the database into.
    #[arg(long, value_name = "ID")]
    actor: String,
    #[command(flatten)]
    store: StoreArg,
    /// Replace the actor's data if it has any.
    #[arg(long)]
    force: bool,
    /// The SQLite file to read.
    file: PathBuf,
}

/// What the 100-byte header says that matters here.
struct Header {
    page_size: u32,
    wal: bool,
}

impl Header {
    /// Reads the header of `bytes`, or says why it is not an SQLite file.
    fn parse(bytes: &[u8]) -> Result<Header, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!("it is {} bytes long, shorter than an SQLite header", bytes.len()));
        }
        if &bytes[..16] != MAGIC {
            return Err("it does not start with the header string \"SQLite format 3\"".into());
        }
        let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => u32::from(n),
            n => return Err(format!("its header gives page size {n}, which SQLite never writes")),
        };
        Ok(Header { page_size, wal: bytes[18] == 2 || bytes[19] == 2 })
    }
}

/// `PRAGMA integrity_check` of a file, through native SQLite, read-only.
fn native_integrity(path: &Path) -> Result<String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(one_line(&lines))
}

/// integrity_check's rows, which may hold line breaks themselves, as one
/// line for an error message.
fn one_line(rows: &[String]) -> String {
    rows.iter().flat_map(|r| r.lines()).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// `PRAGMA integrity_check` inside the actor.
async fn actor_integrity(actor: &mut Actor) -> Result<String> {
    let rows = actor.query("PRAGMA integrity_check", ()).await?;
    let lines: Vec<String> = rows.iter().map(|r| r.get::<String>(0)).collect::<Result<_, _>>()?;
    Ok(one_line(&lines))
}

pub(crate) async fn export(args: ExportArgs) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    check_export_target(&args.file)?;
    let host = args.store.host()?;
    let kv = host.kv().clone();
    if kv.get(&id, &meta_key(FileTag::Main)).await?.is_none() {
        bail!("actor {id} has no database in {}", args.store.store);
    }
    // Reading the schema makes SQLite roll back a hot journal, if a crash
    // left one; sleeping then closes the database cleanly.
    let mut actor = args.store.wake(&host, &id).await?;
    actor.query("SELECT count(*) FROM sqlite_schema", ()).await.with_context(|| format!("reading actor {id}"))?;
    actor.sleep().await.with_context(|| format!("sleeping actor {id}"))?;

    if let Some(wal) = kv.get(&id, &meta_key(FileTag::Wal)).await?
        && decode_meta(&wal).map_err(anyhow::Error::msg)? > 0
    {
        bail!("actor {id} still has a write-ahead log after sleeping; wake it and run PRAGMA wal_checkpoint(TRUNCATE)");
    }
    let dir = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".wasqlite-export-")
        .suffix(".sqlite")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let size = write_image_to(&*kv, &id, tmp.as_file_mut()).await?;
    tmp.as_file().sync_all().context("syncing the temporary export file")?;
    let check = native_integrity(tmp.path()).context("opening the export with native SQLite")?;
    if check != "ok" {
        bail!("the exported database fails native SQLite's integrity_check: {check}");
    }
    tmp.persist(&args.file).with_context(|| format!("writing {}", args.file.display()))?;
    println!("exported actor {id} to {} ({size} bytes); integrity_check ok", args.file.display());
    Ok(ExitCode::SUCCESS)
}

/// Export writes a temporary file and renames it over `path`, which would
/// replace whatever `path` is with a regular file: a device node or a FIFO
/// with a file, a symbolic link with a file instead of writing its target.
/// Only a regular file, or nothing, may be there.
fn check_export_target(path: &Path) -> Result<()> {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
    };
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        "a symbolic link; name the file it points to"
    } else if kind.is_dir() {
        "a directory"
    } else {
        use std::os::unix::fs::FileTypeExt;
        match () {
            () if kind.is_fifo() => "a FIFO",
            () if kind.is_char_device() || kind.is_block_device() => "a device node",
            () if kind.is_socket() => "a socket",
            () => "not a regular file",
        }
    };
    bail!("refusing to export to {}: it is {what}; export writes only regular files", path.display())
}

/// Writes the main database file of an asleep actor, from its meta key and
/// chunks, to `out`, a batch of chunks at a time; returns its size.
async fn write_image_to(kv: &dyn KvStore, id: &ActorId, out: &mut std::fs::File) -> Result<u64> {
    let meta = kv.get(id, &meta_key(FileTag::Main)).await?.with_context(|| format!("actor {id} has no database"))?;
    let size = decode_meta(&meta).map_err(anyhow::Error::msg)?;
    let chunks = ChunkIndex::count_for(size);
    let per_batch = (CHUNKS_PER_BATCH as u64).min(kv.limits().max_keys_per_batch as u64).max(1);
    let mut out = std::io::BufWriter::new(out);
    let mut first = 0u64;
    while first < chunks {
        let last = (first + per_batch).min(chunks);
        let keys: Vec<Bytes> = (first..last).map(|i| chunk_key(FileTag::Main, ChunkIndex(i as u32))).collect();
        let values = kv.batch_get(id, &keys).await?;
        if values.len() != keys.len() {
            bail!("the store answered {} values for {} keys", values.len(), keys.len());
        }
        for (i, value) in (first..last).zip(values) {
            // A missing chunk, or the part of one past its stored length,
            // reads as zeros; the last chunk stops at the file's size.
            let mut chunk = vec![0u8; CHUNK_SIZE];
            if let Some(value) = value {
                let n = value.len().min(CHUNK_SIZE);
                chunk[..n].copy_from_slice(&value[..n]);
            }
            let len = (size - ChunkIndex(i as u32).offset()).min(CHUNK_SIZE as u64) as usize;
            if i == 0 && Header::parse(&chunk).is_ok_and(|h| h.wal) {
                // The actor slept, so its WAL is empty: make the file a
                // rollback-journal database that opens without one.
                chunk[18] = 1;
                chunk[19] = 1;
            }
            out.write_all(&chunk[..len]).context("writing the temporary export file")?;
        }
        first = last;
    }
    out.flush().context("writing the temporary export file")?;
    Ok(size)
}

pub(crate) async fn import(args: ImportArgs) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    let file = &args.file;
    // The file is read and checked in full before the actor is touched.
    let (source, converted) = prepare_source(file)?;
    let check = native_integrity(source.path()).with_context(|| format!("opening {} with native SQLite", file.display()))?;
    if check != "ok" {
        bail!("{} fails native SQLite's integrity_check ({check}); actor {id} was not touched", file.display());
    }
    let size = std::fs::metadata(source.path()).with_context(|| format!("reading {}", file.display()))?.len();
    if !size.is_multiple_of(CHUNK_SIZE as u64) {
        bail!("{} is {size} bytes long, not a whole number of {CHUNK_SIZE}-byte pages", file.display());
    }
    let host = args.store.host()?;
    let kv = host.kv().clone();
    if has_database(&*kv, &id).await? && !args.force {
        bail!("actor {id} already has data; pass --force to replace it");
    }
    // Waking rolls back a hot journal the old database may have; the
    // replacement then journals the old pages, so that a crash part-way
    // leaves the old database, never an empty or mixed one.
    let mut actor = args.store.wake(&host, &id).await?;
    let mut reader = std::io::BufReader::new(std::fs::File::open(source.path()).with_context(|| format!("reading {}", file.display()))?);
    let replaced = actor.replace_database(&mut reader, size).await.with_context(|| format!("importing {} into actor {id}", file.display()));
    let check = match replaced {
        Ok(()) => actor_integrity(&mut actor).await,
        Err(e) => Err(e),
    };
    actor.sleep().await.with_context(|| format!("sleeping actor {id}"))?;
    let check = check?;
    if check != "ok" {
        bail!("actor {id} fails integrity_check after the import: {check}");
    }
    let note = if converted { ", converted to 4096-byte pages and journal mode DELETE" } else { "" };
    println!("imported {} into actor {id} ({size} bytes{note}); integrity_check ok", file.display());
    Ok(ExitCode::SUCCESS)
}

/// The file to import: the given one, or a converted copy when its page
/// size is not 4096 or it is in WAL mode (true then). Only its header is
/// read here.
fn prepare_source(file: &Path) -> Result<(Source, bool)> {
    let mut header = [0u8; HEADER_LEN];
    let mut f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let read = std::io::Read::read(&mut f, &mut header).with_context(|| format!("reading {}", file.display()))?;
    let header = Header::parse(&header[..read])
        .map_err(|why| anyhow::anyhow!("{} is not an SQLite database: {why}", file.display()))?;
    if !std::fs::metadata(file)?.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    if header.page_size as usize != CHUNK_SIZE || header.wal {
        let converted = convert(file).with_context(|| format!("converting {} to 4096-byte pages", file.display()))?;
        return Ok((converted, true));
    }
    Ok((Source::Given(file.to_path_buf()), false))
}

/// Where the bytes to import are.
enum Source {
    Given(PathBuf),
    /// A converted copy, in a directory deleted when this is dropped.
    Converted(#[allow(dead_code)] tempfile::TempDir, PathBuf),
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Given(path) | Source::Converted(_, path) => path,
        }
    }
}

/// A copy of the database at `file` with 4096-byte pages and journal mode
/// DELETE, made by native SQLite in a temporary directory.
fn convert(file: &Path) -> Result<Source> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let copy = dir.path().join("converted.sqlite");
    {
        let source = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        source.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
    }
    {
        let conn = Connection::open(&copy)?;
        let _: String = conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
        conn.execute_batch(&format!("PRAGMA page_size={CHUNK_SIZE}; VACUUM;"))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        if page_size != CHUNK_SIZE as i64 {
            bail!("SQLite kept page size {page_size}");
        }
    }
    Ok(Source::Converted(dir, copy))
}

//! `wasqlite export` and `wasqlite import`: an actor's database as an
//! ordinary SQLite file, in either direction.
//!
//! The main database file is kept as chunks (`wasqlite::vfs::layout`), so
//! the file's bytes are the meta key's size and the chunks concatenated,
//! with missing chunks reading as zeros. Both directions are checked by
//! SQLite before they report success: export opens the written file with
//! native SQLite (rusqlite) and runs `PRAGMA integrity_check`; import wakes
//! the actor and runs it inside the guest.
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
use wasqlite::kv::KvEntry;
use wasqlite::vfs::layout::{CHUNK_SIZE, ChunkIndex, FileTag, chunk_key, decode_meta, encode_meta, meta_key};
use wasqlite::{Actor, ActorId, KvStore};

use super::{StoreArg, actor_id};

/// Every SQLite database starts with these 16 bytes.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Bytes of the database header.
const HEADER_LEN: usize = 100;

/// Most chunks written in one `batch_put` (4 MiB), within the store's limits.
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
    Ok(lines.join("; "))
}

/// `PRAGMA integrity_check` inside the actor.
async fn actor_integrity(actor: &mut Actor) -> Result<String> {
    let rows = actor.query("PRAGMA integrity_check", ()).await?;
    let lines: Vec<String> = rows.iter().map(|r| r.get::<String>(0)).collect::<Result<_, _>>()?;
    Ok(lines.join("; "))
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
    let mut actor = host.wake(id.as_str()).await.with_context(|| format!("waking actor {id}"))?;
    actor.query("SELECT count(*) FROM sqlite_schema", ()).await.with_context(|| format!("reading actor {id}"))?;
    actor.sleep().await.with_context(|| format!("sleeping actor {id}"))?;

    if let Some(wal) = kv.get(&id, &meta_key(FileTag::Wal)).await?
        && decode_meta(&wal).map_err(anyhow::Error::msg)? > 0
    {
        bail!("actor {id} still has a write-ahead log after sleeping; wake it and run PRAGMA wal_checkpoint(TRUNCATE)");
    }
    let image = read_image(&*kv, &id).await?;
    let size = image.len();

    let dir = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".wasqlite-export-")
        .suffix(".sqlite")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(&image).context("writing the temporary export file")?;
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

/// The main database file of an asleep actor, from its meta key and chunks.
async fn read_image(kv: &dyn KvStore, id: &ActorId) -> Result<Vec<u8>> {
    let meta = kv.get(id, &meta_key(FileTag::Main)).await?.with_context(|| format!("actor {id} has no database"))?;
    let size = decode_meta(&meta).map_err(anyhow::Error::msg)?;
    let size = usize::try_from(size).context("the database is larger than this machine's address space")?;
    let mut image = vec![0u8; size];
    let prefix = chunk_key(FileTag::Main, ChunkIndex(0));
    for (key, value) in kv.list_prefix(id, &prefix[..4]).await? {
        let index = key.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes);
        let Some(index) = index.filter(|_| key.len() == 8) else {
            bail!("actor {id} has a malformed chunk key {}", wasqlite::vfs::layout::hex(&key));
        };
        // A chunk past the size is a stale tail, left for a later truncate.
        let offset = ChunkIndex(index).offset();
        if offset >= size as u64 {
            continue;
        }
        let offset = offset as usize;
        let len = value.len().min(CHUNK_SIZE).min(size - offset);
        image[offset..offset + len].copy_from_slice(&value[..len]);
    }
    // The actor slept, so its WAL is empty: make the file a rollback-journal
    // database that opens without one.
    if Header::parse(&image).is_ok_and(|h| h.wal) {
        image[18] = 1;
        image[19] = 1;
    }
    Ok(image)
}

pub(crate) async fn import(args: ImportArgs) -> Result<ExitCode> {
    let id = actor_id(&args.actor)?;
    let file = &args.file;
    let (image, converted) = load_file(file)?;
    let host = args.store.host()?;
    let kv = host.kv().clone();
    let existing = kv.list_prefix(&id, b"").await?.len();
    if existing > 0 {
        if !args.force {
            bail!("actor {id} already has data ({existing} keys); pass --force to replace it");
        }
        kv.delete_actor(&id).await.with_context(|| format!("deleting the old data of actor {id}"))?;
    }
    write_image(&*kv, &id, image.clone()).await.with_context(|| format!("writing actor {id}"))?;

    let check = async {
        let mut actor = host.wake(id.as_str()).await?;
        let check = actor_integrity(&mut actor).await;
        actor.sleep().await?;
        check
    }
    .await;
    match check {
        Ok(check) if check == "ok" => {}
        outcome => {
            kv.delete_actor(&id).await?;
            let why = match outcome {
                Ok(check) => format!("integrity_check says: {check}"),
                Err(e) => format!("{e:#}"),
            };
            bail!("{} did not open as actor {id}'s database ({why}); the actor was left empty", file.display());
        }
    }
    let note = if converted { ", converted to 4096-byte pages and journal mode DELETE" } else { "" };
    println!("imported {} into actor {id} ({} bytes{note}); integrity_check ok", file.display(), image.len());
    Ok(ExitCode::SUCCESS)
}

/// The database image to store: the file's bytes, or a converted copy when
/// its page size is not 4096 or it is in WAL mode. True when converted.
fn load_file(file: &Path) -> Result<(Bytes, bool)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let header =
        Header::parse(&bytes).map_err(|why| anyhow::anyhow!("{} is not an SQLite database: {why}", file.display()))?;
    let (bytes, converted) = if header.page_size as usize != CHUNK_SIZE || header.wal {
        (convert(file).with_context(|| format!("converting {} to 4096-byte pages", file.display()))?, true)
    } else {
        (bytes, false)
    };
    if !bytes.len().is_multiple_of(CHUNK_SIZE) {
        bail!("{} is {} bytes long, not a whole number of {CHUNK_SIZE}-byte pages", file.display(), bytes.len());
    }
    Ok((Bytes::from(bytes), converted))
}

/// A copy of the database at `file` with 4096-byte pages and journal mode
/// DELETE, made by native SQLite in a temporary directory.
fn convert(file: &Path) -> Result<Vec<u8>> {
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
    Ok(std::fs::read(&copy)?)
}

/// Writes a database image as chunks, then its meta key, in batches within
/// the store's limits. The meta key goes last, so an interrupted import
/// leaves chunks without a database the actor would open.
async fn write_image(kv: &dyn KvStore, id: &ActorId, image: Bytes) -> Result<()> {
    let limits = kv.limits();
    let entry_bytes = 8 + CHUNK_SIZE;
    let per_batch = CHUNKS_PER_BATCH.min(limits.max_keys_per_batch).min(limits.max_batch_bytes / entry_bytes).max(1);
    let chunks = image.len() / CHUNK_SIZE;
    let mut batch: Vec<KvEntry> = Vec::with_capacity(per_batch.min(chunks));
    for i in 0..chunks {
        let index = u32::try_from(i).context("the database has more chunks than a u32 can index")?;
        let value = image.slice(i * CHUNK_SIZE..(i + 1) * CHUNK_SIZE);
        batch.push((chunk_key(FileTag::Main, ChunkIndex(index)), value));
        if batch.len() == per_batch {
            kv.batch_put(id, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        kv.batch_put(id, &batch).await?;
    }
    kv.batch_put(id, &[(meta_key(FileTag::Main), encode_meta(image.len() as u64))]).await?;
    Ok(())
}

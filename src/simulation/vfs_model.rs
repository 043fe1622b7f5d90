//! A reference model of the host VFS: arbitrary file operations run through
//! `ActorFiles` and through a plain in-memory model of byte files, compared
//! at every step. [`check`] is what the `vfs_ops` fuzz target and the
//! property test call.
//!
//! The model keeps two images of each file: what SQLite would read now
//! (`live`) and what a new process would find (`durable`). A file becomes
//! durable when it is synced or closed; syncing the database also makes the
//! journal durable (journal before database); a batch-atomic commit makes the
//! database (only) durable if it fits one KV batch and otherwise puts it back
//! as it was before BEGIN; deleting is immediate. Writes go through the same
//! steps as the xWrite import, early flush included (with a threshold of a
//! few chunks, so that the model meets it): a write after which the file is
//! clean was flushed, and is durable with its journal. `Reopen` builds a
//! fresh `ActorFiles` over the same KV and checks it against `durable`.

use std::sync::Arc;

use crate::codes as sqlite;

use crate::actor_id::ActorId;
use crate::kv::{KvLimits, MemoryKv};
use crate::vfs::layout::{CHUNK_SIZE, FileTag};
use crate::vfs::{ActorFiles, DB_NAME, open_type};

/// The early-flush threshold the model runs with: four chunks.
const EARLY_FLUSH_BYTES: usize = 4 * CHUNK_SIZE;

/// One operation on the files.
#[derive(Clone, Debug)]
pub enum VfsOp {
    /// xOpen, creating the file.
    Open(FileTag),
    /// xClose.
    Close(FileTag),
    /// xWrite of `len` bytes of `fill` at `offset`.
    Write { tag: FileTag, offset: u64, len: usize, fill: u8 },
    /// xRead.
    Read { tag: FileTag, offset: u64, len: usize },
    /// xTruncate.
    Truncate { tag: FileTag, size: u64 },
    /// xSync.
    Sync(FileTag),
    /// xFileSize.
    FileSize(FileTag),
    /// xDelete.
    Delete(FileTag),
    /// xAccess (SQLITE_ACCESS_EXISTS).
    Access(FileTag),
    /// xLock then xCheckReservedLock.
    Lock { tag: FileTag, level: i32 },
    /// BEGIN_ATOMIC_WRITE on the database.
    BeginAtomic,
    /// COMMIT_ATOMIC_WRITE on the database.
    CommitAtomic,
    /// ROLLBACK_ATOMIC_WRITE on the database.
    RollbackAtomic,
    /// Drop everything in memory and look at the KV afresh (a restart).
    Reopen,
}

/// Decodes operations from arbitrary bytes; every input decodes.
pub fn decode(bytes: &[u8]) -> Vec<VfsOp> {
    let mut ops = Vec::new();
    for c in bytes.chunks(4) {
        let b = |i: usize| u64::from(*c.get(i).unwrap_or(&0));
        let tag = [FileTag::Main, FileTag::Journal, FileTag::Wal][(b(1) % 3) as usize];
        // Offsets and lengths cluster around chunk boundaries, where bugs live.
        let offset = (b(2) % 24) * (CHUNK_SIZE as u64 / 2) + (b(3) % 5).saturating_sub(2) * (b(3) % 4);
        let op = match b(0) % 16 {
            0 => VfsOp::Open(tag),
            1 => VfsOp::Close(tag),
            2..=4 => VfsOp::Write { tag, offset, len: ((b(3) * 613) % (3 * CHUNK_SIZE as u64) + 1) as usize, fill: c[0] | 1 },
            5..=6 => VfsOp::Read { tag, offset, len: ((b(3) * 331) % (2 * CHUNK_SIZE as u64) + 1) as usize },
            7 => VfsOp::Truncate { tag, size: offset },
            8 => VfsOp::Sync(tag),
            9 => VfsOp::FileSize(tag),
            10 => VfsOp::Delete(tag),
            11 => VfsOp::Access(tag),
            12 => VfsOp::Lock { tag, level: (b(2) % 5) as i32 },
            13 => VfsOp::BeginAtomic,
            14 => [VfsOp::CommitAtomic, VfsOp::RollbackAtomic][(b(1) % 2) as usize].clone(),
            _ => VfsOp::Reopen,
        };
        ops.push(op);
    }
    ops
}

/// A byte file, or none.
type Image = Option<Vec<u8>>;

#[derive(Default)]
struct Model {
    live: [Image; 4],
    durable: [Image; 4],
    open: [bool; 4],
    /// The database image and chunks written since BEGIN_ATOMIC_WRITE.
    atomic: Option<(Image, std::collections::BTreeSet<u64>)>,
}

fn name(tag: FileTag) -> String {
    match tag {
        FileTag::Main => DB_NAME.to_owned(),
        FileTag::Journal => format!("{DB_NAME}-journal"),
        FileTag::Wal => format!("{DB_NAME}-wal"),
        FileTag::Shm => format!("{DB_NAME}-shm"),
    }
}

impl Model {
    fn sync(&mut self, tag: FileTag) {
        if tag == FileTag::Main {
            self.durable[1] = self.live[1].clone();
        }
        if self.live[tag.index()].is_some() {
            self.durable[tag.index()] = self.live[tag.index()].clone();
        }
    }
}

/// Runs `ops` against `ActorFiles` (over a `MemoryKv` with `limits`) and the
/// model, and reports the first disagreement.
///
/// # Errors
///
/// Which operation disagreed, and how.
pub async fn check(ops: &[VfsOp], limits: KvLimits) -> Result<(), String> {
    let kv = Arc::new(MemoryKv::with_limits(limits));
    let actor = ActorId::new("vfs-model").expect("valid id");
    let new_files = || {
        let mut files = ActorFiles::new(kv.clone(), actor.clone());
        files.set_flush_threshold(EARLY_FLUSH_BYTES);
        files
    };
    let mut files = new_files();
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let fail = |what: String| Err(format!("op {i} {op:?}: {what}"));
        let is_open = |m: &Model, tag: FileTag| m.open[tag.index()];
        match op.clone() {
            VfsOp::Open(tag) if is_open(&m, tag) => {
                let rc = files.open(Some(&name(tag)), open_type(tag) | sqlite::SQLITE_OPEN_READWRITE).await;
                if rc != Err(sqlite::SQLITE_CANTOPEN) {
                    return fail(format!("a second open returned {rc:?}, not SQLITE_CANTOPEN"));
                }
            }
            VfsOp::Open(tag) => {
                let rc = files.open(Some(&name(tag)), open_type(tag) | sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_READWRITE).await;
                if rc != Ok(tag as i32) {
                    return fail(format!("open returned {rc:?}"));
                }
                m.open[tag.index()] = true;
                m.live[tag.index()].get_or_insert_with(Vec::new);
            }
            VfsOp::Close(tag) if is_open(&m, tag) && m.atomic.is_none() => {
                let rc = files.close(tag).await;
                if rc != sqlite::SQLITE_OK {
                    return fail(format!("close returned {rc}"));
                }
                m.open[tag.index()] = false;
                m.sync(tag);
            }
            VfsOp::Write { tag, offset, len, fill } if is_open(&m, tag) && (m.atomic.is_none() || tag == FileTag::Main) => {
                let data = vec![fill; len];
                let rc = files.write(tag, offset, &data).await;
                if rc != sqlite::SQLITE_OK {
                    return fail(format!("write returned {rc}"));
                }
                let image = m.live[tag.index()].as_mut().expect("open files exist");
                let end = offset as usize + len;
                if image.len() < end {
                    image.resize(end, 0);
                }
                image[offset as usize..end].copy_from_slice(&data);
                if let Some((_, touched)) = m.atomic.as_mut() {
                    touched.extend(offset / CHUNK_SIZE as u64..=(end as u64 - 1) / CHUNK_SIZE as u64);
                } else if len > 0 && files.is_clean(tag) {
                    // Flushed early: the file (and, for the database, the
                    // journal before it) is what the KV holds now.
                    m.sync(tag);
                }
            }
            VfsOp::Read { tag, offset, len } if is_open(&m, tag) => {
                let mut got = vec![0xEE; len];
                let rc = files.read(tag, offset, &mut got).await;
                let image = m.live[tag.index()].as_ref().expect("open files exist");
                let mut want = vec![0u8; len];
                let avail = image.len().saturating_sub(offset as usize).min(len);
                if avail > 0 {
                    want[..avail].copy_from_slice(&image[offset as usize..offset as usize + avail]);
                }
                let want_rc = if avail < len { sqlite::SQLITE_IOERR_SHORT_READ } else { sqlite::SQLITE_OK };
                if rc != want_rc || got != want {
                    let first = got.iter().zip(&want).position(|(a, b)| a != b);
                    return fail(format!("read returned {rc} (want {want_rc}), first differing byte {first:?}"));
                }
            }
            VfsOp::Truncate { tag, size } if is_open(&m, tag) && m.atomic.is_none() => {
                let rc = files.truncate(tag, size).await;
                if rc != sqlite::SQLITE_OK {
                    return fail(format!("truncate returned {rc}"));
                }
                m.live[tag.index()].as_mut().expect("open files exist").resize(size as usize, 0);
            }
            VfsOp::Sync(tag) if is_open(&m, tag) && m.atomic.is_none() => {
                let rc = files.flush(tag).await;
                if rc != sqlite::SQLITE_OK {
                    return fail(format!("sync returned {rc}"));
                }
                m.sync(tag);
            }
            VfsOp::FileSize(tag) if is_open(&m, tag) => {
                let size = files.file_size(tag).await;
                let want = m.live[tag.index()].as_ref().map_or(0, |v| v.len() as u64);
                if size != Ok(want) {
                    return fail(format!("file size {size:?}, want {want}"));
                }
            }
            VfsOp::Delete(tag) if !is_open(&m, tag) => {
                let rc = files.delete(&name(tag)).await;
                let want = if m.live[tag.index()].is_some() { sqlite::SQLITE_OK } else { sqlite::SQLITE_IOERR_DELETE_NOENT };
                if rc != want {
                    return fail(format!("delete returned {rc}, want {want}"));
                }
                m.live[tag.index()] = None;
                m.durable[tag.index()] = None;
            }
            VfsOp::Access(tag) => {
                let got = files.access(&name(tag), sqlite::SQLITE_ACCESS_EXISTS).await;
                let want = m.live[tag.index()].as_ref().is_some_and(|v| !v.is_empty());
                if got != Ok(want) {
                    return fail(format!("access {got:?}, want {want}"));
                }
            }
            VfsOp::Lock { tag, level } if is_open(&m, tag) => {
                files.set_lock(tag, level);
                if files.reserved(tag) != (level > sqlite::SQLITE_LOCK_SHARED) {
                    return fail("reserved lock state disagrees".into());
                }
            }
            VfsOp::BeginAtomic if is_open(&m, FileTag::Main) && m.atomic.is_none() => {
                let rc = files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_BEGIN_ATOMIC_WRITE).await;
                if rc != sqlite::SQLITE_OK {
                    return fail(format!("begin atomic returned {rc}"));
                }
                m.sync(FileTag::Main);
                m.atomic = Some((m.live[0].clone(), Default::default()));
            }
            VfsOp::CommitAtomic if m.atomic.is_some() => {
                let (before, touched) = m.atomic.take().expect("checked");
                let rc = files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_COMMIT_ATOMIC_WRITE).await;
                // Dirty chunks plus the meta key must fit one batch.
                let page_bytes = touched.len() * (8 + CHUNK_SIZE) + 14;
                let fits = touched.len() < limits.max_keys_per_batch && page_bytes <= limits.max_batch_bytes;
                match (rc, fits) {
                    // The commit puts the database pages only: the journal
                    // is not touched inside the atomic window.
                    (sqlite::SQLITE_OK, true) => m.durable[0] = m.live[0].clone(),
                    (sqlite::SQLITE_IOERR_WRITE, false) => m.live[0] = before,
                    _ => return fail(format!("commit atomic returned {rc} for {} chunks", touched.len())),
                }
            }
            VfsOp::RollbackAtomic if m.atomic.is_some() => {
                let rc = files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE).await;
                if rc != sqlite::SQLITE_OK {
                    return fail(format!("rollback atomic returned {rc}"));
                }
                m.live[0] = m.atomic.take().expect("checked").0;
            }
            VfsOp::Reopen if m.atomic.is_none() => {
                files = new_files();
                m.live = m.durable.clone();
                m.open = [false; 4];
                for tag in [FileTag::Main, FileTag::Journal, FileTag::Wal] {
                    let want = &m.durable[tag.index()];
                    let exists = files.open(Some(&name(tag)), open_type(tag) | sqlite::SQLITE_OPEN_READWRITE).await.is_ok();
                    m.open[tag.index()] = exists;
                    if exists != want.is_some() {
                        return fail(format!("after reopen {tag:?} exists={exists}, want {}", want.is_some()));
                    }
                    let Some(want) = want else { continue };
                    let mut got = vec![0xEE; want.len()];
                    let rc = files.read(tag, 0, &mut got).await;
                    if (rc != sqlite::SQLITE_OK && !want.is_empty()) || &got != want {
                        return fail(format!("after reopen {tag:?} reads differently ({rc})"));
                    }
                    m.open[tag.index()] = true;
                }
            }
            // Operations SQLite never makes in the current state are skipped.
            _ => {}
        }
    }
    Ok(())
}

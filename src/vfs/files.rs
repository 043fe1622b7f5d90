//! `ActorFiles`: the files of one actor's database, kept as chunks in its KV
//! namespace (layout in `super::layout`).
//!
//! Writes are buffered per file and reach the KV when SQLite syncs, closes,
//! or commits a batch-atomic write, or when a buffer grows past a threshold.
//! That is the contract of a POSIX file that SQLite already plans for: data
//! written before a sync is durable once the sync returns, and unsynced
//! writes may land in any order, or not at all, if the host dies.
//!
//! A commit inside SQLITE_FCNTL_BEGIN_ATOMIC_WRITE .. COMMIT_ATOMIC_WRITE is
//! exactly one `batch_put` of the dirty pages and the meta key. When it does
//! not fit the backend's batch limits, the commit fails with an I/O error
//! before touching the KV, and SQLite falls back to its rollback journal.
//!
//! A failed flush keeps its buffers, as an OS page cache keeps pages after a
//! failed fsync: SQLite may read back what it wrote (a rollback replays the
//! journal it just wrote), and the next flush retries. Because the journal is
//! always flushed before the database file, whatever subset of writes has
//! reached the KV when the host dies is one SQLite recovers from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crate::codes as sqlite;

use super::layout::{
    CHUNK_SIZE, ChunkIndex, FileTag, MAX_WAKE_HINT, chunk_key, chunk_range_end, decode_meta, decode_wake_hint, encode_meta,
    encode_wake_hint, meta_key, wake_hint_key,
};
use crate::actor_id::ActorId;
use crate::guest::watchdog::TickSleep;
use crate::kv::{Fence, KvEntry, KvError, KvLimits, KvStore, inflight};
use crate::meter::KvMeter;

/// The name the guest opens its database under (vfs/sql_api.c). The journal
/// and WAL are this name plus "-journal" and "-wal".
pub const DB_NAME: &str = "actor.db";

/// Buffered bytes of one file past which writes are flushed before a sync
/// asks, to bound host memory during large non-atomic transactions.
const FLUSH_THRESHOLD: usize = 8 << 20;

/// The largest file the layout addresses: a u32 chunk index of 4 KiB chunks.
const MAX_FILE_SIZE: u64 = (u32::MAX as u64 + 1) * CHUNK_SIZE as u64;

/// The SQLITE_OPEN_* bits that say what kind of file SQLite opens.
const OPEN_TYPES: i32 = sqlite::SQLITE_OPEN_MAIN_DB
    | sqlite::SQLITE_OPEN_TEMP_DB
    | sqlite::SQLITE_OPEN_TRANSIENT_DB
    | sqlite::SQLITE_OPEN_MAIN_JOURNAL
    | sqlite::SQLITE_OPEN_TEMP_JOURNAL
    | sqlite::SQLITE_OPEN_SUBJOURNAL
    | sqlite::SQLITE_OPEN_SUPER_JOURNAL
    | sqlite::SQLITE_OPEN_WAL;

/// Most chunks a cold read fetches ahead when SQLite reads sequentially,
/// from a store in this process, and across a network: there a round trip
/// costs far more than the bytes, so one batch carries up to 1 MiB.
const READAHEAD_MAX: u32 = 32;
const READAHEAD_MAX_REMOTE: u32 = 256;

/// Most prefetched chunks one file keeps waiting to be read, beyond one
/// read-ahead window.
const PREFETCH_SLACK: usize = 32;

/// Bytes of a rollback journal's header that say whether it is hot: its
/// magic number, zeroed at the commit point (SQLite's zeroJournalHdr).
const JOURNAL_MAGIC_LEN: usize = 8;

/// An SQLite result code, as returned to the guest.
pub type ResultCode = i32;

/// One file's state.
///
/// Invariants:
/// 1. `durable` is the size recorded by the meta key in the KV (`None`: no
///    meta key), as of the last successful write or load.
/// 2. `kv_valid <= durable.unwrap_or(0)`: KV chunk bytes at offsets below
///    `kv_valid` are the file's content unless a dirty chunk overrides them;
///    everything else not in `dirty` reads as zero.
/// 3. Every chunk in `dirty` is CHUNK_SIZE bytes and lies below `size`.
/// 4. Every chunk in `prefetched` equals the KV's copy below `kv_valid` and
///    has not been written since: writes and truncation remove it.
#[derive(Default)]
struct FileState {
    exists: bool,
    size: u64,
    durable: Option<u64>,
    kv_valid: u64,
    dirty: BTreeMap<u32, Box<[u8]>>,
    meta_dirty: bool,
    open: bool,
    lock: i32,
    /// Clean chunks fetched ahead of a sequential read, each used once.
    prefetched: BTreeMap<u32, Box<[u8]>>,
    /// The last chunk a cold read fetched, to spot sequential reads.
    last_miss: Option<u32>,
    /// Chunks to fetch ahead on the next sequential miss.
    readahead: u32,
}

impl FileState {
    fn from_meta(meta: Option<u64>) -> FileState {
        FileState {
            exists: meta.is_some(),
            size: meta.unwrap_or(0),
            durable: meta,
            kv_valid: meta.unwrap_or(0),
            ..FileState::default()
        }
    }

    /// Invariants 2 to 4 above (the first is about the KV, out of reach
    /// here), checked in debug builds after every change of the file.
    fn debug_check(&self) {
        debug_assert!(self.kv_valid <= self.durable.unwrap_or(0), "invariant 2: kv_valid past the durable size");
        debug_assert!(
            self.dirty.iter().all(|(i, chunk)| chunk.len() == CHUNK_SIZE && ChunkIndex(*i).offset() < self.size),
            "invariant 3: a dirty chunk of the wrong size or past the end"
        );
        debug_assert!(
            self.prefetched.keys().all(|i| ChunkIndex(*i).offset() < self.kv_valid && !self.dirty.contains_key(i)),
            "invariant 4: a prefetched chunk past kv_valid or written since"
        );
    }

    fn dirty_bytes(&self) -> usize {
        self.dirty.len() * CHUNK_SIZE
    }

    /// Whether chunks at or past `count_for(kv_valid)` must be deleted from
    /// the KV at the next flush.
    fn has_stale_tail(&self) -> bool {
        ChunkIndex::count_for(self.kv_valid) < ChunkIndex::count_for(self.durable.unwrap_or(0))
    }

    fn is_clean(&self) -> bool {
        self.dirty.is_empty() && !self.meta_dirty && self.durable == self.exists.then_some(self.size)
    }
}

/// The SQLITE_OPEN_* type bit SQLite opens the file of `tag` with.
pub fn open_type(tag: FileTag) -> i32 {
    match tag {
        FileTag::Main => sqlite::SQLITE_OPEN_MAIN_DB,
        FileTag::Journal => sqlite::SQLITE_OPEN_MAIN_JOURNAL,
        FileTag::Wal | FileTag::Shm => sqlite::SQLITE_OPEN_WAL,
    }
}

/// Bytes of keys and values in a write, for metering.
fn entries_bytes(entries: &[KvEntry]) -> u64 {
    entries.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

/// Bytes of the values a read returned, for metering.
fn values_bytes(values: &[Option<Bytes>]) -> u64 {
    values.iter().flatten().map(|v| v.len() as u64).sum()
}

/// Bytes a read returned, none if it failed.
fn read_bytes(read: &Result<Vec<Option<Bytes>>, KvError>) -> u64 {
    read.as_deref().map_or(0, values_bytes)
}

/// `operation`, or a timeout error once `limit` has passed.
pub(crate) async fn within<T>(limit: Option<Duration>, what: &'static str, operation: impl Future<Output = Result<T, KvError>>) -> Result<T, KvError> {
    let Some(after) = limit else { return operation.await };
    let mut operation = std::pin::pin!(operation);
    let mut timer = TickSleep::new(after);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = operation.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        match std::pin::Pin::new(&mut timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(KvError::Timeout { what, after })),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A `batch_get` reply, if it has one value per key: a backend that
/// answers short or long is broken, and gets a KV error, not a panic.
fn answered_all(keys: &[Bytes], values: Vec<Option<Bytes>>) -> Result<Vec<Option<Bytes>>, KvError> {
    if values.len() != keys.len() {
        return Err(KvError::Backend(format!("the store answered {} values for {} keys", values.len(), keys.len())));
    }
    Ok(values)
}

/// Chunk `index` as the file holds it, from its KV value: zero-padded to
/// CHUNK_SIZE and zeroed at and past `kv_valid` (which lies past the
/// chunk's start).
fn chunk_from_kv(value: Option<&[u8]>, index: u32, kv_valid: u64) -> Box<[u8]> {
    let mut chunk = vec![0u8; CHUNK_SIZE].into_boxed_slice();
    if let Some(value) = value {
        let valid = (kv_valid - ChunkIndex(index).offset()).min(CHUNK_SIZE as u64) as usize;
        let n = value.len().min(valid);
        chunk[..n].copy_from_slice(&value[..n]);
    }
    chunk
}

/// What BEGIN_ATOMIC_WRITE saw, restored by a rollback.
struct AtomicWrite {
    size: u64,
    kv_valid: u64,
    meta_dirty: bool,
}

/// The database files of one actor.
pub struct ActorFiles {
    kv: Arc<dyn KvStore>,
    /// KV calls and bytes since the owner last drained them (metering).
    pub(crate) kv_meter: KvMeter,
    actor: ActorId,
    /// The owner's claim, carried by every write.
    fence: Fence,
    /// A write was refused because another host claimed the actor.
    ownership_lost: Option<KvError>,
    /// The wake hint as stored.
    stored_hint: Vec<u32>,
    /// Most chunks one sequential read fetches ahead.
    readahead_max: u32,
    /// Database chunks read since the wake, until its first call ended
    /// (`None` after): the next wake hint. Only for a store that makes
    /// callers wait: one in this process has no round trips to save.
    wake_reads: Option<std::collections::BTreeSet<u32>>,
    recorded_hint: Vec<u32>,
    limits: KvLimits,
    /// Buffered bytes of one file past which `finish_write` flushes it.
    flush_threshold: usize,
    /// Largest size of the database file; the journal and WAL may reach
    /// twice it (see `max_size_of`).
    max_size: u64,
    /// How long one KV operation may take (`None`, or a KV that answers at
    /// once: no limit).
    kv_timeout: Option<Duration>,
    /// A write timed out: it may still land, so nothing this instance
    /// buffers or reads may be trusted until it has.
    write_timed_out: bool,
    files: [FileState; 4],
    /// False until the meta keys are read, once per wake.
    loaded: bool,
    /// Set between BEGIN_ATOMIC_WRITE and COMMIT or ROLLBACK (main file).
    atomic: Option<AtomicWrite>,
    last_error: Option<String>,
    /// A KV write failed: the buffers may hold what the KV does not.
    write_failed: bool,
    /// Whether the journal in the KV may hold a live header, so that the
    /// next open would roll the database back with it. Unknown counts as
    /// cold: that only ever makes `may_have_committed` say yes.
    journal_hot: bool,
    /// Since `begin_call`, a write landed that may have ended a transaction:
    /// a batch-atomic commit, the journal going cold, or database pages
    /// written while no hot journal guarded them.
    may_have_committed: bool,
}

impl ActorFiles {
    pub fn new(kv: Arc<dyn KvStore>, actor: ActorId) -> ActorFiles {
        let limits = kv.limits();
        let immediate = kv.answers_immediately();
        ActorFiles {
            kv_meter: KvMeter::new(kv.backend_name()),
            kv,
            actor,
            fence: Fence::UNCLAIMED,
            ownership_lost: None,
            stored_hint: Vec::new(),
            wake_reads: None,
            recorded_hint: Vec::new(),
            readahead_max: if immediate { READAHEAD_MAX } else { READAHEAD_MAX_REMOTE },
            limits,
            flush_threshold: FLUSH_THRESHOLD,
            max_size: MAX_FILE_SIZE,
            kv_timeout: None,
            write_timed_out: false,
            files: Default::default(),
            loaded: false,
            atomic: None,
            last_error: None,
            write_failed: false,
            journal_hot: false,
            may_have_committed: false,
        }
    }

    /// Makes every later write carry `fence`.
    pub fn set_fence(&mut self, fence: Fence) {
        self.fence = fence;
    }

    /// The store's refusal, if a write found that another host claimed the
    /// actor; nothing written since can land.
    pub fn ownership_lost(&self) -> Option<&KvError> {
        self.ownership_lost.as_ref()
    }

    /// The keys a wake reads while it claims the actor: every file's meta,
    /// the first chunk of the database and the wake hint, so that opening
    /// it needs no further round trip. [`ActorFiles::preload`] takes their
    /// values.
    pub fn wake_keys() -> Vec<Bytes> {
        let mut keys: Vec<Bytes> = FileTag::ALL.iter().map(|t| meta_key(*t)).collect();
        keys.push(chunk_key(FileTag::Main, ChunkIndex(0)));
        keys.push(wake_hint_key());
        keys
    }

    /// Loads the values of [`ActorFiles::wake_keys`], read by the claim, and
    /// starts recording the next wake hint.
    pub fn preload(&mut self, values: Vec<Option<Bytes>>) -> Result<(), ResultCode> {
        let keys = Self::wake_keys();
        // The claim that read these was timed by the host's wake.
        self.kv_meter.reads += 1;
        self.kv_meter.read_bytes += values_bytes(&values);
        let mut values = match answered_all(&keys, values) {
            Ok(v) => v,
            Err(e) => return Err(self.fail(sqlite::SQLITE_IOERR_READ, format!("reading file metadata: {e}"))),
        };
        let hint = values.pop().expect("wake_keys ends with the hint");
        let first_chunk = values.pop().expect("then the first chunk");
        self.load_metas(values)?;
        if !self.kv.answers_immediately() {
            self.wake_reads = Some(Default::default());
            self.stored_hint = hint.as_deref().and_then(decode_wake_hint).unwrap_or_default();
        }
        let file = &mut self.files[FileTag::Main.index()];
        if file.kv_valid > 0 {
            file.prefetched.insert(0, chunk_from_kv(first_chunk.as_deref(), 0, file.kv_valid));
            file.debug_check();
        }
        Ok(())
    }

    /// Fetches the chunks the stored wake hint lists, in one batch, ahead of
    /// the reads that will want them. Only a hint: a failure fetches
    /// nothing.
    pub async fn prefetch_hinted(&mut self) {
        let chunks = ChunkIndex::count_for(self.files[FileTag::Main.index()].kv_valid);
        let hinted: Vec<u32> = self.stored_hint.iter().copied().filter(|i| *i > 0 && u64::from(*i) < chunks).collect();
        // More than one batch would be more than the one round trip a hint
        // is worth.
        if hinted.is_empty() || hinted.len() > self.limits.max_keys_per_batch {
            return;
        }
        let Ok(fetched) = self.fetch_chunks(FileTag::Main, &hinted).await else { return };
        let file = &mut self.files[FileTag::Main.index()];
        file.prefetched.extend(hinted.into_iter().zip(fetched));
        file.debug_check();
    }

    /// Ends the recording of the next wake hint (after the wake's first
    /// call).
    pub fn end_wake_window(&mut self) {
        if let Some(reads) = self.wake_reads.take() {
            // This wake's pages first, then those of earlier wakes, so that
            // wakes whose first calls differ all find theirs.
            let mut hint: Vec<u32> = reads.into_iter().collect();
            for chunk in &self.stored_hint {
                if !hint.contains(chunk) {
                    hint.push(*chunk);
                }
            }
            hint.truncate(MAX_WAKE_HINT);
            self.recorded_hint = hint;
        }
    }

    /// Stores the wake hint this wake recorded, when it differs from the
    /// stored one. Only a hint: a failure is ignored.
    pub async fn save_wake_hint(&mut self) {
        self.end_wake_window();
        let unchanged = self.recorded_hint.len() == self.stored_hint.len()
            && self.recorded_hint.iter().all(|c| self.stored_hint.contains(c));
        if self.recorded_hint.is_empty() || unchanged {
            return;
        }
        let entry = vec![(wake_hint_key(), encode_wake_hint(&self.recorded_hint))];
        if self.write_kv(entries_bytes(&entry), |kv, actor, fence| async move { kv.batch_put(&actor, fence, &entry).await }).await.is_ok() {
            self.stored_hint = std::mem::take(&mut self.recorded_hint);
        }
    }

    /// Bounds each KV operation to `timeout`, on a backend that may make
    /// callers wait.
    pub fn set_kv_timeout(&mut self, timeout: Option<Duration>) {
        self.kv_timeout = timeout.filter(|_| !self.kv.answers_immediately());
    }

    /// Whether a KV write timed out; it may land later.
    pub fn write_timed_out(&self) -> bool {
        self.write_timed_out
    }

    /// Caps the database file at `bytes` (at most the 16 TiB the layout's
    /// u32 chunk index addresses).
    pub fn set_max_size(&mut self, bytes: u64) {
        self.max_size = bytes.min(MAX_FILE_SIZE);
    }

    /// The cap of one file: a rollback journal holds up to a whole
    /// database's pages, each with a few bytes of framing, and so may a WAL
    /// before its checkpoint.
    fn max_size_of(&self, tag: FileTag) -> u64 {
        match tag {
            FileTag::Main => self.max_size,
            _ => self.max_size.saturating_mul(2).min(MAX_FILE_SIZE),
        }
    }

    /// Starts an API call: forgets the last call's error and commit marks.
    pub fn begin_call(&mut self) {
        self.last_error = None;
        self.may_have_committed = false;
    }

    /// Whether a write that may have committed a transaction landed since
    /// `begin_call`. When such a call fails, whether its transaction
    /// committed can only be told from the KV.
    pub fn may_have_committed(&self) -> bool {
        self.may_have_committed
    }

    /// Runs a KV write built by `write` so that it ends (lands or fails)
    /// even if the call waiting for it is dropped (see `kv::inflight`).
    async fn write_kv<Fut>(&mut self, bytes: u64, write: impl FnOnce(Arc<dyn KvStore>, ActorId, Fence) -> Fut) -> Result<(), KvError>
    where
        Fut: Future<Output = Result<(), KvError>> + Send + 'static,
    {
        if self.write_timed_out {
            // A later write could land before the earlier one.
            return Err(KvError::Backend("an earlier KV write did not answer in time and has not finished; nothing more is written until it has".into()));
        }
        if let Some(lost) = &self.ownership_lost {
            return Err(lost.clone());
        }
        let running = inflight::run_to_completion(&self.kv, &self.actor, write(self.kv.clone(), self.actor.clone(), self.fence));
        let started = Instant::now();
        let result = within(self.kv_timeout, "a write", running).await;
        self.kv_meter.write(bytes, started, result.is_ok());
        // The write goes on as a task (`kv::inflight`); the next wake waits
        // for it.
        self.write_timed_out |= matches!(result, Err(KvError::Timeout { .. }));
        if let Err(lost @ KvError::OwnershipLost { .. }) = &result {
            self.ownership_lost = Some(lost.clone());
        }
        result
    }

    /// Records that writes to `tag` landed in the KV; `header` is what chunk
    /// 0 now holds there, when they changed it.
    fn note_landed(&mut self, tag: FileTag, header: Option<bool>) {
        match tag {
            FileTag::Journal => {
                let was_hot = self.journal_hot;
                if let Some(hot) = header {
                    self.journal_hot = hot;
                }
                if self.files[tag.index()].size < JOURNAL_MAGIC_LEN as u64 {
                    self.journal_hot = false;
                }
                self.may_have_committed |= was_hot && !self.journal_hot;
            }
            FileTag::Main => self.may_have_committed |= !self.journal_hot,
            FileTag::Wal => self.may_have_committed = true,
            FileTag::Shm => {}
        }
    }

    /// The backend these files live in.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// The most recent failure's description, for the SQL error message.
    pub fn take_last_error(&mut self) -> Option<String> {
        self.last_error.take()
    }

    /// The most recent failure's description, left in place (xGetLastError).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Records a failure for xGetLastError and the SQL error message.
    pub fn note_error(&mut self, what: String) {
        tracing::debug!(actor = %self.actor, "{what}");
        self.last_error = Some(what);
    }

    /// Records a failure and returns `rc`.
    fn fail(&mut self, rc: ResultCode, what: String) -> ResultCode {
        self.note_error(what);
        rc
    }

    /// Records a failed KV write and returns `rc`.
    fn fail_write(&mut self, rc: ResultCode, what: String) -> ResultCode {
        self.write_failed = true;
        self.fail(rc, what)
    }

    /// Whether a KV write failed since the last call, clearing the mark.
    pub fn take_write_failed(&mut self) -> bool {
        std::mem::take(&mut self.write_failed)
    }

    fn tag_for_name(name: &str) -> Option<FileTag> {
        match name.strip_prefix(DB_NAME)? {
            "" => Some(FileTag::Main),
            "-journal" => Some(FileTag::Journal),
            "-wal" => Some(FileTag::Wal),
            _ => None,
        }
    }

    /// Whether SQLite holds `tag` open.
    pub fn is_open(&self, tag: FileTag) -> bool {
        self.files[tag.index()].open
    }

    /// The tag behind a guest file handle (the handle is the tag's index).
    pub fn tag_for_handle(&self, handle: i32) -> Option<FileTag> {
        let tag = FileTag::from_index(usize::try_from(handle).ok()?)?;
        self.files[tag.index()].open.then_some(tag)
    }

    /// Reads the meta keys, once per wake (unless the claim preloaded them).
    async fn ensure_loaded(&mut self) -> Result<(), ResultCode> {
        if self.loaded {
            return Ok(());
        }
        let keys: Vec<Bytes> = FileTag::ALL.iter().map(|t| meta_key(*t)).collect();
        let started = Instant::now();
        let read = within(self.kv_timeout, "a read", self.kv.batch_get(&self.actor, &keys)).await;
        self.kv_meter.read(read_bytes(&read), started, read.is_ok());
        match read.and_then(|v| answered_all(&keys, v)) {
            Ok(values) => self.load_metas(values),
            Err(e) => Err(self.fail(sqlite::SQLITE_IOERR_READ, format!("reading file metadata: {e}"))),
        }
    }

    /// Takes the meta values of every file, in `FileTag::ALL` order.
    fn load_metas(&mut self, values: Vec<Option<Bytes>>) -> Result<(), ResultCode> {
        for (tag, value) in FileTag::ALL.iter().zip(values) {
            let meta = match value.as_deref().map(decode_meta).transpose() {
                Ok(m) => m,
                Err(e) => return Err(self.fail(sqlite::SQLITE_IOERR_READ, format!("{tag} file: {e}"))),
            };
            // A size no write of this host could have made is crafted or
            // corrupt. Taken as it is, SQLite would see a database of no
            // pages (its page count overflows) and a write would overwrite
            // page 1; refusing it keeps every stored page.
            if let Some(size) = meta
                && size > self.max_size_of(*tag)
            {
                return Err(self.fail(
                    sqlite::SQLITE_CORRUPT,
                    format!("the stored {tag} file size {size} is past this host's cap of {} bytes", self.max_size_of(*tag)),
                ));
            }
            self.files[tag.index()] = FileState::from_meta(meta);
        }
        self.loaded = true;
        Ok(())
    }

    /// xOpen: returns the handle.
    pub async fn open(&mut self, name: Option<&str>, flags: i32) -> Result<i32, ResultCode> {
        let Some(tag) = name.and_then(Self::tag_for_name) else {
            return Err(self.fail(
                sqlite::SQLITE_CANTOPEN,
                format!("an actor has one database, '{DB_NAME}'; cannot open '{}'", name.unwrap_or("(a file with no name)")),
            ));
        };
        if flags & OPEN_TYPES != open_type(tag) {
            return Err(self.fail(
                sqlite::SQLITE_CANTOPEN,
                format!("'{}' is the actor's {tag} file and cannot be opened as another kind of file", name.unwrap_or_default()),
            ));
        }
        self.ensure_loaded().await?;
        if self.files[tag.index()].open {
            // A second pager over the same file would write from a stale
            // cache: ATTACH or VACUUM INTO of the actor's own file.
            return Err(self.fail(
                sqlite::SQLITE_CANTOPEN,
                format!("the actor's {tag} file '{}' is already open and cannot be opened twice", name.unwrap_or_default()),
            ));
        }
        let file = &mut self.files[tag.index()];
        if !file.exists {
            if flags & sqlite::SQLITE_OPEN_CREATE == 0 {
                return Err(sqlite::SQLITE_CANTOPEN);
            }
            file.exists = true;
            file.size = 0;
            file.meta_dirty = true;
        }
        file.open = true;
        Ok(tag as i32)
    }

    /// xClose: flushes what the file buffered.
    pub async fn close(&mut self, tag: FileTag) -> ResultCode {
        let rc = self.flush(tag).await;
        let file = &mut self.files[tag.index()];
        file.open = false;
        file.lock = 0;
        if rc == sqlite::SQLITE_OK { sqlite::SQLITE_OK } else { sqlite::SQLITE_IOERR_CLOSE }
    }

    /// xDelete: removes every chunk, then the meta key. A crash between the
    /// two leaves a file of zeros, never stale chunks under a live meta.
    pub async fn delete(&mut self, name: &str) -> ResultCode {
        let Some(tag) = Self::tag_for_name(name) else {
            return sqlite::SQLITE_IOERR_DELETE_NOENT;
        };
        if let Err(rc) = self.ensure_loaded().await {
            return rc;
        }
        // From here every KV chunk of the file is stale (kv_valid = 0), so a
        // failure part-way leaves nothing that could be read back.
        let file = &mut self.files[tag.index()];
        let was_durable = file.durable.is_some();
        let existed = file.exists;
        file.dirty.clear();
        file.prefetched.clear();
        file.exists = false;
        file.size = 0;
        file.meta_dirty = false;
        file.kv_valid = 0;
        if was_durable {
            let result = self
                .write_kv(0, |kv, actor, fence| async move {
                    kv.delete_range(&actor, fence, &chunk_key(tag, ChunkIndex(0)), &chunk_range_end(tag)).await?;
                    kv.batch_delete(&actor, fence, &[meta_key(tag)]).await
                })
                .await;
            if let Err(e) = result {
                return self.fail_write(sqlite::SQLITE_IOERR_DELETE, format!("deleting {tag} file: {e}"));
            }
            self.files[tag.index()].durable = None;
            self.note_landed(tag, Some(false));
        }
        if existed { sqlite::SQLITE_OK } else { sqlite::SQLITE_IOERR_DELETE_NOENT }
    }

    /// Deletes the rollback journal if SQLite has closed it and it is cold
    /// (its header zeroed: the commit point of a journal commit in exclusive
    /// locking mode). A journal with a live header may be needed to roll
    /// back a failed commit on the next wake, and is left alone.
    pub async fn delete_journal_if_cold(&mut self) -> ResultCode {
        let tag = FileTag::Journal;
        let file = &self.files[tag.index()];
        if !self.loaded || file.open || !file.exists {
            return sqlite::SQLITE_OK;
        }
        let mut header = [0u8; 28];
        let rc = self.read(tag, 0, &mut header).await;
        if rc != sqlite::SQLITE_OK && rc != sqlite::SQLITE_IOERR_SHORT_READ {
            return rc;
        }
        if header.iter().any(|b| *b != 0) {
            return sqlite::SQLITE_OK;
        }
        self.delete(&format!("{DB_NAME}-journal")).await
    }

    /// xAccess: whether the file exists (and, for SQLITE_ACCESS_EXISTS, is
    /// not empty, as the unix VFS reports it).
    pub async fn access(&mut self, name: &str, flags: i32) -> Result<bool, ResultCode> {
        let Some(tag) = Self::tag_for_name(name) else {
            return Ok(false);
        };
        self.ensure_loaded().await?;
        let file = &self.files[tag.index()];
        Ok(match flags {
            sqlite::SQLITE_ACCESS_EXISTS => file.exists && file.size > 0,
            _ => file.exists,
        })
    }

    /// The size of `tag`'s file as last known, without loading anything.
    pub fn known_size(&self, tag: FileTag) -> u64 {
        self.files[tag.index()].size
    }

    /// xFileSize.
    pub async fn file_size(&mut self, tag: FileTag) -> Result<u64, ResultCode> {
        self.ensure_loaded().await?;
        Ok(self.files[tag.index()].size)
    }

    /// Fetches `indices` (all below `kv_valid`) from the KV, in batches the
    /// backend accepts, returning each chunk zero-padded to CHUNK_SIZE and
    /// zeroed at and past `kv_valid`.
    async fn fetch_chunks(&mut self, tag: FileTag, indices: &[u32]) -> Result<Vec<Box<[u8]>>, KvError> {
        let file = &mut self.files[tag.index()];
        if indices.iter().all(|i| file.prefetched.contains_key(i)) {
            // SQLite reads page 1 twice while it opens the database (the
            // header, then the page): the first chunk stays for the second.
            let mut take = |i: &u32| if *i == 0 { file.prefetched.get(i).cloned() } else { file.prefetched.remove(i) };
            return Ok(indices.iter().map(|i| take(i).expect("checked")).collect());
        }
        let kv_valid = file.kv_valid;
        let mut out = Vec::with_capacity(indices.len());
        for group in indices.chunks(self.limits.max_keys_per_batch.max(1)) {
            let started = Instant::now();
            let values = if let [one] = group {
                within(self.kv_timeout, "a read", self.kv.get(&self.actor, &chunk_key(tag, ChunkIndex(*one)))).await.map(|v| vec![v])
            } else {
                let keys: Vec<Bytes> = group.iter().map(|i| chunk_key(tag, ChunkIndex(*i))).collect();
                within(self.kv_timeout, "a read", self.kv.batch_get(&self.actor, &keys)).await.and_then(|v| answered_all(&keys, v))
            };
            self.kv_meter.read(read_bytes(&values), started, values.is_ok());
            let values = values?;
            for (index, value) in group.iter().zip(values) {
                out.push(chunk_from_kv(value.as_deref(), *index, kv_valid));
            }
        }
        Ok(out)
    }

    /// xRead into `out`. Returns SQLITE_IOERR_SHORT_READ, with the tail of
    /// `out` zeroed, when the read runs past the end of the file.
    pub async fn read(&mut self, tag: FileTag, offset: u64, out: &mut [u8]) -> ResultCode {
        if let Err(rc) = self.ensure_loaded().await {
            return rc;
        }
        let file = &self.files[tag.index()];
        let size = file.size;
        let end = offset.saturating_add(out.len() as u64).min(size.max(offset));
        let available = (end - offset) as usize;
        out[available..].fill(0);
        if available == 0 {
            return sqlite::SQLITE_IOERR_SHORT_READ;
        }
        let (Some(first), Some(last)) = (ChunkIndex::containing(offset), ChunkIndex::containing(end - 1)) else {
            return self.fail(sqlite::SQLITE_IOERR_READ, format!("read at offset {offset} is past the largest file"));
        };
        if tag == FileTag::Main
            && let Some(reads) = &mut self.wake_reads
            && reads.len() < MAX_WAKE_HINT
        {
            reads.extend((first.0.max(1)..=last.0).take(MAX_WAKE_HINT - reads.len()));
        }
        let mut missing: Vec<u32> = (first.0..=last.0)
            .filter(|i| !file.dirty.contains_key(i) && ChunkIndex(*i).offset() < file.kv_valid)
            .collect();
        let wanted = missing.len();
        if let (Some(&first_missing), Some(&last_missing)) = (missing.first(), missing.last())
            && !missing.iter().all(|i| file.prefetched.contains_key(i))
        {
            self.plan_readahead(tag, first_missing, last_missing, &mut missing);
        }
        let mut fetched = match self.fetch_chunks(tag, &missing).await {
            Ok(f) => f,
            Err(e) => {
                return self.fail(sqlite::SQLITE_IOERR_READ, format!("reading {tag} file at offset {offset}: {e}"));
            }
        };
        let file = &mut self.files[tag.index()];
        for (index, chunk) in missing.drain(wanted..).zip(fetched.drain(wanted..)) {
            if file.prefetched.len() >= self.readahead_max as usize + PREFETCH_SLACK {
                file.prefetched.pop_first();
            }
            file.prefetched.insert(index, chunk);
        }
        let mut fetched = missing.iter().copied().zip(fetched).peekable();
        for index in first.0..=last.0 {
            let chunk_start = ChunkIndex(index).offset();
            let from = offset.max(chunk_start);
            let to = end.min(chunk_start + CHUNK_SIZE as u64);
            let dst = &mut out[(from - offset) as usize..(to - offset) as usize];
            let src_range = (from - chunk_start) as usize..(to - chunk_start) as usize;
            if let Some(chunk) = file.dirty.get(&index) {
                dst.copy_from_slice(&chunk[src_range]);
            } else if fetched.peek().is_some_and(|(i, _)| *i == index) {
                let (_, chunk) = fetched.next().expect("peeked");
                dst.copy_from_slice(&chunk[src_range]);
            } else {
                dst.fill(0);
            }
        }
        if available < out.len() { sqlite::SQLITE_IOERR_SHORT_READ } else { sqlite::SQLITE_OK }
    }

    /// Extends a cold read of chunks `first..=last` with chunks ahead of it
    /// when SQLite is reading sequentially (a table scan, a VACUUM), so that
    /// one KV round trip serves many page reads. The window doubles while the
    /// reads stay sequential and resets when they jump.
    fn plan_readahead(&mut self, tag: FileTag, first: u32, last: u32, missing: &mut Vec<u32>) {
        let file = &mut self.files[tag.index()];
        let sequential = file.last_miss.is_some_and(|m| first == m.wrapping_add(1));
        file.readahead = if sequential { (file.readahead * 2).clamp(4, self.readahead_max) } else { 0 };
        let end = (ChunkIndex::count_for(file.kv_valid).min(u64::from(u32::MAX)) as u32).min(last.saturating_add(1 + file.readahead));
        let extra = (last + 1..end).filter(|i| !file.dirty.contains_key(i) && !file.prefetched.contains_key(i));
        missing.extend(extra);
        file.last_miss = missing.last().copied();
    }

    /// First half of xWrite: loads the chunks that the write covers only in
    /// part, so that `apply_write` can patch them without waiting.
    pub async fn prepare_write(&mut self, tag: FileTag, offset: u64, len: usize) -> ResultCode {
        if let Err(rc) = self.ensure_loaded().await {
            return rc;
        }
        let Some(end) = offset.checked_add(len as u64) else {
            return self.fail(sqlite::SQLITE_IOERR_WRITE, format!("write at offset {offset} overflows"));
        };
        if len == 0 {
            return sqlite::SQLITE_OK;
        }
        if end > self.max_size_of(tag) {
            return self.fail(sqlite::SQLITE_FULL, self.full_message(tag, end));
        }
        let (Some(first), Some(last)) = (ChunkIndex::containing(offset), ChunkIndex::containing(end - 1)) else {
            return self.fail(sqlite::SQLITE_FULL, format!("write at offset {offset} is past the largest file"));
        };
        let file = &self.files[tag.index()];
        let partial = |i: ChunkIndex| offset > i.offset() || end < i.offset() + CHUNK_SIZE as u64;
        let mut missing: Vec<u32> = [first, last]
            .into_iter()
            .filter(|i| partial(*i) && !file.dirty.contains_key(&i.0) && i.offset() < file.kv_valid)
            .map(|i| i.0)
            .collect();
        missing.dedup();
        match self.fetch_chunks(tag, &missing).await {
            Ok(chunks) => {
                let file = &mut self.files[tag.index()];
                file.dirty.extend(missing.into_iter().zip(chunks));
                sqlite::SQLITE_OK
            }
            Err(e) => self.fail(sqlite::SQLITE_IOERR_WRITE, format!("reading {tag} file before a partial write: {e}")),
        }
    }

    /// Second half of xWrite: copies `data` into the buffered chunks. Needs
    /// `prepare_write` for the same range first.
    pub fn apply_write(&mut self, tag: FileTag, offset: u64, data: &[u8]) {
        let file = &mut self.files[tag.index()];
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let index = ChunkIndex::containing(pos).expect("checked by prepare_write");
            let chunk_start = index.offset();
            let to = end.min(chunk_start + CHUNK_SIZE as u64);
            file.prefetched.remove(&index.0);
            let chunk = file.dirty.entry(index.0).or_insert_with(|| vec![0u8; CHUNK_SIZE].into_boxed_slice());
            chunk[(pos - chunk_start) as usize..(to - chunk_start) as usize]
                .copy_from_slice(&data[(pos - offset) as usize..(to - offset) as usize]);
            pos = to;
        }
        if end > file.size {
            file.size = end;
            file.meta_dirty = true;
        }
        file.debug_check();
    }

    /// xWrite in one step, exactly as the xWrite import runs it:
    /// `prepare_write`, `apply_write`, then `finish_write`.
    pub async fn write(&mut self, tag: FileTag, offset: u64, data: &[u8]) -> ResultCode {
        let rc = self.prepare_write(tag, offset, data.len()).await;
        if rc != sqlite::SQLITE_OK {
            return rc;
        }
        self.apply_write(tag, offset, data);
        self.finish_write(tag).await
    }

    /// Last step of xWrite: flushes `tag` early when it buffers more than
    /// the flush threshold outside an atomic write, to bound host memory
    /// during large transactions.
    pub async fn finish_write(&mut self, tag: FileTag) -> ResultCode {
        if self.atomic.is_none() && self.files[tag.index()].dirty_bytes() > self.flush_threshold {
            return self.flush(tag).await;
        }
        sqlite::SQLITE_OK
    }

    fn full_message(&self, tag: FileTag, size: u64) -> String {
        format!("the actor's {tag} file would grow to {size} bytes, past its cap of {} bytes", self.max_size_of(tag))
    }

    /// xTruncate. Shrinking drops buffered chunks past the end and marks the
    /// KV chunks there stale; the next flush deletes them.
    pub async fn truncate(&mut self, tag: FileTag, new_size: u64) -> ResultCode {
        if let Err(rc) = self.ensure_loaded().await {
            return rc;
        }
        if new_size > self.max_size_of(tag) {
            return self.fail(sqlite::SQLITE_FULL, self.full_message(tag, new_size));
        }
        let file = &self.files[tag.index()];
        if new_size >= file.size {
            let file = &mut self.files[tag.index()];
            file.meta_dirty |= new_size != file.size;
            file.size = new_size;
            return sqlite::SQLITE_OK;
        }
        // The chunk that will hold the new last byte keeps its head and loses
        // its tail, so a later regrowth reads zeros there.
        let boundary = ChunkIndex::containing(new_size).expect("checked above");
        let cut_inside = !new_size.is_multiple_of(CHUNK_SIZE as u64);
        if cut_inside && !file.dirty.contains_key(&boundary.0) && boundary.offset() < file.kv_valid {
            match self.fetch_chunks(tag, &[boundary.0]).await {
                Ok(mut chunks) => {
                    self.files[tag.index()].dirty.insert(boundary.0, chunks.remove(0));
                }
                Err(e) => {
                    return self.fail(sqlite::SQLITE_IOERR_TRUNCATE, format!("reading {tag} file to truncate it: {e}"));
                }
            }
        }
        let file = &mut self.files[tag.index()];
        let keep = ChunkIndex::count_for(new_size) as u32;
        file.dirty.retain(|i, _| *i < keep);
        file.prefetched.retain(|i, _| *i < keep && *i != boundary.0);
        if cut_inside && let Some(chunk) = file.dirty.get_mut(&boundary.0) {
            chunk[(new_size - boundary.offset()) as usize..].fill(0);
        }
        file.kv_valid = file.kv_valid.min(new_size);
        file.size = new_size;
        file.meta_dirty = true;
        file.debug_check();
        sqlite::SQLITE_OK
    }

    /// The chunk entries (trimmed to the file size) and meta that make the
    /// KV match the buffered state of `tag`.
    fn pending_entries(&self, tag: FileTag) -> (Vec<KvEntry>, Option<KvEntry>) {
        let file = &self.files[tag.index()];
        let chunks = file
            .dirty
            .iter()
            .map(|(index, chunk)| {
                let index = ChunkIndex(*index);
                let len = (file.size - index.offset()).min(CHUNK_SIZE as u64) as usize;
                (chunk_key(tag, index), Bytes::copy_from_slice(&chunk[..len]))
            })
            .collect();
        let meta = (file.meta_dirty || file.durable != Some(file.size)).then(|| (meta_key(tag), encode_meta(file.size)));
        (chunks, meta)
    }

    /// Splits entries into batches within the backend's limits.
    fn split_into_batches(&self, entries: Vec<KvEntry>) -> Vec<Vec<KvEntry>> {
        let mut batches: Vec<Vec<KvEntry>> = Vec::new();
        let mut bytes = 0usize;
        for entry in entries {
            let size = entry.0.len() + entry.1.len();
            let full = batches.last().is_none_or(|b| {
                b.len() >= self.limits.max_keys_per_batch || bytes + size > self.limits.max_batch_bytes
            });
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            batches.last_mut().expect("pushed above").push(entry);
        }
        batches
    }

    /// Makes the KV hold everything buffered for `tag` (xSync and friends).
    ///
    /// Order matters for a crash part-way. The journal goes out before the
    /// database file, always: SQLite's batch-atomic fallback writes database
    /// pages right after creating the journal, without syncing it between.
    /// Within a file, stale chunks are deleted first and the meta goes out
    /// with the first batch, so a torn flush can only leave a file whose
    /// unwritten parts read as zeros, which SQLite's recovery expects of a
    /// torn write.
    ///
    /// On failure the buffers stay (see the module doc) and the next flush
    /// writes them again; every write here is idempotent.
    pub async fn flush(&mut self, tag: FileTag) -> ResultCode {
        if tag == FileTag::Main {
            let rc = Box::pin(self.flush(FileTag::Journal)).await;
            if rc != sqlite::SQLITE_OK {
                return rc;
            }
        }
        let file = &self.files[tag.index()];
        if !self.loaded || !file.exists || file.is_clean() {
            return sqlite::SQLITE_OK;
        }
        if self.files[tag.index()].has_stale_tail() {
            let from = chunk_key(tag, ChunkIndex(ChunkIndex::count_for(self.files[tag.index()].kv_valid) as u32));
            let end = chunk_range_end(tag);
            if let Err(e) = self.write_kv(0, |kv, actor, fence| async move { kv.delete_range(&actor, fence, &from, &end).await }).await {
                return self.fail_write(sqlite::SQLITE_IOERR_FSYNC, format!("deleting truncated {tag} chunks: {e}"));
            }
        }
        let (chunks, meta) = self.pending_entries(tag);
        // Chunk 0 sorts first among the chunks, so it goes out in the first
        // batch, together with the meta.
        let header = self.files[tag.index()].dirty.get(&0).map(|chunk| chunk[..JOURNAL_MAGIC_LEN].iter().any(|b| *b != 0));
        let mut entries = Vec::with_capacity(chunks.len() + 1);
        entries.extend(meta);
        entries.extend(chunks);
        for (n, batch) in self.split_into_batches(entries).into_iter().enumerate() {
            if let Err(e) = self.write_kv(entries_bytes(&batch), |kv, actor, fence| async move { kv.batch_put(&actor, fence, &batch).await }).await {
                return self.fail_write(sqlite::SQLITE_IOERR_FSYNC, format!("writing {tag} file: {e}"));
            }
            if n == 0 {
                self.note_landed(tag, header);
            }
        }
        let file = &mut self.files[tag.index()];
        file.dirty.clear();
        file.meta_dirty = false;
        file.durable = Some(file.size);
        file.kv_valid = file.size;
        file.debug_check();
        sqlite::SQLITE_OK
    }

    /// Flushes every file: the safety net after each API call, for
    /// `PRAGMA synchronous=OFF`, where SQLite never syncs.
    pub async fn flush_all(&mut self) -> ResultCode {
        for tag in [FileTag::Journal, FileTag::Wal, FileTag::Main] {
            let rc = self.flush(tag).await;
            if rc != sqlite::SQLITE_OK {
                return rc;
            }
        }
        sqlite::SQLITE_OK
    }

    /// Lowers the early-flush threshold, so that a model check with small
    /// files meets early flushes too.
    #[cfg(feature = "simulation")]
    pub(crate) fn set_flush_threshold(&mut self, bytes: usize) {
        self.flush_threshold = bytes;
    }

    /// Whether the KV holds exactly what `tag` holds in the buffers.
    #[cfg(feature = "simulation")]
    pub(crate) fn is_clean(&self, tag: FileTag) -> bool {
        self.files[tag.index()].is_clean()
    }

    /// Whether any file holds writes the KV has not seen.
    pub fn has_unflushed(&self) -> bool {
        self.loaded && self.files.iter().any(|f| f.exists && !f.is_clean())
    }

    async fn begin_atomic(&mut self) -> ResultCode {
        let rc = self.flush(FileTag::Main).await;
        if rc != sqlite::SQLITE_OK {
            return rc;
        }
        let file = &self.files[FileTag::Main.index()];
        self.atomic = Some(AtomicWrite { size: file.size, kv_valid: file.kv_valid, meta_dirty: file.meta_dirty });
        sqlite::SQLITE_OK
    }

    fn rollback_atomic(&mut self) {
        if let Some(saved) = self.atomic.take() {
            let file = &mut self.files[FileTag::Main.index()];
            file.dirty.clear();
            file.size = saved.size;
            file.kv_valid = saved.kv_valid;
            file.meta_dirty = saved.meta_dirty;
            file.debug_check();
        }
    }

    /// COMMIT_ATOMIC_WRITE: one `batch_put` of the dirty pages and the meta,
    /// or an I/O error (and no KV call) when that would break a limit.
    async fn commit_atomic(&mut self) -> ResultCode {
        if self.atomic.is_none() {
            return sqlite::SQLITE_MISUSE;
        }
        let tag = FileTag::Main;
        if self.files[tag.index()].has_stale_tail() {
            self.rollback_atomic();
            return self.fail(sqlite::SQLITE_IOERR_WRITE, "atomic commit after a truncate; using the journal".into());
        }
        let (chunks, meta) = self.pending_entries(tag);
        let pages = chunks.len();
        let mut batch = chunks;
        batch.push(meta.unwrap_or_else(|| (meta_key(tag), encode_meta(self.files[tag.index()].size))));
        if let Err(e) = self.limits.check_put(&batch) {
            self.rollback_atomic();
            return self.fail(
                sqlite::SQLITE_IOERR_WRITE,
                format!("a commit of {pages} pages does not fit one KV batch ({e}); falling back to the journal"),
            );
        }
        if let Err(e) = self.write_kv(entries_bytes(&batch), |kv, actor, fence| async move { kv.batch_put(&actor, fence, &batch).await }).await {
            self.rollback_atomic();
            return self.fail_write(sqlite::SQLITE_IOERR_WRITE, format!("committing {pages} pages: {e}"));
        }
        self.may_have_committed = true;
        self.atomic = None;
        let file = &mut self.files[tag.index()];
        file.dirty.clear();
        file.meta_dirty = false;
        file.durable = Some(file.size);
        file.kv_valid = file.size;
        file.debug_check();
        sqlite::SQLITE_OK
    }

    /// xFileControl for the ops the host implements; SQLITE_NOTFOUND for
    /// the rest, which SQLite treats as "not supported".
    pub async fn file_control(&mut self, tag: FileTag, op: i32) -> ResultCode {
        match (tag, op) {
            (FileTag::Main, sqlite::SQLITE_FCNTL_BEGIN_ATOMIC_WRITE) => self.begin_atomic().await,
            (FileTag::Main, sqlite::SQLITE_FCNTL_COMMIT_ATOMIC_WRITE) => self.commit_atomic().await,
            (FileTag::Main, sqlite::SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE) => {
                self.rollback_atomic();
                sqlite::SQLITE_OK
            }
            _ => sqlite::SQLITE_NOTFOUND,
        }
    }

    /// xLock / xUnlock: one connection per actor, so every request is
    /// granted; the level is kept for xCheckReservedLock.
    pub fn set_lock(&mut self, tag: FileTag, level: i32) {
        self.files[tag.index()].lock = level;
    }

    /// xCheckReservedLock, answered as the unix VFS does for its own process.
    pub fn reserved(&self, tag: FileTag) -> bool {
        self.files[tag.index()].lock > sqlite::SQLITE_LOCK_SHARED
    }

    /// xDeviceCharacteristics: batch-atomic writes for the database file.
    pub fn device_characteristics(tag: FileTag) -> i32 {
        let base = sqlite::SQLITE_IOCAP_POWERSAFE_OVERWRITE;
        if tag == FileTag::Main { base | sqlite::SQLITE_IOCAP_BATCH_ATOMIC } else { base }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    fn setup(limits: Option<KvLimits>) -> (Arc<MemoryKv>, ActorFiles, ActorId) {
        let kv = Arc::new(limits.map(MemoryKv::with_limits).unwrap_or_default());
        let actor = ActorId::new("files-test").unwrap();
        let files = ActorFiles::new(kv.clone(), actor.clone());
        (kv, files, actor)
    }

    async fn write(files: &mut ActorFiles, tag: FileTag, offset: u64, data: &[u8]) {
        assert_eq!(files.prepare_write(tag, offset, data.len()).await, sqlite::SQLITE_OK);
        files.apply_write(tag, offset, data);
    }

    async fn read(files: &mut ActorFiles, tag: FileTag, offset: u64, len: usize) -> (ResultCode, Vec<u8>) {
        let mut out = vec![0xAA; len];
        let rc = files.read(tag, offset, &mut out).await;
        (rc, out)
    }

    #[tokio::test]
    async fn unaligned_writes_survive_a_flush_and_a_reload() {
        let (kv, mut files, actor) = setup(None);
        let tag = files.open(Some("actor.db-journal"), sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_MAIN_JOURNAL).await.unwrap();
        let tag = FileTag::from_index(tag as usize).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        write(&mut files, tag, 100, &data).await;
        assert_eq!(files.flush(tag).await, sqlite::SQLITE_OK);
        // A fresh view of the same KV sees the same bytes.
        let mut again = ActorFiles::new(kv, actor);
        again.open(Some("actor.db-journal"), sqlite::SQLITE_OPEN_MAIN_JOURNAL).await.unwrap();
        let (rc, got) = read(&mut again, tag, 0, 10_100).await;
        assert_eq!(rc, sqlite::SQLITE_OK);
        assert_eq!(&got[..100], &[0u8; 100][..]);
        assert_eq!(&got[100..], &data[..]);
    }

    #[tokio::test]
    async fn short_read_zero_fills_the_tail() {
        let (_kv, mut files, _) = setup(None);
        files.open(Some("actor.db"), sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_MAIN_DB).await.unwrap();
        write(&mut files, FileTag::Main, 0, &[7u8; 10]).await;
        let (rc, got) = read(&mut files, FileTag::Main, 5, 20).await;
        assert_eq!(rc, sqlite::SQLITE_IOERR_SHORT_READ);
        assert_eq!(&got[..5], &[7u8; 5]);
        assert_eq!(&got[5..], &[0u8; 15]);
    }

    #[tokio::test]
    async fn truncate_then_regrow_reads_zeros_and_deletes_chunks() {
        let (kv, mut files, actor) = setup(None);
        files.open(Some("actor.db"), sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_MAIN_DB).await.unwrap();
        write(&mut files, FileTag::Main, 0, &vec![9u8; 5 * CHUNK_SIZE]).await;
        assert_eq!(files.flush(FileTag::Main).await, sqlite::SQLITE_OK);
        assert_eq!(kv.keys(&actor).len(), 6);
        assert_eq!(files.truncate(FileTag::Main, 100).await, sqlite::SQLITE_OK);
        assert_eq!(files.truncate(FileTag::Main, 3 * CHUNK_SIZE as u64).await, sqlite::SQLITE_OK);
        let (_, got) = read(&mut files, FileTag::Main, 0, 3 * CHUNK_SIZE).await;
        assert!(got[..100].iter().all(|b| *b == 9) && got[100..].iter().all(|b| *b == 0));
        assert_eq!(files.flush(FileTag::Main).await, sqlite::SQLITE_OK);
        // Meta + chunk 0 (the only one ever written below the cut) remain.
        assert_eq!(kv.keys(&actor), vec![meta_key(FileTag::Main), chunk_key(FileTag::Main, ChunkIndex(0))]);
        let mut again = ActorFiles::new(kv, actor);
        again.open(Some("actor.db"), sqlite::SQLITE_OPEN_MAIN_DB).await.unwrap();
        assert_eq!(again.file_size(FileTag::Main).await.unwrap(), 3 * CHUNK_SIZE as u64);
        let (_, got2) = read(&mut again, FileTag::Main, 0, 3 * CHUNK_SIZE).await;
        assert_eq!(got, got2);
    }

    #[tokio::test]
    async fn atomic_commit_is_one_put_or_an_ioerr_without_kv_calls() {
        let (kv, mut files, actor) = setup(Some(KvLimits::RIVET));
        files.open(Some("actor.db"), sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_MAIN_DB).await.unwrap();
        assert_eq!(files.flush(FileTag::Main).await, sqlite::SQLITE_OK);
        kv.reset_counters(&actor);
        assert_eq!(files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_BEGIN_ATOMIC_WRITE).await, 0);
        write(&mut files, FileTag::Main, 0, &vec![1u8; 3 * CHUNK_SIZE]).await;
        assert_eq!(files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_COMMIT_ATOMIC_WRITE).await, 0);
        let c = kv.counters(&actor);
        assert_eq!((c.batch_puts, c.keys_written, c.reads()), (1, 4, 0));

        kv.reset_counters(&actor);
        assert_eq!(files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_BEGIN_ATOMIC_WRITE).await, 0);
        write(&mut files, FileTag::Main, 0, &vec![2u8; 200 * CHUNK_SIZE]).await;
        let rc = files.file_control(FileTag::Main, sqlite::SQLITE_FCNTL_COMMIT_ATOMIC_WRITE).await;
        assert_eq!(rc, sqlite::SQLITE_IOERR_WRITE);
        assert!(files.take_last_error().unwrap().contains("does not fit one KV batch"));
        assert_eq!(kv.counters(&actor).calls(), 0);
        // The rollback restored the committed state.
        assert_eq!(files.file_size(FileTag::Main).await.unwrap(), 3 * CHUNK_SIZE as u64);
        let (_, got) = read(&mut files, FileTag::Main, 0, CHUNK_SIZE).await;
        assert!(got.iter().all(|b| *b == 1));
    }

    #[tokio::test]
    async fn large_flush_respects_batch_limits() {
        let (kv, mut files, actor) = setup(Some(KvLimits::RIVET));
        files.open(Some("actor.db-journal"), sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_MAIN_JOURNAL).await.unwrap();
        write(&mut files, FileTag::Journal, 0, &vec![3u8; 600 * CHUNK_SIZE + 17]).await;
        assert_eq!(files.flush(FileTag::Journal).await, sqlite::SQLITE_OK);
        let c = kv.counters(&actor);
        assert!(c.max_batch_keys <= 128 && c.max_put_bytes <= 976 * 1024, "{c:?}");
        assert_eq!(c.keys_written, 602);
    }
}

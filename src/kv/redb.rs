//! `RedbKv`: the persistent backend. Every actor of a host shares one redb
//! file; each actor's keys sit under its own prefix in one table.
//!
//! ```text
//! table "wasqlite_kv"   key [ actor id bytes | 0x00 | actor's key ]   value: the value
//! ```
//!
//! Actor ids are ASCII `[A-Za-z0-9._:-]` and never contain 0x00, so the
//! prefix `id | 0x00` belongs to exactly one actor, and every key of an actor
//! lies in `[id | 0x00, id | 0x01)`. Since 0x00 sorts below every id byte,
//! table order is actor id order, then key order.
//!
//! # Promises
//!
//! 1. Every write call (`batch_put`, `batch_delete`, `delete_range`,
//!    `delete_actor`) is applied inside one redb write transaction, and
//!    returns only after that transaction committed with
//!    `Durability::Immediate`: on disk, fsync'd.
//! 2. Writes go through one writer thread. With group commit on, it takes
//!    the first queued request, drains up to `max_group - 1` more that are
//!    already waiting, applies them all in one transaction and commits once,
//!    so concurrent committers share one fsync. Each caller is answered only
//!    after the shared commit returned.
//! 3. When applying one request of a group fails, the whole transaction is
//!    aborted (nothing of the group is written) and every request of the
//!    group is retried alone, in its own transaction, so one bad request
//!    cannot fail its neighbours. When the commit itself fails, every
//!    request of the group fails with the same [`KvError::Backend`] and none
//!    of them is visible.
//! 4. Reads (`get`, `batch_get`, `list_prefix`, `list_actors`) each use one
//!    read transaction begun after the call started, so they see every write
//!    that was acknowledged before it.
//! 5. redb is blocking: writes run on the writer thread, reads on tokio's
//!    blocking pool. No call blocks an async worker thread.
//!
//! 6. Fencing: generations and leases live in this process (no other
//!    process can open the file). The writer thread checks each request's
//!    fence just before its group's transaction; a stale one fails alone
//!    with [`KvError::OwnershipLost`] and the rest of the group commits. A
//!    claim bumps the generation, then waits for a barrier sent through the
//!    writer's queue: every write checked before the bump has committed by
//!    then, every write checked after it fails, so the claim's reads see all
//!    that the old owner will ever write.
//!
//! It never holds a redb transaction across an `.await`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ::redb::{Database, ReadableDatabase, Table, TableDefinition};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::{ClaimRequest, Claimed, Fence, KvEntry, KvError, KvLimits, KvStore, Owners};
use crate::actor_id::ActorId;

/// The one table every actor's keys live in.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("wasqlite_kv");

/// Ends an actor id in a table key; below every byte an id may contain.
const SEPARATOR: u8 = 0x00;

/// How a [`RedbKv`] commits and caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// Let concurrent writes share one transaction and one fsync.
    pub group_commit: bool,
    /// Most write requests in one group transaction (at least 1).
    pub max_group: usize,
    /// redb's page cache, in bytes.
    pub cache_size: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions { group_commit: true, max_group: 256, cache_size: 64 << 20 }
    }
}

/// What the writer thread has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedbStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Write requests acknowledged as durable.
    pub writes: u64,
    /// Most requests that shared one commit.
    pub largest_group: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    largest_group: AtomicU64,
}

/// One write call, as the writer thread applies it.
enum WriteOp {
    Put(Vec<KvEntry>),
    Delete(Vec<Bytes>),
    DeleteRange { start: Bytes, end: Bytes },
    DeleteActor,
    /// Writes nothing: answered once every request queued before it is.
    Barrier,
}

struct Request {
    actor: ActorId,
    fence: Fence,
    op: WriteOp,
    reply: oneshot::Sender<Result<(), KvError>>,
}

/// A `KvStore` in one redb file.
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), wasqlite::Error> {
/// use std::sync::Arc;
/// use wasqlite::{Host, kv::RedbKv};
///
/// let host = Host::new(Arc::new(RedbKv::open("data/kv.redb")?))?;
/// let mut actor = host.wake("room-1").await?;
/// actor.execute_batch("CREATE TABLE IF NOT EXISTS t(x)").await?;
/// actor.sleep().await?;
/// # Ok(()) }
/// ```
pub struct RedbKv {
    db: Arc<Database>,
    path: PathBuf,
    options: RedbOptions,
    counters: Arc<Counters>,
    owners: Arc<Mutex<Owners>>,
    /// `None` only inside `drop`, which closes the channel to stop the
    /// writer before joining it.
    queue: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RedbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbKv").field("path", &self.path).field("options", &self.options).finish_non_exhaustive()
    }
}

impl RedbKv {
    /// Opens (or creates) the store at `path` with group commit on. The
    /// parent directory must exist. This blocks while redb opens the file,
    /// which after a crash includes redb's repair pass over it; only one
    /// process (and one `RedbKv`) may have a file open at a time.
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] when the file cannot be opened or created, is
    /// not a redb database, or is open in another process.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbKv, KvError> {
        RedbKv::open_with(path, RedbOptions::default())
    }

    /// Opens (or creates) the store at `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`RedbKv::open`].
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<RedbKv, KvError> {
        let path = path.as_ref().to_path_buf();
        let failed =
            |e: &dyn std::fmt::Display| KvError::Backend(format!("opening redb store {}: {e}", path.display()));
        let db = Database::builder().set_cache_size(options.cache_size).create(&path).map_err(|e| match e {
            ::redb::DatabaseError::DatabaseAlreadyOpen => failed(&"the file is already open in another process"),
            e => failed(&e),
        })?;
        // Create the table once, so that read transactions can always open it.
        let created = unless_panic(|| -> Result<(), String> {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.open_table(TABLE).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        });
        match created {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed(&e)),
            Err(panic) => {
                // Dropping a Database redb panicked in may panic again, in
                // its Drop, which would abort the process: leak it instead.
                std::mem::forget(db);
                return Err(failed(&format!("the file is corrupt ({panic})")));
            }
        }

        let db = Arc::new(db);
        let counters = Arc::new(Counters::default());
        let owners = Arc::new(Mutex::new(Owners::default()));
        let (queue, requests) = mpsc::channel();
        let max_group = if options.group_commit { options.max_group.max(1) } else { 1 };
        let writer = std::thread::Builder::new()
            .name("wasqlite-redb-writer".into())
            .spawn({
                let db = db.clone();
                let counters = counters.clone();
                let owners = owners.clone();
                move || write_loop(&db, &requests, max_group, &counters, &owners)
            })
            .map_err(|e| failed(&format!("starting the writer thread: {e}")))?;
        Ok(RedbKv { db, path, options, counters, owners, queue: Some(queue), writer: Some(writer) })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it was opened with.
    pub fn options(&self) -> RedbOptions {
        self.options
    }

    /// Commits and acknowledged writes so far.
    pub fn stats(&self) -> RedbStats {
        RedbStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            largest_group: self.counters.largest_group.load(Ordering::Relaxed),
        }
    }

    /// Hands a write to the writer thread and waits until it is durable.
    async fn write(&self, actor: &ActorId, fence: Fence, op: WriteOp) -> Result<(), KvError> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(|| KvError::Backend("the redb store is closing".into()))?;
        queue
            .send(Request { actor: actor.clone(), fence, op, reply })
            .map_err(|_| KvError::Backend("the redb writer thread has stopped".into()))?;
        answer.await.map_err(|_| KvError::Backend("the redb writer thread stopped before answering".into()))?
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a fresh read transaction on tokio's blocking pool.
    async fn read<R, F>(&self, what: &'static str, f: F) -> Result<R, KvError>
    where
        R: Send + 'static,
        F: FnOnce(&::redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, ::redb::StorageError>
            + Send
            + 'static,
    {
        let db = self.db.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let failed = |e: &dyn std::fmt::Display| KvError::Backend(format!("redb {what} failed: {e}"));
            unless_panic(|| {
                let txn = db.begin_read().map_err(|e| failed(&e))?;
                let table = txn.open_table(TABLE).map_err(|e| failed(&e))?;
                f(&table).map_err(|e| failed(&e))
            })
            .unwrap_or_else(|panic| Err(failed(&format!("{} is corrupt ({panic})", path.display()))))
        })
        .await
        .map_err(|e| KvError::Backend(format!("redb {what} task failed: {e}")))?
    }
}

impl Drop for RedbKv {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop once the queue is empty;
        // joining it means the file is closed cleanly when drop returns.
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The table key of `actor`'s `key`.
fn table_key(actor: &ActorId, key: &[u8]) -> Vec<u8> {
    let id = actor.as_str().as_bytes();
    let mut k = Vec::with_capacity(id.len() + 1 + key.len());
    k.extend_from_slice(id);
    k.push(SEPARATOR);
    k.extend_from_slice(key);
    k
}

/// The first table key past every key of `actor`.
fn actor_end(actor: &ActorId) -> Vec<u8> {
    let mut k = actor.as_str().as_bytes().to_vec();
    k.push(SEPARATOR + 1);
    k
}

/// The writer thread: one transaction per group of queued requests.
fn write_loop(db: &Database, requests: &mpsc::Receiver<Request>, max_group: usize, counters: &Counters, owners: &Mutex<Owners>) {
    let mut group = Vec::with_capacity(max_group);
    while let Ok(first) = requests.recv() {
        group.push(first);
        while group.len() < max_group {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        turn_away_stale_fences(&mut group, owners);
        process(db, &mut group, counters);
    }
}

/// Answers every request whose fence is stale with its error and takes it
/// out of `group` (promise 6). Barriers stay: they are answered with the
/// group, after every request ahead of them committed or failed.
fn turn_away_stale_fences(group: &mut Vec<Request>, owners: &Mutex<Owners>) {
    let owners = owners.lock().unwrap_or_else(|p| p.into_inner());
    let mut kept = Vec::with_capacity(group.len());
    for request in group.drain(..) {
        match owners.check(&request.actor, request.fence) {
            Ok(()) => kept.push(request),
            stale => {
                let _ = request.reply.send(stale);
            }
        }
    }
    *group = kept;
}

fn process(db: &Database, group: &mut Vec<Request>, counters: &Counters) {
    if group.iter().all(|r| matches!(r.op, WriteOp::Barrier)) {
        // Nothing to write, and nothing ahead of them left unanswered.
        for request in group.drain(..) {
            let _ = request.reply.send(Ok(()));
        }
        return;
    }
    match commit(db, group) {
        Ok(()) => answer_all(group, counters, Ok(())),
        Err(Failure::Apply(_)) if group.len() > 1 => {
            // One request is bad: give each its own transaction.
            for request in group.drain(..) {
                let result = commit(db, std::slice::from_ref(&request)).map_err(|f| f.into_error(1));
                answer_all(&mut vec![request], counters, result);
            }
        }
        Err(failure) => {
            let error = failure.into_error(group.len());
            answer_all(group, counters, Err(error));
        }
    }
}

fn answer_all(group: &mut Vec<Request>, counters: &Counters, result: Result<(), KvError>) {
    if result.is_ok() {
        let writes = group.iter().filter(|r| !matches!(r.op, WriteOp::Barrier)).count() as u64;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(writes, Ordering::Relaxed);
        counters.largest_group.fetch_max(writes, Ordering::Relaxed);
    }
    for request in group.drain(..) {
        // A caller that gave up (its future was dropped) needs no answer.
        let _ = request.reply.send(result.clone());
    }
}

/// Why a group transaction did not commit.
enum Failure {
    /// Applying a request failed; the transaction was aborted.
    Apply(String),
    /// Beginning or committing failed.
    Commit(String),
}

impl Failure {
    fn into_error(self, group: usize) -> KvError {
        let shared = if group > 1 { format!(" (shared by {group} writes, all failed)") } else { String::new() };
        match self {
            Failure::Apply(e) => KvError::Backend(format!("redb write failed, nothing written: {e}{shared}")),
            Failure::Commit(e) => KvError::Backend(format!("redb commit failed, nothing written: {e}{shared}")),
        }
    }
}

/// Runs `f`, turning a panic into its message. redb panics on some
/// corrupt files (an index out of range in a b-tree page) instead of
/// returning an error; a corrupt file must be an error naming it, not a
/// process that dies. (Where redb panics again in a destructor while
/// unwinding, Rust aborts the process before this can catch anything;
/// SECURITY.md lists that.)
fn unless_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "redb panicked".to_owned())
    })
}

/// Applies every request in one write transaction and commits it durably.
/// On error nothing is committed.
fn commit(db: &Database, group: &[Request]) -> Result<(), Failure> {
    unless_panic(|| commit_unguarded(db, group))
        .unwrap_or_else(|panic| Err(Failure::Commit(format!("the redb file is corrupt ({panic})"))))
}

fn commit_unguarded(db: &Database, group: &[Request]) -> Result<(), Failure> {
    let txn = db.begin_write().map_err(|e| Failure::Commit(e.to_string()))?;
    {
        let mut table = txn.open_table(TABLE).map_err(|e| Failure::Commit(e.to_string()))?;
        for request in group {
            if let Err(e) = apply(&mut table, request) {
                drop(table);
                let _ = txn.abort();
                return Err(Failure::Apply(format!("{} for actor {}: {e}", request.op.name(), request.actor)));
            }
        }
    }
    txn.commit().map_err(|e| Failure::Commit(e.to_string()))
}

impl WriteOp {
    fn name(&self) -> &'static str {
        match self {
            WriteOp::Put(_) => "batch_put",
            WriteOp::Delete(_) => "batch_delete",
            WriteOp::DeleteRange { .. } => "delete_range",
            WriteOp::DeleteActor => "delete_actor",
            WriteOp::Barrier => "barrier",
        }
    }
}

fn apply(table: &mut Table<&[u8], &[u8]>, request: &Request) -> Result<(), ::redb::StorageError> {
    let actor = &request.actor;
    match &request.op {
        WriteOp::Put(entries) => {
            for (key, value) in entries {
                #[cfg(test)]
                if &key[..] == tests::POISON_KEY {
                    return Err(::redb::StorageError::Corrupted("injected failure".into()));
                }
                table.insert(table_key(actor, key).as_slice(), &value[..])?;
            }
        }
        WriteOp::Delete(keys) => {
            for key in keys {
                table.remove(table_key(actor, key).as_slice())?;
            }
        }
        WriteOp::DeleteRange { start, end } => {
            if start < end {
                let (lo, hi) = (table_key(actor, start), table_key(actor, end));
                table.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
            }
        }
        WriteOp::DeleteActor => {
            let (lo, hi) = (table_key(actor, b""), actor_end(actor));
            table.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
        }
        WriteOp::Barrier => {}
    }
    Ok(())
}

#[async_trait]
impl KvStore for RedbKv {
    fn backend_name(&self) -> &'static str {
        "redb"
    }
    fn limits(&self) -> KvLimits {
        KvLimits::UNLIMITED
    }

    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let key = table_key(actor, key);
        self.read("get", move |table| Ok(table.get(key.as_slice())?.map(|v| Bytes::copy_from_slice(v.value())))).await
    }

    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| table_key(actor, k)).collect();
        self.read("batch_get", move |table| {
            keys.iter().map(|k| Ok(table.get(k.as_slice())?.map(|v| Bytes::copy_from_slice(v.value())))).collect()
        })
        .await
    }

    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError> {
        self.write(actor, fence, WriteOp::Put(entries.to_vec())).await
    }

    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError> {
        self.write(actor, fence, WriteOp::Delete(keys.to_vec())).await
    }

    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        let op = WriteOp::DeleteRange { start: Bytes::copy_from_slice(start), end: Bytes::copy_from_slice(end) };
        self.write(actor, fence, op).await
    }

    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError> {
        let start = table_key(actor, prefix);
        let end = actor_end(actor);
        let skip = actor.as_str().len() + 1;
        self.read("list_prefix", move |table| {
            let mut out = Vec::new();
            for entry in table.range::<&[u8]>(start.as_slice()..end.as_slice())? {
                let (k, v) = entry?;
                let k = k.value();
                if !k.starts_with(&start) {
                    break;
                }
                out.push((Bytes::copy_from_slice(&k[skip..]), Bytes::copy_from_slice(v.value())));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.write(actor, fence, WriteOp::DeleteActor).await
    }

    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError> {
        let fence = self.owners().claim(actor, request)?;
        // The barrier carries the new fence, so it passes the check; its
        // answer means every write checked under the old one has ended.
        self.write(actor, fence, WriteOp::Barrier).await?;
        let values = if request.read.is_empty() { Vec::new() } else { self.batch_get(actor, request.read).await? };
        Ok(Claimed { fence, values })
    }

    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: std::time::Duration) -> Result<(), KvError> {
        self.owners().renew(actor, fence, owner, ttl)
    }

    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.owners().release(actor, fence);
        Ok(())
    }

    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        let ids = self
            .read("list_actors", |table| {
                // One seek per actor: read the first key, then jump past
                // every key with that actor's prefix.
                let mut ids = Vec::new();
                let mut from: Vec<u8> = Vec::new();
                loop {
                    let Some(entry) = table.range::<&[u8]>(from.as_slice()..)?.next() else { break };
                    let (k, _) = entry?;
                    let k = k.value();
                    let id_len = k.iter().position(|&b| b == SEPARATOR).unwrap_or(k.len());
                    ids.push(k[..id_len].to_vec());
                    from = k[..id_len].to_vec();
                    from.push(SEPARATOR + 1);
                }
                Ok(ids)
            })
            .await?;
        ids.into_iter()
            .map(|id| {
                let text = String::from_utf8_lossy(&id).into_owned();
                ActorId::new(&text)
                    .map_err(|e| KvError::Backend(format!("the redb store holds a key of a bad actor id: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(id: &str) -> ActorId {
        ActorId::new(id).unwrap()
    }

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    fn keys(entries: &[KvEntry]) -> Vec<Bytes> {
        entries.iter().map(|(k, _)| k.clone()).collect()
    }

    #[tokio::test]
    async fn writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let a = actor("a");
        {
            let kv = RedbKv::open(&path).unwrap();
            kv.batch_put(&a, Fence::UNCLAIMED, &[(b(b"k1"), b(b"v1")), (b(b"k2"), b(b"v2"))]).await.unwrap();
            kv.batch_delete(&a, Fence::UNCLAIMED, &[b(b"k2")]).await.unwrap();
        }
        let kv = RedbKv::open(&path).unwrap();
        assert_eq!(kv.get(&a, b"k1").await.unwrap(), Some(b(b"v1")));
        assert_eq!(kv.get(&a, b"k2").await.unwrap(), None);
        assert_eq!(kv.list_actors().await.unwrap(), vec![a]);
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_file_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let _kv = RedbKv::open(&path).unwrap();
        let err = RedbKv::open(&path).unwrap_err().to_string();
        assert!(err.contains("already open"), "{err}");
    }

    #[tokio::test]
    async fn namespaces_ranges_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let kv = RedbKv::open(dir.path().join("kv.redb")).unwrap();
        // "a" is a prefix of "a-b" and "a.x": their keys must stay apart.
        let (a, ab, ax, z) = (actor("a"), actor("a-b"), actor("a.x"), actor("z"));
        kv.batch_put(&a, Fence::UNCLAIMED, &[(b(b"k1"), b(b"1")), (b(b"k2"), b(b"2")), (b(b"k3"), b(b"3"))]).await.unwrap();
        kv.batch_put(&ab, Fence::UNCLAIMED, &[(b(b"k1"), b(b"ab"))]).await.unwrap();
        kv.batch_put(&ax, Fence::UNCLAIMED, &[(b(b""), b(b"empty key")), (b(b"\0\xff"), b(b"odd key"))]).await.unwrap();
        kv.batch_put(&z, Fence::UNCLAIMED, &[(b(b"k1"), b(b"other"))]).await.unwrap();
        assert_eq!(kv.list_actors().await.unwrap(), vec![a.clone(), ab.clone(), ax.clone(), z.clone()]);

        assert_eq!(keys(&kv.list_prefix(&a, b"").await.unwrap()), vec![b(b"k1"), b(b"k2"), b(b"k3")]);
        assert_eq!(keys(&kv.list_prefix(&ax, b"").await.unwrap()), vec![b(b""), b(b"\0\xff")]);
        assert_eq!(kv.list_prefix(&a, b"k2").await.unwrap(), vec![(b(b"k2"), b(b"2"))]);

        kv.delete_range(&a, Fence::UNCLAIMED, b"k1", b"k3").await.unwrap();
        kv.delete_range(&a, Fence::UNCLAIMED, b"k3", b"k1").await.unwrap(); // empty range
        assert_eq!(keys(&kv.list_prefix(&a, b"").await.unwrap()), vec![b(b"k3")]);
        assert_eq!(kv.batch_get(&ab, &[b(b"k1"), b(b"k2")]).await.unwrap(), vec![Some(b(b"ab")), None]);

        kv.delete_actor(&a, Fence::UNCLAIMED).await.unwrap();
        assert!(kv.list_prefix(&a, b"").await.unwrap().is_empty());
        assert_eq!(kv.get(&ab, b"k1").await.unwrap(), Some(b(b"ab")));
        assert_eq!(kv.list_actors().await.unwrap(), vec![ab, ax, z]);
    }

    /// A put holding this key fails while being applied (test builds only).
    pub(super) const POISON_KEY: &[u8] = b"\xffpoison";

    #[test]
    fn a_stale_fence_fails_its_request_alone_and_the_group_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("kv.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap();
        txn.commit().unwrap();
        let owners = Mutex::new(Owners::default());
        let request = ClaimRequest { owner: "b", ttl: std::time::Duration::from_secs(60), takeover: super::super::Takeover::IfFree, read: &[] };
        let current = owners.lock().unwrap().claim(&actor("moved"), &request).unwrap();

        let mut answers = Vec::new();
        let mut group = Vec::new();
        let ops = [("a", Fence::UNCLAIMED), ("moved", Fence::UNCLAIMED), ("moved", current), ("c", Fence::UNCLAIMED)];
        for (id, fence) in ops {
            let (reply, answer) = oneshot::channel();
            let op = WriteOp::Put(vec![(b(b"k"), b(format!("{fence:?}").as_bytes()))]);
            group.push(Request { actor: actor(id), fence, op, reply });
            answers.push(answer);
        }
        turn_away_stale_fences(&mut group, &owners);
        let counters = Counters::default();
        process(&db, &mut group, &counters);
        let results: Vec<_> = answers.into_iter().map(|mut a| a.try_recv().expect("answered")).collect();
        assert!(matches!(results[1], Err(KvError::OwnershipLost { held: 0, current: 1 })), "{results:?}");
        assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok(), "{results:?}");
        assert_eq!(counters.commits.load(Ordering::Relaxed), 1, "the group did not commit as one");
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(TABLE).unwrap();
        let moved = table.get(b"moved\0k".as_slice()).unwrap().unwrap().value().to_vec();
        assert_eq!(moved, format!("{current:?}").into_bytes());
    }

    #[test]
    fn a_bad_request_fails_alone_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("kv.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap();
        txn.commit().unwrap();

        // Three requests in one group, the middle one bad after a good entry.
        let mut answers = Vec::new();
        let mut group = Vec::new();
        let ops = [
            ("a", WriteOp::Put(vec![(b(b"k"), b(b"a"))])),
            ("b", WriteOp::Put(vec![(b(b"k1"), b(b"b")), (b(POISON_KEY), b(b"x"))])),
            ("c", WriteOp::Put(vec![(b(b"k"), b(b"c"))])),
        ];
        for (id, op) in ops {
            let (reply, answer) = oneshot::channel();
            group.push(Request { actor: actor(id), fence: Fence::UNCLAIMED, op, reply });
            answers.push(answer);
        }
        let counters = Counters::default();
        process(&db, &mut group, &counters);
        assert!(group.is_empty());
        let results: Vec<_> = answers.into_iter().map(|mut a| a.try_recv().expect("answered")).collect();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("batch_put for actor b") && err.contains("nothing written"), "{err}");

        let txn = db.begin_read().unwrap();
        let table = txn.open_table(TABLE).unwrap();
        let all: Vec<Vec<u8>> = table.range::<&[u8]>(..).unwrap().map(|e| e.unwrap().0.value().to_vec()).collect();
        assert_eq!(all, vec![b"a\0k".to_vec(), b"c\0k".to_vec()]);
        // The group was aborted, then a and c committed alone.
        assert_eq!(counters.commits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_share_commits_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let kv = Arc::new(RedbKv::open(&path).unwrap());
        let writers = 64u32;
        let rounds = 20u32;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let kv = kv.clone();
            tasks.spawn(async move {
                let id = actor(&format!("w{w}"));
                for r in 0..rounds {
                    let entries = vec![
                        (b(&r.to_be_bytes()), b(format!("{w}:{r}").as_bytes())),
                        (b(b"last"), b(&r.to_be_bytes())),
                    ];
                    kv.batch_put(&id, Fence::UNCLAIMED, &entries).await.unwrap();
                    // Acknowledged means visible to a read that starts now.
                    assert_eq!(kv.get(&id, b"last").await.unwrap(), Some(b(&r.to_be_bytes())));
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let stats = kv.stats();
        assert_eq!(stats.writes, u64::from(writers * rounds));
        assert!(stats.commits < stats.writes, "no commit was shared: {stats:?}");
        assert!(stats.largest_group > 1, "{stats:?}");
        drop(tasks);
        let kv = Arc::into_inner(kv).expect("every task ended");
        drop(kv);

        let kv = RedbKv::open(&path).unwrap();
        assert_eq!(kv.list_actors().await.unwrap().len(), writers as usize);
        for w in 0..writers {
            let entries = kv.list_prefix(&actor(&format!("w{w}")), b"").await.unwrap();
            assert_eq!(entries.len(), rounds as usize + 1, "writer {w}");
            for (r, (k, v)) in entries.iter().take(rounds as usize).enumerate() {
                assert_eq!(&k[..], &(r as u32).to_be_bytes());
                assert_eq!(&v[..], format!("{w}:{r}").as_bytes());
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn without_group_commit_each_write_is_its_own_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let options = RedbOptions { group_commit: false, ..RedbOptions::default() };
        let kv = Arc::new(RedbKv::open_with(dir.path().join("kv.redb"), options).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..16u32 {
            let kv = kv.clone();
            tasks.spawn(async move {
                for r in 0..5u32 {
                    kv.batch_put(&actor(&format!("w{w}")), Fence::UNCLAIMED, &[(b(&r.to_be_bytes()), b(b"v"))]).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let stats = kv.stats();
        // Creating the table at open is not counted.
        assert_eq!((stats.commits, stats.writes, stats.largest_group), (80, 80, 1));
    }
}

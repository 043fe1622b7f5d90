//! `MemoryKv`: a complete in-memory backend. Data lives until the process
//! ends. It enforces a limits profile (none by default, or Rivet's) and counts
//! every call per actor, so tests can assert exactly what the VFS sent.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ClaimRequest, Claimed, Fence, KvEntry, KvError, KvLimits, KvStore, Owners};
use crate::actor_id::ActorId;

/// Calls one actor made, and the largest batches among them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvCounters {
    /// `get` calls.
    pub gets: u64,
    /// `batch_get` calls.
    pub batch_gets: u64,
    /// Keys asked for by `get` and `batch_get`.
    pub keys_read: u64,
    /// `batch_put` calls.
    pub batch_puts: u64,
    /// Keys written by `batch_put`.
    pub keys_written: u64,
    /// `batch_delete` calls.
    pub batch_deletes: u64,
    /// `delete_range` calls.
    pub delete_ranges: u64,
    /// `list_prefix` calls.
    pub list_prefixes: u64,
    /// `claim` calls (each also reads the keys it was given).
    pub claims: u64,
    /// `renew` and `release` calls.
    pub lease_calls: u64,
    /// Most keys in any one batch call.
    pub max_batch_keys: u64,
    /// Most key plus value bytes in any one `batch_put`.
    pub max_put_bytes: u64,
}

impl KvCounters {
    /// Every call counted, of any kind.
    pub fn calls(&self) -> u64 {
        self.gets + self.batch_gets + self.batch_puts + self.batch_deletes + self.delete_ranges + self.list_prefixes + self.claims + self.lease_calls
    }

    /// Calls that read (a claim reads too).
    pub fn reads(&self) -> u64 {
        self.gets + self.batch_gets + self.list_prefixes + self.claims
    }

    fn saw_batch(&mut self, keys: usize) {
        self.max_batch_keys = self.max_batch_keys.max(keys as u64);
    }
}

#[derive(Default)]
struct Namespace {
    entries: BTreeMap<Bytes, Bytes>,
    counters: KvCounters,
}

#[derive(Default)]
struct Inner {
    actors: HashMap<ActorId, Namespace>,
    /// Kept apart from the namespaces: a generation outlives `delete_actor`.
    owners: Owners,
}

/// An in-memory `KvStore`.
#[derive(Default)]
pub struct MemoryKv {
    limits: Option<KvLimits>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKv").field("limits", &self.limits()).finish_non_exhaustive()
    }
}

impl MemoryKv {
    /// A store with no limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that enforces `limits`, such as [`KvLimits::RIVET`].
    pub fn with_limits(limits: KvLimits) -> Self {
        MemoryKv { limits: Some(limits), inner: Mutex::default() }
    }

    /// The calls `actor` has made so far.
    pub fn counters(&self, actor: &ActorId) -> KvCounters {
        self.lock().actors.get(actor).map(|ns| ns.counters).unwrap_or_default()
    }

    /// Sets `actor`'s counters back to zero.
    pub fn reset_counters(&self, actor: &ActorId) {
        if let Some(ns) = self.lock().actors.get_mut(actor) {
            ns.counters = KvCounters::default();
        }
    }

    /// Every key `actor` has, in order (not counted as a call).
    pub fn keys(&self, actor: &ActorId) -> Vec<Bytes> {
        self.lock().actors.get(actor).map(|ns| ns.entries.keys().cloned().collect()).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch:
        // every method validates before it mutates.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_ns<R>(&self, actor: &ActorId, f: impl FnOnce(&mut Namespace) -> R) -> R {
        let mut inner = self.lock();
        f(inner.actors.entry(actor.clone()).or_default())
    }

    /// Runs the write `f` if `fence` is current, in the same critical
    /// section as the check.
    fn fenced_write(&self, actor: &ActorId, fence: Fence, f: impl FnOnce(&mut Namespace)) -> Result<(), KvError> {
        let mut inner = self.lock();
        inner.owners.check(actor, fence)?;
        f(inner.actors.entry(actor.clone()).or_default());
        Ok(())
    }
}

#[async_trait]
impl KvStore for MemoryKv {
    fn backend_name(&self) -> &'static str {
        "memory"
    }
    fn limits(&self) -> KvLimits {
        self.limits.unwrap_or(KvLimits::UNLIMITED)
    }

    // Every method takes a std mutex and returns; nothing ever waits.
    fn answers_immediately(&self) -> bool {
        true
    }

    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.limits().check_keys(std::iter::once(key))?;
        Ok(self.with_ns(actor, |ns| {
            ns.counters.gets += 1;
            ns.counters.keys_read += 1;
            ns.entries.get(key).cloned()
        }))
    }

    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError> {
        self.limits().check_keys(keys.iter().map(|k| &k[..]))?;
        Ok(self.with_ns(actor, |ns| {
            ns.counters.batch_gets += 1;
            ns.counters.keys_read += keys.len() as u64;
            ns.counters.saw_batch(keys.len());
            keys.iter().map(|k| ns.entries.get(k).cloned()).collect()
        }))
    }

    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError> {
        self.limits().check_put(entries)?;
        self.fenced_write(actor, fence, |ns| {
            ns.counters.batch_puts += 1;
            ns.counters.keys_written += entries.len() as u64;
            ns.counters.saw_batch(entries.len());
            let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
            ns.counters.max_put_bytes = ns.counters.max_put_bytes.max(bytes as u64);
            for (k, v) in entries {
                ns.entries.insert(k.clone(), v.clone());
            }
        })
    }

    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError> {
        self.limits().check_keys(keys.iter().map(|k| &k[..]))?;
        self.fenced_write(actor, fence, |ns| {
            ns.counters.batch_deletes += 1;
            ns.counters.saw_batch(keys.len());
            for k in keys {
                ns.entries.remove(k);
            }
        })
    }

    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        self.fenced_write(actor, fence, |ns| {
            ns.counters.delete_ranges += 1;
            if start < end {
                let doomed: Vec<Bytes> = ns
                    .entries
                    .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    ns.entries.remove(&k);
                }
            }
        })
    }

    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError> {
        Ok(self.with_ns(actor, |ns| {
            ns.counters.list_prefixes += 1;
            ns.entries
                .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.fenced_write(actor, fence, |ns| ns.entries.clear())
    }

    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        let mut ids: Vec<ActorId> =
            self.lock().actors.iter().filter(|(_, ns)| !ns.entries.is_empty()).map(|(id, _)| id.clone()).collect();
        ids.sort();
        Ok(ids)
    }

    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError> {
        self.limits().check_keys(request.read.iter().map(|k| &k[..]))?;
        let mut inner = self.lock();
        let fence = inner.owners.claim(actor, request)?;
        let ns = inner.actors.entry(actor.clone()).or_default();
        ns.counters.claims += 1;
        ns.counters.keys_read += request.read.len() as u64;
        ns.counters.saw_batch(request.read.len());
        let values = request.read.iter().map(|k| ns.entries.get(k).cloned()).collect();
        Ok(Claimed { fence, values })
    }

    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: std::time::Duration) -> Result<(), KvError> {
        let mut inner = self.lock();
        inner.actors.entry(actor.clone()).or_default().counters.lease_calls += 1;
        inner.owners.renew(actor, fence, owner, ttl)
    }

    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        let mut inner = self.lock();
        inner.actors.entry(actor.clone()).or_default().counters.lease_calls += 1;
        inner.owners.release(actor, fence);
        Ok(())
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

    #[tokio::test]
    async fn namespaces_are_separate_and_ranges_are_half_open() {
        let kv = MemoryKv::new();
        let (a, z) = (actor("a"), actor("z"));
        kv.batch_put(&a, Fence::UNCLAIMED, &[(b(b"k1"), b(b"1")), (b(b"k2"), b(b"2")), (b(b"k3"), b(b"3"))]).await.unwrap();
        kv.batch_put(&z, Fence::UNCLAIMED, &[(b(b"k1"), b(b"other"))]).await.unwrap();
        kv.delete_range(&a, Fence::UNCLAIMED, b"k1", b"k3").await.unwrap();
        assert_eq!(kv.keys(&a), vec![b(b"k3")]);
        assert_eq!(kv.get(&z, b"k1").await.unwrap(), Some(b(b"other")));
        assert_eq!(kv.list_actors().await.unwrap(), vec![a, z]);
    }

    #[tokio::test]
    async fn over_limit_put_changes_nothing() {
        let kv = MemoryKv::with_limits(KvLimits::RIVET);
        let a = actor("a");
        let too_many: Vec<KvEntry> = (0..129u32).map(|i| (b(&i.to_be_bytes()), b(b"v"))).collect();
        let err = kv.batch_put(&a, Fence::UNCLAIMED, &too_many).await.unwrap_err();
        assert!(matches!(err, KvError::LimitExceeded { what: "keys per batch", limit: 128, actual: 129 }));
        let big_value = vec![(b(b"k"), Bytes::from(vec![0u8; 128 * 1024 + 1]))];
        assert!(kv.batch_put(&a, Fence::UNCLAIMED, &big_value).await.is_err());
        assert!(kv.keys(&a).is_empty());
    }
}

//! `MemoryKv`: a complete in-memory backend. Data lives until the process
//! ends. It enforces a limits profile (none by default, or Rivet's) and counts
//! every call per actor, so tests can assert exactly what the VFS sent.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{KvEntry, KvError, KvLimits, KvStore};
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
    /// Most keys in any one batch call.
    pub max_batch_keys: u64,
    /// Most key plus value bytes in any one `batch_put`.
    pub max_put_bytes: u64,
}

impl KvCounters {
    /// Every call counted, of any kind.
    pub fn calls(&self) -> u64 {
        self.gets + self.batch_gets + self.batch_puts + self.batch_deletes + self.delete_ranges + self.list_prefixes
    }

    /// Calls that read.
    pub fn reads(&self) -> u64 {
        self.gets + self.batch_gets + self.list_prefixes
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

/// An in-memory `KvStore`.
#[derive(Default)]
pub struct MemoryKv {
    limits: Option<KvLimits>,
    actors: Mutex<HashMap<ActorId, Namespace>>,
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
        MemoryKv { limits: Some(limits), actors: Mutex::default() }
    }

    /// The calls `actor` has made so far.
    pub fn counters(&self, actor: &ActorId) -> KvCounters {
        self.lock().get(actor).map(|ns| ns.counters).unwrap_or_default()
    }

    /// Sets `actor`'s counters back to zero.
    pub fn reset_counters(&self, actor: &ActorId) {
        if let Some(ns) = self.lock().get_mut(actor) {
            ns.counters = KvCounters::default();
        }
    }

    /// Every key `actor` has, in order (not counted as a call).
    pub fn keys(&self, actor: &ActorId) -> Vec<Bytes> {
        self.lock().get(actor).map(|ns| ns.entries.keys().cloned().collect()).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Namespace>> {
        // A panic while holding the lock cannot leave a half-applied batch:
        // every method validates before it mutates.
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_ns<R>(&self, actor: &ActorId, f: impl FnOnce(&mut Namespace) -> R) -> R {
        let mut actors = self.lock();
        f(actors.entry(actor.clone()).or_default())
    }
}

#[async_trait]
impl KvStore for MemoryKv {
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

    async fn batch_put(&self, actor: &ActorId, entries: &[KvEntry]) -> Result<(), KvError> {
        self.limits().check_put(entries)?;
        self.with_ns(actor, |ns| {
            ns.counters.batch_puts += 1;
            ns.counters.keys_written += entries.len() as u64;
            ns.counters.saw_batch(entries.len());
            let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
            ns.counters.max_put_bytes = ns.counters.max_put_bytes.max(bytes as u64);
            for (k, v) in entries {
                ns.entries.insert(k.clone(), v.clone());
            }
        });
        Ok(())
    }

    async fn batch_delete(&self, actor: &ActorId, keys: &[Bytes]) -> Result<(), KvError> {
        self.limits().check_keys(keys.iter().map(|k| &k[..]))?;
        self.with_ns(actor, |ns| {
            ns.counters.batch_deletes += 1;
            ns.counters.saw_batch(keys.len());
            for k in keys {
                ns.entries.remove(k);
            }
        });
        Ok(())
    }

    async fn delete_range(&self, actor: &ActorId, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        self.with_ns(actor, |ns| {
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
        });
        Ok(())
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

    async fn delete_actor(&self, actor: &ActorId) -> Result<(), KvError> {
        self.with_ns(actor, |ns| ns.entries.clear());
        Ok(())
    }

    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        let mut ids: Vec<ActorId> =
            self.lock().iter().filter(|(_, ns)| !ns.entries.is_empty()).map(|(id, _)| id.clone()).collect();
        ids.sort();
        Ok(ids)
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
        kv.batch_put(&a, &[(b(b"k1"), b(b"1")), (b(b"k2"), b(b"2")), (b(b"k3"), b(b"3"))]).await.unwrap();
        kv.batch_put(&z, &[(b(b"k1"), b(b"other"))]).await.unwrap();
        kv.delete_range(&a, b"k1", b"k3").await.unwrap();
        assert_eq!(kv.keys(&a), vec![b(b"k3")]);
        assert_eq!(kv.get(&z, b"k1").await.unwrap(), Some(b(b"other")));
        assert_eq!(kv.list_actors().await.unwrap(), vec![a, z]);
    }

    #[tokio::test]
    async fn over_limit_put_changes_nothing() {
        let kv = MemoryKv::with_limits(KvLimits::RIVET);
        let a = actor("a");
        let too_many: Vec<KvEntry> = (0..129u32).map(|i| (b(&i.to_be_bytes()), b(b"v"))).collect();
        let err = kv.batch_put(&a, &too_many).await.unwrap_err();
        assert!(matches!(err, KvError::LimitExceeded { what: "keys per batch", limit: 128, actual: 129 }));
        let big_value = vec![(b(b"k"), Bytes::from(vec![0u8; 128 * 1024 + 1]))];
        assert!(kv.batch_put(&a, &big_value).await.is_err());
        assert!(kv.keys(&a).is_empty());
    }
}

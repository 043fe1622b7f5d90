//! `LatencyKv`: wraps any backend, makes every call wait a fixed time first,
//! as a network round trip would, and counts the calls. Tests assert round
//! trips with it; `wasqlite bench` measures what a remote KV's latency does
//! to wakes and writes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ClaimRequest, Claimed, Fence, KvCounters, KvEntry, KvError, KvLimits, KvStore};
use crate::actor_id::ActorId;

/// A backend with a round-trip time.
#[derive(Debug)]
pub struct LatencyKv<K> {
    inner: K,
    /// Nanoseconds.
    latency: AtomicU64,
    counters: Mutex<KvCounters>,
}

impl<K: KvStore> LatencyKv<K> {
    /// Wraps `inner`; each call first waits `latency`.
    pub fn new(inner: K, latency: Duration) -> Self {
        let latency = AtomicU64::new(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        LatencyKv { inner, latency, counters: Mutex::default() }
    }

    /// Changes the time each later call waits.
    pub fn set_latency(&self, latency: Duration) {
        self.latency.store(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// Calls made so far, of every actor.
    pub fn counters(&self) -> KvCounters {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the counters back to zero.
    pub fn reset_counters(&self) {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()) = KvCounters::default();
    }

    async fn round_trip(&self, what: &'static str, actor: &(dyn std::fmt::Display + Sync), count: impl FnOnce(&mut KvCounters)) {
        tracing::trace!("{what} of {actor}");
        count(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()));
        // tokio's timers tick in milliseconds: a shorter round trip is
        // waited out by yielding until it has passed.
        let latency = Duration::from_nanos(self.latency.load(Ordering::Relaxed));
        if latency >= Duration::from_millis(5) {
            tokio::time::sleep(latency).await;
        } else {
            let until = std::time::Instant::now() + latency;
            loop {
                tokio::task::yield_now().await;
                if std::time::Instant::now() >= until {
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl<K: KvStore> KvStore for LatencyKv<K> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn limits(&self) -> KvLimits {
        self.inner.limits()
    }

    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.round_trip("get", actor, |c| {
            c.gets += 1;
            c.keys_read += 1;
        })
        .await;
        self.inner.get(actor, key).await
    }

    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError> {
        self.round_trip("batch_get", actor, |c| {
            c.batch_gets += 1;
            c.keys_read += keys.len() as u64;
        })
        .await;
        self.inner.batch_get(actor, keys).await
    }

    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError> {
        self.round_trip("batch_put", actor, |c| {
            c.batch_puts += 1;
            c.keys_written += entries.len() as u64;
        })
        .await;
        self.inner.batch_put(actor, fence, entries).await
    }

    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError> {
        self.round_trip("batch_delete", actor, |c| c.batch_deletes += 1).await;
        self.inner.batch_delete(actor, fence, keys).await
    }

    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        self.round_trip("delete_range", actor, |c| c.delete_ranges += 1).await;
        self.inner.delete_range(actor, fence, start, end).await
    }

    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError> {
        self.round_trip("list_prefix", actor, |c| c.list_prefixes += 1).await;
        self.inner.list_prefix(actor, prefix).await
    }

    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.round_trip("delete_actor", actor, |c| c.batch_deletes += 1).await;
        self.inner.delete_actor(actor, fence).await
    }

    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        self.round_trip("list_actors", &"every actor", |c| c.list_prefixes += 1).await;
        self.inner.list_actors().await
    }

    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError> {
        self.round_trip("claim", actor, |c| {
            c.claims += 1;
            c.keys_read += request.read.len() as u64;
        })
        .await;
        self.inner.claim(actor, request).await
    }

    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: Duration) -> Result<(), KvError> {
        self.round_trip("renew", actor, |c| c.lease_calls += 1).await;
        self.inner.renew(actor, fence, owner, ttl).await
    }

    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.round_trip("release", actor, |c| c.lease_calls += 1).await;
        self.inner.release(actor, fence).await
    }
}

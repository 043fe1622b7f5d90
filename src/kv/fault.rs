//! `FaultKv`: wraps any backend and injects failures on a schedule, for
//! tests, simulation and fuzzing. Every call is one numbered operation
//! (0, 1, 2, ...), whatever its kind; the plan names operations by number.
//!
//! A failed operation changes nothing in the wrapped store, so `batch_put`
//! stays all-or-nothing exactly as the real backends promise.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ClaimRequest, Claimed, Fence, KvEntry, KvError, KvLimits, KvStore};
use crate::actor_id::ActorId;

/// When operations fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultPlan {
    /// Nothing fails.
    #[default]
    Healthy,
    /// Operation `k` fails; later ones succeed.
    FailOnce(u64),
    /// The process dies at operation `k`: that operation and every later one
    /// never reach the store. [`FaultKv::crashed`] resolves at that moment,
    /// so the caller can drop the actor mid-call, as a kill would. They stay
    /// pending until the next [`FaultKv::set_plan`] (the "restart"), then
    /// fail: a write the host left running past its caller ends there too,
    /// known not to have landed.
    CrashAt(u64),
    /// Every write (`batch_put`, `batch_delete`, `delete_range`,
    /// `delete_actor`) fails; reads work.
    FailWrites,
    /// Every `batch_get` of two or more keys, and every claim reading two or
    /// more, answers one value short, as a broken backend might; everything
    /// else works.
    ShortBatchGet,
}

/// A fault-injecting wrapper around a `KvStore`.
#[derive(Debug)]
pub struct FaultKv<K> {
    inner: K,
    plan: Mutex<FaultPlan>,
    delay: Mutex<Option<Duration>>,
    next_op: AtomicU64,
    crash: tokio::sync::watch::Sender<bool>,
    /// While true, writes wait before reaching the store.
    writes_paused: tokio::sync::watch::Sender<bool>,
    /// Writes waiting on the pause right now.
    writes_waiting: AtomicU64,
}

impl<K: KvStore> FaultKv<K> {
    /// Wraps `inner`, healthy until told otherwise.
    pub fn new(inner: K) -> Self {
        FaultKv {
            inner,
            plan: Mutex::default(),
            delay: Mutex::default(),
            next_op: AtomicU64::new(0),
            crash: tokio::sync::watch::Sender::new(false),
            writes_paused: tokio::sync::watch::Sender::new(false),
            writes_waiting: AtomicU64::new(0),
        }
    }

    /// Holds every write (before it is numbered or reaches the store) until
    /// called with `false`; reads go on. For tests of writes left in flight.
    pub fn pause_writes(&self, paused: bool) {
        self.writes_paused.send_replace(paused);
    }

    /// Writes held by [`FaultKv::pause_writes`] right now.
    pub fn writes_waiting(&self) -> u64 {
        self.writes_waiting.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// Replaces the plan and restarts operation numbering at 0.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
        self.next_op.store(0, Ordering::SeqCst);
        self.crash.send_replace(false);
    }

    /// Delays every operation by `delay` (a yield to the runtime at least).
    pub fn set_delay(&self, delay: Option<Duration>) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// Operations numbered since the last `set_plan`.
    pub fn ops(&self) -> u64 {
        self.next_op.load(Ordering::SeqCst)
    }

    /// Resolves once a `CrashAt` plan reaches its operation.
    pub async fn crashed(&self) {
        let mut rx = self.crash.subscribe();
        // The sender lives in self, so waiting cannot fail.
        let _ = rx.wait_for(|crashed| *crashed).await;
    }

    /// Whether a `CrashAt` plan has reached its operation.
    pub fn has_crashed(&self) -> bool {
        *self.crash.borrow()
    }

    fn plan(&self) -> FaultPlan {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn admit(&self, write: bool, what: &str) -> Result<(), KvError> {
        if write && *self.writes_paused.borrow() {
            self.writes_waiting.fetch_add(1, Ordering::SeqCst);
            let mut paused = self.writes_paused.subscribe();
            // The sender lives in self, so waiting cannot fail.
            let _ = paused.wait_for(|p| !*p).await;
            self.writes_waiting.fetch_sub(1, Ordering::SeqCst);
        }
        let delay = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(delay) = delay {
            if delay.is_zero() { tokio::task::yield_now().await } else { tokio::time::sleep(delay).await }
        }
        let op = self.next_op.fetch_add(1, Ordering::SeqCst);
        let fails = match self.plan() {
            FaultPlan::Healthy => false,
            FaultPlan::FailOnce(k) => op == k,
            FaultPlan::CrashAt(k) => {
                if op >= k {
                    let mut restarted = self.crash.subscribe();
                    self.crash.send_replace(true);
                    let _ = restarted.wait_for(|crashed| !*crashed).await;
                    return Err(KvError::Backend(format!(
                        "operation {op} ({what}) was cut off by the simulated crash and never reached the store"
                    )));
                }
                false
            }
            FaultPlan::FailWrites => write,
            FaultPlan::ShortBatchGet => false,
        };
        if fails {
            return Err(KvError::Backend(format!("injected fault at operation {op} ({what})")));
        }
        Ok(())
    }
}

#[async_trait]
impl<K: KvStore> KvStore for FaultKv<K> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn limits(&self) -> KvLimits {
        self.inner.limits()
    }

    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.admit(false, "get").await?;
        self.inner.get(actor, key).await
    }

    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError> {
        self.admit(false, "batch_get").await?;
        let mut values = self.inner.batch_get(actor, keys).await?;
        if self.plan() == FaultPlan::ShortBatchGet && values.len() > 1 {
            values.pop();
        }
        Ok(values)
    }

    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError> {
        self.admit(true, "batch_put").await?;
        self.inner.batch_put(actor, fence, entries).await
    }

    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError> {
        self.admit(true, "batch_delete").await?;
        self.inner.batch_delete(actor, fence, keys).await
    }

    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        self.admit(true, "delete_range").await?;
        self.inner.delete_range(actor, fence, start, end).await
    }

    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError> {
        self.admit(false, "list_prefix").await?;
        self.inner.list_prefix(actor, prefix).await
    }

    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.admit(true, "delete_actor").await?;
        self.inner.delete_actor(actor, fence).await
    }

    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        self.admit(false, "list_actors").await?;
        self.inner.list_actors().await
    }

    // Ownership calls are numbered operations like any other, but not
    // writes: `FailWrites` and `pause_writes` leave wakes and sleeps alone.
    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError> {
        self.admit(false, "claim").await?;
        let mut claimed = self.inner.claim(actor, request).await?;
        if self.plan() == FaultPlan::ShortBatchGet && claimed.values.len() > 1 {
            claimed.values.pop();
        }
        Ok(claimed)
    }

    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: Duration) -> Result<(), KvError> {
        self.admit(false, "renew").await?;
        self.inner.renew(actor, fence, owner, ttl).await
    }

    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.admit(false, "release").await?;
        self.inner.release(actor, fence).await
    }
}

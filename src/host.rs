//! `Host`: the engine, the compiled guest, one KV backend and the rules for
//! waking actors. Cheap to clone; every clone shares the same actors.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use wasmtime::Store;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::engine::{EngineConfig, Runtime};
use crate::error::Error;
use crate::guest::CallMode;
use crate::guest::exports::GuestApi;
use crate::guest::watchdog::{self, InterruptHandle, Watchdog};
use crate::kv::{ClaimRequest, Fence, KvError, KvLimits, KvStore, Takeover, inflight};
use crate::lease::{Lease, LeaseConfig};
use crate::limits::Limits;
use crate::migrations::Migrations;
use crate::sql::statement::Connection;
use crate::state::{ActorState, Gauges};
use crate::vfs::files::{ActorFiles, within};
use crate::vfs::layout::CHUNK_SIZE;

/// Everything a Host can be told.
#[derive(Clone, Debug, Default)]
pub struct HostConfig {
    /// Engine settings; hosts with equal settings share one engine.
    pub engine: EngineConfig,
    /// Schema steps run at each wake, tracked in `PRAGMA user_version`.
    pub migrations: Migrations,
    /// Seed for the guest's randomness (xRandomness), for reproducible
    /// runs; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// What each actor may spend: call time, database size, SQL limits.
    pub limits: Limits,
    /// How this host claims the actors it wakes (see [`crate::kv::Fence`]).
    pub lease: LeaseConfig,
}

pub(crate) struct HostInner {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) config: HostConfig,
    pub(crate) gauges: Arc<Gauges>,
    /// This host's name in the leases it takes.
    pub(crate) owner: Arc<str>,
    /// Direct calls when the KV answers at once, else calls on a fiber.
    call_mode: CallMode,
    /// Actors with a live instance on this host: at most one each, or two
    /// instances would write the same keys.
    awake: Mutex<HashSet<ActorId>>,
}

impl HostInner {
    fn awake(&self) -> std::sync::MutexGuard<'_, HashSet<ActorId>> {
        self.awake.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes every key of `id` under `fence`, to the end even if the
    /// caller goes away (see `kv::inflight`).
    pub(crate) async fn delete_actor(&self, id: &ActorId, fence: Fence) -> Result<(), KvError> {
        let (kv, actor) = (self.kv.clone(), id.clone());
        inflight::run_to_completion(&self.kv, id, async move { kv.delete_actor(&actor, fence).await }).await
    }

    /// Claims `id` for this host, reading what opening its database needs
    /// in the same round trip.
    async fn claim(&self, id: &ActorId, takeover: Takeover) -> Result<(Lease, Vec<Option<bytes::Bytes>>), Error> {
        let read = ActorFiles::wake_keys();
        let lease = &self.config.lease;
        let request = ClaimRequest { owner: &self.owner, ttl: lease.ttl, takeover, read: &read };
        let sent = std::time::Instant::now();
        let claimed = within(self.kv_timeout(), "a claim", self.kv.claim(id, &request)).await?;
        Ok((Lease::new(claimed.fence, self.owner.clone(), lease, sent), claimed.values))
    }

    /// Gives up the lease, so that another host may claim the actor at once.
    /// Best effort: an unreleased lease runs out on its own.
    pub(crate) async fn release(&self, id: &ActorId, fence: Fence) {
        if let Err(e) = within(self.kv_timeout(), "a release", self.kv.release(id, fence)).await {
            tracing::debug!(actor = %id, "releasing the lease failed, it will run out: {e}");
        }
    }

    /// The KV timeout, on a backend that may make callers wait.
    pub(crate) fn kv_timeout(&self) -> Option<std::time::Duration> {
        self.config.limits.kv_timeout.filter(|_| !self.kv.answers_immediately())
    }

    /// Builds a Store, instantiates the guest in it and opens the database,
    /// writing under `fence`; `preload` holds the values of
    /// [`ActorFiles::wake_keys`] when the claim read them. `interrupt`
    /// reaches the calls made on it. On error everything built is dropped
    /// before returning.
    pub(crate) async fn instantiate(
        &self,
        id: &ActorId,
        interrupt: &InterruptHandle,
        fence: Fence,
        preload: Option<Vec<Option<bytes::Bytes>>>,
    ) -> Result<Connection, Error> {
        let limits = &self.config.limits;
        let watchdog = Watchdog::new(interrupt.clone(), limits.stop_grace, limits.time_slice);
        let mut state =
            ActorState::new(self.kv.clone(), id.clone(), self.gauges.clone(), self.config.engine.max_memory, self.config.seed, watchdog);
        state.files.set_max_size(limits.max_database_size);
        state.files.set_kv_timeout(limits.kv_timeout);
        state.files.set_fence(fence);
        if let Some(values) = preload {
            // On a bad value the files load again when SQLite opens them,
            // and that read reports it.
            if state.files.preload(values).is_ok() {
                state.files.prefetch_hinted().await;
            }
        }
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| state.limiter());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(watchdog::on_tick(self.call_mode));
        let instance = match self.call_mode {
            CallMode::Direct => self.runtime.direct.instantiate(&mut store),
            CallMode::Fiber => self.runtime.fiber.instantiate_async(&mut store).await,
        }
        .map_err(|e| match (e.is::<wasmtime::PoolConcurrencyLimitError>(), self.config.engine.pooling) {
            (true, Some(slots)) => Error::PoolFull { slots },
            _ => Error::trap("instantiating the guest", e),
        })?;
        let mut api = GuestApi::new(&mut store, &instance, &self.runtime.exports, self.call_mode).await?;
        let db = api.open(&mut store, &limits.sql.as_array()).await?;
        Ok(Connection::new(store, api, db, limits.max_result_bytes))
    }
}

/// Marks an actor awake for as long as it lives.
pub(crate) struct AwakeGuard {
    host: Arc<HostInner>,
    id: ActorId,
}

impl Drop for AwakeGuard {
    fn drop(&mut self) {
        self.host.awake().remove(&self.id);
    }
}

/// A host for actors whose databases live in one KV backend.
///
/// # Example
///
/// ```
/// # tokio_test_block(async {
/// use std::sync::Arc;
/// use wasqlite::{Host, MemoryKv, params};
///
/// let host = Host::new(Arc::new(MemoryKv::new()))?;
/// let mut actor = host.wake("counter-1").await?;
/// actor.execute_batch("CREATE TABLE hits(n INTEGER)").await?;
/// actor.execute("INSERT INTO hits VALUES (?1)", params![41 + 1]).await?;
/// actor.sleep().await?;
///
/// let mut again = host.wake("counter-1").await?;
/// let n: i64 = again.query_row("SELECT n FROM hits", ()).await?.get(0)?;
/// assert_eq!(n, 42);
/// # Ok::<(), wasqlite::Error>(()) });
/// # fn tokio_test_block<F: std::future::Future<Output = Result<(), wasqlite::Error>>>(f: F) {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f).unwrap()
/// # }
/// ```
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("kv", &self.inner.kv).field("live_instances", &self.live_instances()).finish()
    }
}

impl Host {
    /// A host with default settings over `kv`.
    ///
    /// # Errors
    ///
    /// As [`Host::with_config`].
    pub fn new(kv: Arc<dyn KvStore>) -> Result<Host, Error> {
        Host::with_config(kv, HostConfig::default())
    }

    /// A host over `kv` with `config`. The first host of a configuration in
    /// a process compiles the guest (or loads it from the code cache).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the backend's limits cannot hold a page and
    /// its meta key in one batch; [`Error::Engine`] when the guest does not
    /// compile or link.
    pub fn with_config(kv: Arc<dyn KvStore>, config: HostConfig) -> Result<Host, Error> {
        check_limits(kv.limits())?;
        if !config.engine.interruptible && config.limits.call_timeout.is_some() {
            return Err(Error::Config(
                "a call timeout needs an interruptible engine: set Limits::call_timeout to None, or EngineConfig::interruptible to true".into(),
            ));
        }
        let runtime = Runtime::get(&config.engine)?;
        let call_mode = if kv.answers_immediately() { CallMode::Direct } else { CallMode::Fiber };
        let owner = config.lease.owner_name();
        Ok(Host {
            inner: Arc::new(HostInner {
                runtime,
                kv,
                config,
                gauges: Arc::default(),
                owner,
                call_mode,
                awake: Mutex::default(),
            }),
        })
    }

    /// The KV backend.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.inner.kv
    }

    /// Whether this host's compiled guest code came from the disk cache.
    pub fn code_from_cache(&self) -> bool {
        self.inner.runtime.loaded_from_cache
    }

    /// Actor instances alive right now on this host.
    pub fn live_instances(&self) -> usize {
        self.inner.gauges.instances.load(Ordering::Relaxed)
    }

    /// Bytes of wasm linear memory held by this host's live instances.
    pub fn live_memory_bytes(&self) -> usize {
        self.inner.gauges.memory_bytes.load(Ordering::Relaxed)
    }

    /// Wakes an actor: claims it in the KV (see [`crate::kv::Fence`]), then
    /// a new Store and instance, its database opened, and the configured
    /// migrations applied.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidActorId`], [`Error::AlreadyAwake`],
    /// [`KvError::Owned`] (as [`Error::Kv`]) while another host holds a live
    /// lease on it (see [`Host::take_over`]), a KV or SQLite error while
    /// opening, or [`Error::Migration`]. A failed wake releases its instance
    /// and its lease before returning.
    ///
    /// # Cancel safety
    ///
    /// Dropping it releases everything it built (the Store, its pool slot, the
    /// awake mark); a lease it took runs out on its own. Writes it had issued
    /// (a migration's commit, the rollback of a hot journal) finish on their
    /// own, and the next wake waits for them; a migration step lands whole or
    /// not at all.
    pub async fn wake(&self, id: &str) -> Result<Actor, Error> {
        self.wake_claiming(id, Takeover::IfFree).await
    }

    /// Wakes an actor even while another host holds its lease: that host is
    /// fenced out, its next write fails with [`KvError::OwnershipLost`] and
    /// its next call with [`Error::OwnershipLost`]. For an operator who knows
    /// the other host is gone or must let go; otherwise as [`Host::wake`].
    ///
    /// # Errors
    ///
    /// As [`Host::wake`], except that a live lease is no error.
    pub async fn take_over(&self, id: &str) -> Result<Actor, Error> {
        self.wake_claiming(id, Takeover::Force).await
    }

    async fn wake_claiming(&self, id: &str, takeover: Takeover) -> Result<Actor, Error> {
        let id = ActorId::new(id)?;
        if !self.inner.awake().insert(id.clone()) {
            return Err(Error::AlreadyAwake { id });
        }
        let guard = AwakeGuard { host: self.inner.clone(), id: id.clone() };
        // A write of an earlier instance whose caller went away may still be
        // landing; this instance must read after it.
        inflight::settled(&self.inner.kv, &id).await;
        let (lease, preload) = self.inner.claim(&id, takeover).await?;
        let fence = lease.fence;
        let woken = async {
            let interrupt = InterruptHandle::new();
            let instance = self.inner.instantiate(&id, &interrupt, fence, Some(preload)).await?;
            let mut actor = Actor::new(id.clone(), self.inner.clone(), instance, guard, interrupt, lease);
            if !self.inner.config.migrations.is_empty() {
                actor.migrate(&self.inner.config.migrations).await?;
            }
            Ok(actor)
        };
        match woken.await {
            Ok(actor) => Ok(actor),
            Err(e) => {
                self.inner.release(&id, fence).await;
                Err(e)
            }
        }
    }

    /// This host's name in the leases it takes.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Deletes every key of an actor that is asleep, claiming it first.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyAwake`] when it is awake here (use
    /// [`Actor::destroy`]), [`KvError::Owned`] while another host holds it,
    /// or the KV's error.
    ///
    /// # Cancel safety
    ///
    /// Dropped before the delete is issued, nothing is deleted; after, the
    /// delete finishes on its own and the next wake waits for it.
    pub async fn destroy(&self, id: &str) -> Result<(), Error> {
        let id = ActorId::new(id)?;
        if !self.inner.awake().insert(id.clone()) {
            return Err(Error::AlreadyAwake { id });
        }
        let _guard = AwakeGuard { host: self.inner.clone(), id: id.clone() };
        inflight::settled(&self.inner.kv, &id).await;
        let lease = &self.inner.config.lease;
        let request = ClaimRequest { owner: &self.inner.owner, ttl: lease.ttl, takeover: Takeover::IfFree, read: &[] };
        let fence = within(self.inner.kv_timeout(), "a claim", self.inner.kv.claim(&id, &request)).await?.fence;
        let result = self.inner.delete_actor(&id, fence).await;
        self.inner.release(&id, fence).await;
        Ok(result?)
    }
}

/// A backend must take at least one page and its meta key in one batch.
fn check_limits(limits: KvLimits) -> Result<(), Error> {
    let page_entry = 8 + CHUNK_SIZE;
    let meta_entry = 4 + 10;
    if limits.max_keys_per_batch < 2
        || limits.max_key_size < 8
        || limits.max_value_size < CHUNK_SIZE
        || limits.max_batch_bytes < page_entry + meta_entry
    {
        return Err(Error::Config(format!(
            "KV limits (keys up to {} bytes, values up to {} bytes, {} keys and {} bytes per batch) cannot hold one {CHUNK_SIZE}-byte page and its meta key in one batch",
            limits.max_key_size, limits.max_value_size, limits.max_keys_per_batch, limits.max_batch_bytes
        )));
    }
    Ok(())
}

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
use crate::kv::{KvError, KvLimits, KvStore, inflight};
use crate::limits::Limits;
use crate::migrations::Migrations;
use crate::sql::statement::Connection;
use crate::state::{ActorState, Gauges};
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
}

pub(crate) struct HostInner {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) config: HostConfig,
    pub(crate) gauges: Arc<Gauges>,
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

    /// Deletes every key of `id`, to the end even if the caller goes away
    /// (see `kv::inflight`).
    pub(crate) async fn delete_actor(&self, id: &ActorId) -> Result<(), KvError> {
        let (kv, actor) = (self.kv.clone(), id.clone());
        inflight::run_to_completion(&self.kv, id, async move { kv.delete_actor(&actor).await }).await
    }

    /// Builds a Store, instantiates the guest in it and opens the database;
    /// `interrupt` reaches the calls made on it. On error everything built is
    /// dropped before returning.
    pub(crate) async fn instantiate(&self, id: &ActorId, interrupt: &InterruptHandle) -> Result<Connection, Error> {
        let limits = &self.config.limits;
        let watchdog = Watchdog::new(interrupt.clone(), limits.stop_grace, limits.time_slice);
        let mut state =
            ActorState::new(self.kv.clone(), id.clone(), self.gauges.clone(), self.config.engine.max_memory, self.config.seed, watchdog);
        state.files.set_max_size(limits.max_database_size);
        state.files.set_kv_timeout(limits.kv_timeout);
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
        Ok(Host {
            inner: Arc::new(HostInner {
                runtime,
                kv,
                config,
                gauges: Arc::default(),
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

    /// Wakes an actor: a new Store and instance, its database opened, and the
    /// configured migrations applied.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidActorId`], [`Error::AlreadyAwake`], a KV or SQLite
    /// error while opening, or [`Error::Migration`]. A failed wake releases
    /// its instance before returning.
    ///
    /// # Cancel safety
    ///
    /// Dropping it releases everything it built (the Store, its pool slot, the
    /// awake mark). Writes it had issued (a migration's commit, the rollback of
    /// a hot journal) finish on their own, and the next wake waits for them; a
    /// migration step lands whole or not at all.
    pub async fn wake(&self, id: &str) -> Result<Actor, Error> {
        let id = ActorId::new(id)?;
        if !self.inner.awake().insert(id.clone()) {
            return Err(Error::AlreadyAwake { id });
        }
        let guard = AwakeGuard { host: self.inner.clone(), id: id.clone() };
        // A write of an earlier instance whose caller went away may still be
        // landing; this instance must read after it.
        inflight::settled(&self.inner.kv, &id).await;
        let interrupt = InterruptHandle::new();
        let instance = self.inner.instantiate(&id, &interrupt).await?;
        let mut actor = Actor::new(id, self.inner.clone(), instance, guard, interrupt);
        if !self.inner.config.migrations.is_empty() {
            actor.migrate(&self.inner.config.migrations).await?;
        }
        Ok(actor)
    }

    /// Deletes every key of an actor that is asleep.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyAwake`] when it is awake here (use
    /// [`Actor::destroy`]), or the KV's error.
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
        Ok(self.inner.delete_actor(&id).await?)
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

//! The `KvStore` trait: the storage contract every backend keeps, and the
//! limits each one declares.
//!
//! An actor's keys live in its own namespace: the same key under two actors
//! names two different values. Backends that share one physical store
//! between actors (redb, a remote KV) prefix keys with the actor id; the keys
//! passed through this trait never contain it.

#[cfg(feature = "conformance")]
pub mod conformance;
mod fault;
pub(crate) mod inflight;
mod latency;
mod memory;
mod ownership;
mod redb;
#[cfg(feature = "redis")]
mod redis;
mod url;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::actor_id::ActorId;

pub use fault::{FaultKv, FaultPlan};
pub use latency::LatencyKv;
pub use memory::{KvCounters, MemoryKv};
pub use ownership::{ClaimRequest, Claimed, Fence, Takeover};
pub(crate) use ownership::Owners;
pub use self::redb::{RedbKv, RedbOptions, RedbStats};
#[cfg(feature = "redis")]
pub use self::redis::{RedisKv, RedisOptions};
pub use url::{DEFAULT_STORE, STORE_FORMS, open_store};

/// A key and its value.
pub type KvEntry = (Bytes, Bytes);

/// What a backend accepts in one call. Callers (the VFS) split their work so
/// that no call exceeds these; a backend rejects a call that does with
/// [`KvError::LimitExceeded`] and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key, in bytes.
    pub max_key_size: usize,
    /// Longest value, in bytes.
    pub max_value_size: usize,
    /// Most keys in one `batch_get`, `batch_put` or `batch_delete`.
    pub max_keys_per_batch: usize,
    /// Most key plus value bytes in one `batch_put`.
    pub max_batch_bytes: usize,
}

impl KvLimits {
    /// No practical limit: for backends that take any batch in one
    /// transaction (memory, redb).
    pub const UNLIMITED: KvLimits = KvLimits {
        max_key_size: usize::MAX,
        max_value_size: usize::MAX,
        max_keys_per_batch: usize::MAX,
        max_batch_bytes: usize::MAX,
    };

    /// The limits of Rivet's actor KV: keys up to 2 KiB, values up to
    /// 128 KiB, at most 128 keys per batch and 976 KiB per put.
    pub const RIVET: KvLimits = KvLimits {
        max_key_size: 2 * 1024,
        max_value_size: 128 * 1024,
        max_keys_per_batch: 128,
        max_batch_bytes: 976 * 1024,
    };

    /// Checks a batch of keys against `max_keys_per_batch` and `max_key_size`.
    pub fn check_keys<'a>(&self, keys: impl ExactSizeIterator<Item = &'a [u8]>) -> Result<(), KvError> {
        if keys.len() > self.max_keys_per_batch {
            return Err(KvError::limit("keys per batch", self.max_keys_per_batch, keys.len()));
        }
        for key in keys {
            if key.len() > self.max_key_size {
                return Err(KvError::limit("key size", self.max_key_size, key.len()));
            }
        }
        Ok(())
    }

    /// Checks a `batch_put` against every limit.
    pub fn check_put(&self, entries: &[KvEntry]) -> Result<(), KvError> {
        self.check_keys(entries.iter().map(|(k, _)| &k[..]))?;
        let mut total = 0usize;
        for (key, value) in entries {
            if value.len() > self.max_value_size {
                return Err(KvError::limit("value size", self.max_value_size, value.len()));
            }
            total = total.saturating_add(key.len() + value.len());
        }
        if total > self.max_batch_bytes {
            return Err(KvError::limit("bytes per batch", self.max_batch_bytes, total));
        }
        Ok(())
    }
}

/// Why a KV call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The call broke one of the backend's declared limits; nothing changed.
    #[error("KV limit exceeded: {what} is {actual}, the backend allows {limit}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// The backend's limit.
        limit: usize,
        /// What the call asked for.
        actual: usize,
    },
    /// The backend itself failed (I/O, a lost connection, an injected fault).
    #[error("KV backend failed: {0}")]
    Backend(String),
    /// The backend did not answer within [`crate::Limits::kv_timeout`]. A
    /// write that timed out may still land.
    #[error("the KV did not answer {what} within {after:?}")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },
    /// Another host holds a live lease on the actor; nothing changed.
    #[error("the actor is owned by {owner} for another {remaining:.1?}; wait for the lease to end, or take the actor over")]
    Owned {
        /// The lease holder's name.
        owner: String,
        /// Time left on its lease.
        remaining: std::time::Duration,
    },
    /// Another host claimed the actor since this writer did; the write
    /// changed nothing.
    #[error("ownership lost: this host's claim is generation {held}, the store is at generation {current} (another host took the actor over); nothing was written")]
    OwnershipLost {
        /// The writer's generation.
        held: u64,
        /// The actor's generation in the store.
        current: u64,
    },
}

impl KvError {
    fn limit(what: &'static str, limit: usize, actual: usize) -> Self {
        KvError::LimitExceeded { what, limit, actual }
    }
}

/// An actor's key-value storage, as the VFS sees it.
///
/// A backend written outside this crate checks itself against the contract
/// below with `wasqlite::kv::conformance::check_all` (the `conformance`
/// feature), as tests/kv_conformance.rs does for memory, redb and Redis.
///
/// # Contract
///
/// - Every method acts on one actor's namespace only.
/// - `batch_put` is all-or-nothing: after an error, none of its entries are
///   visible; after `Ok`, all are, and they are durable as far as the backend
///   promises durability (memory: until the process ends; redb: on disk).
/// - `batch_delete` and `delete_range` are atomic too.
/// - Fencing (see [`Fence`]): every write carries the fence of its writer's
///   claim and lands only if the actor's generation still equals it, checked
///   in the same atomic step; otherwise it fails with
///   [`KvError::OwnershipLost`] and changes nothing. `claim` bumps the
///   generation; when it returns, every write under an older fence has
///   either landed (and `claim`'s reads see it) or will fail. Generations
///   survive `delete_actor` and never appear in `list_prefix` or
///   `list_actors`.
/// - Calls from one actor are issued one at a time and take effect in the
///   order issued. Calls for different actors may run concurrently.
/// - A call that breaks [`KvStore::limits`] fails with
///   [`KvError::LimitExceeded`] and changes nothing.
/// - A write may still take effect after its future is dropped (a batch
///   already queued or sent). The host never abandons its own writes on a
///   backend that may make it wait: each runs as a task to its end, and a
///   wake or rebuild of the actor waits until none is left in flight. A
///   backend that claims [`KvStore::answers_immediately`] must finish every
///   write within its first poll.
#[async_trait]
pub trait KvStore: Send + Sync + fmt::Debug + 'static {
    /// The largest calls this backend accepts.
    fn limits(&self) -> KvLimits;

    /// Whether every future this backend returns is ready the first time
    /// it is polled (an in-process map behind a plain mutex, say). The host
    /// then runs guests with direct calls instead of on fibers, which saves
    /// a stack switch per call. A backend that claims this and then makes a
    /// caller wait fails that call with an I/O error. Defaults to `false`.
    ///
    /// Direct calls run guest code on the calling thread's own stack, up to
    /// wasmtime's 512 KiB limit for wasm frames, so a thread that calls
    /// actors of such a backend needs about 1 MiB of stack to spare (tokio's
    /// worker threads have 2 MiB, a main thread usually 8 MiB).
    fn answers_immediately(&self) -> bool {
        false
    }

    /// A short name for the backend in metrics labels (`memory`, `redb`,
    /// `redis`). Defaults to `"custom"`.
    fn backend_name(&self) -> &'static str {
        "custom"
    }

    /// Identifies the store behind this value, so that writes left in
    /// flight by a dropped call are waited for by every Host over the same
    /// store (see `inflight`). The default, the value's address, is right
    /// for every backend; wrappers that only share another store forward it.
    #[doc(hidden)]
    fn store_address(&self) -> usize {
        (self as *const Self).cast::<()>() as usize
    }

    /// The value of `key`, or `None`.
    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError>;

    /// The values of `keys`, in the same order, `None` where absent.
    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError>;

    /// Writes every entry, or none of them.
    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError>;

    /// Deletes every key (absent keys are fine).
    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError>;

    /// Deletes every key `k` with `start <= k < end`.
    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError>;

    /// Every entry whose key starts with `prefix`, in key order.
    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError>;

    /// Deletes every key of `actor`.
    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError>;

    /// Every actor that has at least one key, in id order.
    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError>;

    /// Takes ownership of `actor`: bumps its generation, leases it to
    /// `request.owner` for `request.ttl`, then reads `request.read`, all in
    /// one step. Fails with [`KvError::Owned`] while another owner's lease
    /// lives, unless `request.takeover` is [`Takeover::Force`].
    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError>;

    /// Extends the lease of the owner holding `fence` to `ttl` from now, or
    /// fails with [`KvError::OwnershipLost`].
    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: std::time::Duration) -> Result<(), KvError>;

    /// Ends the lease held under `fence`, so that another host may claim the
    /// actor at once. A stale fence releases nothing.
    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError>;
}

/// A shared backend is a backend: lets wrappers like [`FaultKv`] sit over an
/// `Arc` that a test also keeps, to read counters or keys.
#[async_trait]
impl<K: KvStore + ?Sized> KvStore for std::sync::Arc<K> {
    fn limits(&self) -> KvLimits {
        (**self).limits()
    }
    fn answers_immediately(&self) -> bool {
        (**self).answers_immediately()
    }
    fn store_address(&self) -> usize {
        (**self).store_address()
    }
    fn backend_name(&self) -> &'static str {
        (**self).backend_name()
    }
    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        (**self).get(actor, key).await
    }
    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError> {
        (**self).batch_get(actor, keys).await
    }
    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError> {
        (**self).batch_put(actor, fence, entries).await
    }
    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError> {
        (**self).batch_delete(actor, fence, keys).await
    }
    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        (**self).delete_range(actor, fence, start, end).await
    }
    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError> {
        (**self).list_prefix(actor, prefix).await
    }
    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        (**self).delete_actor(actor, fence).await
    }
    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        (**self).list_actors().await
    }
    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError> {
        (**self).claim(actor, request).await
    }
    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: std::time::Duration) -> Result<(), KvError> {
        (**self).renew(actor, fence, owner, ttl).await
    }
    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        (**self).release(actor, fence).await
    }
}

//! Writes that outlive their caller.
//!
//! Async callers drop futures at any await point (`tokio::time::timeout`,
//! `select!`, a dropped request handler). A KV write whose caller has gone
//! may still land: RedbKv's writer thread applies a queued batch whatever
//! became of the caller, and a remote store may already hold the request.
//! Were the actor rebuilt, or woken again, while such a write is undecided,
//! its new instance could read the keys before the write lands and then be
//! overwritten under its feet.
//!
//! So a write an actor issues on a backend that may make it wait runs as a
//! task of its own, to the end, and is registered here until it has landed
//! or failed. Whoever is about to read or write the actor's keys afresh (a
//! wake, the rebuild after a cancelled call, [`crate::Host::destroy`]) first
//! waits in [`settled`] until none is left.
//!
//! Invariant: an entry exists exactly while at least one registered write of
//! that (store, actor) pair has not finished; the last one to finish removes
//! it and wakes every waiter.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{KvError, KvStore};
use crate::actor_id::ActorId;

/// A store (by [`KvStore::store_address`]) and one of its actors.
type Key = (usize, ActorId);

struct Entry {
    writes: usize,
    idle: Arc<Notify>,
}

static IN_FLIGHT: LazyLock<Mutex<HashMap<Key, Entry>>> = LazyLock::new(Mutex::default);

fn registry() -> MutexGuard<'static, HashMap<Key, Entry>> {
    // The map is consistent after any panic: every update is one statement.
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(kv: &Arc<dyn KvStore>, actor: &ActorId) -> Key {
    (kv.store_address(), actor.clone())
}

/// One registered write; unregisters when dropped.
struct Registration {
    key: Key,
}

impl Registration {
    fn new(key: Key) -> Registration {
        registry().entry(key.clone()).or_insert_with(|| Entry { writes: 0, idle: Arc::default() }).writes += 1;
        Registration { key }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = registry();
        let Some(entry) = map.get_mut(&self.key) else { return };
        entry.writes -= 1;
        if entry.writes == 0
            && let Some(entry) = map.remove(&self.key)
        {
            entry.idle.notify_waiters();
        }
    }
}

/// Runs `write` (a KV write of `actor` on `kv`) to completion even if the
/// caller stops waiting for it, and returns its result.
///
/// A backend that answers at once (`KvStore::answers_immediately`) finishes
/// every write within its first poll, so its writes are awaited in place:
/// they cannot outlive their caller. Outside a tokio runtime there is
/// nowhere to run a write on its own either, and it is awaited in place:
/// dropping the caller then drops the write too, which is cancellation-safe
/// only for a backend whose writes cannot land after their future is
/// dropped.
pub(crate) async fn run_to_completion<F>(kv: &Arc<dyn KvStore>, actor: &ActorId, write: F) -> Result<(), KvError>
where
    F: Future<Output = Result<(), KvError>> + Send + 'static,
{
    if kv.answers_immediately() {
        return write.await;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return write.await;
    };
    let registration = Registration::new(key(kv, actor));
    let task = runtime.spawn(async move {
        let result = write.await;
        drop(registration);
        result
    });
    task.await.unwrap_or_else(|e| Err(KvError::Backend(format!("the task running a KV write failed: {e}"))))
}

/// Starts `operation` (a KV call for `actor` on `kv`) with no one waiting
/// for it, registered like a write, so that the next wake or rebuild waits
/// for it too. For calls made where nothing can await: a `Drop`.
///
/// A backend that answers at once finishes it here, within one poll.
/// Outside a tokio runtime it is dropped unstarted.
pub(crate) fn run_detached<F>(kv: &Arc<dyn KvStore>, actor: &ActorId, operation: F)
where
    F: Future<Output = Result<(), KvError>> + Send + 'static,
{
    if kv.answers_immediately() {
        let mut operation = pin!(operation);
        let _ = operation.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let registration = Registration::new(key(kv, actor));
    runtime.spawn(async move {
        if let Err(e) = operation.await {
            tracing::debug!("a detached KV call failed: {e}");
        }
        drop(registration);
    });
}

/// Waits until no write of `actor` on `kv` is in flight.
pub(crate) async fn settled(kv: &Arc<dyn KvStore>, actor: &ActorId) {
    let key = key(kv, actor);
    loop {
        let Some(idle) = registry().get(&key).map(|e| e.idle.clone()) else { return };
        let mut notified = pin!(idle.notified());
        notified.as_mut().enable();
        // Enabled before this second look, so a last write finishing in
        // between still wakes us.
        if registry().get(&key).is_none_or(|e| !Arc::ptr_eq(&e.idle, &idle)) {
            continue;
        }
        notified.await;
    }
}

/// Whether a write of `actor` on `kv` is in flight (for tests).
#[cfg(test)]
pub(crate) fn busy(kv: &Arc<dyn KvStore>, actor: &ActorId) -> bool {
    registry().contains_key(&key(kv, actor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{FaultKv, MemoryKv};

    #[tokio::test]
    async fn a_dropped_caller_leaves_the_write_running_and_settled_waits_for_it() {
        // FaultKv does not answer at once, so its writes run as tasks.
        let kv: Arc<dyn KvStore> = Arc::new(FaultKv::new(MemoryKv::new()));
        let actor = ActorId::new("inflight").unwrap();
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let store = kv.clone();
        let id = actor.clone();
        let write = async move {
            let _ = gate.await;
            store.batch_put(&id, crate::kv::Fence::UNCLAIMED, &[(bytes::Bytes::from_static(b"k"), bytes::Bytes::from_static(b"v"))]).await
        };
        // Poll the caller once, so the write is spawned, then drop it.
        let caller = run_to_completion(&kv, &actor, write);
        assert!(futures_poll_once(caller).await.is_none());
        assert!(busy(&kv, &actor));
        let mut waiting = Box::pin(settled(&kv, &actor));
        assert!(futures_poll_once(waiting.as_mut()).await.is_none(), "settled returned while a write was in flight");
        release.send(()).unwrap();
        waiting.await;
        assert!(!busy(&kv, &actor));
        assert_eq!(kv.get(&actor, b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// Polls once with the task's own waker, then gives the future up.
    async fn futures_poll_once<F: Future>(future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await;
        match polled {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}

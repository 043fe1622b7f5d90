//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use wasqlite::vfs::layout::hex;
use wasqlite::{ActorId, Host, MemoryKv};

/// A host over a fresh in-memory KV, and the KV for inspection.
pub fn memory_host() -> (Host, Arc<MemoryKv>) {
    let kv = Arc::new(MemoryKv::new());
    (Host::new(kv.clone()).expect("host"), kv)
}

pub fn id(s: &str) -> ActorId {
    ActorId::new(s).unwrap()
}

/// The actor's keys as hex strings.
pub fn hex_keys(kv: &MemoryKv, actor: &str) -> Vec<String> {
    kv.keys(&id(actor)).iter().map(|k| hex(k)).collect()
}

/// Keys of the rollback journal (meta 08010001, chunks 08010101...).
pub fn journal_keys(kv: &MemoryKv, actor: &str) -> Vec<String> {
    hex_keys(kv, actor).into_iter().filter(|k| k == "08010001" || k.starts_with("08010101")).collect()
}

/// Chunk keys of the main database file.
pub fn main_chunks(kv: &MemoryKv, actor: &str) -> usize {
    hex_keys(kv, actor).iter().filter(|k| k.starts_with("08010100")).count()
}

/// `PRAGMA integrity_check` as one string.
pub async fn integrity(actor: &mut wasqlite::Actor) -> String {
    let rows = actor.query("PRAGMA integrity_check", ()).await.unwrap();
    rows.iter().map(|r| r.get::<String>(0).unwrap()).collect::<Vec<_>>().join("\n")
}

/// Polls `future` until it ends or has been polled `polls` times, then drops
/// it. `None`: it was dropped unfinished.
pub async fn drop_after_polls<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut polled = 0;
    std::future::poll_fn(|cx| {
        if polled == polls {
            return Poll::Ready(None);
        }
        polled += 1;
        future.as_mut().poll(cx).map(Some)
    })
    .await
}

/// A fence for writing `actor`'s keys directly, as a tool would: claims the
/// actor (it must be asleep) and releases the lease at once, which leaves
/// the fence current until the next wake claims the actor again.
pub async fn tool_fence(kv: &dyn wasqlite::KvStore, actor: &str) -> wasqlite::Fence {
    let request = wasqlite::kv::ClaimRequest {
        owner: "test-tool",
        ttl: std::time::Duration::from_secs(60),
        takeover: wasqlite::kv::Takeover::IfFree,
        read: &[],
    };
    let fence = kv.claim(&id(actor), &request).await.expect("claiming for a direct write").fence;
    kv.release(&id(actor), fence).await.expect("releasing");
    fence
}

/// The Redis Cluster the tests may use (`WASQLITE_TEST_REDIS`, a store URL
/// such as `scripts/redis-cluster.sh start` prints), as a store with a
/// prefix of its own so that tests never see each other's keys. `None` when
/// unset, except under CI (`CI` set), where a missing cluster fails.
pub fn redis_store() -> Option<Arc<dyn wasqlite::KvStore>> {
    let url = redis_url()?;
    Some(Arc::new(wasqlite::kv::RedisKv::open(&url).expect("the test cluster URL")))
}

/// The URL of [`redis_store`]: the cluster with a fresh key prefix. Each
/// `RedisKv` opened on it has its own connections, as another process's
/// would.
pub fn redis_url() -> Option<String> {
    let Ok(url) = std::env::var("WASQLITE_TEST_REDIS") else {
        assert!(std::env::var_os("CI").is_none(), "CI must run the Redis tests: set WASQLITE_TEST_REDIS");
        eprintln!("WASQLITE_TEST_REDIS is not set: skipping the Redis Cluster part of this test");
        return None;
    };
    let prefix = format!("test-{:016x}", rand::random::<u64>());
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}prefix={prefix}"))
}

/// The store the core tests run over, picked by `WASQLITE_TEST_STORE`:
/// `memory` (the default), `redb` (a file in a fresh directory) or `redis`
/// (the cluster of [`redis_store`]).
pub fn store() -> Arc<dyn wasqlite::KvStore> {
    match std::env::var("WASQLITE_TEST_STORE").as_deref() {
        Err(_) | Ok("memory") => Arc::new(MemoryKv::new()),
        Ok("redb") => {
            let dir = tempfile::tempdir().expect("scratch directory").keep();
            Arc::new(wasqlite::RedbKv::open(dir.join("kv.redb")).expect("a redb store"))
        }
        Ok("redis") => redis_store().expect("WASQLITE_TEST_STORE=redis needs WASQLITE_TEST_REDIS"),
        Ok(other) => panic!("WASQLITE_TEST_STORE={other:?}: expected memory, redb or redis"),
    }
}

/// A host over [`store`].
pub fn host() -> Host {
    Host::new(store()).expect("host")
}

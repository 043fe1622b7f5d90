//! KV failures surface as SQLite I/O errors with the storage message, leave
//! committed data intact, and leave the actor usable.

mod common;

use wasqlite::kv::{ClaimRequest, Claimed};
use wasqlite::Fence;
use std::sync::Arc;

use common::integrity;
use wasqlite::kv::{FaultKv, FaultPlan};
use wasqlite::{Host, KvLimits, MemoryKv, params};

async fn setup(limits: KvLimits) -> (Host, Arc<FaultKv<MemoryKv>>, wasqlite::Actor) {
    let kv = Arc::new(FaultKv::new(MemoryKv::with_limits(limits)));
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("faulty").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)").await.unwrap();
    for i in 0..20 {
        a.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", params![i, format!("v{i}")]).await.unwrap();
    }
    (host, kv, a)
}

#[tokio::test]
async fn failing_put_is_an_io_error_and_the_actor_recovers() {
    let (host, kv, mut a) = setup(KvLimits::UNLIMITED).await;
    kv.set_plan(FaultPlan::FailWrites);
    let err = a.execute("UPDATE t SET v = ?1 WHERE id = ?2", params!["lost", 3]).await.unwrap_err();
    assert!(err.is_io_error(), "{err}");
    let text = err.to_string();
    assert!(text.contains("injected fault"), "{text}");

    // Reads still work and show only committed data.
    let v: String = a.query_row("SELECT v FROM t WHERE id = 3", ()).await.unwrap().get(0).unwrap();
    assert_eq!(v, "v3");

    kv.set_plan(FaultPlan::Healthy);
    a.execute("UPDATE t SET v = ?1 WHERE id = ?2", params!["kept", 4]).await.unwrap();
    assert_eq!(integrity(&mut a).await, "ok");
    a.sleep().await.unwrap();
    let mut a = host.wake("faulty").await.unwrap();
    let rows = a.query("SELECT id, v FROM t WHERE id IN (3, 4) ORDER BY id", ()).await.unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0).unwrap(), r.get(1).unwrap())).collect();
    assert_eq!(got, [(3, "v3".to_string()), (4, "kept".to_string())]);
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn one_failed_put_during_a_journal_commit_loses_nothing() {
    // Rivet limits force a big transaction through the journal; fail each of
    // its KV operations in turn and check the database every time.
    let (host, kv, a) = setup(KvLimits::RIVET).await;
    a.sleep().await.unwrap();
    let big = "z".repeat(3000);
    let mut failures_seen = 0;
    let mut rolled_back = 0;
    for k in 0..40u64 {
        let mut a = host.wake("faulty").await.unwrap();
        kv.set_plan(FaultPlan::FailOnce(k));
        let result = async {
            let mut tx = a.transaction().await?;
            tx.execute("UPDATE t SET v = ?1", params![format!("round {k}")]).await?;
            for i in 0..150 {
                tx.execute("INSERT OR REPLACE INTO t(id, v) VALUES (?1, ?2)", params![100 + i, big.clone()]).await?;
            }
            tx.commit().await
        }
        .await;
        let committed = result.is_ok();
        failures_seen += usize::from(!committed);
        kv.set_plan(FaultPlan::Healthy);
        // Whatever happened, the actor answers (or wakes clean) and the data
        // is either all of the transaction or none of it.
        let mut a = if a.is_autocommit().await.is_ok() {
            a
        } else {
            a.sleep().await.unwrap();
            host.wake("faulty").await.unwrap()
        };
        assert_eq!(integrity(&mut a).await, "ok", "fault at op {k}");
        let round_rows: i64 =
            a.query_row("SELECT count(*) FROM t WHERE v = ?1", params![format!("round {k}")]).await.unwrap().get(0).unwrap();
        // An acknowledged commit is all there. A failed one is all or nothing:
        // a fault after the commit point (the journal header's zeroing) can
        // report an error for a commit that holds, as an fsync error does for
        // native SQLite.
        if committed {
            assert_eq!(round_rows, 20, "fault at op {k}: an acknowledged commit is missing");
        } else {
            assert!(round_rows == 0 || round_rows == 20, "fault at op {k}: partial transaction ({round_rows} rows)");
            rolled_back += usize::from(round_rows == 0);
        }
        a.sleep().await.unwrap();
        let mut a = host.wake("faulty").await.unwrap();
        assert_eq!(integrity(&mut a).await, "ok", "fault at op {k}, after wake");
        let again: i64 =
            a.query_row("SELECT count(*) FROM t WHERE v = ?1", params![format!("round {k}")]).await.unwrap().get(0).unwrap();
        assert_eq!(again, round_rows, "fault at op {k}: sleep/wake changed the data");
        a.sleep().await.unwrap();
    }
    assert!(failures_seen > 5, "only {failures_seen} of 40 faults hit the transaction");
    assert!(rolled_back > 5, "only {rolled_back} failed transactions rolled back");
}

/// A store that claims its answers are ready at once, then makes the caller
/// wait on every read.
#[derive(Debug)]
struct SlowButClaimsImmediate(MemoryKv);

#[async_trait::async_trait]
impl wasqlite::KvStore for SlowButClaimsImmediate {
    fn limits(&self) -> KvLimits {
        self.0.limits()
    }
    fn answers_immediately(&self) -> bool {
        true
    }
    async fn get(&self, actor: &wasqlite::ActorId, key: &[u8]) -> Result<Option<bytes::Bytes>, wasqlite::KvError> {
        tokio::task::yield_now().await;
        self.0.get(actor, key).await
    }
    async fn batch_get(&self, actor: &wasqlite::ActorId, keys: &[bytes::Bytes]) -> Result<Vec<Option<bytes::Bytes>>, wasqlite::KvError> {
        tokio::task::yield_now().await;
        self.0.batch_get(actor, keys).await
    }
    async fn batch_put(&self, actor: &wasqlite::ActorId, fence: Fence, entries: &[wasqlite::kv::KvEntry]) -> Result<(), wasqlite::KvError> {
        self.0.batch_put(actor, fence, entries).await
    }
    async fn batch_delete(&self, actor: &wasqlite::ActorId, fence: Fence, keys: &[bytes::Bytes]) -> Result<(), wasqlite::KvError> {
        self.0.batch_delete(actor, fence, keys).await
    }
    async fn delete_range(&self, actor: &wasqlite::ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), wasqlite::KvError> {
        self.0.delete_range(actor, fence, start, end).await
    }
    async fn list_prefix(&self, actor: &wasqlite::ActorId, prefix: &[u8]) -> Result<Vec<wasqlite::kv::KvEntry>, wasqlite::KvError> {
        self.0.list_prefix(actor, prefix).await
    }
    async fn delete_actor(&self, actor: &wasqlite::ActorId, fence: Fence) -> Result<(), wasqlite::KvError> {
        self.0.delete_actor(actor, fence).await
    }
    async fn list_actors(&self) -> Result<Vec<wasqlite::ActorId>, wasqlite::KvError> {
        self.0.list_actors().await
    }
    async fn claim(&self, actor: &wasqlite::ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, wasqlite::KvError> {
        self.0.claim(actor, request).await
    }
    async fn renew(&self, actor: &wasqlite::ActorId, fence: Fence, owner: &str, ttl: std::time::Duration) -> Result<(), wasqlite::KvError> {
        self.0.renew(actor, fence, owner, ttl).await
    }
    async fn release(&self, actor: &wasqlite::ActorId, fence: Fence) -> Result<(), wasqlite::KvError> {
        self.0.release(actor, fence).await
    }
}

#[tokio::test]
async fn a_store_that_wrongly_claims_immediate_answers_gets_io_errors_not_a_hang() {
    let host = Host::new(Arc::new(SlowButClaimsImmediate(MemoryKv::new()))).unwrap();
    let err = match host.wake("liar").await {
        Err(e) => e,
        Ok(mut actor) => actor.execute_batch("CREATE TABLE t(x)").await.unwrap_err(),
    };
    assert!(err.is_io_error(), "{err}");
    assert!(err.to_string().contains("claims to answer at once"), "{err}");
}

/// A backend that answers a `batch_get` with fewer values than keys is
/// broken; the host reports a KV error naming it, never panics, and reads
/// correctly again once the backend does.
#[tokio::test]
async fn a_short_batch_get_reply_is_an_io_error_not_a_panic() {
    let kv = Arc::new(FaultKv::new(MemoryKv::new()));
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("short").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)").await.unwrap();
    a.execute_many("INSERT INTO t VALUES (?1, ?2)", (0..2000).map(|i| params![i, "x".repeat(100)])).await.unwrap();
    a.sleep().await.unwrap();

    kv.set_plan(FaultPlan::ShortBatchGet);
    // The wake's first read fetches the four meta keys in one batch_get.
    let err = match host.wake("short").await {
        Err(e) => e,
        Ok(mut a) => a.query("SELECT count(*) FROM t", ()).await.unwrap_err(),
    };
    assert!(err.is_io_error(), "{err}");
    assert!(err.to_string().contains("answered 3 values for 4 keys"), "{err}");

    kv.set_plan(FaultPlan::Healthy);
    let mut a = host.wake("short").await.unwrap();
    let n: i64 = a.query_row("SELECT count(*) FROM t", ()).await.unwrap().get(0).unwrap();
    assert_eq!(n, 2000);
}

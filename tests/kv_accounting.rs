//! What the VFS sends to the KV: exact call counts for warm statements,
//! batches within limits, and the journal fallback for large transactions.

mod common;

use std::sync::Arc;

use common::{id, integrity, journal_keys};
use wasqlite::{Host, KvLimits, MemoryKv, params};

async fn setup(limits: Option<KvLimits>, actor: &str) -> (Host, Arc<MemoryKv>, wasqlite::Actor) {
    let kv = Arc::new(limits.map(MemoryKv::with_limits).unwrap_or_default());
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake(actor).await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)").await.unwrap();
    for i in 0..100 {
        a.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", params![i, "initial"]).await.unwrap();
    }
    (host, kv, a)
}

#[tokio::test]
async fn warm_update_is_one_put_and_warm_select_is_free() {
    let (_host, kv, mut a) = setup(None, "warm").await;
    // Warm the statement and the page cache.
    a.execute("UPDATE t SET v = ?1 WHERE id = ?2", params!["warm", 5]).await.unwrap();
    a.query("SELECT v FROM t WHERE id = ?1", params![5]).await.unwrap();

    kv.reset_counters(&id("warm"));
    assert_eq!(a.execute("UPDATE t SET v = ?1 WHERE id = ?2", params!["hot", 7]).await.unwrap(), 1);
    let c = kv.counters(&id("warm"));
    assert_eq!(c.batch_puts, 1, "{c:?}");
    assert_eq!(c.reads(), 0, "{c:?}");
    assert_eq!(c.calls(), 1, "{c:?}");
    assert!(journal_keys(&kv, "warm").is_empty(), "{:?}", journal_keys(&kv, "warm"));

    kv.reset_counters(&id("warm"));
    let v: String = a.query_row("SELECT v FROM t WHERE id = ?1", params![7]).await.unwrap().get(0).unwrap();
    assert_eq!(v, "hot");
    assert_eq!(kv.counters(&id("warm")).calls(), 0);
}

#[tokio::test]
async fn big_transaction_falls_back_to_the_journal_under_rivet_limits() {
    let (host, kv, mut a) = setup(Some(KvLimits::RIVET), "rivet").await;
    let before = kv.counters(&id("rivet"));
    assert!(before.max_batch_keys <= 128 && before.max_put_bytes <= 976 * 1024, "{before:?}");
    assert!(journal_keys(&kv, "rivet").is_empty());

    // ~300 pages dirtied in one transaction: more than one batch can carry.
    let mut tx = a.transaction().await.unwrap();
    for i in 0..300 {
        tx.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", params![1000 + i, "x".repeat(3000)]).await.unwrap();
    }
    tx.commit().await.unwrap();
    let c = kv.counters(&id("rivet"));
    assert!(c.max_batch_keys <= 128, "{c:?}");
    assert!(c.max_put_bytes <= 976 * 1024, "{c:?}");
    // ~300 pages cannot travel in one 128-key batch, so this commit took
    // the journal path: several puts, none over the limits.
    assert!(c.keys_written - before.keys_written > 300, "{before:?} then {c:?}");
    assert!(c.batch_puts - before.batch_puts >= 3, "{before:?} then {c:?}");

    // Rewriting those pages journals every one of them first: each page is
    // written twice, journal then database.
    let before = c;
    let mut tx = a.transaction().await.unwrap();
    tx.execute("UPDATE t SET v = ?1 WHERE id >= 1000", params!["y".repeat(3000)]).await.unwrap();
    tx.commit().await.unwrap();
    let c = kv.counters(&id("rivet"));
    assert!(c.keys_written - before.keys_written > 2 * 300, "{before:?} then {c:?}");
    assert!(c.max_batch_keys <= 128 && c.max_put_bytes <= 976 * 1024, "{c:?}");
    // SQLite zeroed the journal header (exclusive mode keeps the file); the
    // host deleted the dead journal once SQLite closed it.
    assert!(journal_keys(&kv, "rivet").is_empty(), "{:?}", journal_keys(&kv, "rivet"));

    assert_eq!(a.query_row("SELECT count(*) FROM t", ()).await.unwrap().get::<i64>(0).unwrap(), 400);
    a.sleep().await.unwrap();
    let mut a = host.wake("rivet").await.unwrap();
    let row = a.query_row("SELECT count(*), sum(length(v)) FROM t", ()).await.unwrap();
    assert_eq!(row.get::<i64>(0).unwrap(), 400);
    assert_eq!(row.get::<i64>(1).unwrap(), 100 * 7 + 300 * 3000);
    let ys: i64 = a.query_row("SELECT count(*) FROM t WHERE v = ?1", params!["y".repeat(3000)]).await.unwrap().get(0).unwrap();
    assert_eq!(ys, 300);
    assert_eq!(integrity(&mut a).await, "ok");

    // Small commits go back to one atomic put each.
    kv.reset_counters(&id("rivet"));
    a.execute("UPDATE t SET v = ?1 WHERE id = ?2", params!["small", 3]).await.unwrap();
    let c = kv.counters(&id("rivet"));
    assert_eq!(c.batch_puts, 1, "{c:?}");
}

#[tokio::test]
async fn every_batch_respects_rivet_limits_through_a_mixed_workload() {
    let (_host, kv, mut a) = setup(Some(KvLimits::RIVET), "limits").await;
    a.execute_batch("CREATE INDEX t_v ON t(v)").await.unwrap();
    for round in 0..5 {
        let mut tx = a.transaction().await.unwrap();
        for i in 0..200 {
            tx.execute("INSERT OR REPLACE INTO t(id, v) VALUES (?1, randomblob(?2))", params![i, 100 + round * 700]).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    a.execute_batch("DELETE FROM t WHERE id % 3 = 0; VACUUM").await.unwrap();
    // MemoryKv with limits rejects any over-limit call, so success already
    // proves compliance; the counters show how close we came.
    let c = kv.counters(&id("limits"));
    assert!(c.max_batch_keys <= 128 && c.max_put_bytes <= 976 * 1024, "{c:?}");
    assert_eq!(integrity(&mut a).await, "ok");
}

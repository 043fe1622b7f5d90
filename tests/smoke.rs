use std::sync::Arc;
use wasqlite::{Host, MemoryKv, params};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip() {
    let kv = Arc::new(MemoryKv::new());
    let host = Host::new(kv.clone()).unwrap();
    let mut actor = host.wake("a1").await.unwrap();
    actor.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2)").await.unwrap();
    let rows = actor.query("SELECT x FROM t ORDER BY x", ()).await.unwrap();
    assert_eq!(rows.len(), 2);
    actor.execute("INSERT INTO t VALUES (?1)", params![3]).await.unwrap();
    actor.sleep().await.unwrap();
    let mut actor = host.wake("a1").await.unwrap();
    let n: i64 = actor.query_row("SELECT count(*) FROM t", ()).await.unwrap().get(0).unwrap();
    assert_eq!(n, 3);
}

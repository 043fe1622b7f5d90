//! Data survives sleep/wake and a new Host; VACUUM shrinks the KV image and
//! regrows it; the key layout matches rivetkit byte for byte.

mod common;

use common::{hex_keys, id, integrity, main_chunks, memory_host};
use wasqlite::vfs::layout::hex;
use wasqlite::{Host, KvStore, params};

#[tokio::test]
async fn layout_golden() {
    let (host, kv) = memory_host();
    let mut a = host.wake("golden").await.unwrap();
    a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2)").await.unwrap();
    a.sleep().await.unwrap();
    assert_eq!(hex_keys(&kv, "golden"), ["08010000", "0801010000000000", "0801010000000001"]);
    let meta = kv.get(&id("golden"), &[8, 1, 0, 0]).await.unwrap().unwrap();
    assert_eq!(hex(&meta), "01000020000000000000");
    // One page per value, and page 1 is a real SQLite header.
    let page1 = kv.get(&id("golden"), &[8, 1, 1, 0, 0, 0, 0, 0]).await.unwrap().unwrap();
    assert_eq!(page1.len(), 4096);
    assert_eq!(&page1[..16], b"SQLite format 3\0");
    assert_eq!(u16::from_be_bytes([page1[16], page1[17]]), 4096);
}

#[tokio::test]
async fn persists_across_sleep_wake_and_a_new_host() {
    let kv = common::store();
    {
        let host = Host::new(kv.clone()).unwrap();
        let mut a = host.wake("durable").await.unwrap();
        a.execute_batch("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)").await.unwrap();
        for i in 0..50 {
            a.execute("INSERT INTO notes(body) VALUES (?1)", params![format!("note {i}")]).await.unwrap();
        }
        a.sleep().await.unwrap();
        let mut a = host.wake("durable").await.unwrap();
        a.execute("DELETE FROM notes WHERE id % 2 = 0", ()).await.unwrap();
        a.sleep().await.unwrap();
        assert_eq!(host.live_instances(), 0);
    }
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("durable").await.unwrap();
    let rows = a.query("SELECT body FROM notes ORDER BY id", ()).await.unwrap();
    assert_eq!(rows.len(), 25);
    assert_eq!(rows.get(0).unwrap().get::<String>(0).unwrap(), "note 0");
    assert_eq!(rows.get(24).unwrap().get::<String>(0).unwrap(), "note 48");
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn vacuum_shrinks_then_regrows() {
    let (host, kv) = memory_host();
    let mut a = host.wake("vacuum").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)").await.unwrap();
    for _ in 0..200 {
        a.execute("INSERT INTO t(body) VALUES (zeroblob(3000))", ()).await.unwrap();
    }
    let grown = main_chunks(&kv, "vacuum");
    assert!(grown > 150, "{grown} chunks");
    a.execute("DELETE FROM t WHERE id > 10", ()).await.unwrap();
    a.execute_batch("VACUUM").await.unwrap();
    let shrunk = main_chunks(&kv, "vacuum");
    assert!(shrunk < 20, "after VACUUM: {shrunk} chunks");
    // The truncated chunk keys are gone, and the meta agrees.
    let pages: i64 = a.query_row("PRAGMA page_count", ()).await.unwrap().get(0).unwrap();
    assert_eq!(shrunk as i64, pages);
    let meta = kv.get(&id("vacuum"), &[8, 1, 0, 0]).await.unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(meta[2..].try_into().unwrap()), pages as u64 * 4096);

    for _ in 0..100 {
        a.execute("INSERT INTO t(body) VALUES (randomblob(3000))", ()).await.unwrap();
    }
    a.sleep().await.unwrap();
    let mut a = host.wake("vacuum").await.unwrap();
    assert_eq!(a.query_row("SELECT count(*) FROM t", ()).await.unwrap().get::<i64>(0).unwrap(), 110);
    let pages: i64 = a.query_row("PRAGMA page_count", ()).await.unwrap().get(0).unwrap();
    assert_eq!(main_chunks(&kv, "vacuum") as i64, pages);
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn integrity_after_mixed_work_and_sleep() {
    let host = common::host();
    let mut a = host.wake("mixed").await.unwrap();
    a.execute_batch(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB);
         CREATE INDEX a_v ON a(v);
         CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id), n REAL);",
    )
    .await
    .unwrap();
    for i in 0..300i64 {
        a.execute("INSERT INTO a(k, v) VALUES (?1, randomblob(?2))", params![format!("k{i}"), 10 + i * 13 % 2000]).await.unwrap();
        if i % 3 == 0 {
            a.execute("INSERT INTO b(a_id, n) VALUES (?1, ?2)", params![i + 1, i as f64 / 7.0]).await.unwrap();
        }
        if i % 7 == 0 {
            a.execute("DELETE FROM a WHERE id = ?1", params![i / 2 + 1]).await.unwrap();
        }
        if i % 11 == 0 {
            a.execute("UPDATE a SET v = randomblob(5000) WHERE id = ?1", params![i]).await.unwrap();
        }
    }
    a.execute_batch("ALTER TABLE b ADD COLUMN note TEXT; CREATE INDEX b_n ON b(n); DROP INDEX a_v;").await.unwrap();
    a.sleep().await.unwrap();
    let mut a = host.wake("mixed").await.unwrap();
    assert_eq!(integrity(&mut a).await, "ok");
}

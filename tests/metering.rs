//! Metering: each figure of `Usage` checked against a workload whose counts
//! are known, on an actor and aggregated by the manager.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasqlite::{ActorId, Manager, ManagerConfig, Usage, params};

#[tokio::test]
async fn an_insert_of_100_rows_reports_100_rows_written() {
    let (host, _kv) = common::memory_host();
    let mut actor = host.wake("m").await.unwrap();
    actor.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)").await.unwrap();
    let before = actor.usage().reported;
    actor
        .execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100) INSERT INTO t SELECT i, 'v' || i FROM c", ())
        .await
        .unwrap();
    let after = actor.usage().reported;
    assert_eq!(after.rows_written - before.rows_written, 100);

    // execute_many: 50 more rows, one parameter set each.
    actor.execute_many("INSERT INTO t(v) VALUES (?1)", (0..50).map(|i| params![format!("m{i}")])).await.unwrap();
    assert_eq!(actor.usage().reported.rows_written - after.rows_written, 50);
    // UPDATE and DELETE count the rows they change.
    let before = actor.usage().reported.rows_written;
    actor.execute("UPDATE t SET v = 'u' WHERE id <= 10", ()).await.unwrap();
    actor.execute("DELETE FROM t WHERE id > 140", ()).await.unwrap();
    assert_eq!(actor.usage().reported.rows_written - before, 10 + 10);
}

#[tokio::test]
async fn rows_read_counts_the_rows_and_index_entries_a_statement_examines() {
    let (host, _kv) = common::memory_host();
    let mut actor = host.wake("r").await.unwrap();
    actor
        .execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT); CREATE INDEX t_k ON t(k);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100) INSERT INTO t SELECT i, i % 10, 'v' FROM c",
        )
        .await
        .unwrap();
    let read = async |actor: &mut wasqlite::Actor, sql: &str| {
        let before = actor.usage().reported.rows_read;
        actor.query(sql, ()).await.unwrap();
        actor.usage().reported.rows_read - before
    };
    assert_eq!(read(&mut actor, "SELECT * FROM t").await, 100, "a full scan examines every row");
    assert_eq!(read(&mut actor, "SELECT * FROM t WHERE v = 'none'").await, 100, "a filtered scan too");
    assert_eq!(read(&mut actor, "SELECT * FROM t WHERE id = 42").await, 1, "a rowid lookup examines one row");
    // 10 index entries with k = 3; the row each one leads to is looked up,
    // not examined by a loop, and not counted again.
    assert_eq!(read(&mut actor, "SELECT v FROM t WHERE k = 3").await, 10);
    assert_eq!(read(&mut actor, "SELECT id FROM t WHERE k = 3").await, 10);
    // A join examines the rows of both sides' loops: 100 of t, and for each,
    // one index entry range of t2 (k = t.k: 10 entries each).
    assert_eq!(read(&mut actor, "SELECT count(*) FROM t JOIN t AS t2 ON t2.k = t.k WHERE t.id <= 5").await, 5 + 5 * 10);
    assert_eq!(read(&mut actor, "SELECT count(*) FROM t").await, 0, "SQLite counts a whole table without a loop");
    // Rows read while a query is stopped part-way are counted up to there.
    let before = actor.usage().reported.rows_read;
    actor.query_batches("SELECT * FROM t", (), |_| std::ops::ControlFlow::Break(())).await.unwrap();
    assert!(actor.usage().reported.rows_read - before <= 100);
}

#[tokio::test]
async fn trigger_and_foreign_key_writes_count_as_rows_written() {
    let (host, _kv) = common::memory_host();
    let mut actor = host.wake("tr").await.unwrap();
    actor
        .execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent(id INTEGER PRIMARY KEY);
             CREATE TABLE child(p INTEGER REFERENCES parent(id) ON DELETE CASCADE);
             CREATE TABLE audit(n INTEGER);
             CREATE TRIGGER log AFTER INSERT ON parent BEGIN INSERT INTO audit VALUES (new.id); END;",
        )
        .await
        .unwrap();
    let before = actor.usage().reported.rows_written;
    actor.execute_many("INSERT INTO parent VALUES (?1)", (1..=10).map(|i| params![i])).await.unwrap();
    assert_eq!(actor.usage().reported.rows_written - before, 20, "10 rows and 10 written by the trigger");
    actor.execute_many("INSERT INTO child VALUES (?1)", (1..=10).map(|i| params![i])).await.unwrap();
    let before = actor.usage().reported.rows_written;
    actor.execute("DELETE FROM parent WHERE id <= 3", ()).await.unwrap();
    assert_eq!(actor.usage().reported.rows_written - before, 6, "3 rows and 3 deleted by the cascade");
}

#[tokio::test]
async fn kv_bytes_calls_and_database_size_are_measured_by_the_host() {
    let (host, kv) = common::memory_host();
    let mut actor = host.wake("kv").await.unwrap();
    assert_eq!(actor.usage().wakes, 1);
    assert_eq!(actor.usage().kv_reads, 1, "the wake's claim read what opening needs");
    actor.execute_batch("CREATE TABLE b(x BLOB)").await.unwrap();
    let before = actor.usage();
    actor.execute("INSERT INTO b VALUES (randomblob(200000))", ()).await.unwrap();
    let after = actor.usage();
    let written = after.kv_written_bytes - before.kv_written_bytes;
    assert!((200_000..400_000).contains(&written), "wrote {written} bytes for a 200 kB blob");
    assert!(after.kv_writes > before.kv_writes);
    assert_eq!(after.calls - before.calls, 1);
    assert!(after.call_time > before.call_time);
    let pages: i64 = actor.query_row("PRAGMA page_count", ()).await.unwrap().get(0).unwrap();
    assert_eq!(actor.usage().database_bytes, pages as u64 * 4096);
    let stored: u64 = kv.keys(&common::id("kv")).len() as u64;
    assert!(stored > 0);
    actor.sleep().await.unwrap();

    let mut actor = host.wake("kv").await.unwrap();
    let before = actor.usage();
    actor.query_row("SELECT length(hex(x)) FROM b", ()).await.unwrap();
    let read = actor.usage().kv_read_bytes - before.kv_read_bytes;
    assert!(read >= 200_000, "read {read} bytes of a 200 kB blob from a cold cache");
    let before = actor.usage();
    actor.query_row("SELECT length(hex(x)) FROM b", ()).await.unwrap();
    assert_eq!(actor.usage().kv_reads, before.kv_reads, "a warm cache reads nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_sums_usage_and_hands_it_over_at_each_sleep() {
    let (host, _kv) = common::memory_host();
    let slept: Arc<Mutex<Vec<(ActorId, Usage)>>> = Arc::default();
    let sink = slept.clone();
    let config = ManagerConfig {
        max_awake: 1,
        idle_timeout: Duration::from_secs(3600),
        on_sleep: Some(Arc::new(move |id: &ActorId, usage: &Usage| sink.lock().unwrap().push((id.clone(), *usage)))),
        ..ManagerConfig::default()
    };
    let actors = Manager::new(host, config).unwrap();
    for id in ["a", "b"] {
        actors.with(id, async |a| a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)").await).await.unwrap();
    }
    // "a" slept to make room for "b".
    let handed = slept.lock().unwrap().clone();
    assert_eq!(handed.len(), 1);
    let (id, usage) = &handed[0];
    assert_eq!(id.as_str(), "a");
    assert_eq!((usage.wakes, usage.sleeps, usage.reported.rows_written), (1, 1, 3), "{usage:?}");
    assert!(usage.kv_written_bytes > 0 && usage.calls >= 1);
    let b = actors.usage_of("b").expect("b is awake");
    assert_eq!(b.reported.rows_written, 3);
    assert_eq!(actors.usage_of("a"), None, "a sleeps");
    actors.shutdown().await.unwrap();
    let total = actors.usage();
    assert_eq!((total.wakes, total.sleeps, total.reported.rows_written), (2, 2, 6), "{total:?}");
    assert_eq!(slept.lock().unwrap().len(), 2);
}

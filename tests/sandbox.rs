//! The sandbox, tried as a hostile tenant would: every call has a deadline
//! and can be interrupted, the SQL surface cannot undo the hardening or
//! the durability, the actor's own files open once, the database has a
//! size cap, crafted stored sizes are refused, and a statement too deep for
//! the guest's stack is one clear error. In each case the data already
//! committed stays intact and the actor stays usable.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{id, integrity};
use wasqlite::kv::FaultKv;
use wasqlite::vfs::layout::{FileTag, encode_meta, meta_key};
use wasqlite::{Actor, Error, Host, HostConfig, KvStore, Limits, MemoryKv, RedbKv, SqlLimits, params};

const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";

fn host_with(kv: Arc<dyn KvStore>, limits: Limits) -> Host {
    Host::with_config(kv, HostConfig { limits, ..Default::default() }).unwrap()
}

fn timeout_limits(timeout: Duration) -> Limits {
    Limits { call_timeout: Some(timeout), ..Default::default() }
}

async fn count(a: &mut Actor, sql: &str) -> i64 {
    a.query_row(sql, ()).await.unwrap().get(0).unwrap()
}

/// A table with rows already committed, which every hostile step below must
/// leave as it is.
async fn committed_rows(a: &mut Actor, n: i64) {
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v)").await.unwrap();
    a.execute_many("INSERT INTO t(v) VALUES (?1)", (0..n).map(|i| params![format!("row {i}")])).await.unwrap();
}

async fn assert_intact(a: &mut Actor, n: i64) {
    assert_eq!(count(a, "SELECT count(*) FROM t").await, n);
    assert_eq!(integrity(a).await, "ok");
}

/// Row 1 of the issue: an endless recursive CTE stops at the deadline with
/// a timeout error, on the direct path (MemoryKv) and on the fiber path
/// (redb), and the actor goes on.
#[tokio::test]
async fn a_runaway_query_stops_at_its_deadline_and_the_actor_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn KvStore>; 2] =
        [Arc::new(MemoryKv::new()), Arc::new(RedbKv::open(dir.path().join("kv.redb")).unwrap())];
    for kv in stores {
        let timeout = Duration::from_millis(200);
        let host = host_with(kv, timeout_limits(timeout));
        let mut a = host.wake("runaway").await.unwrap();
        committed_rows(&mut a, 50).await;
        let started = Instant::now();
        let err = a.query(ENDLESS, ()).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { timeout: t } if t == timeout), "{err}");
        assert!(started.elapsed() >= timeout, "stopped before its deadline: {:?}", started.elapsed());
        assert_eq!(err.sqlite_code(), Some(9), "SQLITE_INTERRUPT");
        a.execute("INSERT INTO t(v) VALUES ('after')", ()).await.unwrap();
        assert_intact(&mut a, 51).await;
        a.sleep().await.unwrap();
    }
}

/// A write that times out inside a transaction takes the whole transaction
/// with it, as sqlite3_interrupt does, even one whose pages spilled to the
/// KV: nothing of it is committed and the rows from before are intact. A
/// read that times out leaves the transaction open, also as SQLite does.
#[tokio::test]
async fn a_timeout_rolls_back_a_spilled_transaction() {
    let host = host_with(Arc::new(MemoryKv::new()), timeout_limits(Duration::from_millis(300)));
    let mut a = host.wake("spilled").await.unwrap();
    committed_rows(&mut a, 100).await;
    a.execute_batch("PRAGMA cache_size=5; BEGIN").await.unwrap();
    a.execute_many("INSERT INTO t(v) VALUES (?1)", (0..3000).map(|i| params![format!("uncommitted {i:0200}")])).await.unwrap();
    let err = a.query(ENDLESS, ()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(!a.is_autocommit().await.unwrap(), "a read that timed out leaves the transaction open");
    let endless_insert = "INSERT INTO t(v) SELECT 'endless' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c)";
    let err = a.execute(endless_insert, ()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(a.is_autocommit().await.unwrap(), "the interrupted write took its transaction with it");
    assert_intact(&mut a, 100).await;
    a.sleep().await.unwrap();
    let mut again = host.wake("spilled").await.unwrap();
    assert_intact(&mut again, 100).await;
}

/// A guest that does not stop by itself within the grace period is trapped
/// and rebuilt from the KV; a zero grace makes the trap race the progress
/// handler, and either way the caller sees a timeout and the data is
/// intact.
#[tokio::test]
async fn a_call_past_its_grace_period_is_torn_down_and_rebuilt() {
    let limits = Limits { call_timeout: Some(Duration::from_millis(100)), stop_grace: Duration::ZERO, ..Default::default() };
    let host = host_with(Arc::new(MemoryKv::new()), limits);
    let mut a = host.wake("grace").await.unwrap();
    committed_rows(&mut a, 20).await;
    for _ in 0..5 {
        let err = a.query(ENDLESS, ()).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert_intact(&mut a, 20).await;
    }
    assert_eq!(host.live_instances(), 1, "a rebuild releases the old instance");
}

/// An interrupt from another thread stops the running call, as
/// sqlite3_interrupt; with no call running it does nothing.
#[tokio::test]
async fn an_interrupt_handle_stops_a_running_call_from_another_thread() {
    let (host, _kv) = common::memory_host();
    let mut a = host.wake("interrupt").await.unwrap();
    a.set_call_timeout(None);
    committed_rows(&mut a, 10).await;
    let handle = a.interrupt_handle();
    handle.interrupt();
    assert_eq!(count(&mut a, "SELECT count(*) FROM t").await, 10, "an interrupt before a call is forgotten");
    let done = Arc::new(AtomicBool::new(false));
    let interrupter = {
        let done = done.clone();
        // The call may not have started at the first interrupt; repeat
        // until it returns.
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                handle.interrupt();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let err = a.query(ENDLESS, ()).await.unwrap_err();
    done.store(true, Ordering::SeqCst);
    interrupter.join().unwrap();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert_intact(&mut a, 10).await;
}

/// Row 2: the actor's own database, journal or WAL cannot be opened a
/// second time, by ATTACH or VACUUM INTO, and the database survives the
/// attempts whole.
#[tokio::test]
async fn the_actors_own_files_cannot_be_attached_or_vacuumed_into() {
    let (host, _kv) = common::memory_host();
    let mut a = host.wake("attach").await.unwrap();
    committed_rows(&mut a, 30).await;
    for sql in [
        "ATTACH 'actor.db' AS p",
        "ATTACH 'file:actor.db?mode=rw' AS p",
        "ATTACH 'actor.db-journal' AS p",
        "ATTACH 'actor.db-wal' AS p",
        "VACUUM INTO 'actor.db'",
        "VACUUM INTO 'actor.db-journal'",
        "ATTACH 'other.db' AS p",
    ] {
        let err = a.execute_batch(sql).await.unwrap_err();
        assert_eq!(err.sqlite_code().map(|c| c & 0xff), Some(14), "{sql}: {err}");
        assert!(!err.to_string().contains("Some("), "{err}");
    }
    a.execute_batch("INSERT INTO t(v) VALUES ('main still works')").await.unwrap();
    // An in-memory database can still be attached, within the limit.
    a.execute_batch("ATTACH ':memory:' AS scratch; CREATE TABLE scratch.s(x); DETACH scratch").await.unwrap();
    a.sleep().await.unwrap();
    let mut again = host.wake("attach").await.unwrap();
    assert_intact(&mut again, 31).await;
}

/// Row 3 and the authorizer: a tenant cannot switch the journal off (the
/// index corruption of journal_mode=OFF plus a failing statement), nor any
/// other setting that keeps the database durable, checked or bounded;
/// reading them is fine.
#[tokio::test]
async fn tenant_sql_cannot_undo_the_hardening_or_the_durability() {
    let (host, _kv) = common::memory_host();
    let mut a = host.wake("pragmas").await.unwrap();
    committed_rows(&mut a, 200).await;
    for sql in [
        "PRAGMA journal_mode=OFF",
        "PRAGMA main.journal_mode=WAL",
        "PRAGMA synchronous=OFF",
        "PRAGMA locking_mode=NORMAL",
        "PRAGMA writable_schema=ON",
        "PRAGMA trusted_schema=ON",
        "PRAGMA cell_size_check=OFF",
        "PRAGMA max_page_count=1000000000",
        "PRAGMA mmap_size=1000000",
        "PRAGMA page_size=65536",
        "PRAGMA temp_store=FILE",
        "PRAGMA busy_timeout=100000",
        "PRAGMA schema_version=1",
        "PRAGMA hard_heap_limit=1",
    ] {
        let err = a.execute_batch(sql).await.unwrap_err();
        assert_eq!(err.sqlite_code(), Some(23), "{sql} must be refused with SQLITE_AUTH: {err}");
    }
    let mode: String = a.query_row("PRAGMA journal_mode", ()).await.unwrap().get(0).unwrap();
    assert_eq!(mode, "delete");
    let trusted: i64 = a.query_row("PRAGMA trusted_schema", ()).await.unwrap().get(0).unwrap();
    assert_eq!(trusted, 0);
    // The statement that corrupted an index with the journal off: it fails
    // after its pages spilled, and is rolled back whole.
    a.execute_batch("PRAGMA cache_size=5").await.unwrap();
    let err = a
        .execute_batch("INSERT INTO t(id, v) SELECT id + 1000, 'dup ' || id FROM t UNION ALL SELECT 1, 'clash'")
        .await
        .unwrap_err();
    assert_eq!(err.sqlite_code().map(|c| c & 0xff), Some(19), "{err}");
    assert_intact(&mut a, 200).await;
}

/// The host's own migrations pass the authorizer that tenants' SQL meets.
#[tokio::test]
async fn migrations_are_trusted_and_tenant_sql_is_not() {
    let config = HostConfig {
        migrations: wasqlite::Migrations::new(["PRAGMA cell_size_check=ON; CREATE TABLE m(x)"]),
        ..Default::default()
    };
    let host = Host::with_config(Arc::new(MemoryKv::new()), config).unwrap();
    let mut a = host.wake("migrated").await.unwrap();
    a.execute("INSERT INTO m VALUES (1)", ()).await.unwrap();
    let err = a.execute_batch("PRAGMA cell_size_check=ON").await.unwrap_err();
    assert_eq!(err.sqlite_code(), Some(23), "{err}");
}

/// Row 7: past the size cap, writes fail with SQLITE_FULL, what committed
/// before stays, and the actor goes on (deleting makes room again).
#[tokio::test]
async fn a_runaway_insert_stops_at_the_database_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvStore> = Arc::new(RedbKv::open(dir.path().join("kv.redb")).unwrap());
    let cap = 2 << 20;
    let host = host_with(kv.clone(), Limits { max_database_size: cap, ..Default::default() });
    let mut a = host.wake("full").await.unwrap();
    a.execute_batch("CREATE TABLE big(b BLOB)").await.unwrap();
    let mut inserted = 0;
    let err = loop {
        match a.execute("INSERT INTO big VALUES (randomblob(50000))", ()).await {
            Ok(_) => inserted += 1,
            Err(e) => break e,
        }
        assert!(inserted < 1000, "the cap never held");
    };
    assert_eq!(err.sqlite_code().map(|c| c & 0xff), Some(13), "SQLITE_FULL: {err}");
    assert!(err.to_string().contains("cap"), "{err}");
    // One statement that would cross the cap at once fails whole.
    let err = a.execute("INSERT INTO big SELECT randomblob(50000) FROM big", ()).await.unwrap_err();
    assert_eq!(err.sqlite_code().map(|c| c & 0xff), Some(13), "{err}");
    assert_eq!(count(&mut a, "SELECT count(*) FROM big").await, inserted);
    assert_eq!(integrity(&mut a).await, "ok");
    a.execute("DELETE FROM big WHERE rowid % 2 = 0", ()).await.unwrap();
    a.execute("INSERT INTO big VALUES (randomblob(50000))", ()).await.unwrap();
    a.sleep().await.unwrap();
    let size: u64 = {
        let meta = kv.get(&id("full"), &meta_key(FileTag::Main)).await.unwrap().unwrap();
        wasqlite::vfs::layout::decode_meta(&meta).unwrap()
    };
    assert!(size <= cap, "stored size {size} is past the cap {cap}");
}

/// Row 4: a stored size no write could have made (2^60, 2^64-1) is
/// SQLITE_CORRUPT at the wake, not an empty database that the next write
/// overwrites; the stored pages are untouched, and a true size reads them
/// again.
#[tokio::test]
async fn a_crafted_meta_size_is_corrupt_and_loses_no_page() {
    let kv = Arc::new(MemoryKv::new());
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("crafted").await.unwrap();
    committed_rows(&mut a, 40).await;
    a.sleep().await.unwrap();
    let actor = id("crafted");
    let true_meta = kv.get(&actor, &meta_key(FileTag::Main)).await.unwrap().unwrap();
    let pages_before = common::main_chunks(&kv, "crafted");
    for size in [1u64 << 60, u64::MAX, (10u64 << 30) + 4096] {
        kv.batch_put(&actor, common::tool_fence(&*kv, "crafted").await, &[(meta_key(FileTag::Main), encode_meta(size))]).await.unwrap();
        let err = match host.wake("crafted").await {
            Ok(mut a) => a.execute("CREATE TABLE overwrite(x)", ()).await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(err.sqlite_code().map(|c| c & 0xff), Some(11), "size {size}: {err}");
        assert!(err.to_string().contains(&size.to_string()), "{err}");
        assert_eq!(common::main_chunks(&kv, "crafted"), pages_before);
    }
    kv.batch_put(&actor, common::tool_fence(&*kv, "crafted").await, &[(meta_key(FileTag::Main), true_meta)]).await.unwrap();
    let mut again = host.wake("crafted").await.unwrap();
    assert_intact(&mut again, 40).await;
}

/// Row 9: 700 nested views overflow the guest's stack; that is one clear
/// error, not a wasm backtrace, and the next statement runs normally.
/// The rebuild after the trap releases the old instance's pool slot first,
/// so it works with a pool of one.
#[tokio::test]
async fn a_statement_too_deep_for_the_stack_is_one_clear_error() {
    let config = HostConfig {
        engine: wasqlite::EngineConfig { pooling: Some(1), ..Default::default() },
        ..Default::default()
    };
    let host = Host::with_config(Arc::new(MemoryKv::new()), config).unwrap();
    let mut a = host.wake("views").await.unwrap();
    committed_rows(&mut a, 5).await;
    let mut ddl = String::from("CREATE VIEW v0 AS SELECT 1 AS x;");
    for i in 1..700 {
        ddl.push_str(&format!("CREATE VIEW v{i} AS SELECT x FROM v{};", i - 1));
    }
    a.execute_batch(&ddl).await.unwrap();
    for _ in 0..2 {
        let err = a.query("SELECT * FROM v699", ()).await.unwrap_err();
        assert!(matches!(err, Error::TooComplex), "{err}");
        let text = err.to_string();
        assert!(!text.contains('\n') && !text.contains("wasm") && !text.contains("0x"), "{text}");
        assert_intact(&mut a, 5).await;
    }
}

/// Row 6 (library side): `query` refuses to collect more than its cap, and
/// `query_batches` hands over an endless result a batch at a time, so the
/// host holds one batch, and can stop whenever it likes.
#[tokio::test]
async fn rows_stream_in_bounded_batches_and_query_has_a_cap() {
    let limits = Limits { max_result_bytes: 1 << 20, ..Default::default() };
    let host = host_with(Arc::new(MemoryKv::new()), limits);
    let mut a = host.wake("stream").await.unwrap();
    committed_rows(&mut a, 3).await;
    let endless_blobs = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x, randomblob(10000) FROM c";
    let err = a.query(endless_blobs, ()).await.unwrap_err();
    assert!(matches!(err, Error::ResultTooBig { limit } if limit == 1 << 20), "{err}");
    let (mut rows, mut batches, mut largest) = (0usize, 0usize, 0usize);
    a.query_batches(endless_blobs, (), |batch| {
        batches += 1;
        rows += batch.len();
        largest = largest.max(batch.len());
        if rows >= 5000 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .await
    .unwrap();
    assert!(rows >= 5000 && batches > 1, "{rows} rows in {batches} batches");
    assert!(largest * 10_000 <= 2 * 65536 + 20_000, "a batch of {largest} rows is more than the guest's batch size");
    // The statement stopped early is finalized: it runs again from the start.
    let mut first = None;
    a.query_batches(endless_blobs, (), |batch| {
        first = batch.get(0).map(|r| r.get::<i64>(0).unwrap());
        ControlFlow::Break(())
    })
    .await
    .unwrap();
    assert_eq!(first, Some(1));
    assert_intact(&mut a, 3).await;
}

/// Row 8 and the SQL limits: a value past SQLITE_LIMIT_LENGTH is
/// SQLITE_TOOBIG with SQLite's message; the limits are the host's to set.
#[tokio::test]
async fn sql_limits_apply_and_are_configurable() {
    let (host, _kv) = common::memory_host();
    let mut a = host.wake("limits").await.unwrap();
    let err = a.query("SELECT zeroblob(150000000)", ()).await.unwrap_err();
    assert_eq!(err.sqlite_code(), Some(18), "SQLITE_TOOBIG: {err}");
    assert!(err.to_string().contains("too big"), "{err}");
    let deep = format!("SELECT {}1{}", "abs(".repeat(600), ")".repeat(600));
    let err = a.query(&deep, ()).await.unwrap_err();
    assert!(err.to_string().contains("depth"), "{err}");
    let many_columns = format!("SELECT {}", vec!["1"; 2001].join(","));
    assert!(a.query(&many_columns, ()).await.is_err());

    let limits = Limits { sql: SqlLimits { length: 1000, columns: 10, ..Default::default() }, ..Default::default() };
    let host = host_with(Arc::new(MemoryKv::new()), limits);
    let mut a = host.wake("tight").await.unwrap();
    assert_eq!(a.query("SELECT zeroblob(1001)", ()).await.unwrap_err().sqlite_code(), Some(18));
    a.query("SELECT zeroblob(1000)", ()).await.unwrap();
    let eleven = format!("SELECT {}", ["1"; 11].join(","));
    assert!(a.query(&eleven, ()).await.unwrap_err().to_string().contains("too many columns"));
}

/// A KV that makes every call wait still gets the deadline: the fiber
/// yields at each tick, so a dropped future also stops the statement.
#[tokio::test]
async fn a_runaway_query_on_a_waiting_kv_yields_and_can_be_dropped() {
    let kv = Arc::new(FaultKv::new(MemoryKv::new()));
    kv.set_delay(Some(Duration::ZERO));
    let host = host_with(kv, Limits { call_timeout: None, ..Default::default() });
    let mut a = host.wake("yield").await.unwrap();
    committed_rows(&mut a, 10).await;
    let dropped = tokio::time::timeout(Duration::from_millis(200), a.query(ENDLESS, ())).await;
    assert!(dropped.is_err(), "the endless query returned");
    assert_intact(&mut a, 10).await;
}

/// A write the KV does not answer within `kv_timeout` fails the call as an
/// unknown outcome and poisons the actor (the write may land later); a new
/// wake waits for it, and the database is whole either way. A read that
/// times out is a plain I/O error.
#[tokio::test]
async fn a_kv_that_does_not_answer_times_out_without_losing_anything() {
    let kv = Arc::new(FaultKv::new(MemoryKv::new()));
    kv.set_delay(Some(Duration::ZERO));
    let limits = Limits { kv_timeout: Some(Duration::from_millis(100)), ..Default::default() };
    let host = host_with(kv.clone(), limits);
    let mut a = host.wake("slow").await.unwrap();
    committed_rows(&mut a, 10).await;
    kv.pause_writes(true);
    let started = Instant::now();
    let err = a.execute("INSERT INTO t(v) VALUES ('maybe')", ()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout did not bound the wait");
    assert!(matches!(err, Error::OutcomeUnknown { .. }) && err.to_string().contains("did not answer"), "{err}");
    assert!(err.is_io_error(), "{err}");
    let poisoned = a.query("SELECT 1", ()).await.unwrap_err();
    assert!(matches!(poisoned, Error::Poisoned { .. }), "{poisoned}");
    drop(a);
    kv.pause_writes(false);
    let mut again = host.wake("slow").await.unwrap();
    let n = count(&mut again, "SELECT count(*) FROM t").await;
    assert!(n == 10 || n == 11, "{n} rows");
    assert_eq!(integrity(&mut again).await, "ok");
    again.sleep().await.unwrap();

    // A read: the wake reads the file sizes and page 1 in its claim, the
    // first query the other pages.
    kv.set_delay(Some(Duration::from_secs(2)));
    let err = match host.wake("slow").await {
        Ok(mut cold) => cold.query("SELECT count(*) FROM t", ()).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.is_io_error() && err.to_string().contains("did not answer a claim"), "{err}");
    kv.set_delay(None);
    // Without its wake hint the wake fetches page 1 only, so the query must
    // read.
    let fence = common::tool_fence(&*kv, "slow").await;
    kv.batch_delete(&id("slow"), fence, &[wasqlite::vfs::layout::wake_hint_key()]).await.unwrap();
    let mut cold = host.wake("slow").await.unwrap();
    kv.set_delay(Some(Duration::from_secs(2)));
    let err = cold.query("SELECT count(*) FROM t", ()).await.unwrap_err();
    assert!(err.is_io_error() && err.to_string().contains("did not answer a read"), "{err}");
    drop(cold);
    kv.set_delay(Some(Duration::ZERO));
    let mut warm = host.wake("slow").await.unwrap();
    assert_eq!(integrity(&mut warm).await, "ok");
}

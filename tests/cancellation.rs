//! Cancellation safety: a caller may drop any future of the API at any
//! await point, as `tokio::time::timeout` or `select!` do. Afterwards the
//! actor answers, every acknowledged write is there, the dropped call took
//! effect wholly or not at all, and the database passes `integrity_check`.
//!
//! The numbered tests are the five cases found by trying the API as an
//! embedder would, before calls recovered from cancellation. A future is
//! dropped after a counted number of polls, which is what a timeout does
//! when it fires, without depending on the clock.

mod common;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::{drop_after_polls, integrity};
use wasqlite::kv::{FaultKv, FaultPlan};
use wasqlite::{Actor, Error, Host, KvLimits, KvStore, MemoryKv, RedbKv, params};

/// Polls `future` once, without waiting for it to be woken.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Polls `future` until `ready()` holds (checked between polls, yielding to
/// the runtime in between), then drops it. `None`: it was dropped
/// unfinished.
async fn drop_when<F: Future>(future: F, ready: impl Fn() -> bool) -> Option<F::Output> {
    let mut future = pin!(future);
    loop {
        if ready() {
            return None;
        }
        if let Poll::Ready(out) = poll_once(&mut future).await {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
}

/// A FaultKv over memory whose every operation yields once: calls run on
/// fibers and wait at each KV call, deterministically.
fn yielding_kv(limits: KvLimits) -> Arc<FaultKv<MemoryKv>> {
    let kv = Arc::new(FaultKv::new(MemoryKv::with_limits(limits)));
    kv.set_delay(Some(Duration::ZERO));
    kv
}

fn redb_kv() -> (Arc<RedbKv>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(RedbKv::open(dir.path().join("kv.redb")).unwrap()), dir)
}

async fn count(a: &mut Actor, sql: &str) -> i64 {
    a.query_row(sql, ()).await.unwrap().get(0).unwrap()
}

async fn table_of(a: &mut Actor, rows: i64) {
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)").await.unwrap();
    a.execute_many("INSERT INTO t VALUES (?1, 0)", (0..rows).map(|i| params![i])).await.unwrap();
}

/// An actor with `rows` rows in `t`, woken afresh: its page cache is cold,
/// so a statement over the table waits on the KV.
async fn cold_actor(host: &Host, id: &str, rows: i64) -> Actor {
    let mut a = host.wake(id).await.unwrap();
    table_of(&mut a, rows).await;
    a.sleep().await.unwrap();
    host.wake(id).await.unwrap()
}

/// Case 1: a cancelled UPDATE stayed half-run in the guest; the next
/// acknowledged INSERT was lost, a COMMIT failed with SQLITE_BUSY and the
/// same SQL failed with SQLITE_MISUSE.
async fn cancelled_update_then_acknowledged_writes_survive(kv: Arc<dyn KvStore>) {
    let host = Host::new(kv).unwrap();
    let mut a = host.wake("case-1").await.unwrap();
    table_of(&mut a, 3000).await;
    let update = "UPDATE t SET v = v + 1 WHERE id < 1000000";
    assert!(drop_after_polls(a.execute(update, ()), 1).await.is_none(), "the UPDATE ended at its first poll");

    assert!(a.is_autocommit().await.unwrap());
    assert_eq!(a.execute("INSERT INTO t VALUES (5000, 50)", ()).await.unwrap(), 1);
    let mut tx = a.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (5001, 51)", ()).await.unwrap();
    tx.commit().await.unwrap();
    // The same SQL runs again, on every row.
    assert_eq!(a.execute(update, ()).await.unwrap(), 3002);
    a.sleep().await.unwrap();

    let mut a = host.wake("case-1").await.unwrap();
    assert_eq!(integrity(&mut a).await, "ok");
    assert_eq!(count(&mut a, "SELECT v FROM t WHERE id = 5000").await, 51);
    assert_eq!(count(&mut a, "SELECT v FROM t WHERE id = 5001").await, 52);
    // The cancelled UPDATE: on every row or on none.
    assert_eq!(count(&mut a, "SELECT count(DISTINCT v) FROM t WHERE id < 3000").await, 1);
    let v = count(&mut a, "SELECT v FROM t WHERE id = 0").await;
    assert!(v == 1 || v == 2, "v = {v}");
    a.sleep().await.unwrap();
}

#[tokio::test]
async fn case_1_cancelled_update_on_fibers() {
    cancelled_update_then_acknowledged_writes_survive(yielding_kv(KvLimits::RIVET)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_1_cancelled_update_on_redb() {
    let (kv, _dir) = redb_kv();
    cancelled_update_then_acknowledged_writes_survive(kv).await;
}

/// Case 2's sequence: an `execute_many` of `extra` rows dropped after
/// `first` polls, a query dropped after `second`, then an acknowledged
/// UPDATE of every row to `marker`. The next wake must find the UPDATE on
/// every row and the rows committed before, plus the dropped insert whole
/// or not at all.
async fn torn_sequence(host: &Host, id: &str, rows: i64, extra: i64, (first, second): (usize, usize), marker: i64) {
    let mut a = host.wake(id).await.unwrap();
    let insert = a.execute_many("INSERT INTO t VALUES (?1, 0)", (rows..rows + extra).map(|i| params![i]));
    drop_after_polls(insert, first).await;
    drop_after_polls(a.query("SELECT count(*), sum(v) FROM t", ()), second).await;
    let updated = a.execute("UPDATE t SET v = ?1", params![marker]).await.unwrap();
    assert!(updated == rows as u64 || updated == (rows + extra) as u64, "UPDATE changed {updated} rows");
    a.sleep().await.unwrap();

    let mut a = host.wake(id).await.unwrap();
    assert_eq!(integrity(&mut a).await, "ok", "polls {first}, {second}");
    assert_eq!(count(&mut a, "SELECT count(*) FROM t").await, updated as i64, "polls {first}, {second}");
    assert_eq!(count(&mut a, &format!("SELECT count(*) FROM t WHERE v != {marker}")).await, 0, "polls {first}, {second}");
    a.sleep().await.unwrap();
}

/// Case 2: this exact sequence corrupted the stored database and lost rows
/// committed long before (`Rowid 87574 out of order`, 97,355 of 100,000).
#[tokio::test]
async fn case_2_dropped_bulk_insert_and_query_keep_the_database_whole() {
    let host = Host::new(yielding_kv(KvLimits::RIVET)).unwrap();
    let mut a = host.wake("case-2").await.unwrap();
    table_of(&mut a, 100_000).await;
    a.sleep().await.unwrap();
    torn_sequence(&host, "case-2", 100_000, 20_000, (11, 1), 1).await;
}

/// Case 2 on redb, over a grid of poll counts, each on the database the
/// previous one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_2_on_redb_over_a_grid_of_poll_counts() {
    let (kv, _dir) = redb_kv();
    let host = Host::new(kv).unwrap();
    let mut a = host.wake("case-2").await.unwrap();
    table_of(&mut a, 20_000).await;
    a.sleep().await.unwrap();
    let mut marker = 0;
    for first in 1..=8 {
        for second in 1..=6 {
            marker += 1;
            let rows = {
                let mut a = host.wake("case-2").await.unwrap();
                let n = count(&mut a, "SELECT max(id) + 1 FROM t").await;
                a.sleep().await.unwrap();
                n
            };
            torn_sequence(&host, "case-2", rows, 2_000, (first, second), marker).await;
        }
    }
}

/// Case 3: cancelling the first read of a fresh instance left it answering
/// `no such table` or SQLITE_CORRUPT on a healthy database.
async fn cancelled_first_read_of_a_fresh_instance(kv: Arc<dyn KvStore>) {
    let host = Host::new(kv).unwrap();
    let mut a = host.wake("case-3").await.unwrap();
    table_of(&mut a, 500).await;
    a.sleep().await.unwrap();
    for polls in 1..=3 {
        let mut a = host.wake("case-3").await.unwrap();
        drop_after_polls(a.query("SELECT count(*) FROM t", ()), polls).await;
        a.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v INTEGER)").await.unwrap();
        assert_eq!(count(&mut a, "SELECT count(*) FROM t").await, 500, "after {polls} polls");
        assert_eq!(integrity(&mut a).await, "ok");
        a.sleep().await.unwrap();
    }
}

#[tokio::test]
async fn case_3_cancelled_first_read_on_fibers() {
    cancelled_first_read_of_a_fresh_instance(yielding_kv(KvLimits::RIVET)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_3_cancelled_first_read_on_redb() {
    let (kv, _dir) = redb_kv();
    cancelled_first_read_of_a_fresh_instance(kv).await;
}

/// Case 4: one KV failure at a particular point of a 20,000-row
/// `execute_many` commit returned SQLITE_IOERR_FSYNC while every row had
/// committed. Now each point's answer tells the truth: `Ok` means
/// committed, a plain error means not, and a commit that may have happened
/// says `OutcomeUnknown`.
#[tokio::test]
async fn case_4_a_failure_after_the_commit_point_says_the_outcome_is_unknown() {
    const ROWS: i64 = 20_000;
    async fn attempt(plan: FaultPlan) -> (Result<u64, Error>, u64, i64) {
        let kv = Arc::new(FaultKv::new(MemoryKv::with_limits(KvLimits::RIVET)));
        let host = Host::new(kv.clone()).unwrap();
        let mut a = host.wake("case-4").await.unwrap();
        a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)").await.unwrap();
        kv.set_plan(plan);
        // About 2.5 MB: far more than one KV batch, so it commits through
        // the rollback journal, in many KV calls.
        let row = "r".repeat(100);
        let result = a.execute_many("INSERT INTO t VALUES (?1, ?2)", (0..ROWS).map(|i| params![i, row.as_str()])).await;
        let ops = kv.ops();
        kv.set_plan(FaultPlan::Healthy);
        drop(a);
        let mut a = host.wake("case-4").await.unwrap();
        assert_eq!(integrity(&mut a).await, "ok");
        let rows = count(&mut a, "SELECT count(*) FROM t").await;
        (result, ops, rows)
    }
    let (result, ops, rows) = attempt(FaultPlan::Healthy).await;
    assert_eq!((result.unwrap(), rows), (ROWS as u64, ROWS));
    let mut committed_despite_error = 0;
    for k in 0..ops {
        let (result, _, rows) = attempt(FaultPlan::FailOnce(k)).await;
        match result {
            Ok(n) => assert_eq!((n, rows), (ROWS as u64, ROWS), "fault at op {k}"),
            Err(Error::OutcomeUnknown { source }) => {
                assert!(source.is_io_error(), "fault at op {k}: {source}");
                assert!(rows == 0 || rows == ROWS, "fault at op {k}: {rows} rows");
                committed_despite_error += usize::from(rows == ROWS);
            }
            Err(e) => assert_eq!(rows, 0, "fault at op {k}: a plain error ({e}) for a commit that happened"),
        }
    }
    assert!(committed_despite_error > 0, "no fault struck after the commit point of the {ops} operations");
}

/// Case 5: on a KV that answers at once (MemoryKv) calls are direct and
/// end at their first poll, so a timeout cannot cut one short: the call
/// runs to its end, as documented. The sandbox's deadline bounds them.
#[tokio::test]
async fn case_5_a_direct_call_runs_to_its_end_under_a_timeout() {
    let host = Host::new(Arc::new(MemoryKv::new())).unwrap();
    let mut a = host.wake("case-5").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY)").await.unwrap();
    let insert = a.execute_many("INSERT INTO t VALUES (?1)", (0..20_000).map(|i| params![i]));
    let finished = tokio::time::timeout(Duration::from_micros(10), insert).await;
    assert_eq!(finished.expect("a direct call cannot be cancelled").unwrap(), 20_000);
    assert_eq!(count(&mut a, "SELECT count(*) FROM t").await, 20_000);
}

/// A statement cancelled inside a `Transaction` takes the transaction with
/// it: the guard's next calls say so, and nothing of it commits.
#[tokio::test]
async fn a_cancelled_statement_aborts_its_transaction_and_the_guard_says_so() {
    let host = Host::new(yielding_kv(KvLimits::RIVET)).unwrap();
    let mut a = cold_actor(&host, "tx", 20_000).await;
    let mut tx = a.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (50000, 1)", ()).await.unwrap();
    assert!(drop_after_polls(tx.execute("UPDATE t SET v = v + 1", ()), 1).await.is_none());
    let err = tx.execute("INSERT INTO t VALUES (50001, 1)", ()).await.unwrap_err();
    assert!(matches!(err, Error::TransactionAborted { .. }), "{err}");
    let err = tx.commit().await.unwrap_err();
    assert!(matches!(err, Error::TransactionAborted { .. }), "{err}");
    // The actor goes on, with nothing of the transaction.
    assert!(a.is_autocommit().await.unwrap());
    assert_eq!(count(&mut a, "SELECT count(*) FROM t WHERE id >= 20000 OR v != 0").await, 0);
    a.execute("INSERT INTO t VALUES (60000, 6)", ()).await.unwrap();
    a.sleep().await.unwrap();
    let mut a = host.wake("tx").await.unwrap();
    assert_eq!(count(&mut a, "SELECT count(*) FROM t").await, 20_001);
}

/// Rolling back a transaction that a cancellation already rolled back is
/// fine, and dropping its guard leaves no error behind for the next call.
#[tokio::test]
async fn rollback_or_drop_of_an_aborted_transaction_is_quiet() {
    let host = Host::new(yielding_kv(KvLimits::RIVET)).unwrap();
    let mut a = cold_actor(&host, "tx-quiet", 500).await;
    {
        let mut tx = a.transaction().await.unwrap();
        assert!(drop_after_polls(tx.execute("UPDATE t SET v = 9", ()), 1).await.is_none());
    }
    assert_eq!(count(&mut a, "SELECT count(*) FROM t WHERE v = 9").await, 0);
    a.sleep().await.unwrap();
    let mut a = host.wake("tx-quiet").await.unwrap();
    let mut tx = a.transaction().await.unwrap();
    assert!(drop_after_polls(tx.execute("UPDATE t SET v = 9", ()), 1).await.is_none());
    assert!(matches!(tx.execute("SELECT 1", ()).await, Err(Error::TransactionAborted { .. })));
    tx.rollback().await.unwrap();
    assert_eq!(count(&mut a, "SELECT count(*) FROM t WHERE v = 9").await, 0);
}

/// A transaction begun with plain SQL has no guard to tell: the first call
/// after the cancellation fails once with `TransactionAborted`, rather than
/// letting later statements autocommit one by one.
#[tokio::test]
async fn a_cancelled_statement_in_a_begin_transaction_is_reported_once() {
    let host = Host::new(yielding_kv(KvLimits::RIVET)).unwrap();
    let mut a = cold_actor(&host, "begin", 20_000).await;
    a.execute_batch("BEGIN").await.unwrap();
    a.execute("INSERT INTO t VALUES (50000, 1)", ()).await.unwrap();
    assert!(drop_after_polls(a.execute("UPDATE t SET v = v + 1", ()), 1).await.is_none());
    let err = a.execute("INSERT INTO t VALUES (50001, 1)", ()).await.unwrap_err();
    assert!(matches!(err, Error::TransactionAborted { .. }), "{err}");
    assert!(a.is_autocommit().await.unwrap());
    assert_eq!(count(&mut a, "SELECT count(*) FROM t").await, 20_000);
}

/// A dropped wake releases everything it built: the next wake works, also
/// when the dropped one was running migrations.
#[tokio::test]
async fn a_dropped_wake_leaves_the_actor_wakeable() {
    let kv = yielding_kv(KvLimits::RIVET);
    let config = wasqlite::HostConfig {
        migrations: wasqlite::Migrations::new(["CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)", "CREATE INDEX t_v ON t(v)"]),
        ..Default::default()
    };
    let host = Host::with_config(kv, config).unwrap();
    for polls in 1..40 {
        let woken = drop_after_polls(host.wake("wake"), polls).await;
        if let Some(actor) = woken {
            actor.unwrap().sleep().await.unwrap();
            return;
        }
        let mut a = host.wake("wake").await.unwrap();
        assert_eq!(count(&mut a, "PRAGMA user_version").await, 2, "after a wake dropped at poll {polls}");
        assert_eq!(integrity(&mut a).await, "ok");
        a.sleep().await.unwrap();
    }
    panic!("the wake never finished within 40 polls");
}

/// A write whose caller went away still lands afterwards (RedbKv's writer
/// thread does that); a wake, on this Host or another over the same store,
/// waits for it instead of reading around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_waits_for_a_write_left_in_flight() {
    let kv = Arc::new(FaultKv::new(MemoryKv::new()));
    let host = Host::new(kv.clone()).unwrap();
    let other_host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("inflight").await.unwrap();
    table_of(&mut a, 10).await;
    kv.pause_writes(true);
    let update = a.execute("UPDATE t SET v = 7", ());
    assert!(drop_when(update, || kv.writes_waiting() == 1).await.is_none());
    drop(a);

    let mut woken = pin!(other_host.wake("inflight"));
    for _ in 0..100 {
        assert!(poll_once(&mut woken).await.is_pending(), "a wake finished while a write was in flight");
        tokio::task::yield_now().await;
    }
    kv.pause_writes(false);
    let mut a = woken.await.unwrap();
    // The write landed whole, and the new instance read after it.
    assert_eq!(count(&mut a, "SELECT count(*) FROM t WHERE v = 7").await, 10);
    a.sleep().await.unwrap();
}

/// `destroy` dropped while its delete is in flight: the delete still
/// happens, and the next wake waits for it and finds an empty database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_destroy_finishes_its_delete_before_the_next_wake() {
    let kv = Arc::new(FaultKv::new(MemoryKv::new()));
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("gone").await.unwrap();
    table_of(&mut a, 10).await;
    kv.pause_writes(true);
    assert!(drop_when(a.destroy(), || kv.writes_waiting() == 1).await.is_none());
    let mut woken = pin!(host.wake("gone"));
    for _ in 0..100 {
        assert!(poll_once(&mut woken).await.is_pending(), "a wake finished while the delete was in flight");
        tokio::task::yield_now().await;
    }
    kv.pause_writes(false);
    let mut a = woken.await.unwrap();
    assert_eq!(count(&mut a, "SELECT count(*) FROM sqlite_schema").await, 0);
}

/// A sleep after a cancelled call does not close the broken instance, and
/// the data is whole at the next wake.
#[tokio::test]
async fn sleep_after_a_cancelled_call_is_clean() {
    let host = Host::new(yielding_kv(KvLimits::RIVET)).unwrap();
    let mut a = host.wake("sleepy").await.unwrap();
    table_of(&mut a, 2000).await;
    assert!(drop_after_polls(a.execute("UPDATE t SET v = 3", ()), 1).await.is_none());
    a.sleep().await.unwrap();
    let mut a = host.wake("sleepy").await.unwrap();
    assert_eq!(integrity(&mut a).await, "ok");
    assert_eq!(count(&mut a, "SELECT count(DISTINCT v) FROM t").await, 1);
}

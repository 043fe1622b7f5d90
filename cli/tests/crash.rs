//! Crash safety: a process committing transactions is killed with SIGKILL
//! at an arbitrary point, and every transaction it acknowledged before the
//! kill must be found afterwards, whole, in a database that passes
//! `integrity_check`.
//!
//! The writer is `wasqlite debug write-loop`: transaction `n` inserts rows
//! `(n, 0..4)` with 1500-byte payloads (several pages) and prints `n` after
//! its commit returned. The test reads acknowledgements until it has the
//! number it wants and kills the writer right then, with no sleep; the
//! commit in flight at that moment may or may not have landed, but it must
//! be all or nothing. Lines already in the pipe when the writer died were
//! acknowledged too, so they are read and checked as well.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use wasqlite::Host;

const ROWS: i64 = 4;

/// Runs the writer until `acks` acknowledgements, kills it, and returns
/// every number it acknowledged.
fn write_then_kill(store: &str, acks: usize) -> Vec<i64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasqlite"))
        .args(["debug", "write-loop", "--actor", "crash", "--rows", &ROWS.to_string(), "--store", store])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the writer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < acks {
        let line = lines.next().expect("the writer stopped before the kill").unwrap();
        acked.push(line.parse::<i64>().unwrap());
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the writer ended on its own: {status}");
    for line in lines {
        acked.push(line.unwrap().parse::<i64>().unwrap());
    }
    acked
}

/// Opens the store the way the next process would and checks it against
/// everything acknowledged so far; returns the highest transaction found.
async fn check(store: &str, acked: &[i64]) -> i64 {
    let kv = wasqlite::kv::open_store(store).unwrap();
    let host = Host::new(kv).unwrap();
    let mut actor = host.wake("crash").await.unwrap();
    let check: String = actor.query_row("PRAGMA integrity_check", ()).await.unwrap().get(0).unwrap();
    assert_eq!(check, "ok");
    let groups = actor
        .query("SELECT n, count(*), sum(length(payload)), min(part), max(part) FROM txn GROUP BY n ORDER BY n", ())
        .await
        .unwrap();
    let mut expected_n = 1;
    for row in &groups {
        let (n, count, bytes, lo, hi): (i64, i64, i64, i64, i64) =
            (row.get(0).unwrap(), row.get(1).unwrap(), row.get(2).unwrap(), row.get(3).unwrap(), row.get(4).unwrap());
        assert_eq!(n, expected_n, "transactions are numbered without gaps");
        assert_eq!((count, bytes, lo, hi), (ROWS, ROWS * 1500, 0, ROWS - 1), "transaction {n} is partial");
        expected_n += 1;
    }
    let highest = expected_n - 1;
    for n in acked {
        assert!(*n <= highest, "acknowledged transaction {n} is missing (highest found: {highest})");
    }
    actor.sleep().await.unwrap();
    highest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transactions_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("redb:{}", dir.path().join("kv.redb").display());
    let mut acked = Vec::new();
    let mut highest = 0;
    // Each round restarts on the store the last kill left behind.
    for acks in [1, 3, 10, 25, 40, 60] {
        let url = store.clone();
        let round = tokio::task::spawn_blocking(move || write_then_kill(&url, acks)).await.unwrap();
        assert_eq!(
            round.first(),
            Some(&(highest + 1)),
            "a restarted writer continues after the last transaction found"
        );
        acked.extend(round);
        highest = check(&store, &acked).await;
        assert!(highest >= *acked.last().unwrap());
    }
}

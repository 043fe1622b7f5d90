//! Deterministic simulation: crash at every KV operation of a fixed
//! workload, fail every operation once, and cancel every poll of every API
//! future, and check each run against a native SQLite oracle
//! (src/simulation/mod.rs has the rules).
//!
//! CI runs one seed. For a longer soak:
//!     WASQLITE_SIM_SEEDS=20 cargo test --release --test simulation -- --nocapture

mod common;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wasqlite::KvLimits;
use wasqlite::simulation::{
    CancelOutcome, CancelStore, CrashOutcome, FaultOutcome, Workload, cancel_at, count_ops, count_polls, crash_at, fault_at,
};

const STEPS: usize = 120;

fn seeds() -> Vec<u64> {
    let n = std::env::var("WASQLITE_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1u64);
    (1..=n).collect()
}

/// Runs `check(workload, k)` for every k in `0..points`, two at a time.
async fn every_point<T, F, Fut>(workload: Arc<Workload>, points: u64, check: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<Workload>, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(2));
    let mut runs = JoinSet::new();
    for k in 0..points {
        let (workload, permits) = (workload.clone(), permits.clone());
        runs.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            (k, check(workload, k).await)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = runs.join_next().await {
        let (k, result) = joined.expect("a simulation task panicked");
        results.push((k, result.unwrap_or_else(|e| panic!("{e}"))));
    }
    results.sort_by_key(|(k, _)| *k);
    results.into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_kv_operation() {
    for seed in seeds() {
        let workload = Arc::new(Workload::generate(seed, STEPS));
        let ops = count_ops(&workload, KvLimits::RIVET).await.unwrap();
        // k = ops crashes after the last operation: nothing is lost.
        let outcomes: Vec<CrashOutcome> =
            every_point(workload, ops + 1, |w, k| async move { crash_at(&w, KvLimits::RIVET, k).await }).await;
        let interrupted = outcomes.iter().filter(|o| o.step.is_some()).count();
        let committed_anyway = outcomes.iter().filter(|o| o.inflight_committed).count();
        eprintln!(
            "seed {seed}: {} crash points over {STEPS} steps; {committed_anyway} struck after a commit point",
            ops + 1
        );
        assert_eq!(interrupted as u64, ops, "every crash point before the end interrupts a step");
        assert!(outcomes[ops as usize].step.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_every_kv_operation_once() {
    for seed in seeds() {
        let workload = Arc::new(Workload::generate(seed, STEPS));
        let ops = count_ops(&workload, KvLimits::RIVET).await.unwrap();
        let outcomes: Vec<FaultOutcome> =
            every_point(workload, ops, |w, k| async move { fault_at(&w, KvLimits::RIVET, k).await }).await;
        let failed: usize = outcomes.iter().map(|o| o.failed_steps).sum();
        let committed_anyway: usize = outcomes.iter().map(|o| o.failed_but_committed).sum();
        let unknown: usize = outcomes.iter().map(|o| o.outcome_unknown).sum();
        let rewakes: usize = outcomes.iter().map(|o| o.rewakes).sum();
        // The rest were absorbed: a failed batch-atomic put falls back to the
        // journal, and the oracle checks held all the same.
        eprintln!(
            "seed {seed}: {ops} fault points; {failed} reached the caller as I/O errors, {unknown} of them as \
             \"outcome unknown\" ({committed_anyway} had committed), {rewakes} needed a fresh wake"
        );
        assert!(failed > 0, "no fault reached the caller");
    }
}

/// Runs `cancel_at` for every k in `0..points` on two threads, each with a
/// current-thread runtime, where the same k cancels at the same place.
fn every_cancel_point(workload: &Workload, store: CancelStore, points: u64) -> Vec<CancelOutcome> {
    let next = std::sync::atomic::AtomicU64::new(0);
    let mut outcomes: Vec<(u64, CancelOutcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= points {
                            return done;
                        }
                        let outcome = rt.block_on(cancel_at(workload, store, k)).unwrap_or_else(|e| panic!("{e}"));
                        done.push((k, outcome));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a cancellation worker panicked")).collect()
    });
    outcomes.sort_by_key(|(k, _)| *k);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

fn polls_of(workload: &Workload, store: CancelStore) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(count_polls(workload, store)).unwrap()
}

#[test]
fn cancel_at_every_poll_on_fibers() {
    let store = CancelStore::Memory(KvLimits::RIVET);
    for seed in seeds() {
        let workload = Workload::generate(seed, CANCEL_STEPS);
        let polls = polls_of(&workload, store);
        let outcomes = every_cancel_point(&workload, store, polls);
        let cancelled = outcomes.iter().filter(|o| o.step.is_some()).count();
        let landed = outcomes.iter().filter(|o| o.landed).count();
        eprintln!("seed {seed}: {polls} cancellation points over {CANCEL_STEPS} steps; {landed} cancelled steps had landed");
        assert_eq!(cancelled as u64, polls, "every poll of a run is a point where a step is cancelled");
        assert!(landed > 0, "no cancellation struck after a commit point");
    }
}

#[test]
fn cancel_at_every_poll_on_redb() {
    for seed in seeds() {
        let workload = Workload::generate(seed, REDB_CANCEL_STEPS);
        let polls = polls_of(&workload, CancelStore::Redb);
        // redb's writer thread makes the count vary a little from run to
        // run; a few points past it may find the run already over.
        let outcomes = every_cancel_point(&workload, CancelStore::Redb, polls);
        let cancelled = outcomes.iter().filter(|o| o.step.is_some()).count();
        let landed = outcomes.iter().filter(|o| o.landed).count();
        eprintln!("seed {seed}: {polls} cancellation points on redb over {REDB_CANCEL_STEPS} steps; {cancelled} cancelled a step, {landed} after it landed");
        assert!(cancelled as u64 > polls / 2, "most points cancel a step");
    }
}

/// Steps of the cancellation workloads: every one of their polls is a run.
const CANCEL_STEPS: usize = 60;
const REDB_CANCEL_STEPS: usize = 40;

/// A fresh store of `kind` (`redb` or `redis`) for one run; `None` when the
/// Redis Cluster is not configured.
fn fresh_store(kind: &str) -> Option<Arc<dyn wasqlite::KvStore>> {
    match kind {
        "redb" => {
            let dir = tempfile::tempdir().unwrap().keep();
            Some(Arc::new(wasqlite::RedbKv::open(dir.join("kv.redb")).unwrap()))
        }
        _ => common::redis_store(),
    }
}

/// The crash and fault runs on the persistent and the distributed backend:
/// a shorter workload, every third operation.
async fn crash_and_fault_on(kind: &'static str) {
    let Some(store) = fresh_store(kind) else { return };
    let workload = Arc::new(Workload::generate(3, 40));
    let ops = wasqlite::simulation::count_ops_on(&workload, store).await.unwrap();
    let points: Vec<u64> = (0..=ops).step_by(3).collect();
    let mut interrupted = 0;
    for &k in &points {
        let outcome = wasqlite::simulation::crash_at_on(&workload, fresh_store(kind).unwrap(), k).await.unwrap();
        interrupted += usize::from(outcome.step.is_some());
        wasqlite::simulation::fault_at_on(&workload, fresh_store(kind).unwrap(), k).await.unwrap();
    }
    eprintln!("{kind}: {} crash and fault points of {ops} operations, {interrupted} crashes mid-step", points.len());
    let before_the_end = points.iter().filter(|k| **k < ops).count();
    assert_eq!(interrupted, before_the_end, "every crash point before the end interrupts a step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_and_faults_on_redb() {
    crash_and_fault_on("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_and_faults_on_a_redis_cluster() {
    crash_and_fault_on("redis").await;
}

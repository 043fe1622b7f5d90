//! Deterministic simulation: crash at every KV operation of a fixed
//! workload, then fail every operation once, and check each run against a
//! native SQLite oracle (src/simulation.rs has the rules).
//!
//! CI runs one seed (about a minute on two cores). For a longer soak:
//!     WASQLITE_SIM_SEEDS=20 cargo test --release --test simulation -- --nocapture

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wasqlite::KvLimits;
use wasqlite::simulation::{CrashOutcome, FaultOutcome, Workload, count_ops, crash_at, fault_at};

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
        let rewakes: usize = outcomes.iter().map(|o| o.rewakes).sum();
        // The rest were absorbed: a failed batch-atomic put falls back to the
        // journal, and the oracle checks held all the same.
        eprintln!(
            "seed {seed}: {ops} fault points; {failed} reached the caller as I/O errors \
             ({committed_anyway} after the commit point), {rewakes} needed a fresh wake"
        );
        assert!(failed > 0, "no fault reached the caller");
    }
}

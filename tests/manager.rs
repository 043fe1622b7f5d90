//! The actor manager: wakes on demand, idle and budget sleeps, per-actor
//! order, the wake/sleep race, sessions, shutdown, a shared full pool, lost
//! ownership, and guest code kept off the async runtime's threads.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasqlite::{EngineConfig, Error, Host, HostConfig, KvError, Manager, ManagerConfig, MemoryKv, params};

fn config(max_awake: usize, idle_timeout: Duration) -> ManagerConfig {
    ManagerConfig { max_awake, idle_timeout, ..ManagerConfig::default() }
}

/// A manager over the store `WASQLITE_TEST_STORE` names (memory by default;
/// CI runs this file on redb and the Redis Cluster too).
fn manager(max_awake: usize, idle_timeout: Duration) -> (Manager, Host) {
    let host = common::host();
    (Manager::new(host.clone(), config(max_awake, idle_timeout)).unwrap(), host)
}

/// Waits until `done` holds, up to 20 s (a state the manager reaches on
/// its own, such as an idle sleep).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn count(manager: &Manager, id: &str) -> i64 {
    manager.with(id, async |a| a.query_row("SELECT count(*) FROM t", ()).await?.get::<i64>(0)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_sleeps_after_the_idle_timeout_and_a_busy_one_does_not() {
    let (actors, host) = manager(16, Duration::from_millis(300));
    actors.with("idle", async |a| a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1)").await).await.unwrap();
    // Calls every 20 ms keep "busy" awake across several idle timeouts.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1000) {
        actors.with("busy", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = actors.stats();
    assert_eq!(stats.wakes, 2, "a busy actor must not be slept and woken again: {stats:?}");
    assert!(stats.idle_sleeps >= 1, "the idle actor sleeps: {stats:?}");
    until("the busy actor sleeps too", || actors.stats().awake == 0).await;
    assert_eq!(host.live_instances(), 0);
    assert_eq!(actors.stats().idle_sleeps, 2);
    assert_eq!(count(&actors, "idle").await, 1, "what the actor wrote survives its sleep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_idle_actor_sleeps_to_make_room() {
    let (actors, host) = manager(2, Duration::from_secs(3600));
    for id in ["a", "b", "a"] {
        actors.with(id, async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
    }
    assert_eq!(actors.stats().wakes, 2);
    // "b" was used longest ago: "c" takes its place.
    actors.with("c", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
    let stats = actors.stats();
    assert_eq!((stats.wakes, stats.budget_sleeps, stats.awake), (3, 1, 2), "{stats:?}");
    actors.with("a", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
    assert_eq!(actors.stats().wakes, 3, "'a' was still awake");
    actors.with("b", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
    let stats = actors.stats();
    assert_eq!((stats.wakes, stats.budget_sleeps, stats.peak_awake), (4, 2, 2), "'b' woke again, 'c' made room: {stats:?}");
    assert!(host.live_instances() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_storm_of_ten_thousand_actors_stays_inside_the_budget() {
    const BUDGET: usize = 8;
    let (host, _kv) = common::memory_host();
    let cfg = ManagerConfig { wait_for_room: Duration::from_secs(300), ..config(BUDGET, Duration::from_secs(3600)) };
    let actors = Manager::new(host.clone(), cfg).unwrap();
    let most_instances = Arc::new(AtomicUsize::new(0));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let (actors, host, most) = (actors.clone(), host.clone(), most_instances.clone());
        calls.spawn(async move {
            actors
                .with(&format!("storm-{i}"), async move |a| {
                    most.fetch_max(host.live_instances(), Ordering::SeqCst);
                    a.query_row("SELECT count(*) FROM sqlite_schema", ()).await.map(drop)
                })
                .await
        });
    }
    let mut failed = Vec::new();
    while let Some(result) = calls.join_next().await {
        if let Err(e) = result.unwrap() {
            failed.push(e.to_string());
        }
    }
    assert!(failed.is_empty(), "{} calls failed, first: {:?}", failed.len(), failed.first());
    let stats = actors.stats();
    assert_eq!(stats.wakes, 10_000);
    assert!(stats.peak_awake <= BUDGET, "{stats:?}");
    let most = most_instances.load(Ordering::SeqCst);
    assert!(most <= BUDGET, "{most} instances were alive at once, over the budget of {BUDGET}");
    assert!(host.live_instances() <= BUDGET);
}

type Call = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_one_actor_run_one_at_a_time_in_arrival_order() {
    let (actors, _host) = manager(4, Duration::from_millis(5));
    actors.with("ordered", async |a| a.execute_batch("CREATE TABLE log(i INTEGER)").await).await.unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    // Each call is polled once, in order, before any is awaited: that is
    // the order in which they arrive at the actor.
    let mut calls: Vec<Call> = Vec::new();
    for i in 0..300i64 {
        let (inside, overlapped) = (inside.clone(), overlapped.clone());
        calls.push(Box::pin(actors.clone().with_owned("ordered", async move |a: &mut wasqlite::Actor| {
            if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                overlapped.store(true, Ordering::SeqCst);
            }
            let result = a.execute("INSERT INTO log VALUES (?1)", params![i]).await.map(drop);
            inside.fetch_sub(1, Ordering::SeqCst);
            result
        })));
    }
    let waker = std::task::Waker::noop();
    let mut pending = Vec::new();
    for mut call in calls {
        // A call that gets the actor at once may end at its first poll.
        match call.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(result) => result.unwrap(),
            std::task::Poll::Pending => pending.push(call),
        }
    }
    // Other tasks call other actors meanwhile, and the idle timeout of 5 ms
    // puts "ordered" to sleep whenever its queue runs dry.
    let others: Vec<_> = (0..4)
        .map(|t| {
            let actors = actors.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    actors.with(&format!("other-{t}"), async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
                }
            })
        })
        .collect();
    for call in pending {
        call.await.unwrap();
    }
    for other in others {
        other.await.unwrap();
    }
    assert!(!overlapped.load(Ordering::SeqCst), "two calls ran on one actor at once");
    let order: Vec<i64> = actors
        .with("ordered", async |a| {
            a.query("SELECT i FROM log ORDER BY rowid", ()).await?.iter().map(|r| r.get::<i64>(0)).collect::<Result<_, _>>()
        })
        .await
        .unwrap();
    assert_eq!(order, (0..300).collect::<Vec<_>>());
}

/// Manager::with on an owned manager, so that the test can hold many calls
/// as boxed futures.
trait WithOwned {
    fn with_owned<F>(self, id: &'static str, f: F) -> Call
    where
        F: AsyncFnOnce(&mut wasqlite::Actor) -> Result<(), Error> + Send + 'static;
}

impl WithOwned for Manager {
    fn with_owned<F>(self, id: &'static str, f: F) -> Call
    where
        F: AsyncFnOnce(&mut wasqlite::Actor) -> Result<(), Error> + Send + 'static,
    {
        Box::pin(async move { self.with(id, f).await })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakes_racing_sleeps_never_make_two_instances_or_lose_a_call() {
    // A budget of one over three actors and an idle timeout of 1 ms: nearly
    // every call races a budget sleep or an idle sleep of its own actor.
    let host = common::host();
    let actors = Manager::new(host.clone(), config(1, Duration::from_millis(1))).unwrap();
    for id in ["r0", "r1", "r2"] {
        actors.with(id, async |a| a.execute_batch("CREATE TABLE t(x); CREATE TABLE n(v); INSERT INTO n VALUES (0)").await).await.unwrap();
    }
    let inside: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..6u64 {
        let (actors, host, inside, violations, done) = (actors.clone(), host.clone(), inside.clone(), violations.clone(), done.clone());
        tasks.spawn(async move {
            let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for _ in 0..500 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let which = (rng % 3) as usize;
                let (inside, seen, host) = (inside.clone(), violations.clone(), host.clone());
                let result = actors
                    .with(&format!("r{which}"), async move |a| {
                        let violations = seen;
                        if inside[which].fetch_add(1, Ordering::SeqCst) != 0 {
                            violations.lock().unwrap().push(format!("two calls inside r{which}"));
                        }
                        if host.live_instances() > 1 {
                            violations.lock().unwrap().push(format!("{} instances with a budget of 1", host.live_instances()));
                        }
                        let result = a.execute("UPDATE n SET v = v + 1", ()).await;
                        inside[which].fetch_sub(1, Ordering::SeqCst);
                        result
                    })
                    .await;
                match result {
                    Ok(1) => {
                        done[which].fetch_add(1, Ordering::SeqCst);
                    }
                    other => violations.lock().unwrap().push(format!("a call on r{which} returned {other:?}")),
                }
                if rng % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{} violations, first: {:?}", violations.len(), &violations[..violations.len().min(3)]);
    // The checker: every acknowledged increment is in the database.
    for which in 0..3 {
        let v: i64 = actors.with(&format!("r{which}"), async |a| a.query_row("SELECT v FROM n", ()).await?.get(0)).await.unwrap();
        assert_eq!(v as usize, done[which].load(Ordering::SeqCst), "r{which} lost increments");
    }
    let stats = actors.stats();
    assert!(stats.peak_awake <= 1, "{stats:?}");
    assert!(stats.budget_sleeps + stats.idle_sleeps > 100, "the race was hardly exercised: {stats:?}");
}

// One runtime thread in each flavor: a guest call run on it would stop
// every other call until the query ends.
#[tokio::test(flavor = "current_thread")]
async fn a_long_query_on_one_actor_does_not_hold_up_calls_on_others() {
    long_query_does_not_hold_up_others().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_long_query_does_not_hold_up_others_on_a_one_worker_runtime() {
    long_query_does_not_hold_up_others().await;
}

async fn long_query_does_not_hold_up_others() {
    let (host, _kv) = common::memory_host();
    let actors = Manager::new(host, config(16, Duration::from_secs(3600))).unwrap();
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let long = tokio::spawn({
        let actors = actors.clone();
        async move {
            actors
                .with("long", async move |a| {
                    a.set_call_timeout(Some(Duration::from_secs(60)));
                    handle_tx.send(a.interrupt_handle()).unwrap();
                    // Tens of seconds of work for the guest.
                    a.query_row("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000000000) SELECT count(*) FROM c", ())
                        .await
                        .map(drop)
                })
                .await
        }
    });
    let interrupt = handle_rx.await.unwrap();
    for i in 0..20 {
        actors.with(&format!("short-{i}"), async |a| a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1)").await).await.unwrap();
    }
    assert!(!long.is_finished(), "the long query should still be running while 20 other actors were served");
    interrupt.interrupt();
    let result = long.await.unwrap();
    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holds_its_actor_and_what_it_leaves_open_is_rolled_back() {
    let (actors, _host) = manager(4, Duration::from_millis(20));
    actors.with("s", async |a| a.execute_batch("CREATE TABLE t(x)").await).await.unwrap();
    let mut session = actors.session("s", Duration::from_secs(60)).await.unwrap();
    session.with(async |a| a.execute_batch("BEGIN; INSERT INTO t VALUES (1)").await).await.unwrap();
    let other_ran = Arc::new(AtomicBool::new(false));
    let other = tokio::spawn({
        let (actors, other_ran) = (actors.clone(), other_ran.clone());
        async move {
            actors
                .with("s", async move |a| {
                    other_ran.store(true, Ordering::SeqCst);
                    a.query_row("SELECT count(*) FROM t", ()).await?.get::<i64>(0)
                })
                .await
        }
    });
    // Longer than the idle timeout, with the other caller queued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = session.with(async |a| a.query_row("SELECT count(*) FROM t", ()).await?.get::<i64>(0)).await.unwrap();
    assert_eq!(seen, 1, "the session sees its own transaction");
    assert!(!other_ran.load(Ordering::SeqCst), "another caller ran on an actor held by a session");
    assert_eq!(actors.stats().idle_sleeps, 0, "a held actor is not idle");
    drop(session);
    assert_eq!(other.await.unwrap().unwrap(), 0, "the session's open transaction was rolled back");
    assert_eq!(actors.stats().wakes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_unused_past_its_timeout_ends() {
    let (actors, _host) = manager(4, Duration::from_secs(3600));
    actors.with("s", async |a| a.execute_batch("CREATE TABLE t(x)").await).await.unwrap();
    let mut session = actors.session("s", Duration::from_millis(50)).await.unwrap();
    session.with(async |a| a.execute_batch("BEGIN; INSERT INTO t VALUES (1)").await).await.unwrap();
    until("the session expires", || actors.stats().sessions_expired == 1).await;
    let late = session.with(async |a| a.execute_batch("COMMIT").await).await;
    assert!(matches!(late, Err(Error::SessionEnded { .. })), "{late:?}");
    assert_eq!(count(&actors, "s").await, 0, "the expired session's transaction was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_calls_in_flight_finish_then_sleeps_every_actor() {
    let (actors, host) = manager(16, Duration::from_secs(3600));
    for i in 0..5 {
        actors.with(&format!("sd-{i}"), async |a| a.execute_batch("CREATE TABLE t(x)").await).await.unwrap();
    }
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let in_flight = tokio::spawn({
        let actors = actors.clone();
        async move {
            actors
                .with("sd-0", async move |a| {
                    started_tx.send(()).unwrap();
                    go_rx.await.unwrap();
                    a.execute("INSERT INTO t VALUES (1)", ()).await
                })
                .await
        }
    });
    started_rx.await.unwrap();
    let shutdown = tokio::spawn({
        let actors = actors.clone();
        async move { actors.shutdown().await }
    });
    until("the manager stops admitting calls", || {
        let refused = futures_now(actors.with("sd-1", async |a| a.query_row("SELECT 1", ()).await.map(drop)));
        matches!(refused, Some(Err(Error::ShuttingDown { .. })))
    })
    .await;
    assert!(!shutdown.is_finished(), "shutdown must wait for the call in flight");
    go_tx.send(()).unwrap();
    assert_eq!(in_flight.await.unwrap().unwrap(), 1);
    shutdown.await.unwrap().unwrap();
    assert_eq!((actors.stats().awake, host.live_instances()), (0, 0));
    // What the call in flight wrote is in the store.
    let mut actor = host.wake("sd-0").await.unwrap();
    assert_eq!(actor.query_row("SELECT count(*) FROM t", ()).await.unwrap().get::<i64>(0).unwrap(), 1);
}

/// The output of a future that ends at its first poll.
fn futures_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_filled_by_another_host_makes_a_wake_wait_not_fail() {
    // A pool of its own (3 slots), shared by two hosts of the same engine
    // configuration.
    let engine = EngineConfig { pooling: Some(3), ..EngineConfig::default() };
    let kv = Arc::new(MemoryKv::new());
    let host_config = HostConfig { engine, ..HostConfig::default() };
    let neighbour = Host::with_config(kv.clone(), host_config.clone()).unwrap();
    let ours = Host::with_config(kv, host_config).unwrap();
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(neighbour.wake(&format!("n{i}")).await.unwrap());
    }
    let cfg = ManagerConfig { wait_for_room: Duration::from_millis(200), ..config(10, Duration::from_secs(3600)) };
    let actors = Manager::new(ours, cfg).unwrap();
    let refused = actors.with("mine", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await;
    match refused {
        Err(Error::Overloaded { why, .. }) => assert!(why.contains("instance slots"), "{why}"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    let cfg = ManagerConfig { wait_for_room: Duration::from_secs(30), ..config(10, Duration::from_secs(3600)) };
    let actors = Manager::new(actors.host().clone(), cfg).unwrap();
    let waiting = tokio::spawn({
        let actors = actors.clone();
        async move { actors.with("mine", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "no slot is free yet");
    held.pop().unwrap().sleep().await.unwrap();
    waiting.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_taken_over_by_another_host_is_slept_here() {
    let kv = common::store();
    let ours = Host::new(kv.clone()).unwrap();
    let theirs = Host::new(kv).unwrap();
    let actors = Manager::new(ours.clone(), config(4, Duration::from_secs(3600))).unwrap();
    actors.with("t", async |a| a.execute_batch("CREATE TABLE t(x)").await).await.unwrap();
    let mut taken = theirs.take_over("t").await.unwrap();
    taken.execute("INSERT INTO t VALUES (1)", ()).await.unwrap();
    // Reads from the warm cache go on while this host's lease lasts (see
    // `lease`); the first write finds the actor owned elsewhere.
    let lost = actors.with("t", async |a| a.execute("INSERT INTO t VALUES (2)", ()).await).await;
    assert!(matches!(lost, Err(Error::OwnershipLost { .. })), "{lost:?}");
    let stats = actors.stats();
    assert_eq!((stats.failed_sleeps, stats.awake, ours.live_instances()), (1, 0, 0), "slept here at once: {stats:?}");
    let refused = actors.with("t", async |a| a.query_row("SELECT count(*) FROM t", ()).await.map(drop)).await;
    assert!(matches!(refused, Err(Error::Kv(KvError::Owned { .. }))), "{refused:?}");
    taken.sleep().await.unwrap();
    assert_eq!(count(&actors, "t").await, 1, "woken here again once the other host let go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_sleeps_idle_actors() {
    let (actors, _host) = manager(100, Duration::from_secs(3600));
    actors.with("m0", async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
    let one = actors.stats().awake_memory_bytes;
    assert!(one > 0);
    let host = common::host();
    let budget = one * 5 / 2;
    let cfg = ManagerConfig { max_awake_memory: Some(budget), ..config(100, Duration::from_secs(3600)) };
    let actors = Manager::new(host, cfg).unwrap();
    for i in 0..10 {
        actors.with(&format!("m{i}"), async |a| a.query_row("SELECT 1", ()).await.map(drop)).await.unwrap();
        let stats = actors.stats();
        assert!(stats.awake_memory_bytes <= budget, "after {i}: {stats:?}, budget {budget}");
    }
    let stats = actors.stats();
    assert!(stats.peak_awake <= 3 && stats.budget_sleeps >= 7, "{stats:?}");
}

/// One actor's call calls another actor through the same manager.
async fn an_actor_calls_another(actors: Manager) {
    actors.with("callee", async |a| a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (7)").await).await.unwrap();
    let inner = actors.clone();
    let seen: i64 = actors
        .with("caller", async move |a| {
            let x: i64 = inner.with("callee", async |b| b.query_row("SELECT x FROM t", ()).await?.get(0)).await?;
            a.execute_batch("CREATE TABLE seen(x)").await?;
            a.execute("INSERT INTO seen VALUES (?1)", params![x]).await?;
            a.query_row("SELECT x FROM seen", ()).await?.get::<i64>(0)
        })
        .await
        .unwrap();
    assert_eq!(seen, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_may_call_another_actor() {
    an_actor_calls_another(manager(4, Duration::from_secs(3600)).0).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_may_call_another_actor_on_a_current_thread_runtime() {
    an_actor_calls_another(manager(4, Duration::from_secs(3600)).0).await;
}

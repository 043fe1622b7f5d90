//! Single-owner fencing on every backend: a host that lost an actor to
//! another host can neither write it nor keep reading it, and the actor
//! moves between hosts with all its data.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::integrity;
use wasqlite::{Error, Host, HostConfig, KvError, KvStore, LeaseConfig, MemoryKv, RedbKv, params};

/// Two stores that reach the same data: the same value for the backends a
/// process holds alone, two connections for Redis.
type Pair = (Arc<dyn KvStore>, Arc<dyn KvStore>);

fn memory() -> Pair {
    let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
    (kv.clone(), kv)
}

fn redb() -> Pair {
    let dir = tempfile::tempdir().unwrap().keep();
    let kv: Arc<dyn KvStore> = Arc::new(RedbKv::open(dir.join("kv.redb")).unwrap());
    (kv.clone(), kv)
}

fn redis() -> Option<Pair> {
    let url = common::redis_url()?;
    let open = || -> Arc<dyn KvStore> { Arc::new(wasqlite::kv::RedisKv::open(&url).unwrap()) };
    Some((open(), open()))
}

fn host(kv: Arc<dyn KvStore>, ttl: Duration) -> Host {
    let lease = LeaseConfig { ttl, drift_margin: ttl / 10, ..Default::default() };
    Host::with_config(kv, HostConfig { lease, ..Default::default() }).unwrap()
}

async fn notes(actor: &mut wasqlite::Actor) -> Vec<String> {
    let rows = actor.query("SELECT note FROM t ORDER BY id", ()).await.unwrap();
    rows.iter().map(|r| r.get(0).unwrap()).collect()
}

/// Host A wakes the actor, host B takes it over, A's next commit fails with
/// the ownership error and lands nothing, and the database is B's view.
async fn a_takeover_fences_the_old_owner((kv_a, kv_b): Pair) {
    let (host_a, host_b) = (host(kv_a, Duration::from_secs(30)), host(kv_b, Duration::from_secs(30)));
    let mut a = host_a.wake("moved").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT)").await.unwrap();
    a.execute_many("INSERT INTO t(note) VALUES (?1)", (0..10).map(|i| params![format!("a{i}")])).await.unwrap();

    let refused = host_b.wake("moved").await.unwrap_err();
    assert!(matches!(&refused, Error::Kv(KvError::Owned { owner, .. }) if owner == host_a.owner()), "{refused}");
    let mut b = host_b.take_over("moved").await.unwrap();
    b.execute("INSERT INTO t(note) VALUES ('from b')", ()).await.unwrap();

    let lost = a.execute("INSERT INTO t(note) VALUES ('from a')", ()).await.unwrap_err();
    assert!(matches!(&lost, Error::OwnershipLost { source: KvError::OwnershipLost { .. }, .. }), "{lost}");
    assert!(lost.to_string().contains("another host"), "{lost}");
    let poisoned = a.query("SELECT count(*) FROM t", ()).await.unwrap_err();
    assert!(matches!(poisoned, Error::Poisoned { .. }), "{poisoned}");
    a.sleep().await.unwrap();

    let mut want: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    want.push("from b".into());
    assert_eq!(notes(&mut b).await, want);
    assert_eq!(integrity(&mut b).await, "ok");
    b.sleep().await.unwrap();
    // B slept and released: A may wake it again, and sees B's write.
    let mut again = host_a.wake("moved").await.unwrap();
    assert_eq!(notes(&mut again).await, want);
    again.sleep().await.unwrap();
}

/// A's lease runs out (a paused process), B wakes the actor without force,
/// and A's next call, a read its cache could answer, is refused.
async fn a_lapsed_lease_refuses_even_reads((kv_a, kv_b): Pair) {
    let ttl = Duration::from_millis(300);
    let (host_a, host_b) = (host(kv_a, ttl), host(kv_b, ttl));
    let mut a = host_a.wake("lapsed").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT); INSERT INTO t(note) VALUES ('a')").await.unwrap();
    tokio::time::sleep(ttl * 2).await;
    let mut b = host_b.wake("lapsed").await.unwrap();
    b.execute("UPDATE t SET note = 'b'", ()).await.unwrap();
    let refused = a.query("SELECT note FROM t", ()).await.unwrap_err();
    assert!(matches!(refused, Error::OwnershipLost { .. }), "{refused}");
    assert_eq!(notes(&mut b).await, ["b"]);
    b.sleep().await.unwrap();
}

/// Sleep on host A, wake on host B: everything is there.
async fn an_actor_moves_between_hosts((kv_a, kv_b): Pair) {
    let (host_a, host_b) = (host(kv_a, Duration::from_secs(30)), host(kv_b, Duration::from_secs(30)));
    for round in 0..4 {
        let host = if round % 2 == 0 { &host_a } else { &host_b };
        let mut actor = host.wake("nomad").await.unwrap();
        actor.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, note TEXT)").await.unwrap();
        actor.execute("INSERT INTO t(note) VALUES (?1)", params![format!("round {round}")]).await.unwrap();
        assert_eq!(notes(&mut actor).await.len(), round + 1);
        actor.sleep().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_fences_the_old_owner() {
    a_takeover_fences_the_old_owner(memory()).await;
    a_lapsed_lease_refuses_even_reads(memory()).await;
    an_actor_moves_between_hosts(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_fences_the_old_owner() {
    a_takeover_fences_the_old_owner(redb()).await;
    a_lapsed_lease_refuses_even_reads(redb()).await;
    an_actor_moves_between_hosts(redb()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_fences_the_old_owner() {
    let Some(pair) = redis() else { return };
    a_takeover_fences_the_old_owner(pair).await;
    a_lapsed_lease_refuses_even_reads(redis().unwrap()).await;
    an_actor_moves_between_hosts(redis().unwrap()).await;
}

/// A busy owner renews its lease as it goes: over four lease lifetimes of
/// calls, no other host can claim the actor, and no call is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_owner_keeps_its_lease() {
    let kv = Arc::new(MemoryKv::new());
    let ttl = Duration::from_millis(200);
    let (host_a, host_b) = (host(kv.clone(), ttl), host(kv.clone(), ttl));
    let mut a = host_a.wake("busy").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT)").await.unwrap();
    let started = std::time::Instant::now();
    let mut writes = 0;
    while started.elapsed() < ttl * 4 {
        a.execute("INSERT INTO t(note) VALUES ('a')", ()).await.unwrap();
        writes += 1;
        let refused = host_b.wake("busy").await.unwrap_err();
        assert!(matches!(refused, Error::Kv(KvError::Owned { .. })), "{refused}");
        tokio::time::sleep(ttl / 8).await;
    }
    let renewals = kv.counters(&wasqlite::ActorId::new("busy").unwrap()).lease_calls;
    assert!(renewals >= 4, "{renewals} renewals over four lifetimes of the lease");
    assert_eq!(notes(&mut a).await.len(), writes);
    a.sleep().await.unwrap();
}

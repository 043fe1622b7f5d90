//! Actor lifecycle: parallel churn, destroy, the live-instance gauge, and
//! the one-instance-per-actor rule.

mod common;

use common::{id, integrity};
use wasqlite::{Error, Host, HostConfig, Migrations, params};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_churn_destroy_and_survivors() {
    let kv = common::store();
    let host = Host::new(kv.clone()).unwrap();
    let mut tasks = Vec::new();
    for n in 0..12 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("churn-{n}");
            for round in 0..3 {
                let mut a = host.wake(&name).await.unwrap();
                a.execute_batch("CREATE TABLE IF NOT EXISTS log(round INTEGER, actor TEXT)").await.unwrap();
                a.execute("INSERT INTO log VALUES (?1, ?2)", params![round, name.clone()]).await.unwrap();
                a.sleep().await.unwrap();
            }
            if n % 2 == 0 {
                let a = host.wake(&name).await.unwrap();
                a.destroy().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(host.live_instances(), 0);
    assert_eq!(host.live_memory_bytes(), 0);
    for n in 0..12 {
        let name = format!("churn-{n}");
        if n % 2 == 0 {
            assert!(kv.list_prefix(&id(&name), b"").await.unwrap().is_empty(), "{name} kept keys");
        } else {
            let mut a = host.wake(&name).await.unwrap();
            let rows = a.query("SELECT round, actor FROM log ORDER BY round", ()).await.unwrap();
            let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0).unwrap(), r.get(1).unwrap())).collect();
            assert_eq!(got, (0..3).map(|r| (r, name.clone())).collect::<Vec<_>>());
            assert_eq!(integrity(&mut a).await, "ok");
            a.sleep().await.unwrap();
        }
    }
    let mut survivors: Vec<String> = kv.list_actors().await.unwrap().iter().map(|a| a.to_string()).collect();
    survivors.sort();
    let mut want: Vec<String> = (0..12).filter(|n| n % 2 == 1).map(|n| format!("churn-{n}")).collect();
    want.sort();
    assert_eq!(survivors, want);
}

#[tokio::test]
async fn gauge_counts_awake_actors_and_sleep_frees_them() {
    let host = common::host();
    let mut awake = Vec::new();
    for n in 0..8 {
        let mut a = host.wake(&format!("g{n}")).await.unwrap();
        a.execute_batch("CREATE TABLE t(x)").await.unwrap();
        awake.push(a);
        assert_eq!(host.live_instances(), n + 1);
    }
    let per_actor = host.live_memory_bytes() / 8;
    assert!(per_actor >= 64 * 1024, "{per_actor}");
    assert_eq!(awake[0].memory_bytes(), per_actor);
    for a in awake {
        a.sleep().await.unwrap();
    }
    assert_eq!(host.live_instances(), 0);
    assert_eq!(host.live_memory_bytes(), 0);
}

#[tokio::test]
async fn one_instance_per_actor() {
    let host = common::host();
    let a = host.wake("solo").await.unwrap();
    assert!(matches!(host.wake("solo").await, Err(Error::AlreadyAwake { .. })));
    assert!(matches!(host.destroy("solo").await, Err(Error::AlreadyAwake { .. })));
    a.sleep().await.unwrap();
    host.wake("solo").await.unwrap().sleep().await.unwrap();
    host.destroy("solo").await.unwrap();
    assert!(matches!(host.wake("bad id!").await, Err(Error::InvalidActorId { .. })));
}

#[tokio::test]
async fn migrations_run_once_and_failures_release_everything() {
    let kv = common::store();
    let v1 = Migrations::new(["CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)"]);
    let host = Host::with_config(kv.clone(), HostConfig { migrations: v1, ..Default::default() }).unwrap();
    let mut a = host.wake("m").await.unwrap();
    a.execute("INSERT INTO users(name) VALUES (?1)", params!["ada"]).await.unwrap();
    assert_eq!(a.query_row("PRAGMA user_version", ()).await.unwrap().get::<i64>(0).unwrap(), 1);
    a.sleep().await.unwrap();

    let v2 = Migrations::new([
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)",
        "ALTER TABLE users ADD COLUMN email TEXT",
    ]);
    let host2 = Host::with_config(kv.clone(), HostConfig { migrations: v2, ..Default::default() }).unwrap();
    let mut a = host2.wake("m").await.unwrap();
    let row = a.query_row("SELECT name, email FROM users", ()).await.unwrap();
    assert_eq!(row.get::<String>(0).unwrap(), "ada");
    assert_eq!(row.get::<Option<String>>(1).unwrap(), None);
    a.sleep().await.unwrap();

    let broken = Migrations::new([
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)",
        "ALTER TABLE users ADD COLUMN email TEXT",
        "CREATE TABLE extra(x); ALTER TABLE nope ADD COLUMN y",
    ]);
    let host3 = Host::with_config(kv.clone(), HostConfig { migrations: broken, ..Default::default() }).unwrap();
    let err = host3.wake("m").await.unwrap_err();
    assert!(matches!(&err, Error::Migration { version: 3, .. }), "{err}");
    assert!(err.to_string().contains("no such table: nope"), "{err}");
    assert_eq!(host3.live_instances(), 0);
    // The failed step left nothing behind.
    let mut a = host2.wake("m").await.unwrap();
    assert_eq!(a.query_row("PRAGMA user_version", ()).await.unwrap().get::<i64>(0).unwrap(), 2);
    let n: i64 = a.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'extra'", ()).await.unwrap().get(0).unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_full_pool_refuses_a_wake_with_a_clear_error_and_recovers() {
    let config = wasqlite::HostConfig {
        engine: wasqlite::EngineConfig { pooling: Some(2), ..Default::default() },
        ..Default::default()
    };
    let host = wasqlite::Host::with_config(std::sync::Arc::new(wasqlite::MemoryKv::new()), config).unwrap();
    let a = host.wake("pool-a").await.unwrap();
    let mut b = host.wake("pool-b").await.unwrap();
    b.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1)").await.unwrap();
    let err = host.wake("pool-c").await.unwrap_err();
    assert!(matches!(err, wasqlite::Error::PoolFull { slots: 2 }), "{err}");
    assert!(err.to_string().contains("all 2 instance slots"), "{err}");
    // The refused actor is not left marked awake, and a freed slot serves it.
    a.sleep().await.unwrap();
    let mut c = host.wake("pool-c").await.unwrap();
    c.execute_batch("CREATE TABLE t(x)").await.unwrap();
    assert_eq!(b.query_row("SELECT x FROM t", ()).await.unwrap().get::<i64>(0).unwrap(), 1);
}

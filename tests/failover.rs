//! A Redis master dies in the middle of a workload: after its replica takes
//! over, every commit acknowledged under `WAIT 1` is there, and every other
//! one returned an error. Kills a node of the test cluster, so `.ci/run`
//! runs it last, on its own (`WASQLITE_TEST_FAILOVER=1`).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasqlite::kv::RedisKv;
use wasqlite::{Host, KvStore, params};

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The port of the master that serves `key`'s slot, asked of the node at
/// `port`.
fn master_of(port: u16, key: &str) -> u16 {
    let slot: u32 = redis_cli(port, &["cluster", "keyslot", key]).trim().parse().expect("a slot number");
    for line in redis_cli(port, &["cluster", "nodes"]).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.get(2).is_some_and(|f| f.contains("master")) {
            continue;
        }
        let serves = fields[8..].iter().any(|range| match range.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u32>().unwrap()..=hi.parse().unwrap()).contains(&slot),
            None => range.parse::<u32>().is_ok_and(|s| s == slot),
        });
        if serves {
            let address = fields[1].split('@').next().unwrap();
            return address.rsplit_once(':').unwrap().1.parse().unwrap();
        }
    }
    panic!("no master serves slot {slot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_workload_loses_no_acknowledged_commit() {
    if std::env::var("WASQLITE_TEST_FAILOVER").is_err() {
        eprintln!("WASQLITE_TEST_FAILOVER is not set: this test kills a cluster node, run it on its own");
        return;
    }
    let url = format!("{}&replicas=1&replica_timeout_ms=2000&timeout_ms=2000", common::redis_url().expect("a cluster"));
    let prefix = url.rsplit("prefix=").next().unwrap().split('&').next().unwrap().to_owned();
    let first_port: u16 = std::env::var("WASQLITE_TEST_REDIS").unwrap().split("//").nth(1).unwrap().split(',').next().unwrap()
        .rsplit_once(':').unwrap().1.parse().unwrap();
    let host = Host::new(Arc::new(RedisKv::open(&url).unwrap())).unwrap();
    let mut actor = Some(host.wake("failover").await.unwrap());
    actor.as_mut().unwrap().execute_batch("CREATE TABLE t(n INTEGER PRIMARY KEY)").await.unwrap();

    let master = master_of(first_port, &format!("{prefix}:{{failover}}:v"));
    let pid = redis_cli(master, &["info", "server"]).lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().to_owned();
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after_kill = 0;
    let mut n = 0i64;
    let mut killed_at = None;
    while after_kill < 30 {
        assert!(Instant::now() < deadline, "the cluster did not take writes again within 60 s of the kill");
        n += 1;
        if n == 40 {
            assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
            killed_at = Some(Instant::now());
        }
        // With its replica promoted, the new master has no replica of its
        // own, so every write fails its WAIT until the old master is back
        // and has rejoined as that replica.
        if killed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            killed_at = None;
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis-cluster.sh");
            let restarted = Command::new(script).args(["restart-node", &master.to_string()]).status().unwrap();
            assert!(restarted.success(), "restarting the killed node failed");
        }
        let a = match actor.as_mut() {
            Some(a) => a,
            None => match host.wake("failover").await {
                Ok(a) => actor.insert(a),
                Err(_) => {
                    failed.push(n);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match a.execute("INSERT INTO t(n) VALUES (?1)", params![n]).await {
            Ok(_) => {
                acknowledged.push(n);
                if n > 40 {
                    after_kill += 1;
                }
            }
            Err(_) => {
                failed.push(n);
                // Whatever state the instance is in, start over from the KV.
                drop(actor.take());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if let Some(a) = actor.take() {
        a.sleep().await.unwrap();
    }
    assert!(!failed.is_empty(), "no write failed: the kill did not hit the actor's master");

    // A fresh host with its own connections reads what the new master has.
    let kv: Arc<dyn KvStore> = Arc::new(RedisKv::open(&url).unwrap());
    let mut reader = Host::new(kv).unwrap().wake("failover").await.unwrap();
    let rows = reader.query("SELECT n FROM t ORDER BY n", ()).await.unwrap();
    let present: Vec<i64> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    let lost: Vec<&i64> = acknowledged.iter().filter(|n| !present.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged commits lost in the failover: {lost:?}");
    assert!(present.iter().all(|n| acknowledged.contains(n) || failed.contains(n)), "a row nobody wrote");
    assert_eq!(common::integrity(&mut reader).await, "ok");
    eprintln!("{} commits acknowledged, {} failed around the failover, none lost", acknowledged.len(), failed.len());
}

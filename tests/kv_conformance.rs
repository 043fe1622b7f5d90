//! The `KvStore` contract (`wasqlite::kv::conformance`) on every backend:
//! memory (with and without Rivet's limits), redb, and a real Redis Cluster.

mod common;

use wasqlite::kv::conformance::check_all;
use wasqlite::{KvLimits, MemoryKv, RedbKv};

fn namespace() -> String {
    format!("conf-{:08x}", rand::random::<u32>())
}

#[tokio::test]
async fn memory_keeps_the_contract() {
    check_all(&MemoryKv::new(), &namespace()).await.unwrap();
    check_all(&MemoryKv::with_limits(KvLimits::RIVET), &namespace()).await.unwrap();
}

#[tokio::test]
async fn redb_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RedbKv::open(dir.path().join("kv.redb")).unwrap();
    check_all(&kv, &namespace()).await.unwrap();
}

#[tokio::test]
async fn redis_cluster_keeps_the_contract() {
    let Some(kv) = common::redis_store() else { return };
    check_all(&*kv, &namespace()).await.unwrap();
}

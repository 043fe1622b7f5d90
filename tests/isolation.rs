//! No API reaches another actor's keys: for random actor ids, many of them
//! prefixes of one another ("a", "ab", "a:b"), each actor sees only its own
//! rows, its KV namespace holds only its own keys, and destroying one leaves
//! every other as it was, on the in-memory and the redb backend.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use wasqlite::{ActorId, Host, KvStore, MemoryKv, RedbKv, params};

async fn own_rows(host: &Host, id: &str) -> Vec<String> {
    let mut a = host.wake(id).await.unwrap();
    let rows = a.query("SELECT owner FROM mine ORDER BY rowid", ()).await.unwrap();
    let owners = rows.iter().map(|r| r.get::<String>(0).unwrap()).collect();
    a.sleep().await.unwrap();
    owners
}

async fn check(kv: Arc<dyn KvStore>, ids: &BTreeSet<String>, doomed: &str) {
    let host = Host::new(kv.clone()).unwrap();
    for id in ids {
        let mut a = host.wake(id).await.unwrap();
        a.execute_batch("CREATE TABLE mine(owner TEXT)").await.unwrap();
        a.execute("INSERT INTO mine VALUES (?1)", params![id.clone()]).await.unwrap();
        a.sleep().await.unwrap();
    }
    let mut keys = Vec::new();
    for id in ids {
        assert_eq!(own_rows(&host, id).await, std::slice::from_ref(id), "actor {id} sees other rows");
        keys.push(kv.list_prefix(&ActorId::new(id).unwrap(), b"").await.unwrap());
    }
    host.destroy(doomed).await.unwrap();
    assert!(kv.list_prefix(&ActorId::new(doomed).unwrap(), b"").await.unwrap().is_empty());
    for (id, before) in ids.iter().zip(keys) {
        if id == doomed {
            continue;
        }
        let after = kv.list_prefix(&ActorId::new(id).unwrap(), b"").await.unwrap();
        assert_eq!(after, before, "destroying {doomed} changed the keys of {id}");
        assert_eq!(own_rows(&host, id).await, std::slice::from_ref(id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn actors_never_reach_each_others_keys(
        ids in proptest::collection::btree_set("[ab:._-]{1,3}", 2..7),
        pick in any::<prop::sample::Index>(),
    ) {
        let doomed = pick.get(&ids.iter().cloned().collect::<Vec<_>>()).clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check(Arc::new(MemoryKv::new()), &ids, &doomed));
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(check(Arc::new(RedbKv::open(dir.path().join("kv.redb")).unwrap()), &ids, &doomed));
    }
}

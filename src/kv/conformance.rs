//! The `KvStore` contract as a reusable check, for every backend in this
//! crate and for anyone writing their own.
//!
//! ```no_run
//! # async fn f(my_store: std::sync::Arc<dyn wasqlite::KvStore>) {
//! // In a test of your backend, with the `conformance` feature on:
//! wasqlite::kv::conformance::check_all(&*my_store, "conformance-run-1").await.unwrap();
//! # }
//! ```
//!
//! Every check works on actors whose ids start with `namespace`, so that a
//! store shared with other data (a Redis Cluster) can run it; use a fresh
//! namespace per run. A check returns a description of the first broken
//! promise.

use std::time::Duration;

use bytes::Bytes;

use super::{ClaimRequest, Fence, KvError, KvStore, Takeover};
use crate::actor_id::ActorId;

type Outcome = Result<(), String>;

fn actor(namespace: &str, name: &str) -> ActorId {
    ActorId::new(&format!("{namespace}-{name}")).expect("a valid namespace")
}

fn b(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(what()) }
}

fn failed(what: &str) -> impl FnOnce(KvError) -> String + '_ {
    move |e| format!("{what} failed: {e}")
}

async fn claim(kv: &dyn KvStore, id: &ActorId, owner: &str, takeover: Takeover, read: &[Bytes]) -> Result<super::Claimed, KvError> {
    kv.claim(id, &ClaimRequest { owner, ttl: Duration::from_secs(60), takeover, read }).await
}

/// Runs every check.
///
/// # Errors
///
/// The first broken promise, named.
pub async fn check_all(kv: &dyn KvStore, namespace: &str) -> Outcome {
    reads_see_writes(kv, namespace).await?;
    keys_are_ordered_bytes(kv, namespace).await?;
    ranges_are_half_open(kv, namespace).await?;
    actors_are_separate(kv, namespace).await?;
    limits_are_kept_whole(kv, namespace).await?;
    fencing(kv, namespace).await?;
    leases(kv, namespace).await
}

/// `batch_put` then `get` and `batch_get`: every value back, `None` for
/// absent keys, answers in the order asked; values are binary and may be
/// empty; a later put replaces.
///
/// # Errors
///
/// The first broken promise.
pub async fn reads_see_writes(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let a = actor(namespace, "reads");
    let page: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let entries = vec![(b(b"k1"), b(b"one")), (b(b"k2"), Bytes::from(page.clone())), (b(b"empty"), Bytes::new())];
    kv.batch_put(&a, Fence::UNCLAIMED, &entries).await.map_err(failed("batch_put"))?;
    let got = kv.get(&a, b"k2").await.map_err(failed("get"))?;
    ensure(got.as_deref() == Some(&page[..]), || "get returned another value than was put".into())?;
    let got = kv.batch_get(&a, &[b(b"missing"), b(b"empty"), b(b"k1")]).await.map_err(failed("batch_get"))?;
    ensure(got == vec![None, Some(Bytes::new()), Some(b(b"one"))], || format!("batch_get answered {got:?}"))?;
    kv.batch_put(&a, Fence::UNCLAIMED, &[(b(b"k1"), b(b"uno"))]).await.map_err(failed("batch_put"))?;
    let got = kv.get(&a, b"k1").await.map_err(failed("get"))?;
    ensure(got.as_deref() == Some(&b"uno"[..]), || format!("a second put left {got:?}"))?;
    ensure(kv.batch_get(&a, &[]).await.map_err(failed("batch_get"))?.is_empty(), || "batch_get of no keys".into())
}

/// `list_prefix` returns keys in byte order, with 0x00 and 0xff bytes,
/// exactly those that start with the prefix.
///
/// # Errors
///
/// The first broken promise.
pub async fn keys_are_ordered_bytes(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let a = actor(namespace, "order");
    let keys: [&[u8]; 7] = [b"\x08\x01", b"\x08\x01\x00", b"\x08\x01\xff", b"\x08\x02", b"\x07\xff", b"\x08", b"\x08\x01\x01\x00"];
    let entries: Vec<_> = keys.iter().map(|k| (b(k), b(k))).collect();
    kv.batch_put(&a, Fence::UNCLAIMED, &entries).await.map_err(failed("batch_put"))?;
    let listed = kv.list_prefix(&a, b"\x08\x01").await.map_err(failed("list_prefix"))?;
    let want: Vec<&[u8]> = vec![b"\x08\x01", b"\x08\x01\x00", b"\x08\x01\x01\x00", b"\x08\x01\xff"];
    let got: Vec<&[u8]> = listed.iter().map(|(k, _)| &k[..]).collect();
    ensure(got == want, || format!("list_prefix(0801) listed {got:?}, expected {want:?}"))?;
    ensure(listed.iter().all(|(k, v)| k == v), || "list_prefix paired a key with another key's value".into())?;
    let all = kv.list_prefix(&a, b"").await.map_err(failed("list_prefix"))?;
    ensure(all.len() == keys.len() && all.windows(2).all(|w| w[0].0 < w[1].0), || format!("list_prefix(\"\") listed {all:?}"))?;
    let many: Vec<_> = (0..1300u32).map(|i| (Bytes::from(format!("m{i:05}")), b(b"v"))).collect();
    for batch in many.chunks(kv.limits().max_keys_per_batch.min(256)) {
        kv.batch_put(&a, Fence::UNCLAIMED, batch).await.map_err(failed("batch_put"))?;
    }
    let listed = kv.list_prefix(&a, b"m").await.map_err(failed("list_prefix"))?;
    ensure(listed.len() == many.len() && listed.iter().zip(&many).all(|(l, m)| l.0 == m.0), || {
        format!("list_prefix of 1300 keys listed {} of them, or out of order", listed.len())
    })
}

/// `delete_range` deletes `start <= k < end`; an empty or reversed range
/// deletes nothing; `batch_delete` of absent keys is fine.
///
/// # Errors
///
/// The first broken promise.
pub async fn ranges_are_half_open(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let a = actor(namespace, "ranges");
    let entries: Vec<_> = [b"k1", b"k2", b"k3", b"k4"].iter().map(|k| (b(*k), b(b"v"))).collect();
    kv.batch_put(&a, Fence::UNCLAIMED, &entries).await.map_err(failed("batch_put"))?;
    kv.delete_range(&a, Fence::UNCLAIMED, b"k3", b"k1").await.map_err(failed("a reversed delete_range"))?;
    kv.delete_range(&a, Fence::UNCLAIMED, b"k2", b"k4").await.map_err(failed("delete_range"))?;
    kv.batch_delete(&a, Fence::UNCLAIMED, &[b(b"k1"), b(b"absent")]).await.map_err(failed("batch_delete"))?;
    let left: Vec<Bytes> = kv.list_prefix(&a, b"k").await.map_err(failed("list_prefix"))?.into_iter().map(|(k, _)| k).collect();
    ensure(left == vec![b(b"k4")], || format!("after deleting [k2, k4) and k1, {left:?} remain"))
}

/// Two actors' equal keys are different values; `delete_actor` removes one
/// actor's keys only; `list_actors` lists actors with keys.
///
/// # Errors
///
/// The first broken promise.
pub async fn actors_are_separate(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let (a, z) = (actor(namespace, "sep-a"), actor(namespace, "sep-z"));
    kv.batch_put(&a, Fence::UNCLAIMED, &[(b(b"k"), b(b"a"))]).await.map_err(failed("batch_put"))?;
    kv.batch_put(&z, Fence::UNCLAIMED, &[(b(b"k"), b(b"z"))]).await.map_err(failed("batch_put"))?;
    ensure(kv.get(&a, b"k").await.map_err(failed("get"))?.as_deref() == Some(&b"a"[..]), || "actor a read z's key".into())?;
    let listed = kv.list_actors().await.map_err(failed("list_actors"))?;
    ensure(listed.contains(&a) && listed.contains(&z), || format!("list_actors missed a or z: {listed:?}"))?;
    ensure(listed.windows(2).all(|w| w[0] < w[1]), || "list_actors is not in id order".into())?;
    kv.delete_actor(&a, Fence::UNCLAIMED).await.map_err(failed("delete_actor"))?;
    ensure(kv.list_prefix(&a, b"").await.map_err(failed("list_prefix"))?.is_empty(), || "delete_actor left keys".into())?;
    ensure(kv.get(&z, b"k").await.map_err(failed("get"))?.is_some(), || "delete_actor of a deleted z's key".into())?;
    let listed = kv.list_actors().await.map_err(failed("list_actors"))?;
    ensure(!listed.contains(&a) && listed.contains(&z), || format!("after deleting a, list_actors says {listed:?}"))
}

/// A call past a declared limit fails with `LimitExceeded` and changes
/// nothing.
///
/// # Errors
///
/// The first broken promise.
pub async fn limits_are_kept_whole(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let limits = kv.limits();
    let a = actor(namespace, "limits");
    if limits.max_keys_per_batch < 100_000 {
        let too_many: Vec<_> =
            (0..=limits.max_keys_per_batch as u32).map(|i| (Bytes::from(format!("k{i:07}")), b(b"v"))).collect();
        let result = kv.batch_put(&a, Fence::UNCLAIMED, &too_many).await;
        ensure(matches!(result, Err(KvError::LimitExceeded { .. })), || format!("an oversized batch answered {result:?}"))?;
    }
    if limits.max_value_size < 64 << 20 {
        let big = vec![(b(b"k0000000"), Bytes::from(vec![1u8; limits.max_value_size + 1]))];
        let result = kv.batch_put(&a, Fence::UNCLAIMED, &big).await;
        ensure(matches!(result, Err(KvError::LimitExceeded { .. })), || format!("an oversized value answered {result:?}"))?;
    }
    let left = kv.list_prefix(&a, b"").await.map_err(failed("list_prefix"))?;
    ensure(left.is_empty(), || format!("a refused batch left {} keys", left.len()))
}

/// Claims bump the generation; a write under an older fence fails with
/// `OwnershipLost` and changes nothing, whatever the write; the claim reads
/// what the old owner wrote before it; a generation survives
/// `delete_actor`, so an old fence never becomes current again.
///
/// # Errors
///
/// The first broken promise.
pub async fn fencing(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let a = actor(namespace, "fenced");
    let first = claim(kv, &a, "host-a", Takeover::IfFree, &[]).await.map_err(failed("claim"))?.fence;
    ensure(first != Fence::UNCLAIMED, || "a claim returned the unclaimed fence".into())?;
    let unclaimed = kv.batch_put(&a, Fence::UNCLAIMED, &[(b(b"x"), b(b"x"))]).await;
    ensure(matches!(unclaimed, Err(KvError::OwnershipLost { .. })), || format!("an unclaimed write after a claim answered {unclaimed:?}"))?;
    kv.batch_put(&a, first, &[(b(b"k"), b(b"a1")), (b(b"gone"), b(b"1"))]).await.map_err(failed("the owner's batch_put"))?;
    let second = claim(kv, &a, "host-b", Takeover::Force, &[b(b"k"), b(b"nothing")]).await.map_err(failed("a forced claim"))?;
    ensure(second.fence > first, || format!("generation went from {first:?} to {:?}", second.fence))?;
    ensure(second.values == vec![Some(b(b"a1")), None], || format!("the claim read {:?}", second.values))?;
    let stale: [(&str, Result<(), KvError>); 4] = [
        ("batch_put", kv.batch_put(&a, first, &[(b(b"k"), b(b"stale"))]).await),
        ("batch_delete", kv.batch_delete(&a, first, &[b(b"gone")]).await),
        ("delete_range", kv.delete_range(&a, first, b"a", b"z").await),
        ("delete_actor", kv.delete_actor(&a, first).await),
    ];
    for (what, result) in stale {
        ensure(matches!(result, Err(KvError::OwnershipLost { .. })), || format!("a stale {what} answered {result:?}"))?;
    }
    let got = kv.batch_get(&a, &[b(b"k"), b(b"gone")]).await.map_err(failed("batch_get"))?;
    ensure(got == vec![Some(b(b"a1")), Some(b(b"1"))], || format!("stale writes changed the store: {got:?}"))?;
    let renewed = kv.renew(&a, first, "host-a", Duration::from_secs(60)).await;
    ensure(matches!(renewed, Err(KvError::OwnershipLost { .. })), || format!("a stale renew answered {renewed:?}"))?;
    kv.delete_actor(&a, second.fence).await.map_err(failed("the owner's delete_actor"))?;
    let third = claim(kv, &a, "host-c", Takeover::Force, &[]).await.map_err(failed("a claim after delete_actor"))?.fence;
    ensure(third > second.fence, || "a generation went back after delete_actor".into())?;
    let stale = kv.batch_put(&a, second.fence, &[(b(b"k"), b(b"late"))]).await;
    ensure(matches!(stale, Err(KvError::OwnershipLost { .. })), || format!("a write after delete and reclaim answered {stale:?}"))?;
    kv.release(&a, third).await.map_err(failed("release"))
}

/// A live lease refuses other owners until it is released, forced or runs
/// out; its own owner may claim again; a stale release frees nothing.
///
/// # Errors
///
/// The first broken promise.
pub async fn leases(kv: &dyn KvStore, namespace: &str) -> Outcome {
    let a = actor(namespace, "leased");
    let held = claim(kv, &a, "host-a", Takeover::IfFree, &[]).await.map_err(failed("claim"))?.fence;
    let refused = claim(kv, &a, "host-b", Takeover::IfFree, &[]).await;
    match refused {
        Err(KvError::Owned { owner, remaining }) if owner == "host-a" && remaining <= Duration::from_secs(60) => {}
        other => return Err(format!("a claim against a live lease answered {other:?}")),
    }
    let again = claim(kv, &a, "host-a", Takeover::IfFree, &[]).await.map_err(failed("the owner's second claim"))?.fence;
    kv.renew(&a, again, "host-a", Duration::from_secs(60)).await.map_err(failed("renew"))?;
    kv.release(&a, held).await.map_err(failed("a stale release"))?;
    let still = claim(kv, &a, "host-b", Takeover::IfFree, &[]).await;
    ensure(matches!(still, Err(KvError::Owned { .. })), || format!("a stale release freed the lease: {still:?}"))?;
    kv.release(&a, again).await.map_err(failed("release"))?;
    let taken = claim(kv, &a, "host-b", Takeover::IfFree, &[]).await.map_err(failed("a claim after release"))?.fence;
    let short = actor(namespace, "short");
    let request = ClaimRequest { owner: "host-a", ttl: Duration::from_millis(50), takeover: Takeover::IfFree, read: &[] };
    kv.claim(&short, &request).await.map_err(failed("a short claim"))?;
    tokio::time::sleep(Duration::from_millis(120)).await;
    claim(kv, &short, "host-b", Takeover::IfFree, &[]).await.map_err(failed("a claim after the lease ran out"))?;
    kv.release(&a, taken).await.map_err(failed("release"))
}

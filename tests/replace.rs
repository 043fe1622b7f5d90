//! `Actor::replace_database`, which `wasqlite import --force` uses: the new
//! database replaces the old one wholly, and a crash at any KV operation, a
//! dropped future at any poll, or a bad file leaves the old database or the
//! new one, never a mix and never nothing.

mod common;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use common::{drop_after_polls, integrity};
use wasqlite::kv::{FaultKv, FaultPlan};
use wasqlite::vfs::layout::{CHUNK_SIZE, ChunkIndex, FileTag, chunk_key, decode_meta, meta_key};
use wasqlite::{Actor, ActorId, Error, Host, KvStore, MemoryKv, params};

/// A database file made by wasqlite itself: table `new` with `rows` rows.
async fn new_image(rows: i64) -> Vec<u8> {
    let kv = Arc::new(MemoryKv::new());
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("source").await.unwrap();
    a.execute_batch("CREATE TABLE new(id INTEGER PRIMARY KEY, v TEXT)").await.unwrap();
    a.execute_many("INSERT INTO new(v) VALUES (?1)", (0..rows).map(|i| params![format!("new row {i:0100}")])).await.unwrap();
    a.sleep().await.unwrap();
    let id = ActorId::new("source").unwrap();
    let size = decode_meta(&kv.get(&id, &meta_key(FileTag::Main)).await.unwrap().unwrap()).unwrap() as usize;
    let mut image = vec![0u8; size];
    for i in 0..size / CHUNK_SIZE {
        let chunk = kv.get(&id, &chunk_key(FileTag::Main, ChunkIndex(i as u32))).await.unwrap().unwrap_or_default();
        image[i * CHUNK_SIZE..i * CHUNK_SIZE + chunk.len()].copy_from_slice(&chunk);
    }
    image
}

async fn old_rows(a: &mut Actor, rows: i64) {
    a.execute_batch("CREATE TABLE old(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX old_v ON old(v)").await.unwrap();
    a.execute_many("INSERT INTO old(v) VALUES (?1)", (0..rows).map(|i| params![format!("old row {i:0100}")])).await.unwrap();
}

#[derive(Debug, PartialEq)]
enum Found {
    Old,
    New,
}

/// Which database the actor holds; panics on anything else (a mix, an
/// empty database, a failed integrity check).
async fn which(a: &mut Actor, old: i64, new: i64) -> Found {
    assert_eq!(integrity(a).await, "ok");
    let tables: Vec<String> = a
        .query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name", ())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    let count = async |a: &mut Actor, t: &str| -> i64 { a.query_row(&format!("SELECT count(*) FROM {t}"), ()).await.unwrap().get(0).unwrap() };
    match tables.as_slice() {
        [t] if t == "old" => {
            assert_eq!(count(a, "old").await, old);
            Found::Old
        }
        [t] if t == "new" => {
            assert_eq!(count(a, "new").await, new);
            Found::New
        }
        other => panic!("neither the old nor the new database: tables {other:?}"),
    }
}

async fn is_empty(a: &mut Actor) -> bool {
    assert_eq!(integrity(a).await, "ok");
    a.query_row("SELECT count(*) FROM sqlite_schema", ()).await.unwrap().get::<i64>(0).unwrap() == 0
}

#[tokio::test]
async fn the_new_database_replaces_the_old_one_wholly() {
    let image = new_image(500).await;
    let kv = Arc::new(MemoryKv::new());
    let host = Host::new(kv.clone()).unwrap();
    let mut a = host.wake("r").await.unwrap();
    old_rows(&mut a, 2000).await;
    a.replace_database(&mut Cursor::new(image.clone()), image.len() as u64).await.unwrap();
    assert_eq!(which(&mut a, 2000, 500).await, Found::New);
    a.execute("INSERT INTO new(v) VALUES ('after')", ()).await.unwrap();
    a.sleep().await.unwrap();
    let mut again = host.wake("r").await.unwrap();
    assert_eq!(which(&mut again, 2000, 501).await, Found::New);
    again.sleep().await.unwrap();
    // No journal is left behind, and no chunk of the old, larger file.
    assert!(common::journal_keys(&kv, "r").is_empty(), "{:?}", common::journal_keys(&kv, "r"));
    assert_eq!(common::main_chunks(&kv, "r"), image.len() / CHUNK_SIZE);
}

#[tokio::test]
async fn a_bad_file_or_an_open_transaction_replaces_nothing() {
    let image = new_image(50).await;
    let (host, _kv) = common::memory_host();
    let mut a = host.wake("bad").await.unwrap();
    old_rows(&mut a, 100).await;
    let mut not_sqlite = image.clone();
    not_sqlite[..16].copy_from_slice(b"not a database!\0");
    let mut wal_mode = image.clone();
    wal_mode[18] = 2;
    for (bytes, size) in [
        (not_sqlite.clone(), not_sqlite.len() as u64),
        (wal_mode.clone(), wal_mode.len() as u64),
        (image.clone(), image.len() as u64 - 10),
        (image.clone(), 0),
        (image[..image.len() - CHUNK_SIZE].to_vec(), image.len() as u64),
        (image.clone(), 11 << 30),
    ] {
        let err = a.replace_database(&mut Cursor::new(bytes), size).await.unwrap_err();
        assert!(matches!(err, Error::NotReplaced { .. }), "{err}");
        assert!(err.to_string().contains("old database stands"), "{err}");
        assert_eq!(which(&mut a, 100, 50).await, Found::Old);
    }
    a.execute_batch("BEGIN").await.unwrap();
    let err = a.replace_database(&mut Cursor::new(image.clone()), image.len() as u64).await.unwrap_err();
    assert!(err.to_string().contains("transaction"), "{err}");
    a.execute_batch("ROLLBACK").await.unwrap();
    assert_eq!(which(&mut a, 100, 50).await, Found::Old);
}

/// A crash at each KV operation of the replacement: the next wake finds
/// the old database until the commit point and the new one from there.
#[tokio::test]
async fn a_crash_at_any_kv_operation_leaves_the_old_or_the_new_database() {
    crash_at_every_operation(600).await;
}

/// The same over an empty database: a crash part-way leaves it empty, not
/// half-written.
#[tokio::test]
async fn a_crash_while_filling_an_empty_database_leaves_it_empty_or_whole() {
    crash_at_every_operation(0).await;
}

async fn crash_at_every_operation(old: i64) {
    let image = new_image(300).await;
    let setup = async |kv: &Arc<FaultKv<MemoryKv>>| {
        let host = Host::new(kv.clone()).unwrap();
        let mut a = host.wake("crash").await.unwrap();
        if old > 0 {
            old_rows(&mut a, old).await;
        }
        (host, a)
    };
    let ops = {
        let kv = Arc::new(FaultKv::new(MemoryKv::new()));
        let (_host, mut a) = setup(&kv).await;
        kv.set_plan(FaultPlan::Healthy);
        a.replace_database(&mut Cursor::new(image.clone()), image.len() as u64).await.unwrap();
        kv.ops()
    };
    assert!(ops > 4, "{ops} operations");
    let mut found = Vec::new();
    for k in 0..=ops {
        let kv = Arc::new(FaultKv::new(MemoryKv::new()));
        let (host, mut a) = setup(&kv).await;
        kv.set_plan(FaultPlan::CrashAt(k));
        let mut source = Cursor::new(image.clone());
        tokio::select! {
            biased;
            () = kv.crashed() => {}
            r = a.replace_database(&mut source, image.len() as u64) => r.unwrap(),
        }
        drop(a);
        kv.set_plan(FaultPlan::Healthy);
        let mut a = host.wake("crash").await.unwrap_or_else(|e| panic!("crash at op {k}: {e}"));
        found.push(if old == 0 && is_empty(&mut a).await { Found::Old } else { which(&mut a, old, 300).await });
    }
    let switch = found.iter().position(|f| *f == Found::New).expect("the last run finished");
    assert!(switch > 0, "the first operation cannot have committed");
    assert!(found[switch..].iter().all(|f| *f == Found::New), "once new, always new: {found:?}");
}

/// The future dropped at each of its polls: the next call finds the old or
/// the new database.
#[tokio::test]
async fn a_dropped_replacement_leaves_the_old_or_the_new_database() {
    let image = new_image(200).await;
    let mut outcomes = Vec::new();
    for polls in 1.. {
        let kv = Arc::new(FaultKv::new(MemoryKv::new()));
        kv.set_delay(Some(Duration::ZERO));
        let host = Host::new(kv.clone()).unwrap();
        let mut a = host.wake("drop").await.unwrap();
        old_rows(&mut a, 300).await;
        let mut source = Cursor::new(image.clone());
        let done = drop_after_polls(a.replace_database(&mut source, image.len() as u64), polls).await;
        let finished = done.is_some();
        outcomes.push(which(&mut a, 300, 200).await);
        if finished {
            break;
        }
    }
    assert_eq!(outcomes.first(), Some(&Found::Old));
    assert_eq!(outcomes.last(), Some(&Found::New));
}

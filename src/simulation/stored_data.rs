//! Databases whose stored bytes are arbitrary: the `stored_data` fuzz
//! target's checker. The input becomes an actor's main-file meta value and
//! chunks (random, truncated, oversized, missing, with any size), which an
//! actor then wakes over and reads: the schema, `integrity_check`, and a few
//! rows of each table, each call under a deadline.
//!
//! Every answer must be a result or an error, never a panic or a hang, and
//! reading must not change or delete a single stored key of the main file: a crafted
//! size or page that made SQLite see an empty database and write over it
//! would lose pages silently. A write is tried last, and only has to end.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::actor_id::ActorId;
use crate::host::{Host, HostConfig};
use crate::kv::{KvEntry, KvStore, MemoryKv};
use crate::limits::Limits;
use crate::vfs::layout::{ChunkIndex, FileTag, chunk_key, encode_meta, meta_key};

const ACTOR: &str = "stored";

/// The entries `data` describes: records of an op byte (even: the main
/// file's size, 8 bytes little-endian; odd: a chunk, a 2-byte index and a
/// 2-byte length, then up to that many bytes, as many as are left).
pub fn decode(data: &[u8]) -> Vec<KvEntry> {
    let mut entries: Vec<KvEntry> = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op % 2 == 0 {
            let Some((size, tail)) = rest.split_first_chunk::<8>() else { break };
            rest = tail;
            entries.push((meta_key(FileTag::Main), encode_meta(u64::from_le_bytes(*size))));
        } else {
            let Some((head, tail)) = rest.split_first_chunk::<4>() else { break };
            let index = u16::from_be_bytes([head[0], head[1]]);
            let len = usize::from(u16::from_be_bytes([head[2], head[3]])).min(tail.len());
            entries.push((chunk_key(FileTag::Main, ChunkIndex(u32::from(index))), Bytes::copy_from_slice(&tail[..len])));
            rest = &tail[len..];
        }
    }
    // The last entry for a key wins, as successive puts would leave it.
    entries.reverse();
    let mut seen = std::collections::HashSet::new();
    entries.retain(|(k, _)| seen.insert(k.clone()));
    entries
}

/// The main file's keys and values.
async fn main_file(kv: &MemoryKv, actor: &ActorId) -> Result<Vec<KvEntry>, String> {
    let mut all = kv.list_prefix(actor, b"").await.map_err(|e| e.to_string())?;
    all.retain(|(k, _)| *k == meta_key(FileTag::Main) || k.starts_with(&chunk_key(FileTag::Main, ChunkIndex(0))[..4]));
    Ok(all)
}

/// Wakes an actor over the stored bytes `data` describes and reads it.
///
/// # Errors
///
/// A description of a read that changed the stored main file.
pub async fn check(data: &[u8]) -> Result<(), String> {
    let kv = Arc::new(MemoryKv::new());
    let actor = ActorId::new(ACTOR).expect("valid id");
    let entries = decode(data);
    if !entries.is_empty() {
        kv.batch_put(&actor, crate::kv::Fence::UNCLAIMED, &entries).await.map_err(|e| e.to_string())?;
    }
    let before = main_file(&kv, &actor).await?;
    let limits = Limits { call_timeout: Some(Duration::from_millis(500)), max_database_size: 1 << 30, ..Default::default() };
    let host = Host::with_config(kv.clone(), HostConfig { limits, ..Default::default() }).map_err(|e| e.to_string())?;
    let Ok(mut a) = host.wake(ACTOR).await else {
        return unchanged(&kv, &actor, &before, "a failed wake").await;
    };
    let _ = a.query("PRAGMA integrity_check", ()).await;
    if let Ok(tables) = a.query("SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 8", ()).await {
        for row in &tables {
            let Ok(name) = row.get::<String>(0) else { continue };
            let quoted = name.replace('"', "\"\"");
            let _ = a.query(&format!("SELECT * FROM \"{quoted}\" LIMIT 5"), ()).await;
        }
    }
    unchanged(&kv, &actor, &before, "reading").await?;
    let _ = a.execute_batch("CREATE TABLE IF NOT EXISTS probe(x); INSERT INTO probe VALUES (1)").await;
    let _ = a.sleep().await;
    Ok(())
}

/// Every key of the main file that was stored before is still stored, with
/// the same value. (Opening a database that has no meta key creates an
/// empty one, which loses nothing.)
async fn unchanged(kv: &MemoryKv, actor: &ActorId, before: &[KvEntry], what: &str) -> Result<(), String> {
    let after = main_file(kv, actor).await?;
    for (key, value) in before {
        match after.iter().find(|(k, _)| k == key) {
            Some((_, v)) if v == value => {}
            Some(_) => return Err(format!("{what} changed the stored key {}", crate::vfs::layout::hex(key))),
            None => return Err(format!("{what} deleted the stored key {}", crate::vfs::layout::hex(key))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real database, and the same with a crafted size, truncated and
    /// oversized chunks, and nothing at all: each is read without a panic or
    /// a change.
    #[tokio::test]
    async fn crafted_stored_data_is_read_without_loss() {
        let kv = Arc::new(MemoryKv::new());
        let host = Host::new(kv.clone()).unwrap();
        let mut a = host.wake("source").await.unwrap();
        a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2); CREATE INDEX t_x ON t(x)").await.unwrap();
        a.sleep().await.unwrap();
        let source = ActorId::new("source").unwrap();
        let mut data = Vec::new();
        for (key, value) in kv.list_prefix(&source, b"").await.unwrap() {
            if key == meta_key(FileTag::Main) {
                data.push(0);
                data.extend_from_slice(&crate::vfs::layout::decode_meta(&value).unwrap().to_le_bytes());
            } else if key.len() == 8 && key[3] == 0 {
                data.push(1);
                data.extend_from_slice(&key[6..8]);
                data.extend_from_slice(&(value.len() as u16).to_be_bytes());
                data.extend_from_slice(&value);
            }
        }
        check(&data).await.unwrap();
        check(&[]).await.unwrap();
        for size in [1u64 << 60, u64::MAX, 4095, 0, 3 * 4096] {
            let mut crafted = data.clone();
            crafted.push(0);
            crafted.extend_from_slice(&size.to_le_bytes());
            check(&crafted).await.unwrap();
        }
        check(&data[..data.len() / 2]).await.unwrap();
        let mut oversized = data.clone();
        oversized.extend_from_slice(&[1, 0, 1, 0x20, 0x00]);
        oversized.extend(std::iter::repeat_n(0xAB, 0x2000));
        check(&oversized).await.unwrap();
    }
}

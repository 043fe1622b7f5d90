//! How a file is laid out in an actor's KV namespace: rivetkit's layout, byte
//! for byte, so that databases move between the two systems unchanged.
//!
//! ```text
//! meta key   [ 0x08 | 0x01 | 0x00 | tag ]                         4 bytes
//! meta value [ 0x01 | 0x00 | file size, u64 little-endian ]      10 bytes
//! chunk key  [ 0x08 | 0x01 | 0x01 | tag | chunk index, u32 BE ]  8 bytes
//! chunk value  bytes [index * 4096, min((index + 1) * 4096, size)) of the file
//! ```
//!
//! Tags: 0 main database, 1 rollback journal, 2 WAL, 3 shared memory (never
//! used: the guest runs in exclusive locking mode). A missing chunk, or the
//! part of a chunk past its stored length, reads as zeros.
//!
//! One key is wasqlite's own, beside rivetkit's files (which never read it):
//!
//! ```text
//! wake hint  [ 0x08 | 0x02 ]   value [ 0x01 | chunk index, u32 BE ... ]
//! ```
//!
//! the database chunks that the actor's last wake read beyond page 1, so
//! that the next wake fetches them in one batch instead of one round trip
//! per B-tree level. Only a hint: a bad value is ignored.

use bytes::Bytes;

/// Bytes per chunk: one SQLite page (page_size is fixed at 4096).
pub const CHUNK_SIZE: usize = 4096;

const PREFIX: [u8; 2] = [0x08, 0x01];
const META: u8 = 0x00;
const CHUNK: u8 = 0x01;
const META_VERSION: [u8; 2] = [0x01, 0x00];

/// Which file of the actor's database a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FileTag {
    /// The database itself.
    Main = 0,
    /// The rollback journal (`-journal`).
    Journal = 1,
    /// The write-ahead log (`-wal`).
    Wal = 2,
    /// The WAL index (`-shm`), reserved by the layout.
    Shm = 3,
}

impl FileTag {
    /// All tags, in index order.
    pub const ALL: [FileTag; 4] = [FileTag::Main, FileTag::Journal, FileTag::Wal, FileTag::Shm];

    /// The tag as an array index.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tag with this byte value.
    pub fn from_index(i: usize) -> Option<FileTag> {
        FileTag::ALL.get(i).copied()
    }
}

/// The file's role, for messages: "database", "journal", "WAL", "WAL index".
impl std::fmt::Display for FileTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileTag::Main => "database",
            FileTag::Journal => "journal",
            FileTag::Wal => "WAL",
            FileTag::Shm => "WAL index",
        })
    }
}

/// The index of a chunk within its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkIndex(pub u32);

impl ChunkIndex {
    /// The chunk holding byte `offset`, or `None` past the 16 TiB a u32
    /// index can address.
    pub fn containing(offset: u64) -> Option<ChunkIndex> {
        u32::try_from(offset / CHUNK_SIZE as u64).ok().map(ChunkIndex)
    }

    /// The number of chunks a file of `size` bytes spans.
    pub fn count_for(size: u64) -> u64 {
        size.div_ceil(CHUNK_SIZE as u64)
    }

    /// The file offset of this chunk's first byte.
    pub fn offset(self) -> u64 {
        u64::from(self.0) * CHUNK_SIZE as u64
    }
}

/// The meta key of a file.
pub fn meta_key(tag: FileTag) -> Bytes {
    Bytes::copy_from_slice(&[PREFIX[0], PREFIX[1], META, tag as u8])
}

/// The key of one chunk of a file.
pub fn chunk_key(tag: FileTag, index: ChunkIndex) -> Bytes {
    let i = index.0.to_be_bytes();
    Bytes::copy_from_slice(&[PREFIX[0], PREFIX[1], CHUNK, tag as u8, i[0], i[1], i[2], i[3]])
}

/// Most chunks a wake hint lists.
pub const MAX_WAKE_HINT: usize = 48;

/// The key of the wake hint.
pub fn wake_hint_key() -> Bytes {
    Bytes::copy_from_slice(&[PREFIX[0], 0x02])
}

/// A wake hint's value for `chunks` (at most [`MAX_WAKE_HINT`] are kept).
pub fn encode_wake_hint(chunks: &[u32]) -> Bytes {
    let mut value = vec![0x01];
    for chunk in chunks.iter().take(MAX_WAKE_HINT) {
        value.extend_from_slice(&chunk.to_be_bytes());
    }
    Bytes::from(value)
}

/// The chunks a wake hint lists, or `None` for a value this version did not
/// write.
pub fn decode_wake_hint(value: &[u8]) -> Option<Vec<u32>> {
    let [0x01, list @ ..] = value else { return None };
    if list.len() % 4 != 0 || list.len() / 4 > MAX_WAKE_HINT {
        return None;
    }
    Some(list.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes"))).collect())
}

/// The first key past every chunk of `tag`: the exclusive end of a range
/// that deletes chunks from some index to the end of the file.
pub fn chunk_range_end(tag: FileTag) -> Bytes {
    Bytes::copy_from_slice(&[PREFIX[0], PREFIX[1], CHUNK, tag as u8 + 1])
}

/// Encodes a meta value for a file of `size` bytes.
pub fn encode_meta(size: u64) -> Bytes {
    let mut v = Vec::with_capacity(10);
    v.extend_from_slice(&META_VERSION);
    v.extend_from_slice(&size.to_le_bytes());
    Bytes::from(v)
}

/// Decodes a meta value into a file size.
///
/// # Errors
///
/// A message naming what is wrong when the value is not 10 bytes starting
/// with the version `01 00`.
pub fn decode_meta(value: &[u8]) -> Result<u64, String> {
    match value {
        [v0, v1, size @ ..] if [*v0, *v1] == META_VERSION && size.len() == 8 => {
            Ok(u64::from_le_bytes(size.try_into().expect("length checked")))
        }
        _ => Err(format!("file meta value {} is not 01 00 followed by a u64 size", hex(value))),
    }
}

/// Lower-case hex, for messages and dumps.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_rivetkit_layout() {
        assert_eq!(hex(&meta_key(FileTag::Main)), "08010000");
        assert_eq!(hex(&meta_key(FileTag::Journal)), "08010001");
        assert_eq!(hex(&chunk_key(FileTag::Main, ChunkIndex(1))), "0801010000000001");
        assert_eq!(hex(&chunk_key(FileTag::Wal, ChunkIndex(0x01020304))), "0801010201020304");
        assert_eq!(hex(&chunk_range_end(FileTag::Main)), "08010101");
        assert!(chunk_key(FileTag::Main, ChunkIndex(u32::MAX)) < chunk_range_end(FileTag::Main));
    }

    #[test]
    fn meta_round_trips_and_rejects_garbage() {
        assert_eq!(hex(&encode_meta(8192)), "01000020000000000000");
        assert_eq!(decode_meta(&encode_meta(123_456_789)).unwrap(), 123_456_789);
        assert!(decode_meta(&[1, 0, 0]).unwrap_err().contains("010000"));
        assert!(decode_meta(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn chunk_arithmetic() {
        assert_eq!(ChunkIndex::count_for(0), 0);
        assert_eq!(ChunkIndex::count_for(1), 1);
        assert_eq!(ChunkIndex::count_for(8192), 2);
        assert_eq!(ChunkIndex::containing(4095), Some(ChunkIndex(0)));
        assert_eq!(ChunkIndex::containing(4096), Some(ChunkIndex(1)));
        assert_eq!(ChunkIndex::containing(u64::MAX), None);
    }
}

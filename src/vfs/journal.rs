//! SQLite's rollback journal format, for the one journal the host writes
//! itself: the old pages of a database that `Actor::replace_database`
//! overwrites. SQLite reads it back as any hot journal it finds at open
//! (pager.c: readJournalHdr, pager_playback_one_page), so a replacement
//! cut off part-way rolls back to the old database.
//!
//! ```text
//! header, padded to one sector:
//!   0  8  magic d9 d5 05 f9 20 a1 63 d7
//!   8  4  records that follow (big-endian, as every field)
//!  12  4  checksum seed
//!  16  4  database size in pages before the change
//!  20  4  sector size
//!  24  4  page size
//! then, from offset sector size, one record per page:
//!   4 bytes page number, the page, 4 bytes checksum
//! ```

use super::layout::CHUNK_SIZE;

/// The journal's first eight bytes; zero bytes here mean "not hot".
pub(crate) const MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// The sector size the VFS reports (`xSectorSize`), which is where the
/// records start.
pub(crate) const SECTOR: usize = CHUNK_SIZE;

/// Bytes of one record of a `CHUNK_SIZE` page.
pub(crate) const RECORD: usize = 4 + CHUNK_SIZE + 4;

/// The header sector of a journal of `records` pages of a database that was
/// `original_pages` long.
pub(crate) fn header(records: u32, seed: u32, original_pages: u32) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR];
    h[..8].copy_from_slice(&MAGIC);
    for (at, value) in [(8, records), (12, seed), (16, original_pages), (20, SECTOR as u32), (24, CHUNK_SIZE as u32)] {
        h[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
    h
}

/// The record of page `page_number` (from 1) holding `page`.
pub(crate) fn record(page_number: u32, page: &[u8], seed: u32) -> Vec<u8> {
    debug_assert_eq!(page.len(), CHUNK_SIZE);
    let mut r = Vec::with_capacity(RECORD);
    r.extend_from_slice(&page_number.to_be_bytes());
    r.extend_from_slice(page);
    r.extend_from_slice(&checksum(page, seed).to_be_bytes());
    r
}

/// pager_cksum: the seed plus every 200th byte, counting down from 200
/// bytes before the page's end.
fn checksum(page: &[u8], seed: u32) -> u32 {
    (1..=(page.len() - 1) / 200).map(|k| u32::from(page[page.len() - 200 * k])).fold(seed, u32::wrapping_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same arithmetic as pager.c's loop `i = pageSize-200; while(i>0)`.
    #[test]
    fn checksum_matches_sqlites_loop() {
        let page: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 7 + 3) as u8).collect();
        let mut expected = 0x1234_5678u32;
        let mut i = CHUNK_SIZE as i64 - 200;
        while i > 0 {
            expected = expected.wrapping_add(u32::from(page[i as usize]));
            i -= 200;
        }
        assert_eq!(checksum(&page, 0x1234_5678), expected);
        assert_eq!(record(3, &page, 9).len(), RECORD);
        assert_eq!(&header(2, 9, 5)[..8], &MAGIC);
    }
}

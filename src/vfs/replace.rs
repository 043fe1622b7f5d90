//! Replacing an asleep database's file with another, so that a crash or an
//! error at any point leaves the old database or the new one, never a mix
//! and never nothing (`Actor::replace_database` runs it).
//!
//! The KV has no transaction across batches, so the switch borrows
//! SQLite's: the old pages go first into the actor's rollback journal, in
//! SQLite's own format (`super::journal`), and only once that journal is
//! durable with a live header do the new pages go over them. Deleting the
//! journal is the commit point. Until then the next open finds the journal
//! hot and SQLite rolls the database back to its old pages and size.
//! Everything goes through `ActorFiles`, the same writes and syncs SQLite
//! makes, and memory stays at its flush threshold whatever the sizes.

use std::io::Read;

use super::files::{ActorFiles, DB_NAME, ResultCode};
use super::journal;
use super::layout::{CHUNK_SIZE, FileTag};
use crate::codes as sqlite;

/// Why a replacement stopped; the old database stands.
pub(crate) type Failure = String;

fn check(files: &mut ActorFiles, rc: ResultCode, what: &str) -> Result<(), Failure> {
    if rc == sqlite::SQLITE_OK {
        return Ok(());
    }
    let detail = files.take_last_error().map(|e| format!(": {e}")).unwrap_or_default();
    Err(format!("{what} failed ({}){detail}", crate::error::code_name(rc)))
}

/// Writes the `size` bytes of `first_page` followed by the rest of `source`
/// as the new main file. The database must be closed (no SQLite holds it).
pub(crate) async fn replace_main_file(
    files: &mut ActorFiles,
    first_page: &[u8],
    source: &mut (dyn Read + Send),
    size: u64,
) -> Result<(), Failure> {
    let journal_name = format!("{DB_NAME}-journal");
    let rw = sqlite::SQLITE_OPEN_READWRITE | sqlite::SQLITE_OPEN_CREATE;
    files.open(Some(DB_NAME), rw | sqlite::SQLITE_OPEN_MAIN_DB).await.map_err(|rc| format!("opening the database: code {rc}"))?;
    let old_size = files.file_size(FileTag::Main).await.map_err(|rc| format!("reading the database size: code {rc}"))?;
    let old_pages = u32::try_from(old_size / CHUNK_SIZE as u64).map_err(|_| "the old database is too large".to_owned())?;
    let mut page = vec![0u8; CHUNK_SIZE];
    // Even an empty database gets its journal: rolled back, it truncates a
    // half-written new file to nothing again.
    {
        files.open(Some(&journal_name), rw | sqlite::SQLITE_OPEN_MAIN_JOURNAL).await.map_err(|rc| format!("opening the journal: code {rc}"))?;
        let rc = files.truncate(FileTag::Journal, 0).await;
        check(files, rc, "emptying the journal")?;
        let seed: u32 = rand::random();
        for number in 1..=old_pages {
            let offset = u64::from(number - 1) * CHUNK_SIZE as u64;
            let rc = files.read(FileTag::Main, offset, &mut page).await;
            check(files, rc, "reading an old page")?;
            let at = (journal::SECTOR + (number as usize - 1) * journal::RECORD) as u64;
            let rc = files.write(FileTag::Journal, at, &journal::record(number, &page, seed)).await;
            check(files, rc, "journaling an old page")?;
        }
        // The records first, then the header that makes them count.
        let rc = files.flush(FileTag::Journal).await;
        check(files, rc, "syncing the journal")?;
        let rc = files.write(FileTag::Journal, 0, &journal::header(old_pages, seed, old_pages)).await;
        check(files, rc, "writing the journal header")?;
        let rc = files.flush(FileTag::Journal).await;
        check(files, rc, "syncing the journal header")?;
    }
    let rc = files.write(FileTag::Main, 0, first_page).await;
    check(files, rc, "writing page 1")?;
    let mut offset = first_page.len() as u64;
    while offset < size {
        source.read_exact(&mut page).map_err(|e| format!("reading the new database at byte {offset}: {e}"))?;
        let rc = files.write(FileTag::Main, offset, &page).await;
        check(files, rc, "writing a page")?;
        offset += CHUNK_SIZE as u64;
    }
    let rc = files.truncate(FileTag::Main, size).await;
    check(files, rc, "setting the new size")?;
    let rc = files.flush(FileTag::Main).await;
    check(files, rc, "syncing the new database")?;
    {
        let rc = files.close(FileTag::Journal).await;
        check(files, rc, "closing the journal")?;
        // The commit point: chunks and meta go in one range delete first.
        let rc = files.delete(&journal_name).await;
        check(files, rc, "deleting the journal")?;
    }
    let rc = files.close(FileTag::Main).await;
    check(files, rc, "closing the database")
}

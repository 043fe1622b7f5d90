//! The SQLite constants the host and the guest speak in: result codes, open
//! and access flags, lock levels, file-control ops and device
//! characteristics. Mirrored from sqlite3.h (3.54.1, the version the guest
//! is built from) so that the library links no native SQLite; a test checks
//! every one against the bundled `libsqlite3-sys` the guest's source comes
//! from.
#![allow(missing_docs)]

pub const SQLITE_OK: i32 = 0;
pub const SQLITE_ERROR: i32 = 1;
pub const SQLITE_INTERNAL: i32 = 2;
pub const SQLITE_PERM: i32 = 3;
pub const SQLITE_ABORT: i32 = 4;
pub const SQLITE_BUSY: i32 = 5;
pub const SQLITE_LOCKED: i32 = 6;
pub const SQLITE_NOMEM: i32 = 7;
pub const SQLITE_READONLY: i32 = 8;
pub const SQLITE_INTERRUPT: i32 = 9;
pub const SQLITE_IOERR: i32 = 10;
pub const SQLITE_CORRUPT: i32 = 11;
pub const SQLITE_NOTFOUND: i32 = 12;
pub const SQLITE_FULL: i32 = 13;
pub const SQLITE_CANTOPEN: i32 = 14;
pub const SQLITE_PROTOCOL: i32 = 15;
pub const SQLITE_SCHEMA: i32 = 17;
pub const SQLITE_TOOBIG: i32 = 18;
pub const SQLITE_CONSTRAINT: i32 = 19;
pub const SQLITE_MISMATCH: i32 = 20;
pub const SQLITE_MISUSE: i32 = 21;
pub const SQLITE_RANGE: i32 = 25;
pub const SQLITE_NOTADB: i32 = 26;
pub const SQLITE_ROW: i32 = 100;
pub const SQLITE_DONE: i32 = 101;

pub const SQLITE_IOERR_READ: i32 = SQLITE_IOERR | (1 << 8);
pub const SQLITE_IOERR_SHORT_READ: i32 = SQLITE_IOERR | (2 << 8);
pub const SQLITE_IOERR_WRITE: i32 = SQLITE_IOERR | (3 << 8);
pub const SQLITE_IOERR_FSYNC: i32 = SQLITE_IOERR | (4 << 8);
pub const SQLITE_IOERR_TRUNCATE: i32 = SQLITE_IOERR | (6 << 8);
pub const SQLITE_IOERR_DELETE: i32 = SQLITE_IOERR | (10 << 8);
pub const SQLITE_IOERR_CLOSE: i32 = SQLITE_IOERR | (16 << 8);
pub const SQLITE_IOERR_DELETE_NOENT: i32 = SQLITE_IOERR | (23 << 8);
pub const SQLITE_CANTOPEN_FULLPATH: i32 = SQLITE_CANTOPEN | (3 << 8);
pub const SQLITE_CONSTRAINT_CHECK: i32 = SQLITE_CONSTRAINT | (1 << 8);
pub const SQLITE_CONSTRAINT_FOREIGNKEY: i32 = SQLITE_CONSTRAINT | (3 << 8);
pub const SQLITE_CONSTRAINT_NOTNULL: i32 = SQLITE_CONSTRAINT | (5 << 8);
pub const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = SQLITE_CONSTRAINT | (6 << 8);
pub const SQLITE_CONSTRAINT_UNIQUE: i32 = SQLITE_CONSTRAINT | (8 << 8);

/// Used by the VFS model (the `simulation` feature).
#[allow(dead_code)]
pub const SQLITE_OPEN_READWRITE: i32 = 0x0000_0002;
pub const SQLITE_OPEN_CREATE: i32 = 0x0000_0004;
pub const SQLITE_OPEN_MAIN_DB: i32 = 0x0000_0100;
pub const SQLITE_OPEN_TEMP_DB: i32 = 0x0000_0200;
pub const SQLITE_OPEN_TRANSIENT_DB: i32 = 0x0000_0400;
pub const SQLITE_OPEN_MAIN_JOURNAL: i32 = 0x0000_0800;
pub const SQLITE_OPEN_TEMP_JOURNAL: i32 = 0x0000_1000;
pub const SQLITE_OPEN_SUBJOURNAL: i32 = 0x0000_2000;
pub const SQLITE_OPEN_SUPER_JOURNAL: i32 = 0x0000_4000;
pub const SQLITE_OPEN_WAL: i32 = 0x0008_0000;
pub const SQLITE_ACCESS_EXISTS: i32 = 0;
pub const SQLITE_LOCK_SHARED: i32 = 1;

pub const SQLITE_FCNTL_BEGIN_ATOMIC_WRITE: i32 = 31;
pub const SQLITE_FCNTL_COMMIT_ATOMIC_WRITE: i32 = 32;
pub const SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE: i32 = 33;

pub const SQLITE_IOCAP_POWERSAFE_OVERWRITE: i32 = 0x0000_1000;
pub const SQLITE_IOCAP_BATCH_ATOMIC: i32 = 0x0000_4000;

#[cfg(test)]
mod tests {
    /// Each mirrored constant equals sqlite3.h's, as libsqlite3-sys has it.
    #[test]
    fn every_constant_matches_sqlite3_h() {
        use libsqlite3_sys as h;
        macro_rules! same {
            ($($name:ident),* $(,)?) => {
                $(assert_eq!(super::$name, h::$name as i32, stringify!($name));)*
            };
        }
        same!(
            SQLITE_OK, SQLITE_ERROR, SQLITE_INTERNAL, SQLITE_PERM, SQLITE_ABORT, SQLITE_BUSY, SQLITE_LOCKED,
            SQLITE_NOMEM, SQLITE_READONLY, SQLITE_INTERRUPT, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTFOUND,
            SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL, SQLITE_SCHEMA, SQLITE_TOOBIG, SQLITE_CONSTRAINT,
            SQLITE_MISMATCH, SQLITE_MISUSE, SQLITE_RANGE, SQLITE_NOTADB, SQLITE_ROW, SQLITE_DONE,
            SQLITE_IOERR_READ, SQLITE_IOERR_SHORT_READ, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC,
            SQLITE_IOERR_TRUNCATE, SQLITE_IOERR_DELETE, SQLITE_IOERR_CLOSE, SQLITE_IOERR_DELETE_NOENT,
            SQLITE_CANTOPEN_FULLPATH, SQLITE_CONSTRAINT_CHECK, SQLITE_CONSTRAINT_FOREIGNKEY,
            SQLITE_CONSTRAINT_NOTNULL, SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE,
            SQLITE_OPEN_READWRITE, SQLITE_OPEN_CREATE, SQLITE_OPEN_MAIN_DB, SQLITE_OPEN_TEMP_DB,
            SQLITE_OPEN_TRANSIENT_DB, SQLITE_OPEN_MAIN_JOURNAL, SQLITE_OPEN_TEMP_JOURNAL, SQLITE_OPEN_SUBJOURNAL,
            SQLITE_OPEN_SUPER_JOURNAL, SQLITE_OPEN_WAL, SQLITE_ACCESS_EXISTS, SQLITE_LOCK_SHARED,
            SQLITE_FCNTL_BEGIN_ATOMIC_WRITE, SQLITE_FCNTL_COMMIT_ATOMIC_WRITE, SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE,
            SQLITE_IOCAP_POWERSAFE_OVERWRITE, SQLITE_IOCAP_BATCH_ATOMIC,
        );
    }
}

//! The SQL benchmarks' one view of a database, over a wasqlite actor or a
//! native SQLite connection (rusqlite), so that every workload runs the same
//! statements with the same parameters on both.
//!
//! Fairness, on both sides: statements are prepared once and cached by SQL
//! text (wasqlite's actor cache; rusqlite's `prepare_cached`), parameters
//! are bound, never spliced into SQL, and arrive as one owned `Vec` built by
//! the caller (wasqlite takes it as its `Params`; the native side binds
//! from it without copying), and every row a query returns is read out into
//! owned values (wasqlite's `Rows` does that; the native side copies each
//! column into a `Value`). Queries return a checksum of their
//! rows, so that runs can be compared for equal results.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use wasqlite::simulation::from_native;
use wasqlite::{Actor, Value};

/// A database under benchmark.
pub(crate) enum Db {
    /// A wasqlite actor (its KV decides memory or redb).
    Wasm(Box<Actor>),
    /// Native SQLite, in memory or in a file.
    Native(Connection),
}

/// Binds a `Value` without copying it.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Folds one row into a running checksum (FNV-1a over a canonical form).
pub(crate) fn checksum(mut sum: u64, row: &[Value]) -> u64 {
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            sum = (sum ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for value in row {
        match value {
            Value::Null => mix(&[0]),
            Value::Integer(i) => {
                mix(&[1]);
                mix(&i.to_le_bytes());
            }
            Value::Real(f) => {
                mix(&[2]);
                mix(&f.to_le_bytes());
            }
            Value::Text(s) => {
                mix(&[3]);
                mix(s.as_bytes());
            }
            Value::Blob(b) => {
                mix(&[4]);
                mix(b);
            }
        }
    }
    sum
}

/// Whether SQLite's global memory statistics could be turned off before the
/// first native connection, as the guest's build has them
/// (`SQLITE_DEFAULT_MEMSTATUS=0`): with them on, every allocation of a
/// thread-safe SQLite takes a global mutex.
pub(crate) fn native_memstatus_off() -> bool {
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. Before initialization
    // sqlite3_config only sets a global; after it, it returns SQLITE_MISUSE
    // and changes nothing.
    unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) == 0 }
}

/// Native SQLite's run-time settings, to match the guest's where they can be
/// set per connection: 4 KiB pages, exclusive locking, foreign keys off (the
/// bundled build turns them on by default; the guest's does not).
const NATIVE_PRAGMAS: &str =
    "PRAGMA page_size = 4096; PRAGMA locking_mode = EXCLUSIVE; PRAGMA foreign_keys = OFF;";

impl Db {
    /// Native SQLite on a file at `path`: the second reference. A rollback
    /// journal on disk and no syncs, so its commits cost `pwrite` calls
    /// (journal, pages, journal header) but never `fsync`.
    pub(crate) fn open_native_file(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::native(conn, "PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF;")
    }

    /// Native SQLite in memory, the like-for-like reference: SQLite's own
    /// memory VFS (memdb) keeps the pages in a heap buffer, as the memory KV
    /// does, under the same page cache and pager. memdb gives a rollback
    /// journal no file of its own, so the journal lives in memory
    /// (`journal_mode = MEMORY`); the guest's small commits write none
    /// either (batch-atomic writes). `synchronous` is FULL, as in the guest,
    /// though memdb's syncs do nothing.
    pub(crate) fn open_native_memory(name: &str) -> Result<Db> {
        let uri = format!("file:/wasqlite-bench-{name}?vfs=memdb");
        let conn = Connection::open(&uri).with_context(|| format!("opening {uri}"))?;
        Self::native(conn, "PRAGMA journal_mode = MEMORY; PRAGMA synchronous = FULL;")
    }

    /// A native connection with the shared settings, then its own `pragmas`.
    fn native(conn: Connection, pragmas: &str) -> Result<Db> {
        conn.execute_batch(NATIVE_PRAGMAS).context("setting the native pragmas")?;
        conn.execute_batch(pragmas).context("setting the native pragmas")?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Db::Native(conn))
    }

    /// How this database is configured, as it reports itself: the settings
    /// a comparison depends on.
    pub(crate) async fn configuration(&mut self) -> Result<Vec<(&'static str, String)>> {
        let mut out = Vec::new();
        for pragma in ["page_size", "journal_mode", "locking_mode", "synchronous", "foreign_keys", "cache_size"] {
            let sql = format!("PRAGMA {pragma}");
            let value = match self {
                Db::Wasm(actor) => actor.query_row(sql.as_str(), ()).await?.values()[0].clone(),
                Db::Native(conn) => conn.query_row(&sql, [], |r| r.get_ref(0).map(from_native))?,
            };
            let shown = match value {
                Value::Integer(i) => i.to_string(),
                Value::Text(s) => s,
                other => format!("{other:?}"),
            };
            out.push((pragma, shown));
        }
        Ok(out)
    }

    /// SQLite's compile-time options, as `PRAGMA compile_options` lists them.
    pub(crate) async fn compile_options(&mut self) -> Result<Vec<String>> {
        const SQL: &str = "PRAGMA compile_options";
        Ok(match self {
            Db::Wasm(actor) => {
                let rows = actor.query(SQL, ()).await?;
                rows.iter().map(|r| r.get::<String>(0)).collect::<Result<_, _>>()?
            }
            Db::Native(conn) => {
                let mut stmt = conn.prepare(SQL)?;
                stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?
            }
        })
    }

    /// Runs one statement; the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        match self {
            Db::Wasm(actor) => Ok(actor.execute(sql, params).await?),
            Db::Native(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params.iter().map(Bind)))? as u64)
            }
        }
    }

    /// Runs one statement per parameter set: `execute_many` on wasqlite, a
    /// loop over one prepared statement on native.
    pub(crate) async fn execute_many(&mut self, sql: &str, sets: impl Iterator<Item = Vec<Value>>) -> Result<u64> {
        match self {
            Db::Wasm(actor) => Ok(actor.execute_many(sql, sets).await?),
            Db::Native(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut changes = 0;
                for params in sets {
                    changes += stmt.execute(rusqlite::params_from_iter(params.iter().map(Bind)))? as u64;
                }
                Ok(changes)
            }
        }
    }

    /// Runs a query, reads every row out, and returns their checksum.
    pub(crate) async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        match self {
            Db::Wasm(actor) => {
                let rows = actor.query(sql, params).await?;
                Ok(rows.iter().fold(0, |sum, row| checksum(sum, row.values())))
            }
            Db::Native(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(Bind)))?;
                let mut sum = 0;
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        values.push(from_native(row.get_ref(i)?));
                    }
                    sum = checksum(sum, &values);
                }
                Ok(sum)
            }
        }
    }

    /// Runs statements without parameters (DDL, BEGIN, COMMIT).
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Db::Wasm(actor) => Ok(actor.execute_batch(sql).await?),
            Db::Native(conn) => Ok(conn.execute_batch(sql)?),
        }
    }

    /// SQLite's version string, as this database reports it.
    pub(crate) async fn sqlite_version(&mut self) -> Result<String> {
        match self {
            Db::Wasm(actor) => Ok(actor.query_row("SELECT sqlite_version()", ()).await?.get(0)?),
            Db::Native(conn) => Ok(conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?),
        }
    }

    /// Sleeps an actor; closes a connection.
    pub(crate) async fn close(self) -> Result<()> {
        match self {
            Db::Wasm(actor) => Ok(actor.sleep().await?),
            Db::Native(conn) => conn.close().map_err(|(_, e)| e.into()),
        }
    }
}

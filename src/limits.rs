//! `Limits`: what one actor may spend of the host's CPU and storage, and the
//! `sqlite3_limit` values its SQL runs under. Memory has its own cap,
//! `EngineConfig::max_memory`, since the engine enforces it per instance.
//! SECURITY.md lists every limit with its default and the test that proves it.

use std::time::Duration;

/// Per-actor limits, part of [`crate::HostConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long one API call may run before it is stopped with
    /// [`crate::Error::Timeout`]; `None` lets calls run for as long as they
    /// take. [`crate::Actor::set_call_timeout`] changes it for one actor.
    pub call_timeout: Option<Duration>,
    /// How long a stopped call has to unwind (SQLite rolls its statement
    /// back) before its instance is torn down and rebuilt from the KV. Only
    /// a statement that does not reach a check in time needs it, such as
    /// one long sort.
    pub stop_grace: Duration,
    /// How long a guest call on a fiber (a KV that may make calls wait) runs
    /// before it yields to the async runtime, so that one long statement
    /// does not hold a runtime thread; each yield is also a point where a
    /// dropped future stops the statement. `None` never yields mid-call,
    /// which makes the points where a call can be cut off depend on the KV
    /// alone (the cancellation simulation needs that). Direct calls (a KV
    /// that answers at once) cannot yield.
    pub time_slice: Option<Duration>,
    /// How long one KV operation may take on a backend that may make
    /// callers wait (not `MemoryKv`). A read past it is an I/O error; a
    /// write past it may still land, so the actor is unusable (poisoned)
    /// until it is slept and woken, and the wake waits for the write.
    /// `None` waits for as long as the backend takes.
    pub kv_timeout: Option<Duration>,
    /// The largest size, in bytes, the actor's database file may grow to.
    /// Past it, writes fail with SQLITE_FULL and the actor stays usable.
    /// Its rollback journal and WAL may hold as much again.
    pub max_database_size: u64,
    /// The most bytes of rows [`crate::Actor::query`] collects (counted as
    /// the guest encodes them, about the size of the values) before it
    /// fails with [`crate::Error::ResultTooBig`];
    /// [`crate::Actor::query_batches`] takes rows a batch at a time instead.
    pub max_result_bytes: usize,
    /// The values the guest passes to `sqlite3_limit` at every wake.
    pub sql: SqlLimits,
}

/// The default call timeout: the order Durable Objects and similar
/// platforms give one request.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The default database size cap: 10 GiB, as Rivet and Durable Objects.
pub const DEFAULT_MAX_DATABASE_SIZE: u64 = 10 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            stop_grace: Duration::from_secs(1),
            time_slice: Some(Duration::from_millis(10)),
            kv_timeout: Some(Duration::from_secs(10)),
            max_database_size: DEFAULT_MAX_DATABASE_SIZE,
            max_result_bytes: 64 << 20,
            sql: SqlLimits::default(),
        }
    }
}

/// `sqlite3_limit` values (see SQLite's "Limits In SQLite"). The defaults
/// are tighter than SQLite's where a hostile statement could otherwise
/// spend the actor's memory cap or the guest's stack on one value or one
/// parse tree, and equal to SQLite's where a tighter value would only break
/// ordinary schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlLimits {
    /// Longest string or blob, in bytes (SQLITE_LIMIT_LENGTH). The default,
    /// 32 MiB, keeps a value and its copy on the way out well inside the
    /// default 256 MiB memory cap.
    pub length: u32,
    /// Longest SQL text, in bytes (SQLITE_LIMIT_SQL_LENGTH).
    pub sql_length: u32,
    /// Most columns in a table, index, view, result or ORDER BY
    /// (SQLITE_LIMIT_COLUMN).
    pub columns: u32,
    /// Deepest expression tree (SQLITE_LIMIT_EXPR_DEPTH).
    pub expr_depth: u32,
    /// Most terms in a compound SELECT (SQLITE_LIMIT_COMPOUND_SELECT).
    pub compound_select: u32,
    /// Most arguments to one SQL function (SQLITE_LIMIT_FUNCTION_ARG).
    pub function_args: u32,
    /// Most attached databases (SQLITE_LIMIT_ATTACHED). Only in-memory ones
    /// can be attached: the VFS opens no file but the actor's own, once.
    pub attached: u32,
    /// Longest LIKE or GLOB pattern (SQLITE_LIMIT_LIKE_PATTERN_LENGTH).
    pub like_pattern_length: u32,
    /// Highest parameter number (SQLITE_LIMIT_VARIABLE_NUMBER).
    pub variables: u32,
    /// Deepest trigger recursion (SQLITE_LIMIT_TRIGGER_DEPTH).
    pub trigger_depth: u32,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            length: 32 << 20,
            sql_length: 1 << 20,
            columns: 2000,
            expr_depth: 500,
            compound_select: 250,
            function_args: 100,
            attached: 2,
            like_pattern_length: 10_000,
            variables: 32_766,
            trigger_depth: 100,
        }
    }
}

impl SqlLimits {
    /// The values in `SQLITE_LIMIT_*` index order, as `wasqlite_open` takes
    /// them; -1 leaves a limit (VDBE_OP, WORKER_THREADS) as compiled.
    pub(crate) fn as_array(&self) -> [i32; 12] {
        let v = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        [
            v(self.length),
            v(self.sql_length),
            v(self.columns),
            v(self.expr_depth),
            v(self.compound_select),
            -1,
            v(self.function_args),
            v(self.attached),
            v(self.like_pattern_length),
            v(self.variables),
            v(self.trigger_depth),
            -1,
        ]
    }
}

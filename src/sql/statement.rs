//! Statements: the guest connection an actor runs SQL on, and how a
//! statement is prepared, bound, stepped, read back and finalized there.
//!
//! `Connection` owns one guest instance (its Store, exports and open
//! `sqlite3*`) and the statements prepared in it. `Actor` (src/actor.rs)
//! owns a `Connection` and decides what happens around each call:
//! recovery, rollbacks, flushing, rebuilding.
//!
//! Invariant: a statement is finalized in exactly one place,
//! `finalize_retired`. Its owner (the statement cache, or a statement of a
//! batch) gives it up with `retire`; since finalizing is a guest call,
//! which a `Drop` cannot make, retired statements wait for the next call or
//! for `close`. A `StmtRef` lent out for one call therefore never outlives
//! its statement.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Store;

use crate::codes as sqlite;
use crate::error::Error;
use crate::guest::abi::BAD_PARAMS;
use crate::guest::exports::{GuestApi, Prepared, Step};
use crate::guest::handles::{DbHandle, GuestPtr, StmtHandle, StmtRef};
use crate::sql::cache::{Cached, StatementCache};
use crate::sql::params::Params;
use crate::sql::row::{Rows, decode_names, decode_rows};
use crate::state::ActorState;

/// Encoded parameter sets per `wasqlite_run_many` call: enough to spread a
/// crossing over a few thousand small rows, small enough that the guest's
/// argument buffer stays a few pages.
const SETS_CHUNK_BYTES: usize = 64 << 10;

/// A fresh guest instance with the actor's database open, and its
/// statements.
pub(crate) struct Connection {
    pub(crate) store: Store<ActorState>,
    api: GuestApi,
    db: DbHandle,
    cache: StatementCache,
    /// Statements given up and not yet finalized.
    retired: Vec<StmtHandle>,
    /// `sqlite3_last_insert_rowid()` as of the last finished statement.
    pub(crate) last_rowid: i64,
    /// Most bytes of encoded rows one `RowSink::Collect` takes.
    max_result_bytes: usize,
    /// `close` ran: the `sqlite3*` is gone, and only the files are left.
    closed: bool,
}

/// The message for a failure of the guest's SQL layer (vfs/sql_api.c)
/// that SQLite itself did not record.
fn guest_layer_message(rc: i32) -> &'static str {
    match rc {
        sqlite::SQLITE_NOMEM => "out of memory: a result row does not fit the actor's memory cap",
        sqlite::SQLITE_TOOBIG => "string or blob too big to pass back from the guest",
        _ => "the guest's SQL layer failed",
    }
}

/// Where the rows of a statement go.
pub(crate) enum RowSink<'a> {
    /// Stepped through and dropped.
    Discard,
    /// All kept, in one `Rows`.
    Collect(&'a mut Option<Rows>),
    /// Handed over a batch at a time, as the guest returns them; `Break`
    /// ends the statement there.
    Each(&'a mut (dyn FnMut(Rows) -> ControlFlow<()> + Send)),
}

impl RowSink<'_> {
    fn wants_rows(&self) -> bool {
        !matches!(self, RowSink::Discard)
    }
}

/// What a finished statement reports.
pub(crate) struct Outcome {
    pub(crate) changes: u64,
    /// A `RowSink::Each` said `Break`, or a `Collect` outgrew its cap,
    /// with rows left: the statement was not reset.
    pub(crate) stopped_early: bool,
    /// A `Collect` outgrew `max_result_bytes`.
    pub(crate) too_big: bool,
}

impl Connection {
    pub(crate) fn new(store: Store<ActorState>, api: GuestApi, db: DbHandle, max_result_bytes: usize) -> Connection {
        Connection { store, api, db, cache: StatementCache::default(), retired: Vec::new(), last_rowid: 0, max_result_bytes, closed: false }
    }

    /// Gives up a statement; `finalize_retired` finalizes it.
    fn retire(&mut self, stmt: StmtHandle) {
        self.retired.push(stmt);
    }

    /// Finalizes every retired statement: the one place statements end.
    pub(crate) async fn finalize_retired(&mut self) -> Result<(), Error> {
        while let Some(stmt) = self.retired.pop() {
            self.api.finalize(&mut self.store, stmt).await?;
        }
        Ok(())
    }

    /// Finalizes every statement and closes the database, then flushes what
    /// the files still buffer.
    pub(crate) async fn close(&mut self) -> Result<(), Error> {
        for stmt in self.cache.drain() {
            self.retire(stmt);
        }
        self.finalize_retired().await?;
        self.closed = true;
        let rc = self.api.close(&mut self.store, self.db).await?;
        let flushed = self.store.data_mut().files.flush_all().await;
        if rc != sqlite::SQLITE_OK || flushed != sqlite::SQLITE_OK {
            let storage = self.store.data_mut().files.take_last_error();
            let code = if rc != sqlite::SQLITE_OK { rc } else { flushed };
            return Err(Error::Sqlite { code, message: "closing the database failed".into(), storage });
        }
        Ok(())
    }

    /// Whether the connection is outside any explicit transaction (a
    /// closed one is).
    pub(crate) async fn autocommit(&mut self) -> Result<bool, Error> {
        if self.closed {
            return Ok(true);
        }
        self.api.autocommit(&mut self.store, self.db).await
    }

    /// The error SQLite reports for `rc`, with the storage layer's
    /// description when it caused it.
    async fn sqlite_error(&mut self, rc: i32) -> Error {
        let storage = self.store.data_mut().files.take_last_error();
        let code = self.api.errcode(&mut self.store, self.db).await.unwrap_or(rc);
        if code == sqlite::SQLITE_OK {
            // SQLite has no error on record: the guest's own layer around it
            // (encoding a row, decoding parameters) failed with `rc`.
            return Error::Sqlite { code: rc, message: guest_layer_message(rc).into(), storage };
        }
        let message = self.api.errmsg(&mut self.store, self.db).await.unwrap_or_else(|e| e.to_string());
        Error::Sqlite { code, message, storage }
    }

    /// Prepares the first statement of `sql`, which must be the only one.
    async fn prepare_single(&mut self, sql: &str) -> Result<Prepared, Error> {
        let ptr = self.api.stage(&mut self.store, sql.as_bytes()).await?;
        let first = self.api.prepare(&mut self.store, self.db, ptr, sql.len()).await?;
        if first.rc != sqlite::SQLITE_OK {
            return Err(self.sqlite_error(first.rc).await);
        }
        let Some(prepared) = first.prepared else {
            return Err(Error::Sqlite { code: sqlite::SQLITE_MISUSE, message: "the SQL text holds no statement".into(), storage: None });
        };
        let rest = sql.get(first.tail..).unwrap_or("");
        if !rest.trim_matches(|c: char| c.is_whitespace() || c == ';').is_empty() {
            // Comments alone are fine; anything SQLite would run is not.
            // Comments never fail to prepare, so an error means a statement
            // (one that depends on the first, say) follows.
            let at = ptr.offset(first.tail).ok_or(Error::TooBig { what: "SQL text", len: sql.len() })?;
            let next = self.api.prepare(&mut self.store, self.db, at, rest.len()).await?;
            if next.rc != sqlite::SQLITE_OK || next.prepared.is_some() {
                if let Some(next) = next.prepared {
                    self.retire(next.stmt);
                }
                self.retire(prepared.stmt);
                return Err(Error::MultipleStatements);
            }
        }
        Ok(prepared)
    }

    /// The cached statement for `sql`, prepared now if it is not cached.
    async fn cached(&mut self, sql: &str) -> Result<Cached, Error> {
        if let Some(cached) = self.cache.get(sql) {
            return Ok(cached);
        }
        let prepared = self.prepare_single(sql).await?;
        let (cached, evicted) = self.cache.insert(sql, prepared);
        if let Some(evicted) = evicted {
            self.retire(evicted);
        }
        Ok(cached)
    }

    /// Runs `sql` through the statement cache; its rows go to `rows`.
    pub(crate) async fn run_cached(&mut self, sql: &str, params: &Params, rows: RowSink<'_>) -> Result<Outcome, Error> {
        let cached = self.cached(sql).await?;
        let columns = match (rows.wants_rows(), cached.columns) {
            (false, _) => None,
            (true, Some(columns)) => Some(columns),
            (true, None) => {
                let columns = self.column_names(cached.stmt).await?;
                self.cache.set_columns(sql, columns.clone());
                Some(columns)
            }
        };
        let outcome = self.run(cached.stmt, cached.param_count, cached.column_count, columns, params, rows).await?;
        if outcome.stopped_early {
            // Finalizing is the guest's only way to end a statement part-way.
            if let Some(stmt) = self.cache.remove(sql) {
                self.retire(stmt);
            }
            self.finalize_retired().await?;
        }
        if outcome.too_big {
            return Err(Error::ResultTooBig { limit: self.max_result_bytes });
        }
        Ok(outcome)
    }

    async fn column_names(&mut self, stmt: StmtRef) -> Result<Arc<[String]>, Error> {
        let (rc, names) = self.api.column_names(&mut self.store, stmt).await?;
        if rc != sqlite::SQLITE_OK {
            return Err(self.sqlite_error(rc).await);
        }
        Ok(decode_names(names)?.into())
    }

    /// Binds, steps to the end and reports; rows go to `rows` (with
    /// `columns`, which a sink other than `Discard` needs). The guest resets
    /// the statement when it ends, not when a sink stops it early.
    async fn run(
        &mut self,
        stmt: StmtRef,
        param_count: usize,
        column_count: usize,
        columns: Option<Arc<[String]>>,
        params: &Params,
        mut rows: RowSink<'_>,
    ) -> Result<Outcome, Error> {
        let encoded = params.encode(param_count)?;
        let params_ptr = match encoded.is_empty() {
            true => GuestPtr(0),
            false => self.api.stage(&mut self.store, &encoded).await?,
        };
        // `Discard` needs no columns, and its calls (every INSERT) no Rows.
        let mut collected = match (&rows, &columns) {
            (RowSink::Collect(_), Some(columns)) => Some(Rows::new(columns.clone())),
            _ => None,
        };
        // Atomic only so that the future stays Send; nothing is shared.
        let stop = AtomicBool::new(false);
        let (mut collected_bytes, mut too_big) = (0usize, false);
        let mut sink = |bytes: &[u8], count: usize| match &mut rows {
            RowSink::Discard => Ok(()),
            RowSink::Collect(_) if too_big => Ok(()),
            RowSink::Collect(_) => {
                collected_bytes += bytes.len();
                if collected_bytes > self.max_result_bytes {
                    too_big = true;
                    stop.store(true, Ordering::Relaxed);
                    collected = None;
                    return Ok(());
                }
                match collected.as_mut() {
                    Some(rows) => decode_rows(bytes, count, column_count, |values| rows.push(values)),
                    None => Ok(()),
                }
            }
            RowSink::Each(each) => {
                let mut batch = Rows::new(columns.clone().unwrap_or_else(|| Arc::from([])));
                decode_rows(bytes, count, column_count, |values| batch.push(values))?;
                stop.store(each(batch).is_break(), Ordering::Relaxed);
                Ok(())
            }
        };
        let mut step = self.api.run(&mut self.store, stmt, params_ptr, encoded.len(), &mut sink).await?;
        loop {
            match step {
                Step::More if stop.load(Ordering::Relaxed) => return Ok(Outcome { changes: 0, stopped_early: true, too_big }),
                Step::More => step = self.api.next(&mut self.store, stmt, &mut sink).await?,
                Step::Done { changes, last_rowid } => {
                    self.last_rowid = last_rowid;
                    if let RowSink::Collect(out) = rows {
                        *out = collected;
                    }
                    return Ok(Outcome { changes: changes.max(0) as u64, stopped_early: false, too_big });
                }
                Step::Failed(rc) => return Err(self.run_error(stmt, params, rc).await),
            }
        }
    }

    /// Runs `sql` once per set, up to [`SETS_CHUNK_BYTES`] of encoded sets
    /// per guest call (`wasqlite_run_many`). Sets before a failing one keep
    /// their effect, as a loop over `run` would leave them.
    pub(crate) async fn run_sets(&mut self, sql: &str, sets: impl Iterator<Item = Params>) -> Result<u64, Error> {
        let cached = self.cached(sql).await?;
        let mut sets = sets.peekable();
        let mut chunk: Vec<Params> = Vec::new();
        let mut encoded = Vec::new();
        let mut first = 0;
        let mut changes = 0;
        while sets.peek().is_some() {
            chunk.clear();
            encoded.clear();
            // A set that does not encode ends the run after the sets before it.
            let mut unencodable = None;
            for set in sets.by_ref() {
                let at = encoded.len();
                encoded.extend_from_slice(&[0; 4]);
                if let Err(e) = set.encode_into(&mut encoded, cached.param_count) {
                    encoded.truncate(at);
                    unencodable = Some(Error::ParameterSet { index: first + chunk.len(), source: Box::new(e) });
                    break;
                }
                let len = u32::try_from(encoded.len() - at - 4).map_err(|_| Error::TooBig { what: "parameter set", len: encoded.len() - at - 4 })?;
                encoded[at..at + 4].copy_from_slice(&len.to_le_bytes());
                chunk.push(set);
                if encoded.len() >= SETS_CHUNK_BYTES {
                    break;
                }
            }
            if !chunk.is_empty() {
                let ptr = self.api.stage(&mut self.store, &encoded).await?;
                let ran = self.api.run_many(&mut self.store, cached.stmt, ptr, encoded.len()).await?;
                changes += ran.changes.max(0) as u64;
                self.last_rowid = ran.last_rowid;
                if ran.rc != sqlite::SQLITE_DONE {
                    let Some(set) = chunk.get(ran.done) else {
                        return Err(Error::guest("running parameter sets", format!("the guest reports failing set {} of {}", ran.done, chunk.len())));
                    };
                    let source = self.run_error(cached.stmt, set, ran.rc).await;
                    return Err(Error::ParameterSet { index: first + ran.done, source: Box::new(source) });
                }
            }
            if let Some(e) = unencodable {
                return Err(e);
            }
            first += chunk.len();
        }
        Ok(changes)
    }

    /// The error for a run of `stmt` with `params` that failed with `rc`:
    /// a parameter problem, or SQLite's own error.
    async fn run_error(&mut self, stmt: StmtRef, params: &Params, rc: i32) -> Error {
        if rc == BAD_PARAMS {
            return Error::guest("binding parameters", "the guest could not decode them");
        }
        if rc == sqlite::SQLITE_RANGE {
            // Find the name the statement lacks by binding each alone.
            for (name, one) in params.each_named() {
                let Ok(ptr) = self.api.stage(&mut self.store, &one).await else { break };
                if let Ok(sqlite::SQLITE_RANGE) = self.api.bind(&mut self.store, stmt, ptr, one.len()).await {
                    return Error::UnknownParameter { name };
                }
            }
        }
        self.sqlite_error(rc).await
    }

    /// Runs every statement of `sql` in order, each prepared, run and
    /// finalized in turn.
    pub(crate) async fn run_batch(&mut self, sql: &str) -> Result<(), Error> {
        let base = self.api.stage(&mut self.store, sql.as_bytes()).await?;
        let mut offset = 0usize;
        while offset < sql.len() {
            let at = base.offset(offset).ok_or(Error::TooBig { what: "SQL text", len: sql.len() })?;
            let next = self.api.prepare(&mut self.store, self.db, at, sql.len() - offset).await?;
            if next.rc != sqlite::SQLITE_OK {
                return Err(self.sqlite_error(next.rc).await);
            }
            let Some(prepared) = next.prepared else { break };
            offset += next.tail.max(1);
            let stmt = prepared.stmt.as_ref();
            // Batches bind no parameters, so the staged text stays where it is.
            let result = self.run(stmt, prepared.param_count, prepared.column_count, None, &Params::None, RowSink::Discard).await;
            self.retire(prepared.stmt);
            self.finalize_retired().await?;
            result?;
        }
        Ok(())
    }
}

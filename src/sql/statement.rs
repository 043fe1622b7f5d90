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

use wasmtime::Store;

use crate::codes as sqlite;
use crate::error::Error;
use crate::guest::abi::BAD_PARAMS;
use crate::guest::exports::{GuestApi, Prepared, Shape, Step};
use crate::guest::handles::{DbHandle, GuestPtr, StmtHandle, StmtRef};
use crate::sql::cache::{Cached, StatementCache};
use crate::sql::params::Params;
use crate::sql::result::{ColumnSet, Description, StatementResult, decode_columns, decode_description};
use crate::sql::row::{Rows, decode_rows};
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

/// The error for parameters given with a text that holds no statement: the
/// one a statement without parameters would report.
fn no_statement_takes(params: &Params) -> Result<(), Error> {
    match params {
        Params::Named(pairs) => match pairs.first() {
            Some((name, _)) => Err(Error::UnknownParameter { name: name.clone() }),
            None => Ok(()),
        },
        _ => params.encode(0).map(drop),
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
    /// Rows it changed; 0 for a read-only statement.
    pub(crate) changes: u64,
    /// `sqlite3_last_insert_rowid()` when the statement ended.
    pub(crate) last_rowid: i64,
    /// A `RowSink::Each` said `Break`, or a `Collect` outgrew its cap,
    /// with rows left: the statement was not reset.
    pub(crate) stopped_early: bool,
    /// A `Collect` outgrew `max_result_bytes`.
    pub(crate) too_big: bool,
    /// The statement's columns as of the end of the run, when the caller
    /// wanted them: those it passed, or those fetched after a re-prepare.
    pub(crate) columns: Option<Arc<ColumnSet>>,
    /// SQLite re-prepared the statement with other columns (or other
    /// names): its new shape, which `columns` matches.
    pub(crate) reshaped: Option<Shape>,
}

/// Where `Connection::run` takes each batch of rows the guest returns, and
/// what it knows of their columns.
struct Batches<'s> {
    sink: RowSink<'s>,
    /// The columns the rows have, as far as the host knows.
    shape: Shape,
    /// Their names and types, when the caller wants them; always those of
    /// `shape`.
    columns: Option<Arc<ColumnSet>>,
    /// For `Collect`: the rows so far, `None` once past the cap (or for a
    /// caller that gave no columns).
    collected: Option<Rows>,
    collected_bytes: usize,
    max_bytes: usize,
    too_big: bool,
    /// The sink wants no more rows.
    stop: bool,
    /// A batch reported with another shape than `shape`, copied out of guest
    /// memory: fetching the new columns is a guest call, which reuses the
    /// buffer the rows lie in.
    reshaped: Option<(Vec<u8>, usize, Shape)>,
}

impl Batches<'_> {
    fn take(&mut self, bytes: &[u8], count: usize, shape: Shape) -> Result<(), Error> {
        if shape != self.shape {
            let kept = match self.sink {
                RowSink::Discard => Vec::new(),
                _ => bytes.to_vec(),
            };
            self.reshaped = Some((kept, count, shape));
            return Ok(());
        }
        match &mut self.sink {
            RowSink::Discard => Ok(()),
            RowSink::Collect(_) if self.too_big => Ok(()),
            RowSink::Collect(_) => {
                self.collected_bytes += bytes.len();
                if self.collected_bytes > self.max_bytes {
                    self.too_big = true;
                    self.stop = true;
                    self.collected = None;
                    return Ok(());
                }
                match self.collected.as_mut() {
                    Some(rows) => decode_rows(bytes, count, shape.column_count, |values| rows.push(values)),
                    None => Ok(()),
                }
            }
            RowSink::Each(each) => {
                let names = self.columns.as_ref().map_or_else(|| Arc::from([]), |c| c.names.clone());
                let mut batch = Rows::new(names);
                decode_rows(bytes, count, shape.column_count, |values| batch.push(values))?;
                self.stop = each(batch).is_break();
                Ok(())
            }
        }
    }

    /// Takes the statement's new shape, and its new columns when the caller
    /// wants columns (`columns` is then `Some`).
    fn reshape(&mut self, shape: Shape, columns: Option<Arc<ColumnSet>>) -> Result<(), Error> {
        if let Some(collected) = &mut self.collected {
            // SQLite re-prepares only before a run's first row.
            if !collected.is_empty() {
                return Err(Error::guest("decoding a row", "the columns changed part-way through a statement"));
            }
            *collected = Rows::new(columns.as_ref().map_or_else(|| Arc::from([]), |c| c.names.clone()));
        }
        self.shape = shape;
        self.columns = columns;
        Ok(())
    }
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

    /// Prepares the first statement of `sql`, which must be the only one;
    /// `None` when the text holds none (only spaces and comments).
    async fn prepare_single(&mut self, sql: &str) -> Result<Option<Prepared>, Error> {
        let ptr = self.api.stage(&mut self.store, sql.as_bytes()).await?;
        let first = self.api.prepare(&mut self.store, self.db, ptr, sql.len()).await?;
        if first.rc != sqlite::SQLITE_OK {
            return Err(self.sqlite_error(first.rc).await);
        }
        let Some(prepared) = first.prepared else { return Ok(None) };
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
        Ok(Some(prepared))
    }

    /// The cached statement for `sql`, prepared now if it is not cached;
    /// `None` for a text that holds no statement, which is not cached.
    async fn cached_or_empty(&mut self, sql: &str) -> Result<Option<Cached>, Error> {
        if let Some(cached) = self.cache.get(sql) {
            return Ok(Some(cached));
        }
        let Some(prepared) = self.prepare_single(sql).await? else { return Ok(None) };
        let (cached, evicted) = self.cache.insert(sql, prepared);
        if let Some(evicted) = evicted {
            self.retire(evicted);
        }
        Ok(Some(cached))
    }

    /// The cached statement for `sql`, prepared now if it is not cached.
    async fn cached(&mut self, sql: &str) -> Result<Cached, Error> {
        self.cached_or_empty(sql).await?.ok_or_else(|| Error::Sqlite {
            code: sqlite::SQLITE_MISUSE,
            message: "the SQL text holds no statement".into(),
            storage: None,
        })
    }

    /// Runs `sql` through the statement cache; its rows go to `rows`.
    pub(crate) async fn run_cached(&mut self, sql: &str, params: &Params, rows: RowSink<'_>) -> Result<Outcome, Error> {
        let cached = self.cached(sql).await?;
        let columns = match rows.wants_rows() {
            true => Some(self.columns(sql, &cached).await?),
            false => None,
        };
        self.run_lent(sql, &cached, columns, params, rows).await
    }

    /// Runs one statement and reports everything about it, as
    /// `Actor::run`: its columns always, its rows when `want_rows`.
    pub(crate) async fn run_statement(&mut self, sql: &str, params: &Params, want_rows: bool) -> Result<StatementResult, Error> {
        let Some(cached) = self.cached_or_empty(sql).await? else {
            // Nothing to run, but parameters it cannot take are still an error.
            no_statement_takes(params)?;
            return Ok(StatementResult { columns: Vec::new(), rows: Rows::default(), changes: 0, last_insert_rowid: self.last_rowid });
        };
        let columns = self.columns(sql, &cached).await?;
        let mut rows = None;
        let sink = match want_rows {
            true => RowSink::Collect(&mut rows),
            false => RowSink::Discard,
        };
        let outcome = self.run_lent(sql, &cached, Some(columns.clone()), params, sink).await?;
        // Those of the statement as it ran, if SQLite re-prepared it.
        let columns = outcome.columns.unwrap_or(columns);
        Ok(StatementResult {
            columns: columns.columns.to_vec(),
            rows: rows.unwrap_or_else(|| Rows::new(columns.names.clone())),
            changes: outcome.changes,
            last_insert_rowid: outcome.last_rowid,
        })
    }

    /// What SQLite says about `sql` without running it, as
    /// `Actor::describe`.
    pub(crate) async fn describe(&mut self, sql: &str) -> Result<Description, Error> {
        // A cached statement learns of a schema change only when it is
        // stepped (SQLite re-prepares it then), and describing steps nothing:
        // a fresh prepare reads the schema as it is now, and replaces it.
        let Some(prepared) = self.prepare_single(sql).await? else { return Ok(Description::default()) };
        if let Some(stale) = self.cache.remove(sql) {
            self.retire(stale);
        }
        let (cached, evicted) = self.cache.insert(sql, prepared);
        if let Some(evicted) = evicted {
            self.retire(evicted);
        }
        let columns = self.columns(sql, &cached).await?;
        let (rc, bytes) = self.api.describe(&mut self.store, cached.stmt).await?;
        let described = match rc {
            sqlite::SQLITE_OK => decode_description(bytes, cached.param_count),
            _ => return Err(self.sqlite_error(rc).await),
        };
        let mut description = described?;
        description.columns = columns.columns.to_vec();
        Ok(description)
    }

    /// Sets `sqlite3_last_insert_rowid()`.
    pub(crate) async fn set_last_rowid(&mut self, rowid: i64) -> Result<(), Error> {
        self.api.set_last_insert_rowid(&mut self.store, self.db, rowid).await?;
        self.last_rowid = rowid;
        Ok(())
    }

    /// Runs a statement the cache lent for this call (the one cached as
    /// `sql`), and ends it there if it was stopped part-way.
    async fn run_lent(
        &mut self,
        sql: &str,
        cached: &Cached,
        columns: Option<Arc<ColumnSet>>,
        params: &Params,
        rows: RowSink<'_>,
    ) -> Result<Outcome, Error> {
        let outcome = self.run(cached, columns, params, rows).await?;
        if let Some(shape) = outcome.reshaped {
            // Later calls (and `describe`) see the columns it runs with now.
            self.cache.set_shape(sql, shape, outcome.columns.clone());
        }
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

    /// The columns of the statement cached as `sql`, fetched from the guest
    /// the first time a call needs them.
    async fn columns(&mut self, sql: &str, cached: &Cached) -> Result<Arc<ColumnSet>, Error> {
        if let Some(columns) = &cached.columns {
            return Ok(columns.clone());
        }
        let columns = self.fetch_columns(cached.stmt, cached.shape.column_count).await?;
        self.cache.set_columns(sql, columns.clone());
        Ok(columns)
    }

    /// The `count` columns `stmt` has now, from the guest. The call reuses
    /// the guest's output buffer, rows and all.
    async fn fetch_columns(&mut self, stmt: StmtRef, count: usize) -> Result<Arc<ColumnSet>, Error> {
        let (rc, bytes) = self.api.column_names(&mut self.store, stmt).await?;
        let decoded = match rc {
            sqlite::SQLITE_OK => decode_columns(bytes, count),
            _ => return Err(self.sqlite_error(rc).await),
        };
        Ok(Arc::new(decoded?))
    }

    /// Binds, steps to the end and reports; rows go to `rows`, with
    /// `columns`, which a sink other than `Discard` needs: the columns of
    /// `stmt.shape`, or `None` for a caller that wants none. The guest
    /// resets the statement when it ends, not when a sink stops it early.
    ///
    /// A statement that SQLite re-prepared as it stepped it (after a schema
    /// change) may come back with other columns: its rows are decoded with
    /// those, wanted columns fetched again, and the outcome reports both.
    async fn run(&mut self, stmt: &Cached, columns: Option<Arc<ColumnSet>>, params: &Params, rows: RowSink<'_>) -> Result<Outcome, Error> {
        let encoded = params.encode(stmt.param_count)?;
        let params_ptr = match encoded.is_empty() {
            true => GuestPtr(0),
            false => self.api.stage(&mut self.store, &encoded).await?,
        };
        // `Discard` needs no columns, and its calls (every INSERT) no Rows.
        let collected = match (&rows, &columns) {
            (RowSink::Collect(_), Some(columns)) => Some(Rows::new(columns.names.clone())),
            _ => None,
        };
        let mut batches = Batches {
            sink: rows,
            shape: stmt.shape,
            columns,
            collected,
            collected_bytes: 0,
            max_bytes: self.max_result_bytes,
            too_big: false,
            stop: false,
            reshaped: None,
        };
        let mut reshaped = None;
        let (stmt, len) = (stmt.stmt, encoded.len());
        let mut step = self.api.run(&mut self.store, stmt, params_ptr, len, |b, n, shape| batches.take(b, n, shape)).await?;
        loop {
            if let Some((bytes, count, shape)) = batches.reshaped.take() {
                // The rows are copied out: the guest may reuse its buffer.
                let columns = match batches.columns.is_some() {
                    true => Some(self.fetch_columns(stmt, shape.column_count).await?),
                    false => None,
                };
                batches.reshape(shape, columns)?;
                batches.take(&bytes, count, shape)?;
                reshaped = Some(shape);
            }
            match step {
                Step::More if batches.stop => {
                    let (too_big, columns) = (batches.too_big, batches.columns);
                    return Ok(Outcome { changes: 0, last_rowid: self.last_rowid, stopped_early: true, too_big, columns, reshaped });
                }
                Step::More => step = self.api.next(&mut self.store, stmt, |b, n, shape| batches.take(b, n, shape)).await?,
                Step::Done { changes, last_rowid } => {
                    self.last_rowid = last_rowid;
                    let Batches { sink, collected, too_big, columns, .. } = batches;
                    if let RowSink::Collect(out) = sink {
                        *out = collected;
                    }
                    return Ok(Outcome { changes: changes.max(0) as u64, last_rowid, stopped_early: false, too_big, columns, reshaped });
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
            let shape = Shape { column_count: prepared.column_count, reprepares: 0 };
            let lent = Cached { stmt: prepared.stmt.as_ref(), param_count: prepared.param_count, shape, columns: None };
            // Batches bind no parameters, so the staged text stays where it is.
            let result = self.run(&lent, None, &Params::None, RowSink::Discard).await;
            self.retire(prepared.stmt);
            self.finalize_retired().await?;
            result?;
        }
        Ok(())
    }
}

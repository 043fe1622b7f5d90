//! `Actor`: one awake actor, its own wasmtime Store and guest instance with
//! an open SQLite connection, and the SQL API over it.
//!
//! Calls take `&mut self`: one call at a time inside an actor, while different
//! actors run in parallel on any tokio runtime. `sleep` and `destroy` take the
//! actor by value and drop its Store: its linear memory is released (on
//! demand allocation) or reset for the next actor in its pool slot (the
//! default pooling allocator, which keeps up to `EngineConfig::keep_resident`
//! of each slot mapped) before they return.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codes as sqlite;

use crate::actor_id::ActorId;
use crate::error::Error;
use crate::guest::watchdog::{self, InterruptHandle, StopReason};
use crate::host::{AwakeGuard, HostInner};
use crate::kv::{KvError, inflight};
use crate::lease::Lease;
use crate::meter::Usage;
use crate::vfs::files::within;
use crate::migrations::Migrations;
use crate::sql::params::Params;
use crate::sql::result::{Description, StatementResult};
use crate::sql::row::{Row, Rows};
use crate::sql::statement::{Connection, RowSink};
use crate::sql::transaction::Transaction;
use crate::vfs::layout::{CHUNK_SIZE, FileTag};
use crate::vfs::replace::replace_main_file;

/// An awake actor.
///
/// # Cancel safety
///
/// Every async method may be dropped at any await point, as
/// `tokio::time::timeout`, `select!` or a dropped request handler do.
/// Dropping one never loses a write that an earlier call acknowledged and
/// never corrupts the stored database; the dropped call has taken effect
/// wholly or not at all (wholly only if it had passed its commit point).
///
/// - Its guest call may have been unwound mid-statement, so the next call
///   on this actor first rebuilds the instance from the KV, after waiting
///   for any KV write the dropped call had issued: such writes run to their
///   end on their own, since a backend may apply them after their caller
///   has gone (RedbKv's writer thread does). The rebuild costs a wake and
///   the warm page cache.
/// - A transaction that was open dies with the old instance, rolled back.
///   The next call through its [`Transaction`] guard returns
///   [`Error::TransactionAborted`]; for a transaction begun with plain SQL
///   (`BEGIN`), the next call does, once, so that later statements do not
///   autocommit one by one unawares. A guard dropped in the meantime has
///   given the transaction up, and nothing is reported.
/// - A dropped [`Transaction::commit`] cannot say whether it committed; the
///   rebuilt instance reads what the KV holds, which is the answer.
/// - If the rebuild itself fails (a KV error, a full pool), that call
///   returns the error and the next call tries again.
///
/// With a backend that answers at once ([`crate::KvStore::answers_immediately`],
/// as [`crate::MemoryKv`]), guest calls are direct and every future ends at
/// its first poll: dropping it cannot stop a call once started, so a
/// timeout cannot bound a long statement there. A per-call deadline, not
/// cancellation, is the tool for that.
pub struct Actor {
    id: ActorId,
    host: Arc<HostInner>,
    /// The guest instance, its database and statements. `None` only after
    /// a rebuild failed, which poisons the actor, so that no call reaches it.
    conn: Option<Connection>,
    /// Set when a failure left the instance untrustworthy.
    poisoned: Option<String>,
    /// A call has begun and not returned. Seen at the start of the next
    /// call, it means the caller dropped that call's future part-way, maybe
    /// with SQLite unwound mid-statement: the instance is rebuilt first.
    in_call: bool,
    /// Counts instance rebuilds; a `Transaction` begun under another
    /// instance is gone.
    generation: u64,
    /// Why the instance was last rebuilt, for `Error::TransactionAborted`.
    rebuilt_because: &'static str,
    /// A cancelled call took an open transaction with it that no
    /// `Transaction` guard has reported yet: the next call says so.
    transaction_aborted: bool,
    /// A dropped `Transaction` asked for a rollback before the next call.
    rollback_pending: bool,
    /// `transaction()` is running BEGIN: cut off there, no guard owns the
    /// transaction BEGIN may have opened, and its loss is no one's news.
    beginning: bool,
    /// Stops the running call from elsewhere; shared with every instance
    /// this actor is rebuilt into.
    interrupt: InterruptHandle,
    /// How long one call may run.
    call_timeout: Option<Duration>,
    /// This host's claim on the actor: its writes carry the fence, and calls
    /// start only while it is valid.
    lease: Lease,
    /// Until `sleep` or `destroy` gives the lease up themselves; dropping
    /// the actor otherwise releases it in the background.
    holds_lease: bool,
    /// What this actor has used since it woke.
    usage: Usage,
    /// The guest's row counters as last read from the current instance
    /// (they start from zero in each instance).
    rows_seen: (i64, i64),
    _awake: AwakeGuard,
}

impl Drop for Actor {
    fn drop(&mut self) {
        if !self.holds_lease {
            return;
        }
        // A release moves no generation, so it may overtake this host's
        // writes still in flight: the next wake here waits for both, and a
        // claim from elsewhere fences those writes out. Without a runtime
        // the lease runs out instead.
        let (kv, id, fence) = (self.host.kv.clone(), self.id.clone(), self.lease.fence);
        inflight::run_detached(&self.host.kv, &self.id, async move { kv.release(&id, fence).await });
    }
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor").field("id", &self.id).field("poisoned", &self.poisoned).finish_non_exhaustive()
    }
}

impl Actor {
    pub(crate) fn new(
        id: ActorId,
        host: Arc<HostInner>,
        conn: Connection,
        awake: AwakeGuard,
        interrupt: InterruptHandle,
        lease: Lease,
    ) -> Actor {
        let call_timeout = host.config.limits.call_timeout;
        let mut actor = Actor {
            id,
            host,
            conn: Some(conn),
            poisoned: None,
            in_call: false,
            generation: 0,
            rebuilt_because: "",
            transaction_aborted: false,
            rollback_pending: false,
            beginning: false,
            interrupt,
            call_timeout,
            lease,
            holds_lease: true,
            usage: Usage { wakes: 1, ..Usage::default() },
            rows_seen: (0, 0),
            _awake: awake,
        };
        actor.meter_instance();
        actor
    }

    /// What this actor has used since it woke: calls, KV traffic, and the
    /// rows its guest reports (see [`Usage`]).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Moves what the instance counted since the last look into `usage`.
    fn meter_instance(&mut self) {
        let Some(conn) = &mut self.conn else { return };
        let files = &mut conn.store.data_mut().files;
        files.kv_meter.drain_into(&mut self.usage);
        self.usage.database_bytes = files.known_size(FileTag::Main);
        let (read, written) = watchdog::reported_rows(&conn.store);
        self.usage.reported.rows_read = self.usage.reported.rows_read.saturating_add(reported_since(read, self.rows_seen.0));
        self.usage.reported.rows_written = self.usage.reported.rows_written.saturating_add(reported_since(written, self.rows_seen.1));
        self.rows_seen = (read, written);
    }

    /// A handle that stops this actor's running call from another task or
    /// thread, as `sqlite3_interrupt` does: the call returns
    /// [`Error::Interrupted`] and the actor stays usable.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.interrupt.clone()
    }

    /// Sets how long each later call on this actor may run before it is
    /// stopped with [`Error::Timeout`] (`None`: no limit). Starts as
    /// [`crate::Limits::call_timeout`].
    pub fn set_call_timeout(&mut self, timeout: Option<Duration>) {
        self.call_timeout = timeout;
    }

    /// The timeout each call runs under.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// Runs one statement and returns the number of rows it changed, as
    /// [`StatementResult::changes`] counts them (0 for a SELECT). Rows it
    /// returns, if any, are stepped through and dropped.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(actor: &mut wasqlite::Actor) -> Result<(), wasqlite::Error> {
    /// use wasqlite::{named_params, params};
    /// actor.execute("INSERT INTO users(name, age) VALUES (?1, ?2)", params!["ada", 36]).await?;
    /// actor.execute("UPDATE users SET age = :age WHERE name = :name", named_params! { ":age": 37, ":name": "ada" }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] with SQLite's extended code and message,
    /// [`Error::MultipleStatements`], parameter errors, or
    /// [`Error::Poisoned`]. [`Error::OutcomeUnknown`] when a KV write failed
    /// after one that may have committed the statement's transaction, and
    /// [`Error::TransactionAborted`] when an earlier call, cancelled
    /// part-way, took the open transaction with it.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the statement has taken effect wholly (if it
    /// had passed its commit point) or not at all; see [`Actor`], "Cancel
    /// safety", for what the next call does.
    pub async fn execute(&mut self, sql: &str, params: impl Into<Params>) -> Result<u64, Error> {
        let params = params.into();
        self.call(async |actor| actor.conn().run_cached(sql, &params, RowSink::Discard).await.map(|o| o.changes)).await
    }

    /// Runs one statement once for each parameter set, in order, and
    /// returns the total number of rows changed: a bulk INSERT or UPDATE
    /// in a few guest calls instead of one per row. Rows the statement
    /// returns are discarded.
    ///
    /// Outside a transaction the sets run inside one, so all of them take
    /// effect or none does. Inside one they are part of it, as a loop of
    /// [`Actor::execute`] would be: the sets before a failing one keep
    /// their effect until the caller rolls back.
    ///
    /// # Errors
    ///
    /// [`Error::ParameterSet`] with the position of the first set that
    /// failed and its error, or as [`Actor::execute`] for the statement.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns: outside a transaction, all of the sets or
    /// none of them took effect; inside one, the transaction is rolled back (see
    /// [`Actor`], "Cancel safety").
    pub async fn execute_many<P: Into<Params>>(&mut self, sql: &str, sets: impl IntoIterator<Item = P>) -> Result<u64, Error> {
        let sets = sets.into_iter().map(Into::into);
        if !self.is_autocommit().await? {
            return self.execute_many_in_transaction(sql, sets).await;
        }
        // A failing set drops the guard uncommitted, which rolls back the
        // sets before it; a failing COMMIT rolls back in `commit`.
        let mut tx = self.transaction().await?;
        let changes = tx.execute_many(sql, sets).await?;
        tx.commit().await?;
        Ok(changes)
    }

    /// `execute_many` inside the caller's transaction.
    pub(crate) async fn execute_many_in_transaction(&mut self, sql: &str, sets: impl Iterator<Item = Params>) -> Result<u64, Error> {
        self.call(async |actor| actor.conn().run_sets(sql, sets).await).await
    }

    /// Runs a query and returns every row.
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it is safe; a write the statement made took effect wholly or not
    /// at all (see [`Actor`], "Cancel safety").
    pub async fn query(&mut self, sql: &str, params: impl Into<Params>) -> Result<Rows, Error> {
        let params = params.into();
        self.call(async |actor| {
            let mut rows = None;
            actor.conn().run_cached(sql, &params, RowSink::Collect(&mut rows)).await?;
            Ok(rows.unwrap_or_default())
        })
        .await
    }

    /// Runs a query and hands its rows to `each` a batch at a time, as the
    /// guest returns them (up to about 64 KiB of values per batch), so that
    /// one batch is all the host holds however many rows there are.
    /// `each` returning `ControlFlow::Break(())` ends the query there.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(actor: &mut wasqlite::Actor) -> Result<(), wasqlite::Error> {
    /// use std::ops::ControlFlow;
    /// let mut total = 0i64;
    /// actor.query_batches("SELECT n FROM hits", (), |rows| {
    ///     total += rows.iter().map(|r| r.get::<i64>(0).unwrap_or(0)).sum::<i64>();
    ///     ControlFlow::Continue(())
    /// }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`]; rows handed over before an error stay handed
    /// over.
    ///
    /// # Cancel safety
    ///
    /// As [`Actor::query`].
    pub async fn query_batches(
        &mut self,
        sql: &str,
        params: impl Into<Params>,
        mut each: impl FnMut(Rows) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<(), Error> {
        let params = params.into();
        self.call(async |actor| actor.conn().run_cached(sql, &params, RowSink::Each(&mut each)).await.map(drop)).await
    }

    /// The first row of a query.
    ///
    /// # Errors
    ///
    /// [`Error::NoRows`] when there is none, or as [`Actor::execute`].
    ///
    /// # Cancel safety
    ///
    /// As [`Actor::query`].
    pub async fn query_row(&mut self, sql: &str, params: impl Into<Params>) -> Result<Row, Error> {
        self.query(sql, params).await?.into_iter().next().ok_or(Error::NoRows)
    }

    /// Runs one statement and reports its columns (with their declared
    /// types), rows, changes and last insert rowid: what a server speaking
    /// the libSQL protocol answers with. With `want_rows` false the rows are
    /// stepped through and dropped, as [`Actor::execute`] does; the columns
    /// are reported either way. A text without a statement (only spaces,
    /// comments or semicolons) runs nothing and reports no columns and no
    /// rows.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f(actor: &mut wasqlite::Actor) -> Result<(), wasqlite::Error> {
    /// use wasqlite::named_params;
    /// let result = actor.run("INSERT INTO users(name) VALUES (:name) RETURNING id", named_params! { "name": "ada" }, true).await?;
    /// println!("{:?} {} {}", result.columns, result.rows.len(), result.last_insert_rowid);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`]; [`Error::ResultTooBig`] when the rows outgrow
    /// [`crate::Limits::max_result_bytes`], as [`Actor::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`Actor::execute`].
    pub async fn run(&mut self, sql: &str, params: impl Into<Params>, want_rows: bool) -> Result<StatementResult, Error> {
        let params = params.into();
        self.call(async |actor| actor.conn().run_statement(sql, &params, want_rows).await).await
    }

    /// Prepares one statement without running it and reports what SQLite
    /// says about it: its parameters' names, its columns, whether it is an
    /// `EXPLAIN` and whether it is read-only. The statement stays in the
    /// statement cache for a later call. A text without a statement gives
    /// an empty description.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] for SQL that does not prepare,
    /// [`Error::MultipleStatements`], [`Error::Poisoned`], or a guest
    /// failure.
    ///
    /// # Cancel safety
    ///
    /// Dropping it is safe: it changes nothing (see [`Actor`], "Cancel
    /// safety").
    pub async fn describe(&mut self, sql: &str) -> Result<Description, Error> {
        self.call(async |actor| actor.conn().describe(sql).await).await
    }

    /// Runs every statement in `sql`, in order, without parameters. Stops at
    /// the first error; statements before it keep their effect unless they
    /// are inside a transaction that the caller rolls back.
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`].
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the statements before the one that was running
    /// keep their effect, as after an error; that one took effect wholly or not
    /// at all (see [`Actor`], "Cancel safety").
    pub async fn execute_batch(&mut self, sql: &str) -> Result<(), Error> {
        self.call(async |actor| actor.conn().run_batch(sql).await).await
    }

    /// Begins a transaction. Dropping the guard without committing rolls back.
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`] (for instance, a transaction is already open).
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, no transaction is left open.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        self.beginning = true;
        let begun = self.execute_batch("BEGIN").await;
        self.beginning = false;
        begun?;
        Ok(Transaction::new(self))
    }

    /// The rowid of the most recent successful INSERT.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] or a guest failure.
    ///
    /// # Cancel safety
    ///
    /// Dropping it is safe (see [`Actor`], "Cancel safety").
    pub async fn last_insert_rowid(&mut self) -> Result<i64, Error> {
        self.call(async |actor| Ok(actor.conn().last_rowid)).await
    }

    /// Sets the rowid [`Actor::last_insert_rowid`] and
    /// [`StatementResult::last_insert_rowid`] report until the next INSERT
    /// (0 is what a fresh connection has): for a server that hands one
    /// actor to one client after another, each seeing its own.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] or a guest failure.
    ///
    /// # Cancel safety
    ///
    /// Dropping it is safe (see [`Actor`], "Cancel safety"); a rebuilt
    /// instance starts from 0 anyway.
    pub async fn set_last_insert_rowid(&mut self, rowid: i64) -> Result<(), Error> {
        self.call(async |actor| actor.conn().set_last_rowid(rowid).await).await
    }

    /// Whether the connection is outside any explicit transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] or a guest failure.
    ///
    /// # Cancel safety
    ///
    /// Dropping it is safe (see [`Actor`], "Cancel safety").
    pub async fn is_autocommit(&mut self) -> Result<bool, Error> {
        self.call(async |actor| actor.conn().autocommit().await).await
    }

    /// Replaces the actor's whole database with the SQLite database file
    /// read from `source`, `size` bytes long, atomically: should the call
    /// fail or be cut off part-way (an error, a crash, a dropped future),
    /// the actor has its old database at its next call or wake, never a mix
    /// of the two and never nothing. The old pages go into a rollback journal
    /// first, and the journal's deletion is the commit point. Memory stays
    /// at a few MiB whatever the sizes.
    ///
    /// The file must be in rollback-journal mode with 4096-byte pages (what
    /// `wasqlite import` converts any SQLite file to). Nothing else in it is
    /// checked here: check a file from outside first (`PRAGMA
    /// integrity_check` with native SQLite), or run one on the actor after.
    ///
    /// # Errors
    ///
    /// [`Error::NotReplaced`] for a file that is not such a database, one
    /// past [`crate::Limits::max_database_size`], an open transaction, a
    /// short read, or a KV failure on the way; the old database stands.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the replacement has happened wholly or not
    /// at all; the next call rebuilds the instance from the KV, rolling a
    /// replacement that did not reach its commit point back.
    pub async fn replace_database(&mut self, source: &mut (dyn std::io::Read + Send), size: u64) -> Result<(), Error> {
        let not_replaced = |reason: String| Error::NotReplaced { reason };
        let cap = self.host.config.limits.max_database_size;
        if size == 0 || !size.is_multiple_of(CHUNK_SIZE as u64) || size > cap {
            return Err(not_replaced(format!("{size} bytes is not a whole number of 4096-byte pages up to the {cap}-byte cap")));
        }
        let mut first_page = vec![0u8; CHUNK_SIZE];
        source.read_exact(&mut first_page).map_err(|e| not_replaced(format!("reading page 1: {e}")))?;
        if &first_page[..16] != b"SQLite format 3\0" || first_page[16..18] != [0x10, 0x00] || first_page[18..20] != [1, 1] {
            return Err(not_replaced("the file is not an SQLite database in rollback-journal mode with 4096-byte pages".into()));
        }
        self.call(async |actor| {
            if !actor.conn().autocommit().await? {
                return Err(not_replaced("a transaction is open".into()));
            }
            // SQLite must not hold the old pages in its cache: close it, and
            // open a fresh instance over the result, replaced or not.
            let closed = actor.conn().close().await;
            let replaced = match closed {
                Ok(()) => {
                    let files = &mut actor.conn().store.data_mut().files;
                    replace_main_file(files, &first_page, source, size).await.map_err(not_replaced)
                }
                Err(e) => Err(e),
            };
            actor.reset("the database was replaced").await?;
            replaced
        })
        .await
    }

    /// Bytes of linear memory this actor's instance holds.
    pub fn memory_bytes(&self) -> usize {
        let Some(conn) = &self.conn else { return 0 };
        conn.store.data().memory.map_or(0, |m| m.data_size(&conn.store))
    }

    /// Closes the database and drops the instance. Its linear memory no
    /// longer belongs to the actor when this returns: released, or reset
    /// for the next actor in its pool slot (see [`crate::EngineConfig`]).
    ///
    /// # Errors
    ///
    /// The error from closing, if any; the instance is dropped regardless.
    ///
    /// # Cancel safety
    ///
    /// Dropping it drops the instance wherever it was: nothing acknowledged is
    /// lost, and a write already issued finishes on its own, with the next wake
    /// waiting for it.
    pub async fn sleep(mut self) -> Result<(), Error> {
        // A poisoned instance, or one whose last call was cut off, has
        // nothing worth closing: the KV already holds what it acknowledged.
        let result = if self.poisoned.is_some() || self.in_call {
            Ok(())
        } else {
            self.conn().store.data_mut().files.save_wake_hint().await;
            self.conn().close().await
        };
        let (host, id, fence) = (self.host.clone(), self.id.clone(), self.lease.fence);
        self.holds_lease = false;
        drop(self);
        inflight::settled(&host.kv, &id).await;
        host.release(&id, fence).await;
        result
    }

    /// Sleeps the actor and deletes all of its keys.
    ///
    /// # Errors
    ///
    /// The KV's error from deleting; a failure to close first is ignored,
    /// since the data is going away.
    ///
    /// # Cancel safety
    ///
    /// Dropped before the delete is issued, nothing is deleted; after, the
    /// delete finishes on its own and the next wake waits for it.
    pub async fn destroy(mut self) -> Result<(), Error> {
        if self.poisoned.is_none() && !self.in_call {
            let _ = self.conn().close().await;
        }
        // Drop the instance (and with it the awake mark) only after the
        // delete, so that no wake can race in between; should this future be
        // dropped first, the next wake waits for the delete instead.
        inflight::settled(&self.host.kv, &self.id).await;
        let result = self.host.delete_actor(&self.id, self.lease.fence).await;
        self.host.release(&self.id, self.lease.fence).await;
        self.holds_lease = false;
        drop(self);
        Ok(result?)
    }

    /// In exclusive locking mode SQLite keeps a rollback journal open once
    /// it has used one (the first transaction on an empty database, or a
    /// commit too large for one KV batch), and while it is open every later
    /// commit goes through it instead of the one-put batch-atomic path.
    /// Between transactions, switching journal_mode to MEMORY and back
    /// closes it.
    async fn release_journal(&mut self) {
        let conn = self.conn();
        let Ok(true) = conn.autocommit().await else { return };
        let mut rows = None;
        if conn.run_cached("PRAGMA journal_mode", &Params::None, RowSink::Collect(&mut rows)).await.is_err() {
            return;
        }
        let mode = rows.and_then(|r| r.get(0).and_then(|row| row.get::<String>(0).ok()));
        if mode.as_deref() != Some("delete") {
            return;
        }
        watchdog::set_trusted(&mut conn.store, true);
        let switched = conn.run_batch("PRAGMA journal_mode=MEMORY; PRAGMA journal_mode=DELETE").await;
        watchdog::set_trusted(&mut conn.store, false);
        if switched.is_err() {
            return;
        }
        // A cold journal is dead weight (up to a transaction's worth of
        // pages): delete it, as journal_mode=DELETE would outside exclusive
        // mode.
        conn.store.data_mut().files.delete_journal_if_cold().await;
    }

    /// Replaces the instance with a fresh one over the same KV. Statement
    /// handles and any open transaction die with the old instance.
    async fn reset(&mut self, because: &'static str) -> Result<(), Error> {
        // Drop the old instance first: its pool slot may be the only one
        // free for the new one.
        self.meter_instance();
        self.conn = None;
        self.rows_seen = (0, 0);
        self.conn = Some(self.host.instantiate(&self.id, &self.interrupt, self.lease.fence, None).await?);
        self.usage.wakes += 1;
        tracing::info!(actor = %self.id, "instance rebuilt from the KV: {because}");
        self.rollback_pending = false;
        self.beginning = false;
        self.generation += 1;
        self.rebuilt_because = because;
        Ok(())
    }

    /// The previous call's future was dropped before it returned. Its guest
    /// call may have been unwound mid-statement (a dropped fiber traps out of
    /// the guest), leaving SQLite's memory half-updated, and its host-side
    /// buffers may hold writes that never reached the KV. What the KV holds
    /// is always a state SQLite recovers from, so: wait until no write of
    /// that call can still land, then rebuild the instance from the KV. An
    /// open transaction is lost with the old instance.
    async fn recover_from_cancellation(&mut self) -> Result<(), Error> {
        self.rebuild_after_broken_call("a call was cancelled before it returned").await
    }

    /// Rebuilds an instance whose last call did not run to its end (it was
    /// cut off, or trapped): notes a transaction that dies with it, waits
    /// until no write of that call can still land, and rebuilds from the KV.
    async fn rebuild_after_broken_call(&mut self, because: &'static str) -> Result<(), Error> {
        // Reading the autocommit flag is a field read in the old SQLite, safe
        // even where a statement was cut off; a failure counts as "open".
        // With no instance left (an earlier rebuild failed), that attempt
        // recorded it already.
        if let Some(conn) = &mut self.conn {
            let transaction_open = !matches!(conn.autocommit().await, Ok(true));
            // A dropped `Transaction` guard, or a dropped `transaction()`,
            // had given the transaction up already.
            self.transaction_aborted |= transaction_open && !self.rollback_pending && !self.beginning;
        }
        inflight::settled(&self.host.kv, &self.id).await;
        self.reset(because).await
    }

    /// The guest trapped (or broke the ABI) part-way through a call, so its
    /// SQLite may be half-updated: rebuild the instance from the KV, as after
    /// a cancelled call, and report `error` once. A transaction that was
    /// open is gone, which the next call reports. Only when the rebuild
    /// fails does the actor stay unusable.
    async fn recover_from_trap(&mut self, error: Error) -> Error {
        let may_have_committed = self.conn().store.data().files.may_have_committed();
        if let Err(e) = self.rebuild_after_broken_call("the guest trapped").await {
            self.poisoned = Some(format!("{error}; rebuilding the instance then failed: {e}"));
        }
        if may_have_committed { Error::OutcomeUnknown { source: Box::new(error) } } else { error }
    }

    /// The connection, which every call reaches only while the actor is
    /// not poisoned.
    fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("a call reached an actor whose instance could not be rebuilt")
    }

    /// Whether a failure left the actor unusable until it sleeps.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// What a call checks before it runs, without running one: refuses a
    /// poisoned actor and renews the lease when due (which finds out
    /// whether another host has claimed the actor).
    pub(crate) async fn check_usable(&mut self) -> Result<(), Error> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned { id: self.id.clone(), reason: reason.clone() });
        }
        self.keep_lease(Instant::now()).await.map(drop)
    }

    /// The instance generation a `Transaction` begins under.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The error for a transaction that did not outlive its instance; the
    /// loss is reported once.
    pub(crate) fn aborted_transaction(&mut self) -> Error {
        self.transaction_aborted = false;
        Error::TransactionAborted { id: self.id.clone(), reason: self.rebuilt_because }
    }

    pub(crate) fn schedule_rollback(&mut self) {
        self.rollback_pending = true;
    }

    /// COMMIT, rolling back if it fails.
    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        self.call(async |actor| {
            let result = actor.conn().run_batch("COMMIT").await;
            if result.is_err() {
                actor.rollback_if_open().await;
            }
            result
        })
        .await
    }

    /// Rolls back an open transaction, if there is one; errors are moot.
    async fn rollback_if_open(&mut self) {
        if let Ok(false) = self.conn().autocommit().await {
            let _ = self.conn().run_batch("ROLLBACK").await;
        }
    }

    /// Runs one API call: refuses a poisoned actor, recovers from a call
    /// that was cancelled part-way, settles a pending rollback, and
    /// afterwards makes sure nothing written stays only in host memory.
    ///
    /// Every guest call of the API goes through here, so that a future
    /// dropped at any await point leaves `in_call` set behind it.
    async fn call<R>(&mut self, f: impl AsyncFnOnce(&mut Actor) -> Result<R, Error>) -> Result<R, Error> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned { id: self.id.clone(), reason: reason.clone() });
        }
        // One clock read serves the lease check, the deadline and the
        // metering (a read costs as much as a tenth of a point SELECT's host
        // work); it is read again only after something that waited.
        let mut started = Instant::now();
        if self.keep_lease(started).await? {
            started = Instant::now();
        }
        if self.in_call {
            self.recover_from_cancellation().await?;
            started = Instant::now();
        }
        if self.transaction_aborted {
            return Err(self.aborted_transaction());
        }
        self.in_call = true;
        let timeout = self.call_timeout;
        watchdog::arm(&mut self.conn().store, timeout, started);
        let result = self.run_call(f).await;
        let ended = Instant::now();
        self.in_call = false;
        self.usage.calls += 1;
        self.usage.call_time += ended - started;
        self.meter_instance();
        if let Err(e) = &result {
            count_failure(e);
        }
        if self.poisoned.is_none() && !self.lease.is_valid(ended) {
            // The call outlived the lease: another host may have claimed the
            // actor meanwhile, and what this one read may be stale. A renewal
            // under the same fence proves nobody did. (A write under a stale
            // fence would have failed already.)
            if let Err(e) = self.keep_lease(ended).await {
                let may_have_committed = self.conn.as_ref().is_some_and(|c| c.store.data().files.may_have_committed());
                return Err(if may_have_committed { Error::OutcomeUnknown { source: Box::new(e) } } else { e });
            }
        }
        result
    }

    /// Renews the lease when, at `now`, it is past half its life; whether
    /// it went to the KV. Refuses the call when another host has claimed the
    /// actor (which poisons it here), or when the lease ran out and cannot
    /// be renewed.
    async fn keep_lease(&mut self, now: Instant) -> Result<bool, Error> {
        if !self.lease.wants_renewal(now) {
            return Ok(false);
        }
        let kv = self.host.kv.clone();
        match within(self.host.kv_timeout(), "a lease renewal", self.lease.renew(&*kv, &self.id)).await {
            Ok(()) => Ok(true),
            Err(lost @ KvError::OwnershipLost { .. }) => Err(self.lose_ownership(lost)),
            Err(e) if self.lease.is_valid(Instant::now()) => {
                tracing::warn!(actor = %self.id, "renewing the lease failed, retrying at the next call: {e}");
                Ok(true)
            }
            Err(e) => Err(Error::Kv(e)),
        }
    }

    /// Poisons the actor: another host owns it now.
    fn lose_ownership(&mut self, lost: KvError) -> Error {
        self.poisoned = Some(format!("another host owns the actor now ({lost})"));
        Error::OwnershipLost { id: self.id.clone(), source: lost }
    }

    async fn run_call<R>(&mut self, f: impl AsyncFnOnce(&mut Actor) -> Result<R, Error>) -> Result<R, Error> {
        self.conn().store.data_mut().files.begin_call();
        self.conn().finalize_retired().await?;
        if self.rollback_pending {
            self.rollback_pending = false;
            self.rollback_if_open().await;
        }
        let result = f(self).await;
        let stopped = watchdog::disarm(&mut self.conn().store);
        self.conn().store.data_mut().files.end_wake_window();
        let result = match result {
            Err(error @ (Error::Guest { .. } | Error::TooComplex)) => {
                let error = stopped.map_or(error, stop_error);
                return Err(self.recover_from_trap(error).await);
            }
            Err(e) if stopped.is_some() && e.sqlite_code().is_some_and(|c| c & 0xff == sqlite::SQLITE_INTERRUPT) => {
                Err(stop_error(stopped.expect("checked")))
            }
            other => other,
        };
        if self.poisoned.is_none() && self.conn().store.data().files.is_open(FileTag::Journal) {
            self.release_journal().await;
        }
        if self.poisoned.is_some() {
            return result;
        }
        // With synchronous=OFF SQLite never syncs; flush here so that a
        // statement that returned has reached the KV.
        let mut result = result;
        if self.conn().store.data().files.has_unflushed() {
            let rc = self.conn().store.data_mut().files.flush_all().await;
            if rc != sqlite::SQLITE_OK && result.is_ok() {
                let storage = self.conn().store.data_mut().files.take_last_error();
                let message = "the statement ran, but its writes did not reach the KV".into();
                result = Err(Error::Sqlite { code: rc, message, storage });
            }
        }
        // A failed write after one that may have been a commit point: only
        // the KV knows whether the transaction committed, and the caller
        // must not take the error for "nothing happened".
        let files = &mut self.conn().store.data_mut().files;
        let write_failed = files.take_write_failed();
        let timed_out = files.write_timed_out();
        if let Some(lost) = files.ownership_lost().cloned() {
            return Err(self.lose_ownership(lost));
        }
        if write_failed && (timed_out || files.may_have_committed()) {
            result = result.map_err(|e| Error::OutcomeUnknown { source: Box::new(e) });
        }
        if timed_out {
            // The write may land yet, maybe as the commit: a rebuild now
            // could read the KV before it does. The next wake waits for it.
            self.poisoned = Some("a KV write did not answer in time and may still land; sleep the actor and wake it again".into());
            return result;
        }
        // After a failed KV write the guest may hold pages and a journal that
        // the KV never got. Its durable state is exactly what the KV holds,
        // so start over from there: a fresh instance recovers any hot journal
        // and reads only committed data. The warm cache is the only loss.
        if write_failed
            && (result.is_err() || self.conn().store.data().files.has_unflushed())
            && let Err(e) = self.reset("a KV write failed").await
        {
            self.poisoned = Some(format!("restarting after a failed KV write: {e}"));
        }
        result
    }

    /// Brings the schema up to `migrations.latest()`. Migrations are the
    /// host's own SQL: they run with no call timeout, past the authorizer.
    pub(crate) async fn migrate(&mut self, migrations: &Migrations) -> Result<(), Error> {
        let timeout = self.call_timeout.take();
        watchdog::set_trusted(&mut self.conn().store, true);
        let result = self.run_migrations(migrations).await;
        watchdog::set_trusted(&mut self.conn().store, false);
        self.call_timeout = timeout;
        result
    }

    async fn run_migrations(&mut self, migrations: &Migrations) -> Result<(), Error> {
        let current: i64 = self.query_row("PRAGMA user_version", ()).await?.get(0)?;
        let current = usize::try_from(current).unwrap_or(usize::MAX);
        if current > migrations.latest() {
            return Err(Error::Migration {
                version: current,
                source: Box::new(Error::Config(format!(
                    "the database is at schema version {current}, newer than the {} migrations this host knows",
                    migrations.latest()
                ))),
            });
        }
        for (i, step) in migrations.steps().iter().enumerate().skip(current) {
            let version = i + 1;
            let result = async {
                let mut tx = self.transaction().await?;
                tx.execute_batch(step).await?;
                // user_version takes no bound parameter; `version` is ours.
                tx.execute_batch(&format!("PRAGMA user_version = {version}")).await?;
                tx.commit().await
            }
            .await;
            if let Err(source) = result {
                self.rollback_if_open().await;
                return Err(Error::Migration { version, source: Box::new(source) });
            }
        }
        Ok(())
    }
}

/// What a guest's running total `now` adds since it was `seen`. The total
/// is untrusted: one that went down is taken as a fresh start, a negative one
/// as zero.
fn reported_since(now: i64, seen: i64) -> u64 {
    if now >= seen { now.abs_diff(seen) } else { now.max(0) as u64 }
}

/// Counts the failures an operator watches for.
fn count_failure(error: &Error) {
    match error {
        Error::Timeout { .. } => metrics::counter!("wasqlite_call_timeouts_total").increment(1),
        Error::Poisoned { .. } | Error::OwnershipLost { .. } => metrics::counter!("wasqlite_refused_calls_total").increment(1),
        _ => {}
    }
}

/// The error for a call the watchdog stopped.
fn stop_error(reason: StopReason) -> Error {
    match reason {
        StopReason::Deadline(timeout) => Error::Timeout { timeout },
        StopReason::Interrupted => Error::Interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::reported_since;

    #[test]
    fn hostile_row_counters_never_underflow_or_wrap() {
        assert_eq!(reported_since(150, 100), 50);
        assert_eq!(reported_since(100, 100), 0);
        assert_eq!(reported_since(30, 100), 30, "a total that went down starts afresh");
        assert_eq!(reported_since(-5, 100), 0);
        assert_eq!(reported_since(i64::MIN, 0), 0);
        assert_eq!(reported_since(i64::MAX, i64::MIN), u64::MAX, "the widest jump still fits");
        assert_eq!(reported_since(i64::MAX, -1), i64::MAX as u64 + 1);
    }
}

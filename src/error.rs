//! `Error`: everything that can go wrong, in one enum.
//!
//! SQLite's own failures keep its extended result code and message
//! ([`Error::Sqlite`]); when the VFS caused them (a KV failure, a batch that
//! broke a limit), the VFS's description rides along in `storage`. Guest traps and
//! ABI problems are kept apart from SQL errors: the actor rebuilds its
//! instance from the KV after them, and is poisoned only if that fails.

use crate::actor_id::ActorId;
use crate::kv::KvError;

/// The error type of every fallible call in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite returned an error.
    #[error("{message} ({}){}", code_name(*code), storage.as_ref().map(|k| format!("; storage: {k}")).unwrap_or_default())]
    Sqlite {
        /// SQLite's extended result code.
        code: i32,
        /// SQLite's message (`sqlite3_errmsg`).
        message: String,
        /// The storage layer's description of what failed, when the KV or
        /// the VFS caused the error.
        storage: Option<String>,
    },
    /// A KV call made by the host itself (not through SQLite) failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The guest trapped or broke the ABI while the host was `context`. The
    /// actor has rebuilt its instance from the KV; nothing of the call was
    /// committed unless the error is wrapped in [`Error::OutcomeUnknown`].
    #[error("guest failure while {context}: {message}")]
    Guest {
        /// What the host was doing.
        context: &'static str,
        /// The trap or the broken expectation, in one line.
        message: String,
        /// The engine's error behind a trap, with its whole chain.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The guest module speaks another ABI version.
    #[error("the guest module has ABI version {found}, this host speaks {expected}; rebuild it with wasm/build.sh")]
    AbiMismatch {
        /// The host's version.
        expected: i32,
        /// The module's version.
        found: i32,
    },
    /// An actor id broke the rules of [`ActorId::new`].
    #[error("invalid actor id {id:?}: {reason}")]
    InvalidActorId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The actor is already awake on this host; one instance per actor.
    #[error("actor {id} is already awake on this host")]
    AlreadyAwake {
        /// The actor.
        id: ActorId,
    },
    /// Another host took the actor over: this host's claim is stale, nothing
    /// it writes lands, and the actor is poisoned here. Sleep it; wake it
    /// again only if this host should own it.
    #[error("actor {id} is owned by another host now: {source}")]
    OwnershipLost {
        /// The actor.
        id: ActorId,
        /// What the store said.
        source: KvError,
    },
    /// An earlier failure left the actor's instance untrustworthy.
    #[error("actor {id} is unusable after an earlier failure ({reason}); sleep it and wake it again")]
    Poisoned {
        /// The actor.
        id: ActorId,
        /// The failure that poisoned it.
        reason: String,
    },
    /// The number of positional parameters does not match the statement.
    #[error("the statement has {expected} parameters but {given} were given")]
    ParameterCount {
        /// Parameters in the SQL.
        expected: usize,
        /// Parameters passed.
        given: usize,
    },
    /// A named parameter does not appear in the statement.
    #[error("the statement has no parameter named {name}")]
    UnknownParameter {
        /// The name as the parameters gave it.
        name: String,
    },
    /// `execute` or `query` got more than one statement.
    #[error("more than one statement given; use execute_batch for several")]
    MultipleStatements,
    /// Every slot of the instance pool holds an awake actor.
    #[error("all {slots} instance slots of this process are held by awake actors; sleep one, or raise EngineConfig::pooling")]
    PoolFull {
        /// The pool's size.
        slots: u32,
    },
    /// `execute_many` failed on one of its parameter sets.
    #[error("parameter set {index}: {source}")]
    ParameterSet {
        /// Its position, from 0.
        index: usize,
        /// What went wrong with it.
        source: Box<Error>,
    },
    /// A write failed after a point where its transaction may already have
    /// committed (a KV write failed after another that may have been the
    /// commit point). The actor has been rebuilt from the KV, which says
    /// whether it did: read it back to know.
    #[error("the write's outcome is unknown: it may or may not have committed; {source}")]
    OutcomeUnknown {
        /// The failure.
        source: Box<Error>,
    },
    /// The transaction was rolled back under the caller, with the instance
    /// it lived in: an earlier call in it was cancelled part-way, or a KV
    /// write failed, and the actor was rebuilt from the KV. Nothing of it
    /// was committed; the actor is usable again.
    #[error("the open transaction of actor {id} was rolled back ({reason}); nothing of it was committed")]
    TransactionAborted {
        /// The actor.
        id: ActorId,
        /// Why its instance was rebuilt.
        reason: &'static str,
    },
    /// The call ran past its timeout ([`crate::Limits::call_timeout`]) and was
    /// stopped; its statement was rolled back and the actor is usable.
    #[error("the call ran past its timeout of {timeout:?} and was stopped; its statement was rolled back")]
    Timeout {
        /// The timeout it ran under.
        timeout: std::time::Duration,
    },
    /// The call was stopped through an [`crate::InterruptHandle`]; its
    /// statement was rolled back and the actor is usable.
    #[error("the call was interrupted; its statement was rolled back")]
    Interrupted,
    /// A query's rows outgrew [`crate::Limits::max_result_bytes`]; nothing
    /// was changed.
    #[error("the query's rows outgrew the {limit}-byte cap for one result; read them with query_batches")]
    ResultTooBig {
        /// The cap.
        limit: usize,
    },
    /// The statement nested too deeply (views of views, subqueries,
    /// triggers) for the guest's stack. The actor was rebuilt from the KV
    /// and is usable; nothing of the statement was committed.
    #[error("the statement is nested too deeply for the guest's stack; simplify it (fewer nested views, subqueries or triggers)")]
    TooComplex,
    /// `Actor::replace_database` did not replace the database; the old one
    /// stands.
    #[error("the database was not replaced: {reason}; the old database stands")]
    NotReplaced {
        /// What stopped it.
        reason: String,
    },
    /// `query_row` found no row.
    #[error("the query returned no rows")]
    NoRows,
    /// A column index past the end of the row.
    #[error("column {index} does not exist; the row has {count} columns")]
    ColumnIndex {
        /// The index asked for.
        index: usize,
        /// Columns in the row.
        count: usize,
    },
    /// No column of the row has this name.
    #[error("the row has no column named '{name}'")]
    UnknownColumn {
        /// The name asked for.
        name: String,
    },
        /// A column holds a value that does not convert to the requested type.
    #[error("column {index} holds {found}, which is not {expected}")]
    ColumnType {
        /// The column.
        index: usize,
        /// The Rust type asked for.
        expected: &'static str,
        /// What the column holds.
        found: &'static str,
    },
    /// A value too large to pass to the guest.
    #[error("{what} of {len} bytes is too large for the guest")]
    TooBig {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
    },
    /// A migration step failed; the actor's schema is unchanged.
    #[error("migration to schema version {version} failed: {source}")]
    Migration {
        /// The `user_version` the step would have reached.
        version: usize,
        /// Why it failed.
        source: Box<Error>,
    },
    /// The engine could not compile, load or cache the guest module.
    #[error("engine: {0}")]
    Engine(String),
    /// A setting that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The [`crate::Manager`] found no room to wake the actor within
    /// [`crate::ManagerConfig::wait_for_room`]: every awake actor was busy
    /// or held, or the instance pool was full.
    #[error("no room to wake actor {id} after waiting {waited:?}: {why}")]
    Overloaded {
        /// The actor that was to wake.
        id: ActorId,
        /// How long the call waited.
        waited: std::time::Duration,
        /// What held the room: the budget or the pool.
        why: String,
    },
    /// The [`crate::Manager`] is shutting down and admits no new calls.
    #[error("the actor manager is shutting down; actor {id} was not reached")]
    ShuttingDown {
        /// The actor the call was for.
        id: ActorId,
    },
    /// A [`crate::Session`] ended before this call: it sat unused past its
    /// timeout, or its actor had to be rebuilt. A transaction it had open was
    /// rolled back.
    #[error("the session on actor {id} has ended ({reason}); an open transaction was rolled back")]
    SessionEnded {
        /// The actor.
        id: ActorId,
        /// Why.
        reason: &'static str,
    },
}

impl Error {
    /// The guest broke an expectation of the ABI while the host was `context`.
    pub(crate) fn guest(context: &'static str, message: impl Into<String>) -> Error {
        Error::Guest { context, message: message.into(), source: None }
    }

    /// The engine failed a guest call (a trap, a dropped fiber) while the
    /// host was `context`: the root cause is the message, the whole error
    /// the source.
    pub(crate) fn trap(context: &'static str, error: wasmtime::Error) -> Error {
        if let Some(wasmtime::Trap::StackOverflow) = error.downcast_ref::<wasmtime::Trap>() {
            return Error::TooComplex;
        }
        let message = error.root_cause().to_string();
        Error::Guest { context, message, source: Some(error.into()) }
    }

    /// SQLite's extended result code, for [`Error::Sqlite`] and the error
    /// inside [`Error::ParameterSet`] or [`Error::OutcomeUnknown`].
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            Error::Sqlite { code, .. } => Some(*code),
            Error::ParameterSet { source, .. } | Error::OutcomeUnknown { source } => source.sqlite_code(),
            Error::Timeout { .. } | Error::Interrupted => Some(crate::codes::SQLITE_INTERRUPT),
            _ => None,
        }
    }

    /// Whether a storage failure caused this: an SQLite I/O error
    /// (SQLITE_IOERR and its extended codes), which is how the KV's failures
    /// surface inside SQL, or a KV call of the host's own (a wake's claim)
    /// that failed or timed out.
    pub fn is_io_error(&self) -> bool {
        match self {
            Error::Kv(KvError::Backend(_) | KvError::Timeout { .. }) => true,
            Error::OutcomeUnknown { source } => source.is_io_error(),
            _ => self.sqlite_code().is_some_and(|c| c & 0xff == crate::codes::SQLITE_IOERR),
        }
    }
}

/// A readable name for an SQLite result code, e.g. `SQLITE_IOERR_WRITE`.
pub fn code_name(code: i32) -> String {
    use crate::codes as f;
    let extended = match code {
        f::SQLITE_IOERR_READ => Some("SQLITE_IOERR_READ"),
        f::SQLITE_IOERR_SHORT_READ => Some("SQLITE_IOERR_SHORT_READ"),
        f::SQLITE_IOERR_WRITE => Some("SQLITE_IOERR_WRITE"),
        f::SQLITE_IOERR_FSYNC => Some("SQLITE_IOERR_FSYNC"),
        f::SQLITE_IOERR_TRUNCATE => Some("SQLITE_IOERR_TRUNCATE"),
        f::SQLITE_IOERR_DELETE => Some("SQLITE_IOERR_DELETE"),
        f::SQLITE_IOERR_CLOSE => Some("SQLITE_IOERR_CLOSE"),
        f::SQLITE_CONSTRAINT_UNIQUE => Some("SQLITE_CONSTRAINT_UNIQUE"),
        f::SQLITE_CONSTRAINT_PRIMARYKEY => Some("SQLITE_CONSTRAINT_PRIMARYKEY"),
        f::SQLITE_CONSTRAINT_NOTNULL => Some("SQLITE_CONSTRAINT_NOTNULL"),
        f::SQLITE_CONSTRAINT_FOREIGNKEY => Some("SQLITE_CONSTRAINT_FOREIGNKEY"),
        f::SQLITE_CONSTRAINT_CHECK => Some("SQLITE_CONSTRAINT_CHECK"),
        _ => None,
    };
    if let Some(name) = extended {
        return name.to_owned();
    }
    let primary = match code & 0xff {
        f::SQLITE_ERROR => "SQLITE_ERROR",
        f::SQLITE_INTERNAL => "SQLITE_INTERNAL",
        f::SQLITE_PERM => "SQLITE_PERM",
        f::SQLITE_ABORT => "SQLITE_ABORT",
        f::SQLITE_BUSY => "SQLITE_BUSY",
        f::SQLITE_LOCKED => "SQLITE_LOCKED",
        f::SQLITE_NOMEM => "SQLITE_NOMEM",
        f::SQLITE_READONLY => "SQLITE_READONLY",
        f::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        f::SQLITE_IOERR => "SQLITE_IOERR",
        f::SQLITE_CORRUPT => "SQLITE_CORRUPT",
        f::SQLITE_NOTFOUND => "SQLITE_NOTFOUND",
        f::SQLITE_FULL => "SQLITE_FULL",
        f::SQLITE_CANTOPEN => "SQLITE_CANTOPEN",
        f::SQLITE_PROTOCOL => "SQLITE_PROTOCOL",
        f::SQLITE_SCHEMA => "SQLITE_SCHEMA",
        f::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        f::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        f::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        f::SQLITE_MISUSE => "SQLITE_MISUSE",
        f::SQLITE_RANGE => "SQLITE_RANGE",
        f::SQLITE_NOTADB => "SQLITE_NOTADB",
        _ => "SQLite code",
    };
    if code & 0xff == code { primary.to_owned() } else { format!("{primary}, extended code {code}") }
}

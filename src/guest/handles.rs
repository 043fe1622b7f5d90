//! What the guest's pointers point to, as types. The guest hands back bare
//! i32 addresses; naming them keeps a statement from being passed where a
//! connection or a buffer is expected, and gives each prepared statement
//! exactly one owner.

/// A guest address: a staged argument, an out-parameter, a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuestPtr(pub(crate) i32);

impl GuestPtr {
    /// `bytes` further on.
    pub(crate) fn offset(self, bytes: usize) -> Option<GuestPtr> {
        i32::try_from(bytes).ok().and_then(|b| self.0.checked_add(b)).map(GuestPtr)
    }
}

/// The guest's `sqlite3*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DbHandle(pub(crate) i32);

/// The guest's `sqlite3_stmt*`, owned. Neither `Clone` nor `Copy`: whoever
/// holds it (the statement cache, or a statement of a batch) hands it to
/// `Connection::retire`, the one path to `sqlite3_finalize`. Calls that run
/// the statement take a [`StmtRef`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StmtHandle(i32);

impl StmtHandle {
    /// The handle for a guest statement pointer; `None` for null, which
    /// the guest returns for SQL text with no statement in it.
    pub(crate) fn new(raw: i32) -> Option<StmtHandle> {
        (raw != 0).then_some(StmtHandle(raw))
    }

    /// A use of the statement for the length of one call.
    pub(crate) fn as_ref(&self) -> StmtRef {
        StmtRef(self.0)
    }

    /// The pointer, for the call that finalizes it.
    pub(crate) fn into_raw(self) -> i32 {
        self.0
    }
}

/// A live statement, borrowed for the calls of one API call. Statements are
/// finalized only between API calls, so a `StmtRef` never outlives its
/// statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StmtRef(pub(crate) i32);

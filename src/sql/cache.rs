//! `StatementCache`: prepared statements kept inside the guest between
//! calls, keyed by SQL text, so that a repeated statement skips the parser
//! (and a repeated query skips fetching its columns).
//!
//! Invariants:
//! 1. The cache owns each cached statement's handle; it gives one up only
//!    by eviction or `drain`, to the caller, who retires it
//!    (`Connection::retire`).
//! 2. Every cached statement is reset (the guest resets a statement when it
//!    finishes or fails), so it can run again at any time.
//! 3. An entry's columns are those of its `Shape`: a run that finds the
//!    statement re-prepared with other columns (after a schema change)
//!    replaces both (`set_shape`).

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::guest::exports::{Prepared, Shape};
use crate::guest::handles::{StmtHandle, StmtRef};
use crate::sql::result::ColumnSet;

/// Statements kept at most; the oldest is evicted to make room.
pub(crate) const CAPACITY: usize = 32;

struct Entry {
    prepared: Prepared,
    /// What the statement's rows look like as far as the host knows.
    shape: Shape,
    columns: Option<Arc<ColumnSet>>,
}

/// A cached statement, lent for one call.
#[derive(Clone)]
pub(crate) struct Cached {
    pub(crate) stmt: StmtRef,
    pub(crate) param_count: usize,
    pub(crate) shape: Shape,
    /// Its columns, once a call has needed them; those of `shape`.
    pub(crate) columns: Option<Arc<ColumnSet>>,
}

impl Entry {
    fn lend(&self) -> Cached {
        Cached {
            stmt: self.prepared.stmt.as_ref(),
            param_count: self.prepared.param_count,
            shape: self.shape,
            columns: self.columns.clone(),
        }
    }
}

#[derive(Default)]
pub(crate) struct StatementCache {
    statements: FxHashMap<Box<str>, Entry>,
    /// Insertion order, oldest first.
    order: VecDeque<Box<str>>,
}

impl StatementCache {
    pub(crate) fn get(&self, sql: &str) -> Option<Cached> {
        self.statements.get(sql).map(Entry::lend)
    }

    /// Adds a new statement and lends it back, with the handle evicted to
    /// make room, if any.
    pub(crate) fn insert(&mut self, sql: &str, prepared: Prepared) -> (Cached, Option<StmtHandle>) {
        let evicted = if self.statements.len() >= CAPACITY {
            self.order.pop_front().and_then(|oldest| self.statements.remove(&oldest)).map(|e| e.prepared.stmt)
        } else {
            None
        };
        // SQLite starts a statement's re-prepare counter at 0.
        let shape = Shape { column_count: prepared.column_count, reprepares: 0 };
        let entry = Entry { prepared, shape, columns: None };
        let lent = entry.lend();
        self.order.push_back(sql.into());
        self.statements.insert(sql.into(), entry);
        (lent, evicted)
    }

    pub(crate) fn set_columns(&mut self, sql: &str, columns: Arc<ColumnSet>) {
        if let Some(entry) = self.statements.get_mut(sql) {
            entry.columns = Some(columns);
        }
    }

    /// Records what a run found the statement's rows to be, with their
    /// columns when it fetched them (`None`: the next call that needs them
    /// fetches them).
    pub(crate) fn set_shape(&mut self, sql: &str, shape: Shape, columns: Option<Arc<ColumnSet>>) {
        if let Some(entry) = self.statements.get_mut(sql) {
            entry.shape = shape;
            entry.columns = columns;
        }
    }

    /// Takes one statement out of the cache, as a query stopped part-way
    /// must be: it is not reset, which breaks invariant 2.
    pub(crate) fn remove(&mut self, sql: &str) -> Option<StmtHandle> {
        self.order.retain(|s| &**s != sql);
        self.statements.remove(sql).map(|e| e.prepared.stmt)
    }

    /// Every cached handle, emptying the cache.
    pub(crate) fn drain(&mut self) -> Vec<StmtHandle> {
        self.order.clear();
        self.statements.drain().map(|(_, e)| e.prepared.stmt).collect()
    }
}

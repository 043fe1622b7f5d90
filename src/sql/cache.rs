//! `StatementCache`: prepared statements kept inside the guest between
//! calls, keyed by SQL text, so that a repeated statement skips the parser
//! (and a repeated query skips fetching its column names). The cache owns
//! the guest handles; `Actor::sleep` finalizes them all.
//!
//! Invariant: every cached statement is reset (the guest resets a statement
//! when it finishes or fails), so it can run again at any time.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::guest::exports::Prepared;

/// Statements kept at most; the oldest is finalized to make room.
pub(crate) const CAPACITY: usize = 32;

/// A prepared statement and, once a query has needed them, its column names.
#[derive(Clone)]
pub(crate) struct CachedStatement {
    pub(crate) prepared: Prepared,
    pub(crate) columns: Option<Arc<[String]>>,
}

#[derive(Default)]
pub(crate) struct StatementCache {
    statements: FxHashMap<Box<str>, CachedStatement>,
    /// Insertion order, oldest first.
    order: VecDeque<Box<str>>,
}

impl StatementCache {
    pub(crate) fn get(&self, sql: &str) -> Option<CachedStatement> {
        self.statements.get(sql).cloned()
    }

    /// Adds a new statement; yields the handle evicted, if any, for the
    /// caller to finalize.
    pub(crate) fn insert(&mut self, sql: &str, prepared: Prepared) -> Option<Prepared> {
        let evicted = if self.statements.len() >= CAPACITY {
            self.order.pop_front().and_then(|oldest| self.statements.remove(&oldest)).map(|c| c.prepared)
        } else {
            None
        };
        self.order.push_back(sql.into());
        self.statements.insert(sql.into(), CachedStatement { prepared, columns: None });
        evicted
    }

    pub(crate) fn set_columns(&mut self, sql: &str, columns: Arc<[String]>) {
        if let Some(entry) = self.statements.get_mut(sql) {
            entry.columns = Some(columns);
        }
    }

    /// Every cached handle, emptying the cache.
    pub(crate) fn drain(&mut self) -> Vec<Prepared> {
        self.order.clear();
        self.statements.drain().map(|(_, s)| s.prepared).collect()
    }
}

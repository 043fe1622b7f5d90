//! `StatementCache`: prepared statements kept inside the guest between
//! calls, keyed by SQL text, so that a repeated statement skips the parser.
//! The cache owns the guest handles; `Actor::sleep` finalizes them all.

use std::collections::{HashMap, VecDeque};

use crate::guest::exports::Prepared;

/// Statements kept at most; the oldest is finalized to make room.
pub(crate) const CAPACITY: usize = 32;

#[derive(Default)]
pub(crate) struct StatementCache {
    statements: HashMap<Box<str>, Prepared>,
    /// Insertion order, oldest first.
    order: VecDeque<Box<str>>,
}

impl StatementCache {
    /// Takes the statement for `sql` out of the cache while it runs.
    pub(crate) fn take(&mut self, sql: &str) -> Option<Prepared> {
        self.statements.remove(sql)
    }

    /// Returns a (reset) statement; yields the handle evicted, if any, for
    /// the caller to finalize.
    pub(crate) fn put(&mut self, sql: &str, stmt: Prepared) -> Option<Prepared> {
        if !self.order.iter().any(|s| &**s == sql) {
            self.order.push_back(sql.into());
        }
        self.statements.insert(sql.into(), stmt);
        if self.statements.len() <= CAPACITY {
            return None;
        }
        while let Some(oldest) = self.order.pop_front() {
            if let Some(evicted) = self.statements.remove(&oldest) {
                return Some(evicted);
            }
        }
        None
    }

    /// Every cached handle, emptying the cache.
    pub(crate) fn drain(&mut self) -> Vec<Prepared> {
        self.order.clear();
        self.statements.drain().map(|(_, s)| s).collect()
    }
}

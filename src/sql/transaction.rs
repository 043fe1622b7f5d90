//! `Transaction`: a guard over `BEGIN` .. `COMMIT`. Dropping it without
//! `commit` rolls the transaction back before the actor's next call (or at
//! sleep, when SQLite closes the database).

use crate::actor::Actor;
use crate::error::Error;
use crate::sql::params::Params;
use crate::sql::row::{Row, Rows};

/// An open transaction on an actor.
pub struct Transaction<'a> {
    actor: &'a mut Actor,
    finished: bool,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(actor: &'a mut Actor) -> Self {
        Transaction { actor, finished: false }
    }

    /// As [`Actor::execute`].
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`]; the transaction stays open.
    pub async fn execute(&mut self, sql: &str, params: impl Into<Params>) -> Result<u64, Error> {
        self.actor.execute(sql, params).await
    }

    /// [`Actor::execute_many`] inside this transaction: the sets before a
    /// failing one keep their effect until the transaction rolls back.
    ///
    /// # Errors
    ///
    /// As [`Actor::execute_many`].
    pub async fn execute_many<P: Into<Params>>(&mut self, sql: &str, sets: impl IntoIterator<Item = P>) -> Result<u64, Error> {
        self.actor.many(sql, sets.into_iter().map(Into::into)).await
    }

    /// As [`Actor::execute_batch`].
    ///
    /// # Errors
    ///
    /// As [`Actor::execute_batch`]; the transaction stays open.
    pub async fn execute_batch(&mut self, sql: &str) -> Result<(), Error> {
        self.actor.execute_batch(sql).await
    }

    /// As [`Actor::query`].
    ///
    /// # Errors
    ///
    /// As [`Actor::query`].
    pub async fn query(&mut self, sql: &str, params: impl Into<Params>) -> Result<Rows, Error> {
        self.actor.query(sql, params).await
    }

    /// As [`Actor::query_row`].
    ///
    /// # Errors
    ///
    /// As [`Actor::query_row`].
    pub async fn query_row(&mut self, sql: &str, params: impl Into<Params>) -> Result<Row, Error> {
        self.actor.query_row(sql, params).await
    }

    /// Commits. On error the transaction is rolled back.
    ///
    /// # Errors
    ///
    /// SQLite's error from `COMMIT` (a storage failure, a deferred foreign
    /// key violation).
    pub async fn commit(mut self) -> Result<(), Error> {
        self.finished = true;
        let result = self.actor.execute_batch("COMMIT").await;
        if result.is_err() {
            self.actor.rollback_if_open().await;
        }
        result
    }

    /// Rolls back.
    ///
    /// # Errors
    ///
    /// SQLite's error from `ROLLBACK`.
    pub async fn rollback(mut self) -> Result<(), Error> {
        self.finished = true;
        self.actor.execute_batch("ROLLBACK").await
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.actor.schedule_rollback();
        }
    }
}

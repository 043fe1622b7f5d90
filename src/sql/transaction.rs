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
    /// The actor's instance generation at BEGIN: a rebuilt instance (after a
    /// cancelled call or a failed KV write) no longer has this transaction.
    generation: u64,
    finished: bool,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(actor: &'a mut Actor) -> Self {
        let generation = actor.generation();
        Transaction { actor, generation, finished: false }
    }

    /// The actor, while the transaction still exists in its instance.
    fn live(&mut self) -> Result<&mut Actor, Error> {
        if self.actor.generation() == self.generation {
            Ok(&mut *self.actor)
        } else {
            Err(self.actor.aborted_transaction())
        }
    }

    /// As [`Actor::execute`].
    ///
    /// # Errors
    ///
    /// As [`Actor::execute`]; the transaction stays open.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction is rolled back and its next
    /// call returns [`Error::TransactionAborted`] (see [`Actor`], "Cancel
    /// safety").
    pub async fn execute(&mut self, sql: &str, params: impl Into<Params>) -> Result<u64, Error> {
        self.live()?.execute(sql, params).await
    }

    /// [`Actor::execute_many`] inside this transaction: the sets before a
    /// failing one keep their effect until the transaction rolls back.
    ///
    /// # Errors
    ///
    /// As [`Actor::execute_many`].
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction is rolled back and its next
    /// call returns [`Error::TransactionAborted`] (see [`Actor`], "Cancel
    /// safety").
    pub async fn execute_many<P: Into<Params>>(&mut self, sql: &str, sets: impl IntoIterator<Item = P>) -> Result<u64, Error> {
        self.live()?.execute_many_in_transaction(sql, sets.into_iter().map(Into::into)).await
    }

    /// As [`Actor::execute_batch`].
    ///
    /// # Errors
    ///
    /// As [`Actor::execute_batch`]; the transaction stays open.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction is rolled back and its next
    /// call returns [`Error::TransactionAborted`] (see [`Actor`], "Cancel
    /// safety").
    pub async fn execute_batch(&mut self, sql: &str) -> Result<(), Error> {
        self.live()?.execute_batch(sql).await
    }

    /// As [`Actor::query`].
    ///
    /// # Errors
    ///
    /// As [`Actor::query`].
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction is rolled back and its next
    /// call returns [`Error::TransactionAborted`] (see [`Actor`], "Cancel
    /// safety").
    pub async fn query(&mut self, sql: &str, params: impl Into<Params>) -> Result<Rows, Error> {
        self.live()?.query(sql, params).await
    }

    /// As [`Actor::query_row`].
    ///
    /// # Errors
    ///
    /// As [`Actor::query_row`].
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction is rolled back and its next
    /// call returns [`Error::TransactionAborted`] (see [`Actor`], "Cancel
    /// safety").
    pub async fn query_row(&mut self, sql: &str, params: impl Into<Params>) -> Result<Row, Error> {
        self.live()?.query_row(sql, params).await
    }

    /// Commits. On error the transaction is rolled back.
    ///
    /// # Errors
    ///
    /// SQLite's error from `COMMIT` (a storage failure, a deferred foreign
    /// key violation): nothing was committed. [`Error::OutcomeUnknown`]
    /// when a KV write failed after one that may have been the commit
    /// point: read back to know. [`Error::TransactionAborted`] when the
    /// transaction was already gone.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction committed or it did not, and
    /// this call cannot tell which: the KV can. The actor rebuilds its instance
    /// from the KV at its next call, so what it reads then is the answer.
    pub async fn commit(mut self) -> Result<(), Error> {
        // `finished` only once COMMIT has returned: dropped part-way, the
        // guard gives the transaction up, as a guard dropped unfinished.
        let result = self.live()?.commit().await;
        self.finished = true;
        result
    }

    /// Rolls back.
    ///
    /// # Errors
    ///
    /// SQLite's error from `ROLLBACK`.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the transaction is rolled back all the same:
    /// the next call rebuilds the instance from the KV, which never saw it
    /// commit.
    pub async fn rollback(mut self) -> Result<(), Error> {
        let result = match self.live() {
            Ok(actor) => actor.execute_batch("ROLLBACK").await,
            // Gone with the old instance, which is what a rollback asks.
            Err(_) => Ok(()),
        };
        self.finished = true;
        result
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished && self.actor.generation() == self.generation {
            self.actor.schedule_rollback();
        }
    }
}

//! `Migrations`: an actor's schema, as ordered steps. Step `i` (0-based)
//! takes the database from `PRAGMA user_version = i` to `i + 1`; each step
//! runs in its own transaction with the version bump, so a failed step
//! leaves the schema exactly as it was.

use std::sync::Arc;

/// Ordered schema steps, each an SQL batch.
#[derive(Clone, Debug, Default)]
pub struct Migrations {
    steps: Arc<[String]>,
}

impl Migrations {
    /// Steps in order: `steps[0]` creates version 1, and so on.
    pub fn new<I, S>(steps: I) -> Migrations
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Migrations { steps: steps.into_iter().map(Into::into).collect() }
    }

    /// The schema version after every step: the number of steps.
    pub fn latest(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub(crate) fn steps(&self) -> &[String] {
        &self.steps
    }
}

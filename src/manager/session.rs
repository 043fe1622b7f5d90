//! `Session`: one caller holding an actor across calls, with a timeout.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

use super::book::{Slot, Ticket};
use super::{Shared, SleepReason, on_guest_thread};
use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::error::Error;

/// An actor held by one caller for a series of calls (see
/// [`crate::Manager::session`]). Dropping it ends the session.
pub struct Session {
    shared: Arc<Shared>,
    id: ActorId,
    state: Arc<SessionState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What a session holds: the actor's turn, and its place in the book. The
/// turn is declared first so that it is let go of first.
struct Held {
    slot: OwnedMutexGuard<Slot>,
    _ticket: Ticket,
}

/// The part of a session the manager's housekeeping sees.
pub(crate) struct SessionState {
    /// `None` while a call runs (the call has it) and once the session
    /// ended.
    held: Mutex<Option<Held>>,
    timeout: Duration,
    last_used: Mutex<Instant>,
    ended: Mutex<Option<&'static str>>,
}

impl SessionState {
    fn held(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self, reason: &'static str) {
        let held = self.held().take();
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(reason);
        // The slot remembers that a session held it, and the next caller
        // rolls back whatever this one left open.
        drop(held);
    }

    /// Ends the session if it has gone its timeout without a call (and has
    /// none running). Returns whether it did.
    pub(crate) fn expire_if_unused(&self) -> bool {
        let unused = self.last_used.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= self.timeout;
        if !unused || self.held().is_none() {
            return false;
        }
        self.end("it went unused past its timeout");
        true
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, id: ActorId, ticket: Ticket, slot: OwnedMutexGuard<Slot>, timeout: Duration) -> Session {
        let state = Arc::new(SessionState {
            held: Mutex::new(Some(Held { slot, _ticket: ticket })),
            timeout,
            last_used: Mutex::new(Instant::now()),
            ended: Mutex::new(None),
        });
        Session { shared, id, state }
    }

    pub(crate) fn state(&self) -> std::sync::Weak<SessionState> {
        Arc::downgrade(&self.state)
    }

    /// The actor's id.
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// Runs `f` on the held actor, on a guest thread, as
    /// [`crate::Manager::with`] does.
    ///
    /// # Errors
    ///
    /// `f`'s error, or [`Error::SessionEnded`] once the session has timed
    /// out or its actor was put to sleep after a failure (which rolled back
    /// its transaction).
    ///
    /// # Cancel safety
    ///
    /// Once `f` has started it runs to its end, but the session ends with
    /// the dropped call: its open transaction is rolled back.
    pub async fn with<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Actor) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let ended = |state: &SessionState| {
            let reason = state.ended.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or("it was ended");
            Error::SessionEnded { id: self.id.clone(), reason }
        };
        let Some(mut held) = self.state.held().take() else { return Err(ended(&self.state).into()) };
        let (shared, id) = (self.shared.clone(), self.id.clone());
        let returned = on_guest_thread(move || async move {
            let Some(actor) = held.slot.actor.as_mut() else {
                return (Err(Error::SessionEnded { id, reason: "its actor was put to sleep after a failure" }.into()), None);
            };
            let result = f(actor).await;
            shared.after_call(&id, &mut held.slot).await;
            if held.slot.actor.is_none() {
                return (result, None);
            }
            (result, Some(held))
        })
        .await;
        let (result, held) = returned;
        match held {
            Some(held) => {
                *self.state.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                *self.state.held() = Some(held);
            }
            None => self.state.end("its actor was put to sleep after a failure"),
        }
        result
    }

    /// Ends the session; an open transaction is rolled back before the
    /// actor's next call. Dropping the session does the same.
    pub fn end(self) {}

    /// Ends the session and puts its actor to sleep before returning, so
    /// that the next caller wakes a fresh connection: nothing this session
    /// left on the connection (PRAGMA settings, TEMP tables, an open
    /// transaction, which is rolled back) reaches that caller.
    ///
    /// # Errors
    ///
    /// What closing the database reported; the actor is asleep either way.
    ///
    /// # Cancel safety
    ///
    /// Once started, the sleep finishes even if this future is dropped.
    pub async fn sleep(self) -> Result<(), Error> {
        let held = self.state.held().take();
        self.state.ended.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert("its holder put the actor to sleep");
        let Some(Held { slot, _ticket: ticket }) = held else { return Ok(()) };
        let slept = self.shared.put_to_sleep(self.id.clone(), slot, SleepReason::Requested).await;
        drop(ticket);
        slept
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.end("it was ended");
    }
}

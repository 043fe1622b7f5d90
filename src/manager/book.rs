//! The manager's book of actors: whose turn lock is where, who is awake,
//! who is busy, who has been idle longest, and how much of the budget is
//! spent.
//!
//! Invariants, kept under the one `state` mutex:
//! - An entry exists while someone uses the actor (a queued or running call,
//!   a session) or while it holds a budget unit; a sleeping, unused actor
//!   has no entry and costs nothing.
//! - `awake` counts budget units. A unit ([`Room`]) is taken before an
//!   instance is built and given back only after that instance is dropped,
//!   so live instances never outnumber units, and units never exceed
//!   `max_awake`.
//! - `idle` holds exactly the entries that are awake with no user, oldest
//!   use first: the candidates for idle and budget sleeps. Taking a
//!   candidate out of it takes its turn lock too, so a call that arrives
//!   meanwhile queues behind the sleep and then wakes the actor afresh.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use tokio::sync::{Mutex as TurnLock, Notify, OwnedMutexGuard};

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::meter::Usage;

/// One actor's turn lock. Tokio's mutex hands itself out in arrival order,
/// which is the order calls on one actor run in.
pub(crate) type Turn = Arc<TurnLock<Slot>>;

/// What holding an actor's turn gives.
#[derive(Default)]
pub(crate) struct Slot {
    /// The awake instance. Declared before `room`, so that when a slot is
    /// dropped whole the instance goes before the unit it was counted in.
    pub(crate) actor: Option<Actor>,
    /// The budget unit `actor` is counted in.
    pub(crate) room: Option<Room>,
    /// A session let go of the actor: an open transaction it left is
    /// rolled back before the next call (through the actor's own pending
    /// rollback), see `Session`.
    pub(crate) held_by_session: bool,
}

/// Where an awake actor stands, by when it was last used.
type IdleKey = (Instant, u64);

struct Entry {
    turn: Turn,
    /// Calls queued or running, and sessions, on this actor.
    users: usize,
    /// Holds a budget unit.
    awake: bool,
    /// Linear memory of its instance when its last call ended.
    memory: usize,
    /// Its place in `State::idle`, while awake and unused.
    idle_key: Option<IdleKey>,
    /// The actor's usage since it woke, as of the last time the manager
    /// metered it (all of which is in the manager's totals).
    usage: Usage,
}

#[derive(Default)]
struct State {
    entries: HashMap<ActorId, Entry>,
    idle: BTreeMap<IdleKey, ActorId>,
    next_key: u64,
    awake: usize,
    memory: usize,
    peak_awake: usize,
}

/// The book, shared by the manager, its calls and its budget units.
pub(crate) struct Book {
    state: Mutex<State>,
    max_awake: usize,
    max_memory: Option<usize>,
    /// Notified when a unit may have come free: an actor went idle or to
    /// sleep.
    pub(crate) freed: Notify,
    /// Notified when the awake actors' memory outgrew its budget.
    pub(crate) over_memory: Notify,
}

/// What the book says about the manager as a whole.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Census {
    pub(crate) awake: usize,
    pub(crate) peak_awake: usize,
    pub(crate) idle: usize,
    pub(crate) memory: usize,
}

impl Book {
    pub(crate) fn new(max_awake: usize, max_memory: Option<usize>) -> Book {
        Book { state: Mutex::default(), max_awake, max_memory, freed: Notify::new(), over_memory: Notify::new() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new user of `id` and returns its turn lock.
    pub(crate) fn enter(&self, id: &ActorId) -> Turn {
        let mut state = self.state();
        let state = &mut *state;
        let entry = state.entries.entry(id.clone()).or_insert_with(|| Entry {
            turn: Arc::default(),
            users: 0,
            awake: false,
            memory: 0,
            idle_key: None,
            usage: Usage::default(),
        });
        entry.users += 1;
        if let Some(key) = entry.idle_key.take() {
            state.idle.remove(&key);
        }
        entry.turn.clone()
    }

    /// A user of `id` is done: an awake actor with no users left becomes a
    /// candidate for sleep; a sleeping one is forgotten.
    pub(crate) fn leave(&self, id: &ActorId) {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(entry) = state.entries.get_mut(id) else { return };
        entry.users -= 1;
        if entry.users > 0 {
            return;
        }
        if entry.awake {
            let key = (Instant::now(), state.next_key);
            state.next_key += 1;
            entry.idle_key = Some(key);
            state.idle.insert(key, id.clone());
            drop(guard);
            self.freed.notify_waiters();
        } else {
            // Dropped outside the lock: a turn dropped here could hold a unit
            // whose drop takes the lock again.
            let gone = state.entries.remove(id);
            drop(guard);
            drop(gone);
        }
    }

    /// A budget unit for `id`, if the budget has one free.
    pub(crate) fn take_room(self: &Arc<Self>, id: &ActorId) -> Option<Room> {
        let mut state = self.state();
        if state.awake >= self.max_awake || !self.memory_fits(&state) {
            return None;
        }
        state.entries.get_mut(id)?.awake = true;
        state.awake += 1;
        state.peak_awake = state.peak_awake.max(state.awake);
        metrics::gauge!("wasqlite_awake_actors").set(state.awake as f64);
        Some(Room { book: Arc::downgrade(self), id: id.clone() })
    }

    /// Whether one more actor, as large as the awake ones are on average,
    /// fits the memory budget.
    fn memory_fits(&self, state: &State) -> bool {
        let Some(max) = self.max_memory else { return true };
        let typical = state.memory.checked_div(state.awake).unwrap_or(0);
        state.memory + typical <= max
    }

    /// The least recently used idle actor, with its turn taken so that it
    /// can be put to sleep.
    pub(crate) fn least_recently_used(&self) -> Option<(ActorId, OwnedMutexGuard<Slot>)> {
        self.idle_candidates(|_| true, 1).pop()
    }

    /// Idle actors last used before `cutoff`, each with its turn taken.
    pub(crate) fn idle_since(&self, cutoff: Instant) -> Vec<(ActorId, OwnedMutexGuard<Slot>)> {
        self.idle_candidates(|used| used < cutoff, usize::MAX)
    }

    fn idle_candidates(&self, pick: impl Fn(Instant) -> bool, limit: usize) -> Vec<(ActorId, OwnedMutexGuard<Slot>)> {
        let mut state = self.state();
        let state = &mut *state;
        let mut taken = Vec::new();
        let mut keys = Vec::new();
        for (key, id) in &state.idle {
            if taken.len() >= limit || !pick(key.0) {
                break;
            }
            // No user means no one holds the turn; a sleep that is ending
            // may still, and is skipped.
            let Some(entry) = state.entries.get(id) else { continue };
            if let Ok(slot) = entry.turn.clone().try_lock_owned() {
                keys.push(*key);
                taken.push((id.clone(), slot));
            }
        }
        for key in keys {
            if let Some(id) = state.idle.remove(&key)
                && let Some(entry) = state.entries.get_mut(&id)
            {
                entry.idle_key = None;
            }
        }
        taken
    }

    /// Records `usage` as `id`'s latest and returns the one recorded before
    /// (nothing since its wake: zero), so that the caller can add the
    /// difference to the totals.
    pub(crate) fn swap_usage(&self, id: &ActorId, usage: Usage) -> Usage {
        let mut state = self.state();
        match state.entries.get_mut(id) {
            Some(entry) if entry.awake => std::mem::replace(&mut entry.usage, usage),
            _ => Usage::default(),
        }
    }

    /// Records the linear memory of `id`'s instance after a call; notifies
    /// when the awake actors no longer fit the memory budget.
    pub(crate) fn set_memory(&self, id: &ActorId, bytes: usize) {
        let mut state = self.state();
        let state = &mut *state;
        let Some(entry) = state.entries.get_mut(id) else { return };
        if !entry.awake {
            return;
        }
        state.memory = state.memory - entry.memory + bytes;
        entry.memory = bytes;
        metrics::gauge!("wasqlite_awake_memory_bytes").set(state.memory as f64);
        if self.max_memory.is_some_and(|max| state.memory > max) {
            self.over_memory.notify_one();
        }
    }

    /// The usage of `id` since it woke, as of its last call, if awake.
    pub(crate) fn usage_of(&self, id: &ActorId) -> Option<Usage> {
        self.state().entries.get(id).filter(|e| e.awake).map(|e| e.usage)
    }

    /// Whether the awake actors' memory is past its budget.
    pub(crate) fn memory_over_budget(&self) -> bool {
        self.max_memory.is_some_and(|max| self.state().memory > max)
    }

    /// The turn locks of every actor in the book.
    pub(crate) fn turns(&self) -> Vec<(ActorId, Turn)> {
        self.state().entries.iter().map(|(id, e)| (id.clone(), e.turn.clone())).collect()
    }

    pub(crate) fn census(&self) -> Census {
        let state = self.state();
        Census {
            awake: state.awake,
            peak_awake: state.peak_awake,
            idle: state.idle.len(),
            memory: state.memory,
        }
    }

    /// Gives `id`'s unit back (see [`Room`]).
    fn free(&self, id: &ActorId) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.awake -= 1;
        metrics::gauge!("wasqlite_awake_actors").set(state.awake as f64);
        if let Some(entry) = state.entries.get_mut(id) {
            entry.awake = false;
            entry.usage = Usage::default();
            state.memory -= entry.memory;
            entry.memory = 0;
            if let Some(key) = entry.idle_key.take() {
                state.idle.remove(&key);
            }
        }
        let gone = if state.entries.get(id).is_some_and(|e| e.users == 0) { state.entries.remove(id) } else { None };
        metrics::gauge!("wasqlite_awake_memory_bytes").set(state.memory as f64);
        drop(guard);
        drop(gone);
        self.freed.notify_waiters();
    }
}

/// One unit of the awake budget, held by an actor's [`Slot`] for as long as
/// its instance lives. Dropping it gives the unit back; it must outlive the
/// instance it counts (see [`Slot::actor`]).
pub(crate) struct Room {
    book: Weak<Book>,
    id: ActorId,
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(book) = self.book.upgrade() {
            book.free(&self.id);
        }
    }
}

/// One user of an actor, counted in the book until dropped.
pub(crate) struct Ticket {
    book: Arc<Book>,
    id: ActorId,
    turn: Turn,
}

impl Ticket {
    pub(crate) fn new(book: &Arc<Book>, id: &ActorId) -> Ticket {
        let turn = book.enter(id);
        Ticket { book: book.clone(), id: id.clone(), turn }
    }

    pub(crate) fn turn(&self) -> Turn {
        self.turn.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.book.leave(&self.id);
    }
}

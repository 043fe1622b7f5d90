//! `Manager`: the actor runtime an embedding host would otherwise write.
//! Actors wake on their first call and sleep when idle; calls on one actor
//! run one at a time in arrival order, calls on different actors in
//! parallel; the number (and memory) of awake actors stays inside a budget,
//! least recently used idle actors sleeping first to make room.
//!
//! Guest code never runs where it would hold up the async runtime: on a
//! multi-thread runtime inside `block_in_place` (the worker's other tasks
//! move to another thread first), on a current-thread runtime on tokio's
//! blocking pool. So a long query on one actor cannot hold up calls on
//! others however few workers the runtime has. A guest job runs to its end
//! even if its caller goes away, which is also what keeps the book
//! straight: every wake, sleep and call that started finishes and accounts
//! for itself.

mod book;
mod session;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::OwnedMutexGuard;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::error::Error;
use crate::guest::watchdog::TickSleep;
use crate::host::Host;
use crate::meter::Usage;
use book::{Book, Slot, Ticket};
pub use session::Session;
use session::SessionState;

/// Called with an actor's id and its usage from its wake to its sleep,
/// each time the manager puts it to sleep: where a host records usage for
/// billing. It runs on a guest thread; keep it short.
pub type UsageSink = Arc<dyn Fn(&ActorId, &Usage) + Send + Sync>;

/// How a [`Manager`] runs its actors.
#[derive(Clone)]
pub struct ManagerConfig {
    /// An actor with no call for this long is put to sleep. Default 10 s
    /// (below the lease's half-life, so an idle actor never lets its lease
    /// lapse while awake).
    pub idle_timeout: Duration,
    /// At most this many actors awake at once. Default 1,024.
    pub max_awake: usize,
    /// At most this many bytes of linear memory held by awake actors
    /// (measured after each call); `None`, no limit. A wake is admitted
    /// while the awake actors plus one more of their average size fit.
    pub max_awake_memory: Option<usize>,
    /// How long a wake waits for room (an awake actor going idle, or a pool
    /// slot coming free) before it fails with [`Error::Overloaded`].
    /// Default 30 s.
    pub wait_for_room: Duration,
    /// Receives each actor's usage when it goes to sleep; `None`, nobody.
    pub on_sleep: Option<UsageSink>,
}

impl std::fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_awake", &self.max_awake)
            .field("max_awake_memory", &self.max_awake_memory)
            .field("wait_for_room", &self.wait_for_room)
            .field("on_sleep", &self.on_sleep.as_ref().map(|_| "UsageSink"))
            .finish()
    }
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            idle_timeout: Duration::from_secs(10),
            max_awake: 1024,
            max_awake_memory: None,
            wait_for_room: Duration::from_secs(30),
            on_sleep: None,
        }
    }
}

/// Runs actors for their callers: wakes them on demand, serializes the
/// calls on each, sleeps them when idle or when the budget needs room.
///
/// Cheap to clone; clones share the actors. Needs a tokio runtime (any
/// flavor) when created and when called; its idle sleeps run on it.
///
/// # Example
///
/// ```
/// # tokio_test_block(async {
/// use std::sync::Arc;
/// use wasqlite::{Host, Manager, ManagerConfig, MemoryKv, params};
///
/// let host = Host::new(Arc::new(MemoryKv::new()))?;
/// let actors = Manager::new(host, ManagerConfig::default())?;
/// actors.with("counter-1", async |a| a.execute_batch("CREATE TABLE hits(n INTEGER)").await).await?;
/// actors.with("counter-1", async |a| a.execute("INSERT INTO hits VALUES (?1)", params![42]).await).await?;
/// let n: i64 = actors.with("counter-1", async |a| a.query_row("SELECT n FROM hits", ()).await?.get(0)).await?;
/// assert_eq!(n, 42);
/// actors.shutdown().await?;
/// # Ok::<(), wasqlite::Error>(()) });
/// # fn tokio_test_block<F: std::future::Future<Output = Result<(), wasqlite::Error>>>(f: F) {
/// #     tokio::runtime::Runtime::new().unwrap().block_on(f).unwrap()
/// # }
/// ```
#[derive(Clone)]
pub struct Manager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    host: Host,
    config: ManagerConfig,
    book: Arc<Book>,
    closing: AtomicBool,
    sessions: Mutex<Vec<Weak<SessionState>>>,
    counts: Counts,
    /// Usage of every actor since the manager started, added after each
    /// call and at each sleep.
    usage: Mutex<Usage>,
}

/// Events since the manager started.
#[derive(Default)]
struct Counts {
    wakes: AtomicU64,
    idle_sleeps: AtomicU64,
    budget_sleeps: AtomicU64,
    failed_sleeps: AtomicU64,
    waits_for_room: AtomicU64,
    overloaded: AtomicU64,
    sessions_expired: AtomicU64,
}

/// A snapshot of a manager's state and what it has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Actors awake now (each holds a budget unit).
    pub awake: usize,
    /// The most actors that were ever awake at once.
    pub peak_awake: usize,
    /// Awake actors with no call queued or running and no session.
    pub idle: usize,
    /// Linear memory of the awake actors, as of their last calls.
    pub awake_memory_bytes: usize,
    /// Wakes.
    pub wakes: u64,
    /// Sleeps after `idle_timeout` without a call.
    pub idle_sleeps: u64,
    /// Sleeps to make room for another actor's wake (budget or pool).
    pub budget_sleeps: u64,
    /// Actors put to sleep after a failure poisoned them (a lost lease, a
    /// KV write that never answered).
    pub failed_sleeps: u64,
    /// Wakes that had to wait for room.
    pub waits_for_room: u64,
    /// Wakes that gave up waiting ([`Error::Overloaded`]).
    pub overloaded: u64,
    /// Sessions that ran past their timeout.
    pub sessions_expired: u64,
}

/// Why an actor is put to sleep.
#[derive(Clone, Copy)]
enum SleepReason {
    Idle,
    Budget,
    Failed,
    Shutdown,
    /// A session's holder asked for it (`Session::sleep`).
    Requested,
}

impl SleepReason {
    fn label(self) -> &'static str {
        match self {
            SleepReason::Idle => "idle",
            SleepReason::Budget => "budget",
            SleepReason::Failed => "failed",
            SleepReason::Shutdown => "shutdown",
            SleepReason::Requested => "requested",
        }
    }
}

impl Manager {
    /// A manager of `host`'s actors.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] outside a tokio runtime, or for a budget of 0.
    pub fn new(host: Host, config: ManagerConfig) -> Result<Manager, Error> {
        let runtime = Handle::try_current().map_err(|_| Error::Config("a Manager needs a tokio runtime".into()))?;
        if config.max_awake == 0 {
            return Err(Error::Config("ManagerConfig::max_awake must be at least 1".into()));
        }
        let book = Arc::new(Book::new(config.max_awake, config.max_awake_memory));
        let shared = Arc::new(Shared {
            host,
            config,
            book,
            closing: AtomicBool::new(false),
            sessions: Mutex::default(),
            counts: Counts::default(),
            usage: Mutex::default(),
        });
        describe_metrics();
        runtime.spawn(keep_house(Arc::downgrade(&shared)));
        Ok(Manager { shared })
    }

    /// The host the actors run on.
    pub fn host(&self) -> &Host {
        &self.shared.host
    }

    /// Runs `f` on actor `id`, waking it first if it sleeps. Calls on one
    /// actor run one at a time, in the order they were made.
    ///
    /// `f` runs as a guest job (see the module documentation), off the async
    /// runtime's workers, never interleaved with another call on the actor. A
    /// wake whose poison is found before `f` runs (another host took the
    /// actor over, a KV write never answered) sleeps the actor and wakes it
    /// afresh; once `f` has run, a failure is `f`'s to report, since the
    /// manager cannot know what `f` wrote.
    ///
    /// # Errors
    ///
    /// `f`'s error, or [`Error::ShuttingDown`], [`Error::Overloaded`], or the
    /// wake's error (for instance [`crate::KvError::Owned`] while another
    /// host holds the actor).
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for its turn or for room, the call never runs.
    /// Once `f` has started it runs to its end (so does a wake), and its
    /// result is dropped: stop a long `f` with the actor's call timeout or
    /// its [`crate::InterruptHandle`], not by dropping the future.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic is resumed here; the actor rebuilds its
    /// instance at its next call.
    pub async fn with<T, E, F>(&self, id: &str, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Actor) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let id = ActorId::new(id)?;
        let ticket = self.shared.admit(&id)?;
        let mut slot = self.shared.turn_of(&ticket).await;
        self.shared.make_ready(&id, &mut slot).await?;
        let shared = self.shared.clone();
        on_guest_thread(move || async move {
            // The turn goes before the ticket, so that an actor left idle
            // can be picked for sleep at once.
            let _ticket = ticket;
            let mut slot = slot;
            let actor = slot.actor.as_mut().expect("make_ready leaves an awake actor");
            let started = Instant::now();
            let result = f(actor).await;
            metrics::histogram!("wasqlite_call_seconds").record(started.elapsed().as_secs_f64());
            shared.after_call(&id, &mut slot).await;
            result
        })
        .await
    }

    /// Holds actor `id` for a series of calls (an open transaction, a
    /// client's stream), waking it first if it sleeps. While held, no other
    /// caller's call runs on it, and it is never put to sleep for being
    /// idle or for room; it counts against the budget. The session ends when
    /// dropped, or when it goes `timeout` without a call; a transaction it
    /// left open is rolled back before the actor's next call.
    ///
    /// # Errors
    ///
    /// As [`Manager::with`] for the wake.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, no session was opened.
    pub async fn session(&self, id: &str, timeout: Duration) -> Result<Session, Error> {
        let id = ActorId::new(id)?;
        let ticket = self.shared.admit(&id)?;
        let mut slot = self.shared.turn_of(&ticket).await;
        self.shared.make_ready(&id, &mut slot).await?;
        slot.held_by_session = true;
        let session = Session::new(self.shared.clone(), id, ticket, slot, timeout);
        let mut sessions = self.shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(session.state());
        Ok(session)
    }

    /// The usage of every actor since the manager started, as of their
    /// last calls. `database_bytes` is left at 0: sizes do not add up over
    /// time (an awake actor's is in [`Manager::usage_of`], a sleeping one's
    /// went to [`ManagerConfig::on_sleep`]).
    pub fn usage(&self) -> Usage {
        *self.shared.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The usage of `id` since it woke, as of its last call; `None` while it
    /// sleeps (its usage went to [`ManagerConfig::on_sleep`]).
    pub fn usage_of(&self, id: &str) -> Option<Usage> {
        self.shared.book.usage_of(&ActorId::new(id).ok()?)
    }

    /// What the manager holds now and what it has done.
    pub fn stats(&self) -> ManagerStats {
        let census = self.shared.book.census();
        let counts = &self.shared.counts;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ManagerStats {
            awake: census.awake,
            peak_awake: census.peak_awake,
            idle: census.idle,
            awake_memory_bytes: census.memory,
            wakes: load(&counts.wakes),
            idle_sleeps: load(&counts.idle_sleeps),
            budget_sleeps: load(&counts.budget_sleeps),
            failed_sleeps: load(&counts.failed_sleeps),
            waits_for_room: load(&counts.waits_for_room),
            overloaded: load(&counts.overloaded),
            sessions_expired: load(&counts.sessions_expired),
        }
    }

    /// Stops admitting calls, lets every call already admitted finish
    /// (sessions end or time out), and puts every actor to sleep. Later
    /// calls fail with [`Error::ShuttingDown`].
    ///
    /// # Errors
    ///
    /// The first error from closing an actor's database; every actor is
    /// put to sleep regardless.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.shared.closing.store(true, Ordering::SeqCst);
        let mut first_error = None;
        loop {
            let freed = self.shared.book.freed.notified();
            let turns = self.shared.book.turns();
            if turns.is_empty() {
                break;
            }
            for (id, turn) in turns {
                let slot = turn.lock_owned().await;
                if slot.actor.is_some()
                    && let Err(e) = self.shared.put_to_sleep(id, slot, SleepReason::Shutdown).await
                {
                    first_error.get_or_insert(e);
                }
            }
            // Calls admitted before the close may still be on their way to
            // an actor's turn; the book empties once they are done.
            tokio::select! {
                () = freed => {}
                () = TickSleep::new(Duration::from_millis(10)) => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Shared {
    /// Counts a user of `id`, unless the manager is closing.
    fn admit(&self, id: &ActorId) -> Result<Ticket, Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown { id: id.clone() });
        }
        Ok(Ticket::new(&self.book, id))
    }

    /// Waits for the actor's turn.
    async fn turn_of(&self, ticket: &Ticket) -> OwnedMutexGuard<Slot> {
        let queued = Instant::now();
        let slot = ticket.turn().lock_owned().await;
        metrics::histogram!("wasqlite_turn_wait_seconds").record(queued.elapsed().as_secs_f64());
        slot
    }

    /// Leaves an awake, usable actor in `slot`: rolls back what a session
    /// left open, sleeps an actor found poisoned, and wakes one that sleeps.
    async fn make_ready(self: &Arc<Self>, id: &ActorId, slot: &mut OwnedMutexGuard<Slot>) -> Result<(), Error> {
        if std::mem::take(&mut slot.held_by_session)
            && let Some(actor) = slot.actor.as_mut()
        {
            actor.schedule_rollback();
        }
        if let Some(actor) = slot.actor.as_mut() {
            match actor.check_usable().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(actor = %id, "sleeping an unusable actor before waking it again: {e}");
                    // Closing runs guest code: a guest job, like every sleep.
                    let mut taken = Slot { actor: slot.actor.take(), room: slot.room.take(), held_by_session: false };
                    let (shared, id) = (self.clone(), id.clone());
                    let _ = on_guest_thread(move || async move { shared.sleep_in_place(&id, &mut taken, SleepReason::Failed).await }).await;
                }
            }
        }
        self.wake_into(id, slot).await
    }

    /// Wakes `id` into `slot`, within the budget and the instance pool.
    async fn wake_into(self: &Arc<Self>, id: &ActorId, slot: &mut OwnedMutexGuard<Slot>) -> Result<(), Error> {
        let started = Instant::now();
        let deadline = started + self.config.wait_for_room;
        let mut pool_wait = Duration::from_millis(1);
        loop {
            let room = self.room_for(id, started, deadline).await?;
            let host = self.host.clone();
            let wake_id = id.clone();
            let woke = on_guest_thread(move || async move {
                let woke = host.wake(wake_id.as_str()).await;
                (woke, room)
            })
            .await;
            match woke {
                (Ok(actor), room) => {
                    slot.actor = Some(actor);
                    slot.room = Some(room);
                    self.counts.wakes.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("wasqlite_wakes_total").increment(1);
                    metrics::histogram!("wasqlite_wake_seconds").record(started.elapsed().as_secs_f64());
                    metrics::gauge!("wasqlite_instances").set(self.host.live_instances() as f64);
                    return Ok(());
                }
                (Err(Error::PoolFull { slots }), room) => {
                    // The pool is shared with every host of the same engine
                    // configuration, so it can be full while this manager is
                    // under budget: make room among our own idle actors, or
                    // wait for other hosts to let go.
                    drop(room);
                    if let Some((victim, victim_slot)) = self.book.least_recently_used() {
                        let _ = self.put_to_sleep(victim, victim_slot, SleepReason::Budget).await;
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(self.overloaded(id, started, format!("all {slots} instance slots of the pool are in use")));
                    }
                    TickSleep::new(pool_wait).await;
                    pool_wait = (pool_wait * 2).min(Duration::from_millis(50));
                }
                (Err(e), _room) => return Err(e),
            }
        }
    }

    /// A budget unit for `id`: a free one, or one an idle actor gives up by
    /// going to sleep, or the first to come free before `deadline`.
    async fn room_for(self: &Arc<Self>, id: &ActorId, started: Instant, deadline: Instant) -> Result<book::Room, Error> {
        let mut waited = false;
        loop {
            let freed = self.book.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(room) = self.book.take_room(id) {
                if waited {
                    metrics::histogram!("wasqlite_room_wait_seconds").record(started.elapsed().as_secs_f64());
                }
                return Ok(room);
            }
            if let Some((victim, victim_slot)) = self.book.least_recently_used() {
                let _ = self.put_to_sleep(victim, victim_slot, SleepReason::Budget).await;
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                let census = self.book.census();
                let why = format!(
                    "all {} awake actors are busy or held by sessions (budget {} actors{})",
                    census.awake,
                    self.config.max_awake,
                    self.config.max_awake_memory.map(|m| format!(", {m} bytes")).unwrap_or_default()
                );
                return Err(self.overloaded(id, started, why));
            }
            if !waited {
                waited = true;
                self.counts.waits_for_room.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                () = &mut freed => {}
                () = TickSleep::new(deadline - now) => {}
            }
        }
    }

    fn overloaded(&self, id: &ActorId, started: Instant, why: String) -> Error {
        self.counts.overloaded.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wasqlite_overloaded_total").increment(1);
        Error::Overloaded { id: id.clone(), waited: started.elapsed(), why }
    }

    /// After a call: an actor the call left poisoned goes to sleep (its
    /// next call wakes it afresh); otherwise its memory is booked.
    async fn after_call(&self, id: &ActorId, slot: &mut OwnedMutexGuard<Slot>) {
        let Some(actor) = slot.actor.as_ref() else { return };
        if actor.is_poisoned() {
            metrics::counter!("wasqlite_poisonings_total").increment(1);
            let _ = self.sleep_in_place(id, slot, SleepReason::Failed).await;
            return;
        }
        self.book.set_memory(id, actor.memory_bytes());
        self.meter(id, slot);
    }

    /// Adds what the slot's actor used since the last look to the totals
    /// and the metrics, and returns its usage since it woke.
    fn meter(&self, id: &ActorId, slot: &Slot) -> Usage {
        let Some(actor) = slot.actor.as_ref() else { return Usage::default() };
        let now = actor.usage();
        let mut delta = now - self.book.swap_usage(id, now);
        // Sizes do not add up over time: the totals leave them out.
        delta.database_bytes = 0;
        *self.usage.lock().unwrap_or_else(|p| p.into_inner()) += delta;
        metrics::counter!("wasqlite_kv_read_bytes_total").increment(delta.kv_read_bytes);
        metrics::counter!("wasqlite_kv_written_bytes_total").increment(delta.kv_written_bytes);
        metrics::counter!("wasqlite_guest_reported_rows_read_total").increment(delta.reported.rows_read);
        metrics::counter!("wasqlite_guest_reported_rows_written_total").increment(delta.reported.rows_written);
        now
    }

    /// Puts the actor in a slot whose turn is held to sleep, and gives its
    /// unit back.
    async fn sleep_in_place(&self, id: &ActorId, slot: &mut Slot, reason: SleepReason) -> Result<(), Error> {
        self.count_sleep(reason);
        let mut usage = self.meter(id, slot);
        let Some(actor) = slot.actor.take() else { return Ok(()) };
        usage.sleeps += 1;
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).sleeps += 1;
        if let Some(sink) = &self.config.on_sleep {
            sink(id, &usage);
        }
        let started = Instant::now();
        let closed = actor.sleep().await;
        if let Err(e) = &closed {
            tracing::warn!(actor = %id, "closing the database at sleep failed: {e}");
        }
        slot.room = None;
        metrics::histogram!("wasqlite_sleep_seconds", "reason" => reason.label()).record(started.elapsed().as_secs_f64());
        metrics::gauge!("wasqlite_instances").set(self.host.live_instances() as f64);
        closed
    }

    fn count_sleep(&self, reason: SleepReason) {
        let counter = match reason {
            SleepReason::Idle => Some(&self.counts.idle_sleeps),
            SleepReason::Budget => Some(&self.counts.budget_sleeps),
            SleepReason::Failed => Some(&self.counts.failed_sleeps),
            SleepReason::Shutdown | SleepReason::Requested => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("wasqlite_sleeps_total", "reason" => reason.label()).increment(1);
    }

    /// Puts an actor whose turn was taken to sleep, on a guest thread; the
    /// sleep finishes even if the caller goes away.
    async fn put_to_sleep(self: &Arc<Self>, id: ActorId, slot: OwnedMutexGuard<Slot>, reason: SleepReason) -> Result<(), Error> {
        let shared = self.clone();
        on_guest_thread(move || async move {
            let mut slot = slot;
            shared.sleep_in_place(&id, &mut slot, reason).await
        })
        .await
    }

    /// Idle sleeps, the memory budget, and expired sessions.
    async fn tidy(self: &Arc<Self>) {
        let cutoff = Instant::now().checked_sub(self.config.idle_timeout);
        let idle = cutoff.map(|c| self.book.idle_since(c)).unwrap_or_default();
        for (id, slot) in idle {
            let _ = self.put_to_sleep(id, slot, SleepReason::Idle).await;
        }
        while self.book.memory_over_budget() {
            let Some((id, slot)) = self.book.least_recently_used() else { break };
            let _ = self.put_to_sleep(id, slot, SleepReason::Budget).await;
        }
        let sessions: Vec<_> = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(Weak::upgrade).collect();
        for session in sessions {
            if session.expire_if_unused() {
                self.counts.sessions_expired.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("wasqlite_sessions_expired_total").increment(1);
            }
        }
    }
}

/// The manager's housekeeping task: tidies at a quarter of the idle
/// timeout (within 1 ms to 1 s), or at once when memory runs over; ends
/// with the manager.
async fn keep_house(shared: Weak<Shared>) {
    let (period, book) = match shared.upgrade() {
        Some(s) => ((s.config.idle_timeout / 4).clamp(Duration::from_millis(1), Duration::from_secs(1)), s.book.clone()),
        None => return,
    };
    loop {
        tokio::select! {
            () = TickSleep::new(period) => {}
            () = book.over_memory.notified() => {}
        }
        let Some(shared) = shared.upgrade() else { return };
        shared.tidy().await;
    }
}

/// Runs `job` off the async runtime's workers, driving its future with
/// `Handle::block_on`, and returns its output; a panic in it is resumed
/// here. On a multi-thread runtime the job runs right here, inside
/// `block_in_place`, which first hands this worker's other tasks to another
/// thread: no handoff for the job itself, which matters for short calls (p50
/// 4 µs instead of 53 µs for one caller in `bench manager`). A current-thread runtime
/// has no worker to spare, so there the job goes to the blocking pool.
///
/// The job runs to its end even if this future is dropped.
async fn on_guest_thread<R, Fut>(job: impl FnOnce() -> Fut + Send + 'static) -> R
where
    Fut: Future<Output = R>,
    R: Send + 'static,
{
    let runtime = Handle::current();
    if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(|| runtime.block_on(job()));
    }
    match tokio::task::spawn_blocking(move || runtime.block_on(job())).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a guest thread was cancelled: {e}"),
    }
}

/// The HELP lines of the metrics the library records, once per process.
fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_histogram!("wasqlite_wake_seconds", Unit::Seconds, "Wakes by the actor manager, from the wait for room to the open database.");
        describe_histogram!("wasqlite_sleep_seconds", Unit::Seconds, "Sleeps by the actor manager, by reason.");
        describe_histogram!("wasqlite_turn_wait_seconds", Unit::Seconds, "Time a call waited for its actor's earlier calls.");
        describe_histogram!("wasqlite_room_wait_seconds", Unit::Seconds, "Time a wake waited for room in the budget.");
        describe_histogram!("wasqlite_call_seconds", Unit::Seconds, "Manager calls, measured by the host.");
        describe_histogram!("wasqlite_kv_call_seconds", Unit::Seconds, "KV calls of the actors' files, by backend and operation.");
        describe_counter!("wasqlite_kv_errors_total", "KV calls of the actors' files that failed, by backend and operation.");
        describe_counter!("wasqlite_wakes_total", "Wakes by the actor manager.");
        describe_counter!("wasqlite_sleeps_total", "Sleeps by the actor manager, by reason (idle, budget, failed, shutdown, requested).");
        describe_counter!("wasqlite_overloaded_total", "Wakes that found no room within the wait.");
        describe_counter!("wasqlite_poisonings_total", "Actors slept after a failure left them unusable.");
        describe_counter!("wasqlite_call_timeouts_total", "Calls stopped at their timeout.");
        describe_counter!("wasqlite_refused_calls_total", "Calls refused by a poisoned actor or a lost ownership.");
        describe_counter!("wasqlite_sessions_expired_total", "Sessions that went unused past their timeout.");
        describe_counter!("wasqlite_kv_read_bytes_total", Unit::Bytes, "Bytes the actors read from the KV, measured by the host.");
        describe_counter!("wasqlite_kv_written_bytes_total", Unit::Bytes, "Bytes the actors wrote to the KV, measured by the host.");
        describe_counter!("wasqlite_guest_reported_rows_read_total", "Rows examined, as reported by the guests: untrusted.");
        describe_counter!("wasqlite_guest_reported_rows_written_total", "Rows written, as reported by the guests: untrusted.");
        describe_gauge!("wasqlite_awake_actors", "Actors awake under the manager (budget units held).");
        describe_gauge!("wasqlite_awake_memory_bytes", Unit::Bytes, "Linear memory of the awake actors, as of their last calls.");
        describe_gauge!("wasqlite_instances", "Live instances of the manager's host.");
    });
}

//! `Watchdog`: stops a guest call at its deadline, or when an
//! [`InterruptHandle`] asks, from the engine's epoch ticks.
//!
//! One ticker thread per process bumps every engine's epoch each `TICK`,
//! and every Store runs `on_tick` at each bump while its guest executes. The
//! callback cannot call into the guest, so it stops a call in two steps:
//!
//! 1. It writes 1 into the guest's control block (`Control.stop` in
//!    vfs/sql_api.c). SQLite's progress handler sees it within a few
//!    microseconds of work and ends the statement with SQLITE_INTERRUPT,
//!    rolling its writes back; the instance stays usable.
//! 2. A guest that has not returned `stop_grace` later (one long sort has no
//!    progress check) is trapped, and the actor rebuilds its instance from
//!    the KV, which holds only what committed.
//!
//! Time spent waiting on the KV inside an import is not guest execution and
//! sees no ticks; `TickSleep`, woken by the same thread, bounds those waits
//! (`Limits::kv_timeout`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::{AsContextMut, Engine, EngineWeak, Store, StoreContextMut, UpdateDeadline};

use super::CallMode;
use super::memory::write_i32;
use crate::error::Error;
use crate::state::ActorState;

/// Time between two epoch ticks, which bounds how late past its deadline a
/// call is stopped.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The engines the ticker bumps.
static ENGINES: Mutex<Vec<EngineWeak>> = Mutex::new(Vec::new());
/// Wakers of pending `TickSleep`s by deadline (and a number that tells
/// sleeps with the same deadline apart), woken by the ticker once due.
static SLEEPERS: Mutex<BTreeMap<(Instant, u64), Waker>> = Mutex::new(BTreeMap::new());

/// Starts the one ticker thread of the process, if it is not running, and
/// has it bump `engine`'s epoch every `TICK` for as long as the engine
/// lives. The ticker also wakes `TickSleep`s.
pub(crate) fn tick(engine: Option<&Engine>) -> Result<(), Error> {
    static STARTED: OnceLock<std::io::Result<()>> = OnceLock::new();
    if let Some(engine) = engine {
        ENGINES.lock().unwrap_or_else(|p| p.into_inner()).push(engine.weak());
    }
    let started = STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("wasqlite-epoch".into())
            .spawn(|| {
                loop {
                    ENGINES.lock().unwrap_or_else(|p| p.into_inner()).retain(|weak| match weak.upgrade() {
                        Some(engine) => {
                            engine.increment_epoch();
                            true
                        }
                        None => false,
                    });
                    let now = Instant::now();
                    let mut sleepers = SLEEPERS.lock().unwrap_or_else(|p| p.into_inner());
                    while let Some(entry) = sleepers.first_entry()
                        && entry.key().0 <= now
                    {
                        entry.remove().wake();
                    }
                    drop(sleepers);
                    std::thread::sleep(TICK);
                }
            })
            .map(drop)
    });
    started.as_ref().map_err(|e| Error::Engine(format!("starting the epoch ticker thread: {e}"))).copied()
}

/// Offsets of the words in the guest's control block.
const STOP: i32 = 0;
const TRUSTED: i32 = 4;
const ROWS_READ: i32 = 8;
const ROWS_WRITTEN: i32 = 16;

/// A future that ends at a deadline (to within a tick), woken by the
/// ticker: a timer that needs no async runtime's time driver. It holds a
/// place among the sleepers only while pending, and gives it up when
/// dropped, so the ticker's work follows the timers alive, not those made.
pub(crate) struct TickSleep {
    key: (Instant, u64),
}

impl TickSleep {
    pub(crate) fn new(after: Duration) -> TickSleep {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        TickSleep { key: (Instant::now() + after, NEXT.fetch_add(1, Ordering::Relaxed)) }
    }
}

impl Future for TickSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.key.0 {
            return Poll::Ready(());
        }
        SLEEPERS.lock().unwrap_or_else(|p| p.into_inner()).insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for TickSleep {
    fn drop(&mut self) {
        SLEEPERS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// Why a call was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// It ran past its timeout.
    Deadline(Duration),
    /// An `InterruptHandle` asked.
    Interrupted,
}

/// Stops the call running on one actor, from any thread.
///
/// Like SQLite's `sqlite3_interrupt`: a call that is running ends with
/// [`crate::Error::Interrupted`] within about a millisecond of guest work;
/// with no call running, nothing happens (the next call starts afresh).
/// The handle stays valid across sleeps of its actor's instance, but not
/// across a new wake: take a new handle from the new [`crate::Actor`].
#[derive(Clone, Debug)]
pub struct InterruptHandle {
    requested: Arc<AtomicBool>,
}

impl InterruptHandle {
    pub(crate) fn new() -> InterruptHandle {
        InterruptHandle { requested: Arc::new(AtomicBool::new(false)) }
    }

    /// Asks the running call, if any, to stop.
    pub fn interrupt(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }
}

/// The watchdog of one Store.
pub(crate) struct Watchdog {
    /// Guest address of the control block (0 until the guest is set up).
    control: i32,
    interrupt: InterruptHandle,
    grace: Duration,
    /// How long a fiber runs before it yields; `None`: it does not.
    time_slice: Option<Duration>,
    /// When the current slice began.
    slice_start: Instant,
    deadline: Option<(Instant, Duration)>,
    stopped: Option<(StopReason, Instant)>,
}

impl Watchdog {
    pub(crate) fn new(interrupt: InterruptHandle, grace: Duration, time_slice: Option<Duration>) -> Watchdog {
        Watchdog { control: 0, interrupt, grace, time_slice, slice_start: Instant::now(), deadline: None, stopped: None }
    }

    /// Whether a fiber should yield now; starts a new slice if so.
    fn slice_over(&mut self, now: Instant) -> bool {
        match self.time_slice {
            Some(slice) if now.duration_since(self.slice_start) >= slice => {
                self.slice_start = now;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn set_control(&mut self, address: i32) {
        self.control = address;
    }

    /// What to do at one tick.
    fn check(&mut self, now: Instant) -> Verdict {
        if let Some((_, since)) = self.stopped {
            return if now.duration_since(since) >= self.grace { Verdict::Trap } else { Verdict::Continue };
        }
        let reason = if self.interrupt.requested.load(Ordering::Relaxed) {
            StopReason::Interrupted
        } else {
            match self.deadline {
                Some((at, timeout)) if now >= at => StopReason::Deadline(timeout),
                _ => return Verdict::Continue,
            }
        };
        self.stopped = Some((reason, now));
        Verdict::Stop
    }
}

enum Verdict {
    Continue,
    Stop,
    Trap,
}

/// The epoch callback for a Store whose guest is called as `mode` says: a
/// fiber yields to the async runtime at the end of each time slice, so that
/// a long statement neither starves other tasks nor escapes a dropped
/// future; a direct call cannot yield.
pub(crate) fn on_tick(mode: CallMode) -> impl FnMut(StoreContextMut<'_, ActorState>) -> wasmtime::Result<UpdateDeadline> {
    move |mut cx| {
        let now = Instant::now();
        match cx.data_mut().watchdog.check(now) {
            Verdict::Continue => {}
            Verdict::Stop => set_word(&mut cx, STOP, 1),
            Verdict::Trap => {
                let reason = cx.data().watchdog.stopped.map(|(r, _)| r);
                return Err(wasmtime::Error::msg(format!(
                    "the guest did not stop within the grace period after {}",
                    match reason {
                        Some(StopReason::Deadline(_)) | None => "its deadline",
                        Some(StopReason::Interrupted) => "an interrupt",
                    }
                )));
            }
        }
        Ok(match mode {
            CallMode::Fiber if cx.data_mut().watchdog.slice_over(now) => UpdateDeadline::Yield(1),
            _ => UpdateDeadline::Continue(1),
        })
    }
}

/// Writes one word of the control block; a bad address is ignored, since
/// it only means the guest will not stop by itself, and the grace period
/// catches that.
fn set_word(cx: &mut StoreContextMut<'_, ActorState>, offset: i32, value: i32) {
    let (control, memory) = (cx.data().watchdog.control, cx.data().memory);
    if let (Some(memory), Some(at)) = (memory, control.checked_add(offset)) {
        let _ = write_i32(memory.data_mut(&mut *cx), at, value);
    }
}

/// Starts watching a call that starts at `now`: a deadline `timeout` from
/// then, and a clean slate (no stop, no interrupt request left from before
/// the call).
///
/// `now` must come from the precise clock, read just before the call: a
/// clock the ticker keeps lags by as much as the ticker is starved of CPU,
/// and would stop a call before its timeout.
pub(crate) fn arm(store: &mut Store<ActorState>, timeout: Option<Duration>, now: Instant) {
    let dog = &mut store.data_mut().watchdog;
    dog.interrupt.requested.store(false, Ordering::Relaxed);
    dog.stopped = None;
    dog.slice_start = now;
    dog.deadline = timeout.map(|t| (now + t, t));
    set_word(&mut store.as_context_mut(), STOP, 0);
}

/// Ends watching a call; says why it was stopped, if it was.
pub(crate) fn disarm(store: &mut Store<ActorState>) -> Option<StopReason> {
    let dog = &mut store.data_mut().watchdog;
    dog.deadline = None;
    dog.stopped.take().map(|(reason, _)| reason)
}

/// Lets the host's own SQL (migrations, journal upkeep) past the guest's
/// authorizer, or stops letting it.
pub(crate) fn set_trusted(store: &mut Store<ActorState>, trusted: bool) {
    set_word(&mut store.as_context_mut(), TRUSTED, i32::from(trusted));
}

/// The guest's own counts of rows read and written since its connection
/// opened (`Control.rowsRead`, `Control.rowsWritten`): untrusted, zero when
/// unreadable.
pub(crate) fn reported_rows(store: &Store<ActorState>) -> (i64, i64) {
    let (control, memory) = (store.data().watchdog.control, store.data().memory);
    let Some(memory) = memory else { return (0, 0) };
    let data = memory.data(store);
    let word = |offset: i32| control.checked_add(offset).and_then(|at| super::memory::read_i64(data, at)).unwrap_or(0);
    (word(ROWS_READ), word(ROWS_WRITTEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sleep ends once due, woken by the ticker; one dropped while
    /// pending leaves nothing for the ticker to walk.
    #[tokio::test]
    async fn tick_sleeps_wake_when_due_and_leave_nothing_when_dropped() {
        tick(None).unwrap();
        TickSleep::new(Duration::from_millis(3)).await;
        let mut pending: Vec<TickSleep> = (0..1000).map(|_| TickSleep::new(Duration::from_secs(60))).collect();
        let keys: Vec<(Instant, u64)> = pending.iter().map(|s| s.key).collect();
        for sleep in &mut pending {
            assert!(futures_poll(sleep).is_pending());
        }
        assert!(keys.iter().all(|k| SLEEPERS.lock().unwrap().contains_key(k)));
        drop(pending);
        assert!(!keys.iter().any(|k| SLEEPERS.lock().unwrap().contains_key(k)));
    }

    fn futures_poll(sleep: &mut TickSleep) -> Poll<()> {
        Pin::new(sleep).poll(&mut Context::from_waker(Waker::noop()))
    }
}

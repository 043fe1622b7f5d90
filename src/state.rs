//! `ActorState`: what one actor's wasmtime Store holds. It lives exactly as
//! long as the Store, so dropping the Store (sleep, destroy, a failed wake,
//! a panic) releases everything here, and the gauges notice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use wasmtime::{Memory, ResourceLimiter};

use crate::actor_id::ActorId;
use crate::guest::watchdog::Watchdog;
use crate::kv::KvStore;
use crate::vfs::ActorFiles;

/// Counts one `Host` keeps of its own instances, for tests and benchmarks
/// (each Host has its own; they are not process-wide).
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Stores alive right now.
    pub(crate) instances: AtomicUsize,
    /// Bytes of linear memory those stores hold.
    pub(crate) memory_bytes: AtomicUsize,
}

/// The data of one actor's Store.
pub(crate) struct ActorState {
    pub(crate) files: ActorFiles,
    /// Set right after instantiation, before the guest runs.
    pub(crate) memory: Option<Memory>,
    /// Answers xRandomness.
    pub(crate) rng: SmallRng,
    /// Reused by xRead so that page reads do not allocate.
    pub(crate) read_buf: Vec<u8>,
    /// Stops a call at its deadline or on an interrupt.
    pub(crate) watchdog: Watchdog,
    limiter: MemoryLimiter,
}

impl ActorState {
    pub(crate) fn new(
        kv: Arc<dyn KvStore>,
        actor: ActorId,
        gauges: Arc<Gauges>,
        max_memory: usize,
        seed: Option<u64>,
        watchdog: Watchdog,
    ) -> ActorState {
        gauges.instances.fetch_add(1, Ordering::Relaxed);
        ActorState {
            files: ActorFiles::new(kv, actor),
            memory: None,
            rng: seed.map_or_else(|| SmallRng::from_rng(&mut rand::rng()), SmallRng::seed_from_u64),
            read_buf: Vec::new(),
            watchdog,
            limiter: MemoryLimiter { gauges, max_memory, current: 0 },
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }
}

/// Caps an actor's linear memory and keeps its Host's gauges true.
struct MemoryLimiter {
    gauges: Arc<Gauges>,
    max_memory: usize,
    /// Bytes this store's memory has now.
    current: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Ok(false);
        }
        debug_assert_eq!(current, self.current);
        self.gauges.memory_bytes.fetch_add(desired - current, Ordering::Relaxed);
        self.current = desired;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.gauges.memory_bytes.fetch_sub(self.current, Ordering::Relaxed);
        self.gauges.instances.fetch_sub(1, Ordering::Relaxed);
    }
}

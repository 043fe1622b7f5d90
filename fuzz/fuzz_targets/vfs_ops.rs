//! Arbitrary sequences of file operations (open, read, write, truncate,
//! sync, size, delete, access, lock, batch-atomic writes, restart) through
//! the host VFS, compared at every step with a model of byte files.
//! The checker is `wasqlite::simulation::vfs_model::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasqlite::KvLimits;
use wasqlite::simulation::vfs_model::{check, decode};

fuzz_target!(|data: &[u8]| {
    let Some((&profile, rest)) = data.split_first() else { return };
    // Rivet's limits exercise batching and the atomic-write fallback.
    let limits = if profile & 1 == 0 { KvLimits::RIVET } else { KvLimits::UNLIMITED };
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    if let Err(e) = runtime.block_on(check(&decode(rest), limits)) {
        panic!("{e}");
    }
});

//! An arbitrary SQL workload with an arbitrary crash, fault or cancellation
//! point: the actor is killed at (or fails) KV operation k, or the API
//! future being polled for the kth time is dropped, and the actor must end
//! up with exactly the committed state. Decoded and checked by
//! `wasqlite::simulation::run_fuzz_input`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasqlite::simulation::run_fuzz_input;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    // Current-thread: the same input cancels at the same point every time.
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = runtime().block_on(run_fuzz_input(data)) {
        panic!("{e}");
    }
});

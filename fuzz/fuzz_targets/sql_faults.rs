//! An arbitrary SQL workload with an arbitrary crash or fault point: the
//! actor is killed at (or fails) KV operation k, and must recover to exactly
//! the committed state. Checked by `wasqlite::simulation::{crash_at, fault_at}`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasqlite::KvLimits;
use wasqlite::simulation::{Workload, crash_at, fault_at};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    let [mode, k0, k1, rest @ ..] = data else { return };
    let k = u64::from(u16::from_le_bytes([*k0, *k1]));
    let workload = Workload::from_bytes(rest, 24);
    let result = runtime().block_on(async {
        if mode & 1 == 0 {
            crash_at(&workload, KvLimits::RIVET, k).await.map(drop)
        } else {
            fault_at(&workload, KvLimits::RIVET, k).await.map(drop)
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
});

//! Databases whose stored meta value and chunks are arbitrary (random,
//! truncated, oversized, missing, any size): an actor wakes over them and
//! reads. The answer must be a result or an error, never a panic or a hang,
//! and reading must leave the stored main file as it was.
//! The checker is `wasqlite::simulation::stored_data::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    if let Err(e) = runtime.block_on(wasqlite::simulation::stored_data::check(data)) {
        panic!("{e}");
    }
});

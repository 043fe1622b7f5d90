//! Arbitrary sequences of calls to the host's imports, as a guest
//! compromised by a SQLite bug could make them: out-of-range pointers,
//! overflowing lengths, huge and negative offsets, unknown handles, calls in
//! any order. Each must return a code; a trap or a panic is a finding.
//! The body is `wasqlite::simulation::hostile_guest::run_fuzz_input`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasqlite::simulation::hostile_guest::run_fuzz_input(data);
});

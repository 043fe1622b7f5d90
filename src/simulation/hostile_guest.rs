//! A hostile guest: a WAT module that imports every host function of the
//! ABI and calls each with out-of-range pointers, overflowing lengths,
//! negative and huge offsets, unknown handles, and in the wrong order. Every
//! call must come back with a code, never a trap or a host panic, and the
//! plainly bad ones with an error code. [`run_fuzz_input`] is the
//! `guest_imports` fuzz target's body.

use std::sync::{Arc, OnceLock};

use wasmtime::{Engine, Extern, Instance, Linker, Module, Store, Val};

use crate::actor_id::ActorId;
use crate::guest::CallMode;
use crate::guest::abi::IMPORT_MODULE;
use crate::guest::imports::add_to_linker;
use crate::guest::watchdog::{InterruptHandle, Watchdog};
use crate::kv::MemoryKv;
use crate::state::{ActorState, Gauges};

/// Parameter types of each import, from vfs/wasqlite_abi.h ('i': i32, 'I': i64).
const SIGNATURES: [(&str, &str); 20] = [
    ("xOpen", "iiiii"),
    ("xDelete", "iii"),
    ("xAccess", "iiii"),
    ("xFullPathname", "iiii"),
    ("xRandomness", "ii"),
    ("xSleep", "i"),
    ("xCurrentTimeInt64", "i"),
    ("xGetLastError", "ii"),
    ("xClose", "i"),
    ("xRead", "iiiI"),
    ("xWrite", "iiiI"),
    ("xTruncate", "iI"),
    ("xSync", "ii"),
    ("xFileSize", "ii"),
    ("xLock", "ii"),
    ("xUnlock", "ii"),
    ("xCheckReservedLock", "ii"),
    ("xFileControl", "iii"),
    ("xSectorSize", "i"),
    ("xDeviceCharacteristics", "i"),
];

/// Where the guest keeps the name of its database, and how long it is.
const NAME_AT: i32 = 8;
const NAME_LEN: i32 = 8;

/// One page of memory with "actor.db" at `NAME_AT`; every import, and an
/// export `call_<name>` that forwards its arguments to it.
fn hostile_wat() -> String {
    let ty = |c: char| if c == 'I' { "i64" } else { "i32" };
    let mut wat = String::from("(module\n");
    for (name, params) in SIGNATURES {
        let list: Vec<&str> = params.chars().map(ty).collect();
        wat += &format!("  (import \"{IMPORT_MODULE}\" \"{name}\" (func ${name} (param {}) (result i32)))\n", list.join(" "));
    }
    wat += &format!("  (memory (export \"memory\") 1)\n  (data (i32.const {NAME_AT}) \"actor.db\")\n");
    for (name, params) in SIGNATURES {
        let list: Vec<&str> = params.chars().map(ty).collect();
        let gets: Vec<String> = (0..params.len()).map(|i| format!("local.get {i}")).collect();
        wat += &format!(
            "  (func (export \"call_{name}\") (param {}) (result i32) {} call ${name})\n",
            list.join(" "),
            gets.join(" ")
        );
    }
    wat + ")\n"
}

const I32S: [i32; 9] = [0, 1, -1, NAME_AT, NAME_LEN, 65_535, 65_536, i32::MAX, i32::MIN];
const I64S: [i64; 6] = [0, -1, 4096, 1 << 60, i64::MAX, i64::MIN];

#[cfg(test)]
fn arguments(params: &str) -> Vec<Vec<Val>> {
    let mut all = vec![Vec::new()];
    for c in params.chars() {
        let values: Vec<Val> = if c == 'I' { I64S.map(Val::I64).to_vec() } else { I32S.map(Val::I32).to_vec() };
        all = all.into_iter().flat_map(|prefix| values.iter().map(move |v| [prefix.clone(), vec![*v]].concat())).collect();
    }
    all
}

/// A hostile guest instance over a fresh `MemoryKv`, its imports linked for
/// direct calls.
pub struct HostileGuest {
    store: Store<ActorState>,
    instance: Instance,
}

impl HostileGuest {
    /// # Panics
    ///
    /// If the module does not build or link, which is a bug here.
    pub fn new() -> HostileGuest {
        let (store, instance) = hostile_instance();
        HostileGuest { store, instance }
    }

    /// Calls import number `method` (its index in the ABI) with raw
    /// arguments, wrapped around to the import's parameter count and types;
    /// returns its code.
    ///
    /// # Panics
    ///
    /// If the call traps, which is what a fuzzer looks for.
    pub fn call_raw(&mut self, method: usize, raw: &[i64]) -> i32 {
        let (name, params) = SIGNATURES[method % SIGNATURES.len()];
        let args: Vec<Val> = params
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let v = raw.get(i).copied().unwrap_or(0);
                if c == 'I' { Val::I64(v) } else { Val::I32(v as i32) }
            })
            .collect();
        call(&mut self.store, &self.instance, name, &args)
    }
}

impl Default for HostileGuest {
    fn default() -> Self {
        HostileGuest::new()
    }
}

/// The `guest_imports` fuzz target: each 9-byte record of `data` is one call
/// (a method byte, then 8 bytes from which every argument is drawn, some
/// mapped onto the edges of memory), made in order on one guest.
pub fn run_fuzz_input(data: &[u8]) {
    let mut guest = HostileGuest::new();
    for record in data.chunks_exact(9).take(256) {
        let word = i64::from_le_bytes(record[1..9].try_into().expect("8 bytes"));
        let pick = |shift: u32| -> i64 {
            let b = (word >> shift) & 0xff;
            match b % 8 {
                0 => I32S[(b as usize / 8) % I32S.len()].into(),
                1 => I64S[(b as usize / 8) % I64S.len()],
                2 => i64::from(NAME_AT),
                3 => i64::from(NAME_LEN),
                _ => (word >> (shift / 2)) & 0xffff,
            }
        };
        let args: Vec<i64> = (0..5).map(|i| pick(8 * i)).collect();
        guest.call_raw(usize::from(record[0]), &args);
    }
}

/// The engine, module and linker, built once: compiling them per input
/// would make the fuzz target a compiler benchmark.
fn prepared() -> &'static (Engine, Module, Linker<ActorState>) {
    static PREPARED: OnceLock<(Engine, Module, Linker<ActorState>)> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let engine = Engine::default();
        let module = Module::new(&engine, wat::parse_str(hostile_wat()).unwrap()).unwrap();
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker, CallMode::Direct).unwrap();
        (engine, module, linker)
    })
}

fn hostile_instance() -> (Store<ActorState>, Instance) {
    let (engine, module, linker) = prepared();
    let kv = Arc::new(MemoryKv::new());
    let watchdog = Watchdog::new(InterruptHandle::new(), std::time::Duration::ZERO, None);
    let state = ActorState::new(kv, ActorId::new("hostile").unwrap(), Arc::new(Gauges::default()), 1 << 20, Some(1), watchdog);
    let mut store = Store::new(engine, state);
    let instance = linker.instantiate(&mut store, module).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    store.data_mut().memory = Some(memory);
    (store, instance)
}

fn call(store: &mut Store<ActorState>, instance: &Instance, name: &str, args: &[Val]) -> i32 {
    let Some(Extern::Func(f)) = instance.get_export(&mut *store, &format!("call_{name}")) else { panic!("no call_{name}") };
    let mut result = [Val::I32(0)];
    f.call(&mut *store, args, &mut result).unwrap_or_else(|e| panic!("{name}{args:?} trapped: {e}"));
    result[0].unwrap_i32()
}

#[cfg(test)]
mod tests {
use super::*;
use crate::codes as sqlite;
use crate::guest::abi::VFS_METHODS;

/// Every import, with every combination of hostile arguments, twice over
/// (the second round meets whatever files the first opened): each returns
/// a code and none traps or panics.
#[test]
fn every_import_survives_every_hostile_argument() {
    assert_eq!(SIGNATURES.map(|(n, _)| n), VFS_METHODS, "the table follows the ABI");
    let (mut store, instance) = hostile_instance();
    let mut calls = 0;
    for _ in 0..2 {
        for (name, params) in SIGNATURES {
            for args in arguments(params) {
                call(&mut store, &instance, name, &args);
                calls += 1;
            }
        }
    }
    assert!(calls > 100_000, "{calls}");
}

/// The plainly bad calls get error codes, and the host's state stays sound:
/// a file opened afterwards works as it should.
#[test]
fn bad_pointers_handles_offsets_and_order_get_error_codes() {
    let (mut store, instance) = hostile_instance();
    let i = Val::I32;
    let l = Val::I64;
    let main = sqlite::SQLITE_OPEN_MAIN_DB | sqlite::SQLITE_OPEN_CREATE | sqlite::SQLITE_OPEN_READWRITE;
    let mut c = |name: &str, args: &[Val]| call(&mut store, &instance, name, args);
    // Before any open: every file method on any handle is misuse.
    for handle in [0, 1, 2, 3, -1, 4, i32::MAX] {
        assert_eq!(c("xRead", &[i(handle), i(64), i(16), l(0)]), sqlite::SQLITE_MISUSE);
        assert_eq!(c("xWrite", &[i(handle), i(64), i(16), l(0)]), sqlite::SQLITE_MISUSE);
        assert_eq!(c("xClose", &[i(handle)]), sqlite::SQLITE_MISUSE);
        assert_eq!(c("xSync", &[i(handle), i(0)]), sqlite::SQLITE_MISUSE);
    }
    // Names out of bounds, and names that are not the actor's.
    assert_eq!(c("xOpen", &[i(65_530), i(100), i(main), i(0), i(200)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xOpen", &[i(NAME_AT), i(-1), i(main), i(0), i(200)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xOpen", &[i(NAME_AT), i(5), i(main), i(0), i(200)]), sqlite::SQLITE_CANTOPEN);
    // The right name with the wrong type flags.
    let journal_flags = sqlite::SQLITE_OPEN_MAIN_JOURNAL | sqlite::SQLITE_OPEN_CREATE;
    assert_eq!(c("xOpen", &[i(NAME_AT), i(NAME_LEN), i(journal_flags), i(0), i(200)]), sqlite::SQLITE_CANTOPEN);
    // An out-parameter out of bounds opens nothing.
    assert_eq!(c("xOpen", &[i(NAME_AT), i(NAME_LEN), i(main), i(0), i(65_534)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xOpen", &[i(NAME_AT), i(NAME_LEN), i(main), i(65_534), i(200)]), sqlite::SQLITE_MISUSE);
    // Opened properly, once; a second open is refused.
    assert_eq!(c("xOpen", &[i(NAME_AT), i(NAME_LEN), i(main), i(0), i(200)]), sqlite::SQLITE_OK);
    assert_eq!(c("xOpen", &[i(NAME_AT), i(NAME_LEN), i(main), i(0), i(200)]), sqlite::SQLITE_CANTOPEN);
    // Buffers past the end, negative lengths and offsets, huge offsets.
    assert_eq!(c("xWrite", &[i(0), i(65_000), i(4096), l(0)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xWrite", &[i(0), i(64), i(-16), l(0)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xWrite", &[i(0), i(64), i(16), l(-1)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xWrite", &[i(0), i(64), i(16), l(1 << 60)]), sqlite::SQLITE_FULL);
    assert_eq!(c("xWrite", &[i(0), i(64), i(16), l(i64::MAX)]), sqlite::SQLITE_FULL);
    assert_eq!(c("xRead", &[i(0), i(64), i(16), l(i64::MIN)]), sqlite::SQLITE_MISUSE);
    assert_ne!(c("xTruncate", &[i(0), l(-5)]), sqlite::SQLITE_OK);
    assert_eq!(c("xTruncate", &[i(0), l(1 << 60)]), sqlite::SQLITE_FULL);
    assert_eq!(c("xFileSize", &[i(0), i(65_533)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xRandomness", &[i(i32::MAX), i(0)]), 0);
    assert_eq!(c("xRandomness", &[i(-1), i(0)]), 0);
    assert_eq!(c("xFullPathname", &[i(NAME_AT), i(NAME_LEN), i(65_530), i(100)]), sqlite::SQLITE_MISUSE);
    assert_eq!(c("xGetLastError", &[i(i32::MAX), i(60_000)]), 0);
    // After all that, the file still reads back what a good write put there.
    assert_eq!(c("xWrite", &[i(0), i(NAME_AT), i(NAME_LEN), l(100)]), sqlite::SQLITE_OK);
    assert_eq!(c("xRead", &[i(0), i(1000), i(NAME_LEN), l(100)]), sqlite::SQLITE_OK);
    let memory = store.data().memory.unwrap();
    assert_eq!(&memory.data(&store)[1000..1008], b"actor.db");
}

/// A fuzz input of every method with assorted words runs clean.
#[test]
fn the_fuzz_body_runs() {
    let data: Vec<u8> = (0..20u8).flat_map(|m| [m, 1, 2, 0x83, 4, 0xff, 6, 7, 8]).collect();
    run_fuzz_input(&data);
}
}

//! `GuestApi`: the SQL surface the guest exports (vfs/sql_api.c), as typed
//! functions, plus the calls that move bytes in and out of guest memory.
//!
//! Every call goes through `invoke`, which calls directly or on a fiber
//! (`CallMode`), matching how the instance's imports were linked. Pointers
//! the guest hands back (rows, messages) are read through the checked
//! accessors in `super::memory`; one that points outside memory is a guest
//! bug and becomes an error, not a panic.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{Extern, Instance, Memory, Module, ModuleExport, Store, TypedFunc, WasmParams, WasmResults};

use super::CallMode;
use super::abi::{ABI_VERSION, MAX_COLUMNS};
use super::handles::{DbHandle, GuestPtr, StmtHandle, StmtRef};
use super::memory::{c_str, read_i32, slice, slice_mut};
use crate::error::Error;
use crate::state::ActorState;

/// Longest error message read back from the guest.
const MAX_MESSAGE: usize = 64 * 1024;

/// What `wasqlite_prepare` reports (PrepareResult in sql_api.c).
pub(crate) struct Prepare {
    /// SQLite's code.
    pub(crate) rc: i32,
    /// The statement; `None` when the text held none (or on error).
    pub(crate) prepared: Option<Prepared>,
    /// Bytes of the SQL text consumed.
    pub(crate) tail: usize,
}

/// A statement the guest prepared, and its shape.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) stmt: StmtHandle,
    pub(crate) column_count: usize,
    pub(crate) param_count: usize,
}

/// The columns a statement's rows have, as a step reports them
/// (StepResult.nCol and .nReprepare): SQLite re-prepares a statement whose
/// schema changed when it steps it, and the new program may have other
/// columns. Columns learned under one `reprepares` value hold until a step
/// reports another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Values in each row.
    pub(crate) column_count: usize,
    /// `SQLITE_STMTSTATUS_REPREPARE`: 0 for a statement just prepared.
    pub(crate) reprepares: u32,
}

/// What one `run` or `next` call ended with.
pub(crate) enum Step {
    /// More rows may follow: call `next`.
    More,
    /// The statement finished (and the guest reset it).
    Done {
        /// `sqlite3_changes64()`.
        changes: i64,
        /// `sqlite3_last_insert_rowid()`.
        last_rowid: i64,
    },
    /// An SQLite error code (the guest reset the statement).
    Failed(i32),
}

/// What one `run_many` call did.
pub(crate) struct ManyResult {
    /// `SQLITE_DONE`, or the code of the set that failed.
    pub(crate) rc: i32,
    /// Sets that ran to the end before it.
    pub(crate) done: usize,
    pub(crate) changes: i64,
    pub(crate) last_rowid: i64,
}

/// The guest's exports, resolved once per instance.
pub(crate) struct GuestApi {
    memory: Memory,
    malloc: TypedFunc<i32, i32>,
    free: TypedFunc<i32, ()>,
    open: TypedFunc<(i32, i32, i32), i32>,
    close: TypedFunc<i32, i32>,
    prepare: TypedFunc<(i32, i32, i32, i32), i32>,
    bind: TypedFunc<(i32, i32, i32), i32>,
    run: TypedFunc<(i32, i32, i32, i32), i32>,
    next: TypedFunc<(i32, i32), i32>,
    run_many: TypedFunc<(i32, i32, i32, i32), i32>,
    column_names: TypedFunc<(i32, i32), i32>,
    describe: TypedFunc<(i32, i32), i32>,
    set_last_insert_rowid: TypedFunc<(i32, i64), ()>,
    finalize: TypedFunc<i32, i32>,
    errcode: TypedFunc<i32, i32>,
    errmsg: TypedFunc<i32, i32>,
    autocommit: TypedFunc<i32, i32>,
    control: TypedFunc<(), i32>,
    /// Guest memory for out-parameters (PrepareResult, StepResult and
    /// Buffer in sql_api.c): `SCRATCH_BYTES`.
    scratch: i32,
    /// A grow-only guest buffer for SQL text and parameters (0: none yet).
    arg_buf: i32,
    arg_cap: usize,
    /// How this instance's imports were linked.
    mode: CallMode,
}

/// Size of the largest out-parameter struct, StepResult.
const SCRATCH_BYTES: usize = 40;

/// Calls `func` the way `mode` requires.
async fn invoke<P: WasmParams + Send + Sync, R: WasmResults + Send + Sync>(
    mode: CallMode,
    func: &TypedFunc<P, R>,
    store: &mut Store<ActorState>,
    params: P,
) -> wasmtime::Result<R> {
    match mode {
        CallMode::Direct => func.call(store, params),
        CallMode::Fiber => func.call_async(store, params).await,
    }
}

fn guest_err(context: &'static str) -> impl FnOnce(wasmtime::Error) -> Error {
    move |source| Error::trap(context, source)
}

fn bad_step_result() -> Error {
    bad_guest_pointer("reading a StepResult")
}

fn bad_guest_pointer(context: &'static str) -> Error {
    Error::guest(context, "the guest returned an out-of-bounds pointer")
}

/// The guest's exports, looked up by name once per compiled module.
pub(crate) struct ExportIndex {
    memory: ModuleExport,
    /// The reactor's `_initialize`, absent from a pre-initialized module.
    initialize: Option<ModuleExport>,
    funcs: [ModuleExport; FUNCS.len()],
    /// Set once one instance has passed the ABI version and signature
    /// checks; every later instance of the same module skips them.
    verified: AtomicBool,
}

/// Every function export the host calls, in `ExportIndex::funcs` order.
const FUNCS: [&str; 18] = [
    "wasqlite_abi_version",
    "wasqlite_malloc",
    "wasqlite_free",
    "wasqlite_open",
    "wasqlite_close",
    "wasqlite_prepare",
    "wasqlite_bind",
    "wasqlite_run",
    "wasqlite_next",
    "wasqlite_run_many",
    "wasqlite_column_names",
    "wasqlite_describe",
    "wasqlite_set_last_insert_rowid",
    "wasqlite_finalize",
    "wasqlite_errcode",
    "wasqlite_errmsg",
    "wasqlite_autocommit",
    "wasqlite_control",
];

impl ExportIndex {
    pub(crate) fn new(module: &Module) -> Result<ExportIndex, Error> {
        let find = |name: &str| {
            module.get_export_index(name).ok_or_else(|| Error::Engine(format!("the guest module does not export {name}")))
        };
        let mut funcs = Vec::with_capacity(FUNCS.len());
        for name in FUNCS {
            funcs.push(find(name)?);
        }
        Ok(ExportIndex {
            memory: find("memory")?,
            initialize: module.get_export_index("_initialize"),
            funcs: funcs.try_into().unwrap_or_else(|_| unreachable!("one per name")),
            verified: AtomicBool::new(false),
        })
    }
}

impl GuestApi {
    /// Resolves the exports, checks the ABI version and signatures (once per
    /// module), and runs the reactor's `_initialize`.
    pub(crate) async fn new(
        store: &mut Store<ActorState>,
        instance: &Instance,
        index: &ExportIndex,
        mode: CallMode,
    ) -> Result<GuestApi, Error> {
        let verified = index.verified.load(Ordering::Acquire);
        let mut slot = 0;
        macro_rules! export {
            () => {{
                let name = FUNCS[slot];
                let func = instance
                    .get_module_export(&mut *store, &index.funcs[slot])
                    .and_then(Extern::into_func)
                    .ok_or(Error::guest("resolving exports", format!("{name} is not a function")))?;
                slot += 1;
                if verified {
                    // SAFETY: an instance of this same module passed `typed`'s
                    // signature check for this export (the branch below), and
                    // a module's export types never change.
                    unsafe { TypedFunc::new_unchecked(&*store, func) }
                } else {
                    func.typed(&*store).map_err(|e| Error::guest("checking export signatures", format!("{name}: {e}")))?
                }
            }};
        }
        let memory = instance
            .get_module_export(&mut *store, &index.memory)
            .and_then(Extern::into_memory)
            .ok_or(Error::guest("resolving exports", "the module exports no memory"))?;
        store.data_mut().memory = Some(memory);

        let version: TypedFunc<(), i32> = export!();
        if !verified {
            let found = invoke(mode, &version, store, ()).await.map_err(guest_err("reading the ABI version"))?;
            if found != ABI_VERSION {
                return Err(Error::AbiMismatch { expected: ABI_VERSION, found });
            }
        }
        let initialize = match &index.initialize {
            Some(export) => Some(
                instance
                    .get_module_export(&mut *store, export)
                    .and_then(Extern::into_func)
                    .ok_or(Error::guest("resolving exports", "_initialize is not a function"))?
                    .typed::<(), ()>(&*store)
                    .map_err(|e| Error::guest("checking export signatures", format!("_initialize: {e}")))?,
            ),
            None => None,
        };
        let mut api = GuestApi {
            memory,
            malloc: export!(),
            free: export!(),
            open: export!(),
            close: export!(),
            prepare: export!(),
            bind: export!(),
            run: export!(),
            next: export!(),
            run_many: export!(),
            column_names: export!(),
            describe: export!(),
            set_last_insert_rowid: export!(),
            finalize: export!(),
            errcode: export!(),
            errmsg: export!(),
            autocommit: export!(),
            control: export!(),
            scratch: 0,
            arg_buf: 0,
            arg_cap: 0,
            mode,
        };
        debug_assert_eq!(slot, FUNCS.len());
        index.verified.store(true, Ordering::Release);
        if let Some(initialize) = initialize {
            invoke(mode, &initialize, store, ()).await.map_err(guest_err("initializing the guest"))?;
        }
        api.scratch = api.malloc(store, SCRATCH_BYTES).await?;
        let control = invoke(mode, &api.control, store, ()).await.map_err(guest_err("wasqlite_control"))?;
        if slice(api.memory.data(&*store), control, 8).is_none() {
            return Err(bad_guest_pointer("wasqlite_control"));
        }
        store.data_mut().watchdog.set_control(control);
        Ok(api)
    }

    async fn malloc(&self, store: &mut Store<ActorState>, n: usize) -> Result<i32, Error> {
        let n = i32::try_from(n).map_err(|_| Error::TooBig { what: "argument", len: n })?;
        let p = invoke(self.mode, &self.malloc, store, n).await.map_err(guest_err("wasqlite_malloc"))?;
        if p == 0 {
            return Err(Error::Sqlite { code: crate::codes::SQLITE_NOMEM, message: format!("guest could not allocate {n} bytes"), storage: None });
        }
        Ok(p)
    }

    /// Copies `bytes` into the reusable argument buffer and returns its
    /// guest address.
    pub(crate) async fn stage(&mut self, store: &mut Store<ActorState>, bytes: &[u8]) -> Result<GuestPtr, Error> {
        if bytes.len() > self.arg_cap {
            if self.arg_buf != 0 {
                invoke(self.mode, &self.free, store, self.arg_buf).await.map_err(guest_err("wasqlite_free"))?;
                self.arg_buf = 0;
                self.arg_cap = 0;
            }
            let cap = bytes.len().next_power_of_two().max(256);
            self.arg_buf = self.malloc(store, cap).await?;
            self.arg_cap = cap;
        }
        let dst = slice_mut(self.memory.data_mut(&mut *store), self.arg_buf, bytes.len() as i32)
            .ok_or_else(|| bad_guest_pointer("staging an argument"))?;
        dst.copy_from_slice(bytes);
        Ok(GuestPtr(self.arg_buf))
    }

    /// Opens the actor's database under `limits` (`sqlite3_limit` values
    /// by index); returns the connection handle.
    pub(crate) async fn open(&mut self, store: &mut Store<ActorState>, limits: &[i32]) -> Result<DbHandle, Error> {
        let bytes: Vec<u8> = limits.iter().flat_map(|v| v.to_le_bytes()).collect();
        let staged = self.stage(store, &bytes).await?;
        let args = (self.scratch, staged.0, limits.len() as i32);
        let rc = invoke(self.mode, &self.open, store, args).await.map_err(guest_err("wasqlite_open"))?;
        let db = read_i32(self.memory.data(&*store), self.scratch).ok_or_else(|| bad_guest_pointer("wasqlite_open"))?;
        if rc != 0 {
            let message = if db != 0 { self.errmsg(store, DbHandle(db)).await? } else { "sqlite3_open_v2 failed".into() };
            return Err(Error::Sqlite { code: rc, message, storage: store.data_mut().files.take_last_error() });
        }
        Ok(DbHandle(db))
    }

    pub(crate) async fn close(&self, store: &mut Store<ActorState>, db: DbHandle) -> Result<i32, Error> {
        invoke(self.mode, &self.close, store, db.0).await.map_err(guest_err("wasqlite_close"))
    }

    /// Prepares the first statement of the `len` bytes of SQL at `sql`.
    pub(crate) async fn prepare(&self, store: &mut Store<ActorState>, db: DbHandle, sql: GuestPtr, len: usize) -> Result<Prepare, Error> {
        let len_arg = i32::try_from(len).map_err(|_| Error::TooBig { what: "SQL text", len })?;
        let rc = invoke(self.mode, &self.prepare, store, (db.0, sql.0, len_arg, self.scratch))
            .await
            .map_err(guest_err("wasqlite_prepare"))?;
        let mem = self.memory.data(&*store);
        let field = |i: i32| {
            self.scratch.checked_add(4 * i).and_then(|at| read_i32(mem, at)).ok_or_else(|| bad_guest_pointer("wasqlite_prepare"))
        };
        let count = |i: i32| field(i).map(|n| usize::try_from(n).unwrap_or(0));
        let (column_count, param_count) = (count(2)?, count(3)?);
        if column_count > MAX_COLUMNS {
            return Err(Error::guest("wasqlite_prepare", format!("the guest reports {column_count} columns")));
        }
        let prepared = StmtHandle::new(field(0)?).map(|stmt| Prepared { stmt, column_count, param_count });
        Ok(Prepare { rc, prepared, tail: count(1)?.min(len) })
    }

    pub(crate) async fn bind(&self, store: &mut Store<ActorState>, stmt: StmtRef, params: GuestPtr, len: usize) -> Result<i32, Error> {
        invoke(self.mode, &self.bind, store, (stmt.0, params.0, len as i32)).await.map_err(guest_err("wasqlite_bind"))
    }

    /// Binds `len` bytes of encoded parameters at `params` (none when `len`
    /// is 0) and steps `stmt`: `wasqlite_run`. Rows go to `on_rows`.
    pub(crate) async fn run(
        &self,
        store: &mut Store<ActorState>,
        stmt: StmtRef,
        params: GuestPtr,
        len: usize,
        on_rows: impl FnOnce(&[u8], usize, Shape) -> Result<(), Error>,
    ) -> Result<Step, Error> {
        let rc = invoke(self.mode, &self.run, store, (stmt.0, params.0, len as i32, self.scratch))
            .await
            .map_err(guest_err("wasqlite_run"))?;
        self.step_result(store, rc, on_rows)
    }

    /// Continues a statement that returned `Step::More`: `wasqlite_next`.
    pub(crate) async fn next(
        &self,
        store: &mut Store<ActorState>,
        stmt: StmtRef,
        on_rows: impl FnOnce(&[u8], usize, Shape) -> Result<(), Error>,
    ) -> Result<Step, Error> {
        let rc = invoke(self.mode, &self.next, store, (stmt.0, self.scratch)).await.map_err(guest_err("wasqlite_next"))?;
        self.step_result(store, rc, on_rows)
    }

    /// Runs `stmt` once per parameter set in the `len` bytes at `sets`
    /// (`wasqlite_run_many`). Returns the guest's code (`SQLITE_DONE` when
    /// every set ran), how many sets ran to the end, the sum of their
    /// changes and the last insert rowid.
    pub(crate) async fn run_many(
        &self,
        store: &mut Store<ActorState>,
        stmt: StmtRef,
        sets: GuestPtr,
        len: usize,
    ) -> Result<ManyResult, Error> {
        let rc = invoke(self.mode, &self.run_many, store, (stmt.0, sets.0, len as i32, self.scratch))
            .await
            .map_err(guest_err("wasqlite_run_many"))?;
        let mem = self.memory.data(&*store);
        let done = usize::try_from(self.step_i32(mem, 8)?).map_err(|_| bad_step_result())?;
        Ok(ManyResult { rc, done, changes: self.step_i64(mem, 16)?, last_rowid: self.step_i64(mem, 24)? })
    }

    /// The columns the StepResult at `scratch` reports, within bounds: the
    /// count sizes the decoding of every row after it.
    fn shape(&self, mem: &[u8]) -> Result<Shape, Error> {
        let column_count = usize::try_from(self.step_i32(mem, 12)?).ok().filter(|&n| n <= MAX_COLUMNS);
        let reprepares = u32::try_from(self.step_i32(mem, 32)?).ok();
        match column_count.zip(reprepares) {
            Some((column_count, reprepares)) => Ok(Shape { column_count, reprepares }),
            None => Err(Error::guest("reading a StepResult", "the column count or re-prepare counter is out of range")),
        }
    }

    /// The i32 at `at` in the StepResult at `scratch`.
    fn step_i32(&self, mem: &[u8], at: i32) -> Result<i32, Error> {
        self.scratch.checked_add(at).and_then(|p| read_i32(mem, p)).ok_or_else(bad_step_result)
    }

    /// The i64 at `at` in the StepResult at `scratch`.
    fn step_i64(&self, mem: &[u8], at: i32) -> Result<i64, Error> {
        self.scratch
            .checked_add(at)
            .and_then(|p| slice(mem, p, 8))
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(bad_step_result)
    }

    /// Reads the StepResult the guest left at `scratch` (STEP RESULT in
    /// vfs/wasqlite_abi.h): pRows @0, nBytes @4, nRows @8, nCol @12,
    /// changes @16, lastRowid @24, nReprepare @32.
    fn step_result(
        &self,
        store: &Store<ActorState>,
        rc: i32,
        on_rows: impl FnOnce(&[u8], usize, Shape) -> Result<(), Error>,
    ) -> Result<Step, Error> {
        if rc != crate::codes::SQLITE_ROW && rc != crate::codes::SQLITE_DONE {
            return Ok(Step::Failed(rc));
        }
        let mem = self.memory.data(store);
        let count = usize::try_from(self.step_i32(mem, 8)?).map_err(|_| bad_step_result())?;
        let rows = slice(mem, self.step_i32(mem, 0)?, self.step_i32(mem, 4)?).ok_or_else(bad_step_result)?;
        on_rows(rows, count, self.shape(mem)?)?;
        if rc == crate::codes::SQLITE_ROW {
            return Ok(Step::More);
        }
        Ok(Step::Done { changes: self.step_i64(mem, 16)?, last_rowid: self.step_i64(mem, 24)? })
    }

    /// The encoded columns of `stmt`: names and declared types (column
    /// encoding in vfs/wasqlite_abi.h), unchecked.
    pub(crate) async fn column_names<'a>(&self, store: &'a mut Store<ActorState>, stmt: StmtRef) -> Result<(i32, &'a [u8]), Error> {
        let rc = invoke(self.mode, &self.column_names, store, (stmt.0, self.scratch))
            .await
            .map_err(guest_err("wasqlite_column_names"))?;
        Ok((rc, self.out_buffer(store, "wasqlite_column_names")?))
    }

    /// The encoded description of `stmt`: flags and parameter names
    /// (description encoding in vfs/wasqlite_abi.h), unchecked.
    pub(crate) async fn describe<'a>(&self, store: &'a mut Store<ActorState>, stmt: StmtRef) -> Result<(i32, &'a [u8]), Error> {
        let rc = invoke(self.mode, &self.describe, store, (stmt.0, self.scratch)).await.map_err(guest_err("wasqlite_describe"))?;
        Ok((rc, self.out_buffer(store, "wasqlite_describe")?))
    }

    /// `sqlite3_set_last_insert_rowid`.
    pub(crate) async fn set_last_insert_rowid(&self, store: &mut Store<ActorState>, db: DbHandle, rowid: i64) -> Result<(), Error> {
        invoke(self.mode, &self.set_last_insert_rowid, store, (db.0, rowid)).await.map_err(guest_err("wasqlite_set_last_insert_rowid"))
    }

    /// The buffer a Buffer struct at `scratch` points to.
    fn out_buffer<'a>(&self, store: &'a Store<ActorState>, context: &'static str) -> Result<&'a [u8], Error> {
        let mem = self.memory.data(store);
        let (ptr, len) = (read_i32(mem, self.scratch), self.scratch.checked_add(4).and_then(|p| read_i32(mem, p)));
        ptr.zip(len).and_then(|(p, n)| slice(mem, p, n)).ok_or_else(|| bad_guest_pointer(context))
    }

    /// `sqlite3_finalize`; takes the statement, whose only owner this is.
    pub(crate) async fn finalize(&self, store: &mut Store<ActorState>, stmt: StmtHandle) -> Result<i32, Error> {
        invoke(self.mode, &self.finalize, store, stmt.into_raw()).await.map_err(guest_err("wasqlite_finalize"))
    }

    pub(crate) async fn autocommit(&self, store: &mut Store<ActorState>, db: DbHandle) -> Result<bool, Error> {
        Ok(invoke(self.mode, &self.autocommit, store, db.0).await.map_err(guest_err("wasqlite_autocommit"))? != 0)
    }

    pub(crate) async fn errcode(&self, store: &mut Store<ActorState>, db: DbHandle) -> Result<i32, Error> {
        invoke(self.mode, &self.errcode, store, db.0).await.map_err(guest_err("wasqlite_errcode"))
    }

    pub(crate) async fn errmsg(&self, store: &mut Store<ActorState>, db: DbHandle) -> Result<String, Error> {
        let ptr = invoke(self.mode, &self.errmsg, store, db.0).await.map_err(guest_err("wasqlite_errmsg"))?;
        let bytes = c_str(self.memory.data(&*store), ptr, MAX_MESSAGE).ok_or_else(|| bad_guest_pointer("wasqlite_errmsg"))?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

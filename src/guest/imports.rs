//! The host functions behind the relay VFS (vfs/relay_vfs.c): one per
//! method in `abi::VFS_METHODS`, registered under the "wasqlite" module.
//!
//! Each one checks every guest pointer and length before use. A bad one gets
//! SQLITE_MISUSE back, with a message for xGetLastError and the SQL error;
//! the host never panics on guest input. Methods that may reach the KV are
//! written as async blocks and registered one of two ways (`CallMode`):
//! awaited on a wasmtime fiber, or, for a KV whose every answer is ready at
//! once, polled once on the caller's stack; the rest are plain functions.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codes as sqlite;
use rand::RngCore;
use wasmtime::{Caller, Linker};

use super::CallMode;
use super::abi::IMPORT_MODULE;
use super::memory::{slice, slice_mut, write_i32, write_i64};
use crate::state::ActorState;
use crate::vfs::layout::FileTag;

type Cx<'a> = Caller<'a, ActorState>;

/// The Julian day of the Unix epoch, in milliseconds.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;

/// Guest memory and the actor state, borrowed together.
fn split<'a>(caller: &'a mut Cx<'_>) -> Option<(&'a mut [u8], &'a mut ActorState)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

/// Records a bad pointer from the guest and returns the code for it.
fn bad_pointer(state: &mut ActorState, method: &str) -> i32 {
    state.files.note_error(format!("the guest passed an out-of-bounds pointer to {method}"));
    sqlite::SQLITE_MISUSE
}

/// A guest file name: `len` bytes at `ptr` (null for no name), as UTF-8.
fn name_at(caller: &mut Cx<'_>, ptr: i32, len: i32, method: &str) -> Result<Option<String>, i32> {
    let (mem, state) = split(caller).ok_or(sqlite::SQLITE_MISUSE)?;
    if ptr == 0 {
        return Ok(None);
    }
    match slice(mem, ptr, len).map(|b| String::from_utf8_lossy(b).into_owned()) {
        Some(name) => Ok(Some(name)),
        None => Err(bad_pointer(state, method)),
    }
}

/// The open file behind a guest handle.
fn file(caller: &mut Cx<'_>, handle: i32, method: &str) -> Result<FileTag, i32> {
    let state = caller.data_mut();
    state.files.tag_for_handle(handle).ok_or_else(|| {
        state.files.note_error(format!("{method} on file handle {handle}, which is not open"));
        sqlite::SQLITE_MISUSE
    })
}

macro_rules! try_rc {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(rc) => return rc,
        }
    };
}

/// The output of a future that is ready on its first poll.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// What a direct import returns when the KV did not answer at once, which
/// a store claiming `KvStore::answers_immediately` must never do.
fn not_immediate(cx: &mut Cx<'_>, method: &str) -> i32 {
    cx.data_mut().files.note_error(format!(
        "{method}: the KV store claims to answer at once but did not; it must not override answers_immediately"
    ));
    sqlite::SQLITE_IOERR
}

/// Registers an import that may wait on the KV: its body is an async block
/// over `cx` and the arguments, returning an SQLite code.
macro_rules! kv_import {
    ($linker:ident, $mode:ident, $name:literal, |$cx:ident $(, $arg:ident: $ty:ty)*| $body:block) => {
        match $mode {
            CallMode::Direct => $linker.func_wrap(IMPORT_MODULE, $name, |mut $cx: Cx<'_> $(, $arg: $ty)*| -> i32 {
                poll_once(async { $body }).unwrap_or_else(|| not_immediate(&mut $cx, $name))
            })?,
            CallMode::Fiber => $linker.func_wrap_async(IMPORT_MODULE, $name, |mut $cx: Cx<'_>, ($($arg,)*): ($($ty,)*)| {
                Box::new(async move { $body })
            })?,
        };
    };
}

/// Registers every VFS import, for guests called in `mode`.
pub(crate) fn add_to_linker(linker: &mut Linker<ActorState>, mode: CallMode) -> wasmtime::Result<()> {
    let m = IMPORT_MODULE;

    kv_import!(linker, mode, "xOpen", |cx, name: i32, name_len: i32, flags: i32, out_flags: i32, out_id: i32| {
        let name = try_rc!(name_at(&mut cx, name, name_len, "xOpen"));
        // Check the out-parameters before opening: a file the guest never
        // learns the handle of would stay open on the host for good.
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        if (out_flags != 0 && slice(mem, out_flags, 4).is_none()) || slice(mem, out_id, 4).is_none() {
            return bad_pointer(state, "xOpen");
        }
        let handle = try_rc!(cx.data_mut().files.open(name.as_deref(), flags).await);
        let (mem, _) = split(&mut cx).expect("checked above");
        if out_flags != 0 {
            write_i32(mem, out_flags, flags).expect("checked above");
        }
        write_i32(mem, out_id, handle).expect("checked above");
        sqlite::SQLITE_OK
    });

    kv_import!(linker, mode, "xDelete", |cx, name: i32, name_len: i32, _sync_dir: i32| {
        let Some(name) = try_rc!(name_at(&mut cx, name, name_len, "xDelete")) else {
            return sqlite::SQLITE_IOERR_DELETE_NOENT;
        };
        cx.data_mut().files.delete(&name).await
    });

    kv_import!(linker, mode, "xAccess", |cx, name: i32, name_len: i32, flags: i32, out: i32| {
        let name = try_rc!(name_at(&mut cx, name, name_len, "xAccess")).unwrap_or_default();
        let found = try_rc!(cx.data_mut().files.access(&name, flags).await);
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        match write_i32(mem, out, i32::from(found)) {
            Some(()) => sqlite::SQLITE_OK,
            None => bad_pointer(state, "xAccess"),
        }
    });

    // Names are already full: an actor's files live in its own namespace.
    linker.func_wrap(m, "xFullPathname", |mut cx: Cx<'_>, name: i32, name_len: i32, out: i32, out_len: i32| {
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        let Some(src) = slice(mem, name, name_len).map(<[u8]>::to_vec) else {
            return bad_pointer(state, "xFullPathname");
        };
        if src.len() >= usize::try_from(out_len).unwrap_or(0) {
            return sqlite::SQLITE_CANTOPEN_FULLPATH;
        }
        let Some(dst) = name_len.checked_add(1).and_then(|n| slice_mut(mem, out, n)) else {
            return bad_pointer(state, "xFullPathname");
        };
        dst[..src.len()].copy_from_slice(&src);
        dst[src.len()] = 0;
        sqlite::SQLITE_OK
    })?;

    linker.func_wrap(m, "xRandomness", |mut cx: Cx<'_>, n: i32, out: i32| {
        let Some((mem, state)) = split(&mut cx) else { return 0 };
        match slice_mut(mem, out, n) {
            Some(buf) => {
                state.rng.fill_bytes(buf);
                n
            }
            None => {
                bad_pointer(state, "xRandomness");
                0
            }
        }
    })?;

    // SQLite sleeps only in a busy handler, which one exclusive connection
    // never runs. Should a guest ask anyway, a direct call can only park the
    // caller's thread, so it sleeps at most 1 ms; on a fiber it awaits a timer.
    match mode {
        CallMode::Direct => linker.func_wrap(m, "xSleep", |_cx: Cx<'_>, micros: i32| {
            let micros = micros.clamp(0, 1_000);
            std::thread::sleep(Duration::from_micros(micros as u64));
            micros
        })?,
        CallMode::Fiber => linker.func_wrap_async(m, "xSleep", |_cx: Cx<'_>, (micros,): (i32,)| {
            Box::new(async move {
                let micros = micros.clamp(0, 1_000);
                tokio::time::sleep(Duration::from_micros(micros as u64)).await;
                micros
            })
        })?,
    };

    linker.func_wrap(m, "xCurrentTimeInt64", |mut cx: Cx<'_>, out: i32| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        match write_i64(mem, out, UNIX_EPOCH_JULIAN_MS + now) {
            Some(()) => sqlite::SQLITE_OK,
            None => bad_pointer(state, "xCurrentTimeInt64"),
        }
    })?;

    linker.func_wrap(m, "xGetLastError", |mut cx: Cx<'_>, n: i32, out: i32| {
        let Some((mem, state)) = split(&mut cx) else { return 0 };
        let message = state.files.last_error().unwrap_or("").as_bytes().to_vec();
        if let Some(buf) = slice_mut(mem, out, n).filter(|b| !b.is_empty()) {
            let len = message.len().min(buf.len() - 1);
            buf[..len].copy_from_slice(&message[..len]);
            buf[len] = 0;
        }
        0
    })?;

    kv_import!(linker, mode, "xClose", |cx, handle: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xClose"));
        cx.data_mut().files.close(tag).await
    });

    kv_import!(linker, mode, "xRead", |cx, handle: i32, buf: i32, amt: i32, offset: i64| {
        let tag = try_rc!(file(&mut cx, handle, "xRead"));
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        if slice(mem, buf, amt).is_none() || offset < 0 {
            return bad_pointer(state, "xRead");
        }
        let mut data = std::mem::take(&mut state.read_buf);
        data.clear();
        data.resize(amt as usize, 0);
        let rc = state.files.read(tag, offset as u64, &mut data).await;
        let (mem, state) = split(&mut cx).expect("checked above");
        slice_mut(mem, buf, amt).expect("checked above").copy_from_slice(&data);
        state.read_buf = data;
        rc
    });

    kv_import!(linker, mode, "xWrite", |cx, handle: i32, buf: i32, amt: i32, offset: i64| {
        let tag = try_rc!(file(&mut cx, handle, "xWrite"));
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        if slice(mem, buf, amt).is_none() || offset < 0 {
            return bad_pointer(state, "xWrite");
        }
        let rc = state.files.prepare_write(tag, offset as u64, amt as usize).await;
        if rc != sqlite::SQLITE_OK {
            return rc;
        }
        let (mem, state) = split(&mut cx).expect("checked above");
        state.files.apply_write(tag, offset as u64, slice(mem, buf, amt).expect("checked above"));
        state.files.finish_write(tag).await
    });

    kv_import!(linker, mode, "xTruncate", |cx, handle: i32, size: i64| {
        let tag = try_rc!(file(&mut cx, handle, "xTruncate"));
        match u64::try_from(size) {
            Ok(size) => cx.data_mut().files.truncate(tag, size).await,
            Err(_) => sqlite::SQLITE_IOERR_TRUNCATE,
        }
    });

    kv_import!(linker, mode, "xSync", |cx, handle: i32, _flags: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xSync"));
        cx.data_mut().files.flush(tag).await
    });

    kv_import!(linker, mode, "xFileSize", |cx, handle: i32, out: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xFileSize"));
        let size = try_rc!(cx.data_mut().files.file_size(tag).await);
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        match write_i64(mem, out, size as i64) {
            Some(()) => sqlite::SQLITE_OK,
            None => bad_pointer(state, "xFileSize"),
        }
    });

    linker.func_wrap(m, "xLock", |mut cx: Cx<'_>, handle: i32, level: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xLock"));
        cx.data_mut().files.set_lock(tag, level);
        sqlite::SQLITE_OK
    })?;

    linker.func_wrap(m, "xUnlock", |mut cx: Cx<'_>, handle: i32, level: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xUnlock"));
        cx.data_mut().files.set_lock(tag, level);
        sqlite::SQLITE_OK
    })?;

    linker.func_wrap(m, "xCheckReservedLock", |mut cx: Cx<'_>, handle: i32, out: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xCheckReservedLock"));
        let Some((mem, state)) = split(&mut cx) else { return sqlite::SQLITE_MISUSE };
        let reserved = state.files.reserved(tag);
        match write_i32(mem, out, i32::from(reserved)) {
            Some(()) => sqlite::SQLITE_OK,
            None => bad_pointer(state, "xCheckReservedLock"),
        }
    })?;

    kv_import!(linker, mode, "xFileControl", |cx, handle: i32, op: i32, _arg: i32| {
        let tag = try_rc!(file(&mut cx, handle, "xFileControl"));
        cx.data_mut().files.file_control(tag, op).await
    });

    // One chunk: the journal header then fills exactly one KV value.
    linker.func_wrap(m, "xSectorSize", |_cx: Cx<'_>, _handle: i32| crate::vfs::layout::CHUNK_SIZE as i32)?;

    linker.func_wrap(m, "xDeviceCharacteristics", |mut cx: Cx<'_>, handle: i32| {
        file(&mut cx, handle, "xDeviceCharacteristics").map_or(0, crate::vfs::ActorFiles::device_characteristics)
    })?;

    Ok(())
}

//! The guest boundary: the import ABI shared with vfs/wasqlite_abi.h, checked
//! access to guest memory, the host functions the relay VFS calls, and the
//! exported SQL surface the host calls.

pub(crate) mod abi;
pub(crate) mod exports;
pub(crate) mod handles;
pub(crate) mod imports;
pub(crate) mod memory;
pub(crate) mod watchdog;

/// How the host calls into a guest instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CallMode {
    /// Plain calls on the caller's stack, for a KV whose every answer is
    /// ready at once (`KvStore::answers_immediately`): no fiber to set up,
    /// switch to and tear down per call.
    Direct,
    /// `call_async` on a wasmtime fiber, so that an import can wait on the
    /// KV without blocking the thread.
    Fiber,
}

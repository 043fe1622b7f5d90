//! The guest boundary: the import ABI shared with vfs/wasqlite_abi.h, checked
//! access to guest memory, the host functions the relay VFS calls, and the
//! exported SQL surface the host calls.

pub(crate) mod abi;
pub(crate) mod exports;
pub(crate) mod imports;
pub(crate) mod memory;

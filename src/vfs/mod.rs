//! The host half of the VFS: an actor's database files, mapped onto its KV
//! namespace. The guest's relay VFS (vfs/relay_vfs.c) forwards each SQLite
//! file call here through the imports in `crate::guest::imports`.
//!
//! `ActorFiles` is public so that fuzzers and tests can drive the file layer
//! directly, without a guest.

pub(crate) mod files;
pub(crate) mod journal;
pub mod layout;
pub(crate) mod replace;

pub use files::{ActorFiles, DB_NAME, ResultCode, open_type};

//! The host half of the VFS: an actor's database files, mapped onto its KV
//! namespace. The guest's relay VFS (vfs/relay_vfs.c) forwards each SQLite
//! file call here through the imports in `crate::guest::imports`.

mod files;
pub mod layout;

pub(crate) use files::ActorFiles;

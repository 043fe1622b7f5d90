//! Store URLs: how the library and the command line name a `KvStore`.
//!
//! ```text
//! memory        a fresh MemoryKv: gone when the process ends
//! redb:PATH     a RedbKv in the file PATH (created with its parent
//!               directories when missing), group commit on
//! redis://HOST:PORT[,HOST:PORT...][?prefix=P&replicas=N]
//!               a RedisKv on a Redis Cluster (with the `redis` feature);
//!               `redis://USER:PASSWORD@...` for a password, `rediss://`
//!               for TLS (the `redis-tls` feature)
//! ```
//!
//! [`DEFAULT_STORE`] is what the command line uses when no `--store` is given.

use std::path::Path;
use std::sync::Arc;

use super::{KvStore, MemoryKv, RedbKv};
use crate::error::Error;

/// The store used when none is named: a redb file under the working
/// directory.
pub const DEFAULT_STORE: &str = "redb:./wasqlite-data/kv.redb";

/// The accepted forms, for error messages and help text.
pub const STORE_FORMS: &str = "`memory`, `redb:PATH` or `redis://HOST:PORT[,HOST:PORT...]`";

/// Opens the store a URL names.
///
/// # Example
///
/// ```
/// let kv = wasqlite::kv::open_store("memory")?;
/// assert!(wasqlite::kv::open_store("postgres://x").is_err());
/// # Ok::<(), wasqlite::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Config`] for an unknown scheme or an empty path, naming the URL
/// and the accepted forms; [`Error::Kv`] when the redb file cannot be
/// created or opened (including its parent directories), or a redis URL
/// does not parse. A redis store connects at its first call.
pub fn open_store(url: &str) -> Result<Arc<dyn KvStore>, Error> {
    if url == "memory" {
        return Ok(Arc::new(MemoryKv::new()));
    }
    if let Some(path) = url.strip_prefix("redb:") {
        if path.is_empty() {
            return Err(Error::Config(format!("store URL {url:?} has no path; expected {STORE_FORMS}")));
        }
        let path = Path::new(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Config(format!("store URL {url:?}: cannot create directory {}: {e}", parent.display()))
            })?;
        }
        return Ok(Arc::new(RedbKv::open(path)?));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        #[cfg(feature = "redis")]
        return Ok(Arc::new(super::RedisKv::open(url)?));
        #[cfg(not(feature = "redis"))]
        return Err(Error::Config(format!("store URL {url:?} needs wasqlite built with the `redis` feature")));
    }
    Err(Error::Config(format!("unknown store URL {url:?}; expected {STORE_FORMS}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_schemes_name_the_url_and_the_forms() {
        for bad in ["sqlite:x.db", "redb:", "", "Memory", "redb"] {
            let err = open_store(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("redb:PATH"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn redb_creates_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/kv.redb");
        let url = format!("redb:{}", path.display());
        let _kv = open_store(&url).unwrap();
        assert!(path.exists());
    }
}

//! # wasqlite
//!
//! SQLite compiled to WebAssembly, one isolated wasmtime instance per actor.
//! Every SQLite file operation inside an actor's instance is a host call,
//! answered from that actor's namespace in a key-value store ([`KvStore`]).
//! When the actor sleeps its instance is dropped and its linear memory goes
//! back to the instance pool (or the OS, without pooling); its database
//! stays in the KV, ready for the next wake.
//!
//! Start with [`Host`]: [`Host::wake`] gives an [`Actor`], which runs SQL
//! with [`Actor::execute`], [`Actor::query`] and friends, and ends with
//! [`Actor::sleep`] or [`Actor::destroy`]. ARCHITECTURE.md shows how a query
//! travels from here through the guest to the KV and back.

mod actor;
mod actor_id;
mod codes;
mod engine;
mod error;
mod guest;
mod host;
mod lease;
mod limits;
pub mod kv;
mod manager;
mod meter;
mod migrations;
#[cfg(feature = "simulation")]
pub mod simulation;
mod sql;
mod state;
pub mod vfs;

pub use actor::Actor;
pub use actor_id::{ActorId, MAX_ACTOR_ID_LEN};
pub use engine::{CodeCache, DEFAULT_POOL_SLOTS, EngineConfig, MODULE_SHA256};
pub use error::{Error, code_name};
pub use guest::watchdog::InterruptHandle;
pub use host::{Host, HostConfig};
pub use lease::LeaseConfig;
pub use meter::{ReportedUsage, Usage};
pub use manager::{Manager, ManagerConfig, ManagerStats, Session, UsageSink};
pub use limits::{DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_DATABASE_SIZE, Limits, SqlLimits};
pub use kv::{Fence, KvCounters, KvError, KvLimits, KvStore, MemoryKv, RedbKv, open_store};
pub use migrations::Migrations;
pub use sql::params::Params;
pub use sql::result::{Column, Description, StatementResult};
pub use sql::row::{Row, Rows};
pub use sql::transaction::Transaction;
pub use sql::value::{FromValue, ToValue, Value};

/// README.md's Rust examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

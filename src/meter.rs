//! `Usage`: what an actor has used, for billing and quotas.
//!
//! Two kinds of figures, kept apart because only one kind can be trusted:
//! - measured by the host, outside the sandbox: calls, their time, KV calls
//!   and bytes, wakes and sleeps, the database's size;
//! - reported by the guest ([`ReportedUsage`]): rows read and written, which
//!   only SQLite can count. A guest compromised by a SQLite bug can report
//!   anything about itself here (never about another actor), so bill on them
//!   only with that in mind.

use std::ops::{Add, AddAssign, Sub};
use std::time::{Duration, Instant};

/// What one actor (or a sum of actors) has used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// API calls made (`execute`, `query`, ...; a transaction's statements
    /// count one each).
    pub calls: u64,
    /// Wall time of those calls, guest execution and KV waits together.
    pub call_time: Duration,
    /// KV read calls (a batch counts once), including a wake's claim.
    pub kv_reads: u64,
    /// Bytes of values those reads returned.
    pub kv_read_bytes: u64,
    /// KV write calls (puts and deletes; a batch counts once).
    pub kv_writes: u64,
    /// Bytes of keys and values those writes sent.
    pub kv_written_bytes: u64,
    /// Wakes (and instance rebuilds after a failure).
    pub wakes: u64,
    /// Sleeps.
    pub sleeps: u64,
    /// Size of the database file after the last call, in bytes; in a sum,
    /// the sum of the actors' sizes when they were last metered.
    pub database_bytes: u64,
    /// What the guest reported.
    pub reported: ReportedUsage,
}

/// Counts only the guest knows, as it reported them: untrusted (see the
/// module documentation).
///
/// - `rows_read`: table rows and index entries examined by the loops of
///   the statements run (SQLite's `SQLITE_SCANSTAT_NVISIT`, summed over a
///   statement's loops, joins and subqueries included). A full scan of 100
///   rows is 100; a lookup through an index is the index entries examined,
///   the table row each leads to is not counted again; a rowid lookup is 1.
///   Rows examined inside trigger programs and by foreign key checks are
///   not counted, and neither is `count(*)` of a whole table, which SQLite
///   answers without a loop.
/// - `rows_written`: rows inserted, updated or deleted, including those of
///   trigger programs and foreign key actions, not rows removed by REPLACE
///   conflict resolution (SQLite's `sqlite3_total_changes64`). Statements
///   rolled back still count: the work was done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportedUsage {
    /// Rows and index entries examined.
    pub rows_read: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
}

impl Add for Usage {
    type Output = Usage;
    fn add(mut self, other: Usage) -> Usage {
        self += other;
        self
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.calls += o.calls;
        self.call_time += o.call_time;
        self.kv_reads += o.kv_reads;
        self.kv_read_bytes += o.kv_read_bytes;
        self.kv_writes += o.kv_writes;
        self.kv_written_bytes += o.kv_written_bytes;
        self.wakes += o.wakes;
        self.sleeps += o.sleeps;
        self.database_bytes += o.database_bytes;
        self.reported.rows_read += o.reported.rows_read;
        self.reported.rows_written += o.reported.rows_written;
    }
}

/// What `self` has used since it was `earlier` (the database size is
/// `self`'s, not a difference).
impl Sub for Usage {
    type Output = Usage;
    fn sub(self, e: Usage) -> Usage {
        Usage {
            calls: self.calls.saturating_sub(e.calls),
            call_time: self.call_time.saturating_sub(e.call_time),
            kv_reads: self.kv_reads.saturating_sub(e.kv_reads),
            kv_read_bytes: self.kv_read_bytes.saturating_sub(e.kv_read_bytes),
            kv_writes: self.kv_writes.saturating_sub(e.kv_writes),
            kv_written_bytes: self.kv_written_bytes.saturating_sub(e.kv_written_bytes),
            wakes: self.wakes.saturating_sub(e.wakes),
            sleeps: self.sleeps.saturating_sub(e.sleeps),
            database_bytes: self.database_bytes,
            reported: ReportedUsage {
                rows_read: self.reported.rows_read.saturating_sub(e.reported.rows_read),
                rows_written: self.reported.rows_written.saturating_sub(e.reported.rows_written),
            },
        }
    }
}

/// KV traffic of one instance, counted where its files call the KV, and
/// timed into the `wasqlite_kv_call_seconds` histogram. The metric handles
/// are taken once per instance: looking one up by name and labels costs an
/// allocation, too much for every KV call. (An instance made before an
/// exporter was installed keeps reporting nowhere until it is rebuilt.)
pub(crate) struct KvMeter {
    pub(crate) reads: u64,
    pub(crate) read_bytes: u64,
    pub(crate) writes: u64,
    pub(crate) written_bytes: u64,
    metrics: [(metrics::Histogram, metrics::Counter); 2],
}

const READ: usize = 0;
const WRITE: usize = 1;

impl KvMeter {
    pub(crate) fn new(backend: &'static str) -> KvMeter {
        let handles = |op: &'static str| {
            (
                metrics::histogram!("wasqlite_kv_call_seconds", "backend" => backend, "op" => op),
                metrics::counter!("wasqlite_kv_errors_total", "backend" => backend, "op" => op),
            )
        };
        KvMeter { reads: 0, read_bytes: 0, writes: 0, written_bytes: 0, metrics: [handles("read"), handles("write")] }
    }

    /// Records one read that started at `started` and returned `bytes`.
    pub(crate) fn read(&mut self, bytes: u64, started: Instant, ok: bool) {
        self.reads += 1;
        self.read_bytes += bytes;
        self.record(READ, started, ok);
    }

    /// Records one write of `bytes` that started at `started`.
    pub(crate) fn write(&mut self, bytes: u64, started: Instant, ok: bool) {
        self.writes += 1;
        self.written_bytes += bytes;
        self.record(WRITE, started, ok);
    }

    fn record(&self, op: usize, started: Instant, ok: bool) {
        let (latency, errors) = &self.metrics[op];
        latency.record(started.elapsed().as_secs_f64());
        if !ok {
            errors.increment(1);
        }
    }

    /// Moves the counts into `usage`.
    pub(crate) fn drain_into(&mut self, usage: &mut Usage) {
        usage.kv_reads += std::mem::take(&mut self.reads);
        usage.kv_read_bytes += std::mem::take(&mut self.read_bytes);
        usage.kv_writes += std::mem::take(&mut self.writes);
        usage.kv_written_bytes += std::mem::take(&mut self.written_bytes);
    }
}

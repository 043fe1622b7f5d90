//! What the benchmarks share: reading the process's resident memory from
//! /proc, latency histograms in microseconds, medians, and a progress bar
//! that only draws on a terminal.
//!
//! Nothing here times anything by itself; each benchmark decides what a
//! measurement covers, and says so in its own file.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value as Json, json};

/// Resident memory of this process, from /proc/self/status (Linux), in
/// bytes. `anon` is private memory the process wrote (heap, stacks, wasm
/// linear memory it touched); `file` and `shmem` are mapped pages that can
/// be shared (code, copy-on-write images not yet written to).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    pub(crate) total: u64,
    pub(crate) anon: u64,
    pub(crate) file: u64,
    pub(crate) shmem: u64,
}

impl Rss {
    /// Reads it now; zeros where /proc does not say (not Linux).
    pub(crate) fn now() -> Rss {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return Rss::default() };
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        Rss { total: field("VmRSS:"), anon: field("RssAnon:"), file: field("RssFile:"), shmem: field("RssShmem:") }
    }

    /// The most this process has ever had resident (VmHWM), in bytes.
    pub(crate) fn high_water_mark() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|kib| kib.parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024)
    }
}

/// CPU time this process has used so far (user + system), from
/// /proc/self/stat; zero where /proc does not say. Its resolution is the
/// kernel's clock tick (10 ms at the usual 100 Hz, which is assumed).
pub(crate) fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The 1-minute load average (runnable and waiting threads, machine-wide),
/// from /proc/loadavg: how busy the shared machine was.
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Bytes as MiB.
pub(crate) fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Latencies in microseconds, 3 significant figures.
pub(crate) struct Latency(Histogram<u64>);

impl Latency {
    pub(crate) fn new() -> Result<Latency> {
        Ok(Latency(Histogram::new(3).context("creating a histogram")?))
    }

    /// Records one duration (at least 1 µs, so that the histogram's
    /// quantiles never read as zero).
    pub(crate) fn record(&mut self, d: Duration) -> Result<()> {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.record(us).context("recording a latency")
    }

    pub(crate) fn add(&mut self, other: &Latency) -> Result<()> {
        self.0.add(&other.0).context("merging histograms")
    }

    /// The latency at quantile `q` (0.5 for the median), in µs.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    /// `{"count", "p50", "p99", "p999", "max", "mean"}`, all in µs.
    pub(crate) fn json(&self) -> Json {
        json!({
            "count": self.0.len(),
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
            "p999": self.quantile(0.999),
            "max": self.0.max(),
            "mean": (self.0.mean() * 10.0).round() / 10.0,
        })
    }

    /// `p50 12 µs, p99 40 µs, p999 95 µs`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "p50 {} µs, p99 {} µs, p999 {} µs (max {} µs)",
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.0.max()
        )
    }
}

/// The median; the mean of the middle two for an even count; NaN for none.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A progress bar on a terminal, a hidden one otherwise (so that piped and
/// `--json` output stays clean).
pub(crate) fn progress(len: u64, phase: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {per_sec} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(phase);
    bar
}

/// Rounds to `digits` decimals, for JSON that people read.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert!(median(vec![]).is_nan());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn cpu_time_grows() {
        if cfg!(target_os = "linux") {
            let before = cpu_time();
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(60) {
                x = x.wrapping_mul(31).wrapping_add(1);
            }
            std::hint::black_box(x);
            assert!(cpu_time() > before);
            assert!(load_average() >= 0.0);
        }
    }

    #[test]
    fn rss_reads_this_process() {
        if cfg!(target_os = "linux") {
            let rss = Rss::now();
            assert!(rss.total > 0 && rss.anon > 0, "{rss:?}");
            assert!(Rss::high_water_mark() >= rss.total);
        }
    }
}

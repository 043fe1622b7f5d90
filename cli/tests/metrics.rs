//! `--metrics-listen`: a running command serves the library's metrics in
//! Prometheus's text format, read here with a Prometheus-format parser.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

/// Kills the child process when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET of http://addr/metrics; `None` until the server answers.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

fn value(scrape: &Scrape, name: &str) -> Option<f64> {
    scrape.samples.iter().find(|s| s.metric == name).map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(_) | Value::Summary(_) => f64::NAN,
    })
}

#[test]
fn a_running_benchmark_serves_metrics_that_parse_as_prometheus_text() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    // Enough calls to outlast the test; it is killed at the end.
    let child = Command::new(assert_cmd::cargo::cargo_bin!("wasqlite"))
        .args(["bench", "manager", "--store", "memory", "--actors", "500", "--budget", "25", "--calls", "1000000000", "--concurrency", "4", "--json"])
        .args(["--metrics-listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    let start = Instant::now();
    let parsed = loop {
        assert!(start.elapsed() < Duration::from_secs(60), "no metrics with wakes at {addr} within 60 s");
        if let Some(body) = scrape(&addr) {
            let parsed = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("the metrics parse as Prometheus text");
            if value(&parsed, "wasqlite_wakes_total").is_some_and(|w| w > 25.0) {
                break parsed;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let awake = value(&parsed, "wasqlite_awake_actors").expect("an awake gauge");
    assert!((0.0..=25.0).contains(&awake), "awake actors {awake} outside the budget of 25");
    let budget_sleeps = parsed
        .samples
        .iter()
        .find(|s| s.metric == "wasqlite_sleeps_total" && s.labels.get("reason") == Some("budget"))
        .expect("budget sleeps, with their reason as a label");
    assert!(matches!(budget_sleeps.value, Value::Counter(n) if n > 0.0), "{budget_sleeps:?}");
    let kv_writes = parsed
        .samples
        .iter()
        .find(|s| s.metric == "wasqlite_kv_call_seconds" && s.labels.get("backend") == Some("memory") && s.labels.get("op") == Some("write"))
        .expect("KV call latency by backend and operation");
    assert!(matches!(kv_writes.value, Value::Summary(_) | Value::Histogram(_)), "{kv_writes:?}");
    assert!(parsed.docs.get("wasqlite_guest_reported_rows_read_total").is_some_and(|help| help.contains("untrusted")), "{:?}", parsed.docs);
}

//! `wasqlite bench serve`: requests/s and latency of `wasqlite serve` as the
//! libSQL clients use it, over many actors, against the real server process.
//!
//! Why a separate process: what a client sees is the server's whole path
//! (HTTP/1.1 parsing, JSON both ways, the stream table, the manager's wakes
//! and sleeps, the guest), and the server's own runtime and allocator are
//! only honest when nothing else shares them. So the bench starts this same
//! executable as `serve --listen 127.0.0.1:0 --no-auth`, reads the port it
//! prints, and stops it with SIGTERM at the end (it must exit 0: a clean
//! shutdown puts every actor to sleep).
//!
//! Setup (not timed) gives actors `a0`..`a{N-1}` a one-row table `kv`. Then
//! `--connections` tasks, each on one keep-alive HTTP/1.1 connection, send
//! `--requests` requests (or for `--seconds`). Each is what `@libsql/client`'s
//! `client.execute()` sends: one POST to `/ACTOR/v2/pipeline` with an
//! `execute` and a `close`, on an actor drawn uniformly per request; a point
//! SELECT, or with `--write-percent` an autocommit UPDATE. Every response
//! must be 200 with both results ok, the stream closed and the statement's
//! effect right; a failure fails the bench with the first bad body.
//!
//! Reported: requests/s and latency (p50 to max, request sent to body read),
//! the server's wakes and budget sleeps during the timed phase (from its
//! `/metrics`), actors awake at the end, the server's mean time per request
//! (its own histogram: what the client's latency adds to it is HTTP, the
//! client and queueing), and the CPU each process used, since on a small
//! machine client and server share the cores.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode, header};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};
use tokio::task::JoinSet;

use super::measure::{cpu_time, progress, round};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The server's store: `memory`, `redb:PATH` or `redis://HOST:PORT[,...]`.
    #[arg(long, value_name = "STORE", default_value = "memory")]
    store: String,
    /// Actors, `a0` to `a{N-1}`, each with a one-row table.
    #[arg(long, default_value_t = 1000)]
    actors: u64,
    /// Keep-alive HTTP/1.1 connections, one task each, one request in flight
    /// on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests in all (default 100000; not with --seconds).
    #[arg(long, conflicts_with = "seconds")]
    requests: Option<u64>,
    /// Send requests for this many seconds instead of a number of them.
    #[arg(long)]
    seconds: Option<f64>,
    /// Share of requests that UPDATE instead of SELECT, in percent.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    write_percent: u32,
    /// The server's --idle-timeout: seconds before an unused actor sleeps.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    idle_timeout: f64,
    /// The server's --max-awake (its own default when not given).
    #[arg(long, value_name = "N")]
    max_awake: Option<usize>,
    /// Seed of the draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const DEFAULT_REQUESTS: u64 = 100_000;

/// Setup: the table and its row; `sequence` for the DDL, as a client's
/// migration would send it.
const SETUP: &str = r#"{"requests":[{"type":"sequence","sql":"CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v TEXT)"},{"type":"execute","stmt":{"sql":"INSERT OR REPLACE INTO kv VALUES (1, 'hello')"}},{"type":"close"}]}"#;

/// A read as `client.execute({sql, args})` sends it: the statement with
/// `want_rows`, then the close of the stream, in one pipeline.
const READ: &str = r#"{"baton":null,"requests":[{"type":"execute","stmt":{"sql":"SELECT v FROM kv WHERE k = ?","args":[{"type":"integer","value":"1"}],"named_args":[],"want_rows":true}},{"type":"close"}]}"#;

fn write_body(n: u64) -> Bytes {
    let stmt = json!({"sql": "UPDATE kv SET v = ? WHERE k = 1", "args": [{"type": "text", "value": format!("w{n}")}], "named_args": [], "want_rows": true});
    Bytes::from(json!({"baton": null, "requests": [{"type": "execute", "stmt": stmt}, {"type": "close"}]}).to_string())
}

/// The server child process; killed if dropped before `stop`, so that a
/// failed bench leaves no server behind.
struct Server {
    child: Child,
    addr: SocketAddr,
    stopped: bool,
}

impl Server {
    fn start(args: &ServeArgs) -> Result<Server> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut command = Command::new(exe);
        command.args(["serve", "--store", &args.store, "--listen", "127.0.0.1:0", "--no-auth"]);
        command.args(["--idle-timeout", &args.idle_timeout.to_string()]);
        if let Some(n) = args.max_awake {
            command.args(["--max-awake", &n.to_string()]);
        }
        // stderr goes where ours goes: the server's own errors are the first
        // thing to read when the bench fails.
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().context("starting `wasqlite serve`")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut server = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), stopped: false };
        // A thread reads the lines, and keeps reading after the first so that
        // the server never blocks on a full pipe.
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!("the server printed no `listening on` line in 120 s"),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait()?;
                    server.stopped = true;
                    bail!("the server exited before listening ({status})");
                }
            };
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                server.addr = addr.parse().with_context(|| format!("the server's address in {line:?}"))?;
                return Ok(server);
            }
        }
    }

    /// SIGTERM, then its exit, which must be a success.
    async fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("the server's pid")?;
        // SAFETY: kill(2) on our own child, which has not been waited for, so
        // its pid cannot have been reused.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("sending SIGTERM to the server: {}", std::io::Error::last_os_error());
        }
        // Shutdown sleeps every awake actor: give it time.
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("the server did not exit within 120 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.stopped = true;
        if !status.success() {
            bail!("the server exited with {status} after SIGTERM");
        }
        Ok(())
    }

    /// CPU time the server has used so far (user + system), from /proc.
    fn cpu_time(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else { return Duration::ZERO };
        // After the command name (in parentheses, may hold spaces): utime and
        // stime are fields 14 and 15, so 11 and 12 from here.
        let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: sysconf reads a constant.
        let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
            hz if hz > 0 => hz as u64,
            _ => 100,
        };
        Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / hz)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One keep-alive HTTP/1.1 connection, opened again after a transport error.
struct Client {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, host: addr.to_string(), sender: None }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        // One small request at a time: Nagle would hold the body back for the
        // server's delayed ACK.
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// The status and body of one request.
    async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes)> {
        let answer = self.try_send(method, path, body).await;
        if answer.is_err() {
            self.sender = None;
        }
        answer
    }

    async fn try_send(&mut self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(self.connect().await?),
        };
        sender.ready().await?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Why a response is not the `results` a good pipeline gets, if it is not:
/// 200, every result ok, the stream closed.
fn check_pipeline(status: StatusCode, body: &[u8], results: usize) -> Result<Json, String> {
    let fail = |why: &str| format!("{why}: HTTP {status}: {}", String::from_utf8_lossy(body));
    if status != StatusCode::OK {
        return Err(fail("not 200"));
    }
    let v: Json = serde_json::from_slice(body).map_err(|e| fail(&format!("not JSON ({e})")))?;
    let ok = v["results"].as_array().is_some_and(|r| r.len() == results && r.iter().all(|r| r["type"] == "ok"));
    if !ok {
        return Err(fail(&format!("not {results} ok results")));
    }
    if !v["baton"].is_null() {
        return Err(fail("the pipeline closed its stream, yet the response carries a baton"));
    }
    Ok(v)
}

/// A timed request's check: the read found its row, the write changed it.
fn check_request(status: StatusCode, body: &[u8], write: bool) -> Result<(), String> {
    let v = check_pipeline(status, body, 2)?;
    let result = &v["results"][0]["response"]["result"];
    let right = match write {
        true => result["affected_row_count"] == 1,
        false => result["rows"].as_array().is_some_and(|rows| rows.len() == 1),
    };
    match right {
        true => Ok(()),
        false => Err(format!("the {} had the wrong effect: HTTP {status}: {}", if write { "UPDATE" } else { "SELECT" }, String::from_utf8_lossy(body))),
    }
}

/// What the server's /metrics says, at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Scrape {
    wakes: f64,
    budget_sleeps: f64,
    awake: f64,
    pipeline_seconds: f64,
    pipeline_requests: f64,
}

/// The sum of the samples of `name` (those whose labels hold `label`, if
/// given) in Prometheus's text format; 0 for a series not yet created.
fn samples(text: &str, name: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.trim().rsplit_once(' ')?;
            let metric = series.split('{').next()?.trim();
            let wanted = metric == name && label.is_none_or(|label| series.contains(label));
            if wanted { value.parse::<f64>().ok() } else { None }
        })
        .sum()
}

async fn scrape(client: &mut Client) -> Result<Scrape> {
    let (status, body) = client.send(Method::GET, "/metrics", Bytes::new()).await.context("GET /metrics")?;
    if status != StatusCode::OK {
        bail!("GET /metrics: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    let text = String::from_utf8_lossy(&body);
    let pipeline = Some(r#"endpoint="pipeline""#);
    Ok(Scrape {
        wakes: samples(&text, "wasqlite_wakes_total", None),
        budget_sleeps: samples(&text, "wasqlite_sleeps_total", Some(r#"reason="budget""#)),
        awake: samples(&text, "wasqlite_awake_actors", None),
        pipeline_seconds: samples(&text, "wasqlite_serve_request_seconds_sum", pipeline),
        pipeline_requests: samples(&text, "wasqlite_serve_request_seconds_count", pipeline),
    })
}

/// Failures of one task: how many, and the first.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, why: String) {
        self.count += 1;
        self.first.get_or_insert(why);
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// Creates every actor's table over `connections` connections.
async fn setup(addr: SocketAddr, actors: u64, connections: usize) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress(actors, "setup");
    let mut tasks = JoinSet::new();
    for _ in 0..connections.min(actors as usize) {
        let (next, bar) = (next.clone(), bar.clone());
        tasks.spawn(async move {
            let mut client = Client::new(addr);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= actors {
                    return anyhow::Ok(());
                }
                let (status, body) = client.send(Method::POST, &format!("/a{i}/v2/pipeline"), Bytes::from_static(SETUP.as_bytes())).await?;
                check_pipeline(status, &body, 3).map_err(|why| anyhow!("setting up a{i}: {why}"))?;
                bar.inc(1);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a setup task panicked")??;
    }
    bar.finish_and_clear();
    Ok(())
}

/// When the timed phase ends.
#[derive(Clone)]
enum Until {
    Requests { next: Arc<AtomicU64>, total: u64 },
    Deadline(Instant),
}

impl Until {
    fn another(&self) -> bool {
        match self {
            Until::Requests { next, total } => next.fetch_add(1, Ordering::Relaxed) < *total,
            Until::Deadline(deadline) => Instant::now() < *deadline,
        }
    }
}

/// One connection's share of the timed phase: its latencies in µs and its
/// failures.
async fn worker(addr: SocketAddr, args: Arc<ServeArgs>, w: u64, until: Until, bar: ProgressBar) -> Result<(Histogram<u64>, Failures)> {
    let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(w));
    let mut latency = Histogram::<u64>::new(3).context("creating a histogram")?;
    let mut failures = Failures::default();
    let mut client = Client::new(addr);
    // Connected before the clock starts: the libSQL clients keep theirs.
    client.sender = Some(client.connect().await?);
    let read = Bytes::from_static(READ.as_bytes());
    let mut n = 0u64;
    while until.another() {
        let actor = rng.random_range(0..args.actors);
        let write = rng.random_range(0..100) < args.write_percent;
        n += 1;
        // Built before the clock starts: the body is the client's work either way.
        let body = if write { write_body((w << 40) | n) } else { read.clone() };
        let path = format!("/a{actor}/v2/pipeline");
        let started = Instant::now();
        let answer = client.send(Method::POST, &path, body).await;
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        latency.record(us).context("recording a latency")?;
        match answer {
            Ok((status, body)) => {
                if let Err(why) = check_request(status, &body, write) {
                    failures.add(format!("a{actor}: {why}"));
                }
            }
            Err(e) => failures.add(format!("a{actor}: {e:#}")),
        }
        bar.inc(1);
    }
    Ok((latency, failures))
}

pub(crate) async fn run(args: ServeArgs) -> Result<ExitCode> {
    if args.actors == 0 || args.connections == 0 {
        bail!("--actors and --connections must be at least 1");
    }
    let seconds = args.seconds.map(|s| Duration::try_from_secs_f64(s).map_err(|_| anyhow!("--seconds {s} is not a number of seconds"))).transpose()?;
    let args = Arc::new(args);
    let server = Server::start(&args)?;
    let addr = server.addr;

    let started = Instant::now();
    let mut metrics_client = Client::new(addr);
    let at_start = scrape(&mut metrics_client).await?;
    setup(addr, args.actors, args.connections).await?;
    let setup_time = started.elapsed();
    let before = scrape(&mut metrics_client).await?;

    let until = match seconds {
        Some(s) => Until::Deadline(Instant::now() + s),
        None => Until::Requests { next: Arc::new(AtomicU64::new(0)), total: args.requests.unwrap_or(DEFAULT_REQUESTS) },
    };
    let bar = match &until {
        Until::Requests { total, .. } => progress(*total, "requests"),
        Until::Deadline(_) => ProgressBar::hidden(),
    };
    let (server_cpu, client_cpu) = (server.cpu_time(), cpu_time());
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for w in 0..args.connections {
        workers.spawn(worker(addr, args.clone(), w as u64, until.clone(), bar.clone()));
    }
    let mut latency = Histogram::<u64>::new(3).context("creating a histogram")?;
    let mut failures = Failures::default();
    while let Some(done) = workers.join_next().await {
        let (l, f) = done.context("a worker panicked")??;
        latency.add(&l).context("merging histograms")?;
        failures.merge(f);
    }
    let elapsed = started.elapsed();
    let (server_cpu, client_cpu) = (server.cpu_time().saturating_sub(server_cpu), cpu_time().saturating_sub(client_cpu));
    bar.finish_and_clear();
    let after = scrape(&mut metrics_client).await?;
    drop(metrics_client);
    server.stop().await?;

    let requests = latency.len();
    let rps = requests as f64 / elapsed.as_secs_f64();
    let wakes = after.wakes - before.wakes;
    let setup_wakes = before.wakes - at_start.wakes;
    let budget_sleeps = after.budget_sleeps - before.budget_sleeps;
    // The timed phase's requests only (the scrapes are not pipeline requests).
    let served = after.pipeline_requests - before.pipeline_requests;
    let server_mean_us = if served > 0.0 { (after.pipeline_seconds - before.pipeline_seconds) / served * 1e6 } else { f64::NAN };
    let q = |q: f64| latency.value_at_quantile(q);
    if args.json {
        let report = json!({
            "store": args.store,
            "actors": args.actors,
            "connections": args.connections,
            "write_percent": args.write_percent,
            "max_awake": args.max_awake,
            "idle_timeout_s": args.idle_timeout,
            "setup_s": round(setup_time.as_secs_f64(), 2),
            "setup_wakes": setup_wakes,
            "requests": requests,
            "seconds": round(elapsed.as_secs_f64(), 3),
            "requests_per_second": round(rps, 0),
            "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": latency.max()},
            "server_mean_us": if server_mean_us.is_finite() { json!(round(server_mean_us, 1)) } else { Json::Null },
            "wakes": wakes,
            "budget_sleeps": budget_sleeps,
            "awake_actors": after.awake,
            "server_cpu_s": round(server_cpu.as_secs_f64(), 2),
            "client_cpu_s": round(client_cpu.as_secs_f64(), 2),
            "failures": failures.count,
        });
        println!("{report}");
    } else {
        let max_awake = args.max_awake.map_or("the server's default".to_owned(), |n| n.to_string());
        println!(
            "bench serve: {} actors in {}, max awake {max_awake}, {} connections, {}% writes",
            args.actors, args.store, args.connections, args.write_percent
        );
        println!("  setup          {:.2} s ({setup_wakes} wakes)", setup_time.as_secs_f64());
        println!("  requests       {requests} in {:.2} s: {rps:.0}/s", elapsed.as_secs_f64());
        println!("  latency        p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs", q(0.5), q(0.9), q(0.99), q(0.999), latency.max());
        println!("  in the server  {server_mean_us:.1} µs a request on average (its own histogram)");
        println!("  actors         {wakes} wakes, {budget_sleeps} sleeps forced by the budget; {} awake at the end", after.awake);
        println!("  CPU            server {:.2} s, client {:.2} s over {:.2} s", server_cpu.as_secs_f64(), client_cpu.as_secs_f64(), elapsed.as_secs_f64());
        println!("  failures       {}", failures.count);
    }
    if let Some(first) = failures.first {
        bail!("{} requests failed, the first: {first}", failures.count);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_sum_series_by_name_and_label() {
        let text = "# TYPE wasqlite_wakes_total counter\nwasqlite_wakes_total 12\n\
                    wasqlite_sleeps_total{reason=\"budget\"} 3\nwasqlite_sleeps_total{reason=\"idle\"} 4\n\
                    wasqlite_wakes_total_other 99\n";
        assert_eq!(samples(text, "wasqlite_wakes_total", None), 12.0);
        assert_eq!(samples(text, "wasqlite_sleeps_total", None), 7.0);
        assert_eq!(samples(text, "wasqlite_sleeps_total", Some(r#"reason="budget""#)), 3.0);
        assert_eq!(samples(text, "wasqlite_awake_actors", None), 0.0);
    }

    #[test]
    fn responses_are_checked() {
        let read = br#"{"baton":null,"base_url":null,"results":[{"type":"ok","response":{"type":"execute","result":{"cols":[],"rows":[[{"type":"text","value":"hello"}]],"affected_row_count":0}}},{"type":"ok","response":{"type":"close"}}]}"#;
        assert!(check_request(StatusCode::OK, read, false).is_ok());
        assert!(check_request(StatusCode::OK, read, true).is_err(), "a write that changed no row");
        assert!(check_request(StatusCode::BAD_REQUEST, read, false).is_err());
        let open = br#"{"baton":"x","results":[{"type":"ok","response":{}},{"type":"ok","response":{}}]}"#;
        assert!(check_pipeline(StatusCode::OK, open, 2).is_err());
        let error = br#"{"baton":null,"results":[{"type":"error","error":{"message":"no"}},{"type":"ok","response":{}}]}"#;
        assert!(check_pipeline(StatusCode::OK, error, 2).is_err());
    }
}

//! What the `wasqlite serve` tests share: the real binary started on a redb
//! store with an auth file, and a few lines of HTTP/1.1 over `TcpStream`
//! (no client crate) to speak to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

pub const TOKEN_A: &str = "alpha-token-0123456789abcdef0123456789";
pub const TOKEN_B: &str = "beta-token-0123456789abcdef01234567890";
pub const GLOBAL_TOKEN: &str = "global-token-0123456789abcdef012345678";
pub const ACTOR_A: &str = "alpha";
/// Every kind of character an actor id may hold; the JS client
/// percent-encodes the `:` in the URL path.
pub const ACTOR_B: &str = "team-7.beta:x_Y";

/// A running `wasqlite serve`; killed when dropped if [`Server::stop`] did
/// not run (a failed test).
pub struct Server {
    pub child: Child,
    pub addr: String,
    _dir: TempDir,
}

impl Server {
    /// Starts the server on a redb store and an auth file in `dir` (kept
    /// across a restart), on a free port.
    pub fn start(dir: TempDir, extra: &[&str]) -> Server {
        let store = format!("redb:{}", dir.path().join("kv.redb").display());
        let auth = dir.path().join("auth");
        std::fs::write(
            &auth,
            format!("# serve_clients.rs\n{ACTOR_A} {TOKEN_A}\n{ACTOR_B} {TOKEN_B}\n* {GLOBAL_TOKEN}  # every actor\n"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasqlite"))
            .args(["serve", "--store", &store, "--listen", "127.0.0.1:0", "--auth-file"])
            .arg(&auth)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting wasqlite serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            other => {
                let status = child.wait().unwrap();
                panic!("wasqlite serve printed no `listening on` line ({other:?}); it exited with {status}");
            }
        };
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("expected `listening on http://ADDR`, got {first:?}"))
            .trim()
            .to_owned();
        // Whatever else it prints goes to the test's output, so a full pipe
        // never blocks it.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                println!("[serve] {line}");
            }
        });
        Server { child, addr, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, then the exit status (within 30 s).
    pub fn stop(mut self) -> (ExitStatus, TempDir) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
        assert!(killed.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "wasqlite serve did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        (status, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`), with the body
/// read to the end; a chunked body is decoded.
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request += &format!("Authorization: Bearer {token}\r\n");
    }
    if method == "POST" {
        request += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    request += &body;
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("{method} {path}: no header end in {raw:?}"));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut head_lines = head.split("\r\n");
    let status_line = head_lines.next().unwrap();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body: String::from_utf8(body).expect("a UTF-8 body") }
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size_text = std::str::from_utf8(&data[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("a hex chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `requests` as one v2 pipeline on `actor`; the response, which must be 200.
pub fn pipeline(addr: &str, actor: &str, token: &str, baton: Option<&str>, requests: Value) -> Value {
    let response = http(addr, "POST", &format!("/{actor}/v2/pipeline"), Some(token), Some(&json!({"baton": baton, "requests": requests})));
    assert_eq!(response.status, 200, "pipeline on {actor}: {response:?}");
    response.json()
}

pub fn execute(sql: &str, args: Value) -> Value {
    json!({"type": "execute", "stmt": {"sql": sql, "args": args, "named_args": [], "want_rows": true}})
}

/// Result `index` of a pipeline: must be ok; its `response.result`.
pub fn ok_result(body: &Value, index: usize) -> &Value {
    let result = &body["results"][index];
    assert_eq!(result["type"], "ok", "result {index}: {body}");
    &result["response"]["result"]
}

/// A metric's value summed over its labels, from Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let metric_name = series.split('{').next().unwrap();
        if metric_name == name {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    found
}


//! `wasqlite serve` end to end: the real binary on a redb store in a
//! temporary directory, with an auth file, reached over loopback.
//!
//! One test speaks raw HTTP/1.1 (a few lines over `TcpStream`, no client
//! crate): health, the version endpoints, 401s, a pipeline, a cursor,
//! metrics, SIGTERM, and the data after a restart. The others drive the
//! libSQL clients people use, as scripts under `cli/tests/clients/`: the
//! npm `@libsql/client` (Hrana v2 over HTTP) and the Python `libsql`
//! package (the Rust libsql crate's remote mode: Hrana v3, cursors). They
//! need the clients installed by `scripts/install-test-clients.sh DIR` and
//! `WASQLITE_TEST_CLIENTS=DIR`; without it they are skipped with a note,
//! except under CI (`CI` set), where they fail.

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};


use serde_json::{Value, json};
use serve_support::*;

#[test]
fn serve_speaks_hrana_over_raw_http() {
    let server = Server::start(tempfile::tempdir().unwrap(), &[]);
    let addr = server.addr.clone();

    assert_eq!(http(&addr, "GET", "/health", None, None).status, 200, "GET /health");

    // The version probes, at the actor's base URL as a client resolves them.
    for (path, expected) in [("v2", 200), ("v3", 200), ("v3-protobuf", 404)] {
        let response = http(&addr, "GET", &format!("/{ACTOR_A}/{path}"), Some(TOKEN_A), None);
        assert_eq!(response.status, expected, "GET /{ACTOR_A}/{path}: {response:?}");
    }

    // No token, a wrong token, and another actor's token: 401 with a Hrana
    // error as JSON. The JS client reads the body's `message` and `code`
    // only when the content type is exactly `application/json`.
    let select = json!([execute("SELECT 1", json!([])), {"type": "close"}]);
    let body = json!({"requests": select});
    for (what, token) in [("no token", None), ("a wrong token", Some("x".repeat(40))), ("beta's token", Some(TOKEN_B.to_owned()))] {
        let response = http(&addr, "POST", &format!("/{ACTOR_A}/v2/pipeline"), token.as_deref(), Some(&body));
        assert_eq!(response.status, 401, "{what}: {response:?}");
        assert_eq!(response.header("content-type"), Some("application/json"), "{what}: {response:?}");
        assert!(response.json()["message"].is_string(), "{what}: a Hrana error body: {response:?}");
    }

    // A pipeline: every value type, the result fields the clients read.
    let body = pipeline(
        &addr,
        ACTOR_A,
        TOKEN_A,
        None,
        json!([
            execute("CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, b BLOB)", json!([])),
            execute(
                "INSERT INTO t (i, b) VALUES (?, ?)",
                json!([{"type": "integer", "value": "9223372036854775807"}, {"type": "blob", "base64": "AP8="}])
            ),
            // Unpadded base64, as the Python client sends it.
            execute("SELECT i, b, hex(?) AS h, ? AS f, ? AS s, ? AS n FROM t", json!([
                {"type": "blob", "base64": "AP8"}, {"type": "float", "value": 1.5}, {"type": "text", "value": "é😀"}, {"type": "null"}
            ])),
            {"type": "close"}
        ]),
    );
    assert_eq!(body["results"].as_array().map(Vec::len), Some(4), "{body}");
    let insert = ok_result(&body, 1);
    assert_eq!(insert["affected_row_count"], 1, "{insert}");
    assert_eq!(insert["last_insert_rowid"], "1", "last_insert_rowid is a string: {insert}");
    let select = ok_result(&body, 2);
    let cols: Vec<&Value> = select["cols"].as_array().unwrap().iter().map(|c| &c["name"]).collect();
    assert_eq!(cols, ["i", "b", "h", "f", "s", "n"], "{select}");
    assert_eq!(select["cols"][0]["decltype"], "INTEGER", "{select}");
    assert_eq!(select["cols"][1]["decltype"], "BLOB", "{select}");
    assert_eq!(
        select["rows"][0],
        json!([
            {"type": "integer", "value": "9223372036854775807"},
            // Written without padding, as sqld writes it; clients send
            // either (the one above is padded).
            {"type": "blob", "base64": "AP8"},
            {"type": "text", "value": "00FF"},
            {"type": "float", "value": 1.5},
            {"type": "text", "value": "é😀"},
            {"type": "null"}
        ]),
        "{select}"
    );
    assert_eq!(body["results"][3]["response"]["type"], "close", "{body}");

    // An error: a Hrana error with a SQLite code, and the stream goes on.
    let body = pipeline(&addr, ACTOR_A, TOKEN_A, None, json!([execute("INSERT INTO t (id) VALUES (1)", json!([])), execute("SELECT 2", json!([])), {"type": "close"}]));
    let error = &body["results"][0];
    assert_eq!(error["type"], "error", "{body}");
    let code = error["error"]["code"].as_str().unwrap_or_default();
    assert!(code.starts_with("SQLITE_CONSTRAINT"), "code {code:?}: {body}");
    assert_eq!(ok_result(&body, 1)["rows"][0][0]["value"], "2", "{body}");

    // A baton carries a transaction across requests.
    let body = pipeline(&addr, ACTOR_A, TOKEN_A, None, json!([execute("BEGIN IMMEDIATE", json!([])), execute("INSERT INTO t (i) VALUES (2)", json!([]))]));
    let baton = body["baton"].as_str().unwrap_or_else(|| panic!("a baton for the open stream: {body}")).to_owned();
    let body = pipeline(&addr, ACTOR_A, TOKEN_A, Some(&baton), json!([{"type": "get_autocommit"}, execute("COMMIT", json!([])), {"type": "close"}]));
    assert_eq!(body["results"][0]["response"]["is_autocommit"], false, "{body}");
    assert_eq!(body["results"][1]["type"], "ok", "{body}");

    // The v3 cursor: newline-separated JSON, the first line the baton.
    let response = http(
        &addr,
        "POST",
        &format!("/{ACTOR_A}/v3/cursor"),
        Some(TOKEN_A),
        Some(&json!({"baton": null, "batch": {"steps": [{"stmt": {"sql": "SELECT count(*) FROM t", "args": [], "named_args": [], "want_rows": true}}]}})),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let entries: Vec<Value> = response.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(entries[0].get("baton").is_some(), "{entries:?}");
    let types: Vec<&str> = entries[1..].iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["step_begin", "row", "step_end"], "{entries:?}");
    assert_eq!(entries[2]["row"][0]["value"], "2", "{entries:?}");

    // Actors are separate: beta has no table t. The global token opens it.
    let body = pipeline(&addr, ACTOR_B, GLOBAL_TOKEN, None, json!([execute("SELECT * FROM t", json!([])), {"type": "close"}]));
    assert_eq!(body["results"][0]["type"], "error", "{body}");
    assert!(body["results"][0]["error"]["message"].as_str().unwrap().contains("no such table"), "{body}");

    let metrics = http(&addr, "GET", "/metrics", Some(GLOBAL_TOKEN), None);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let wakes = metric(&metrics.body, "wasqlite_wakes_total").unwrap_or_else(|| panic!("no wasqlite_wakes_total in {}", metrics.body));
    assert!(wakes >= 2.0, "two actors woke: {wakes}");

    let (status, dir) = server.stop();
    assert!(status.success(), "exit after SIGTERM: {status}");

    // The data is in the store: a new process reads it.
    let server = Server::start(dir, &[]);
    let body = pipeline(&server.addr, ACTOR_A, TOKEN_A, None, json!([execute("SELECT count(*), max(i) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(ok_result(&body, 0)["rows"][0], json!([{"type": "integer", "value": "2"}, {"type": "integer", "value": "9223372036854775807"}]), "{body}");
    let (status, _) = server.stop();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// The directory of `scripts/install-test-clients.sh`, or `None` (skip)
/// when `WASQLITE_TEST_CLIENTS` is unset outside CI.
fn clients_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("WASQLITE_TEST_CLIENTS") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the libSQL client tests: set WASQLITE_TEST_CLIENTS (scripts/install-test-clients.sh DIR)"
        );
        eprintln!("WASQLITE_TEST_CLIENTS is not set: skipping the libSQL client test (scripts/install-test-clients.sh DIR)");
        return None;
    };
    let dir = std::path::absolute(PathBuf::from(dir)).unwrap();
    assert!(dir.join("node_modules/@libsql/client").is_dir(), "no @libsql/client in {}: run scripts/install-test-clients.sh", dir.display());
    assert!(dir.join("python/libsql").is_dir(), "no Python libsql in {}: run scripts/install-test-clients.sh", dir.display());
    Some(dir)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name)
}

/// Runs a client script against `server`; panics with its output unless it
/// exits 0.
fn run_client(server: &Server, clients: &Path, program: &str, name: &str, env: &[(&str, &str)]) {
    let output = Command::new(program)
        .arg(script(name))
        .args([server.url(), format!("{ACTOR_A}={TOKEN_A}"), format!("{ACTOR_B}={TOKEN_B}")])
        .env("WASQLITE_TEST_CLIENTS", clients)
        .env("NODE_PATH", clients.join("node_modules"))
        .env("PYTHONPATH", clients.join("python"))
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("WASQLITE_GLOBAL_TOKEN", GLOBAL_TOKEN)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program} {name}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{name} failed ({}):\n{stdout}\n{stderr}", output.status);
}

#[test]
fn the_libsql_js_client_works_against_serve() {
    let Some(clients) = clients_dir() else { return };
    // A short idle timeout, so the script can watch an actor sleep and wake.
    let server = Server::start(tempfile::tempdir().unwrap(), &["--idle-timeout", "1"]);
    run_client(&server, &clients, "node", "libsql_client.mjs", &[("WASQLITE_IDLE_TIMEOUT", "1")]);
    let (status, _) = server.stop();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn the_libsql_python_client_works_against_serve() {
    let Some(clients) = clients_dir() else { return };
    let server = Server::start(tempfile::tempdir().unwrap(), &[]);
    run_client(&server, &clients, "python3", "libsql_python.py", &[]);
    let (status, _) = server.stop();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

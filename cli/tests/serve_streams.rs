//! `wasqlite serve`: what its streams promise, over raw HTTP against the
//! real binary. An actor has one connection that its streams share in
//! turn: a transaction holds it and others wait up to the busy timeout;
//! connection state (TEMP tables, PRAGMAs, last_insert_rowid) does not pass
//! from one stream to the next; batons are bound, single-use and expire;
//! caps, batch conditions, v3 requests and the cursor's format.

mod serve_support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serve_support::*;

const A: &str = ACTOR_A;

fn start(extra: &[&str]) -> Server {
    Server::start(tempfile::tempdir().unwrap(), extra)
}

/// The first value of the first row of an ok result, as text.
fn scalar(result: &Value) -> String {
    let v = &result["rows"][0][0];
    v["value"].as_str().map(str::to_owned).unwrap_or_else(|| v["value"].to_string())
}

fn error_code(body: &Value, index: usize) -> String {
    let result = &body["results"][index];
    assert_eq!(result["type"], "error", "result {index} should fail: {body}");
    result["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn baton(body: &Value) -> String {
    body["baton"].as_str().unwrap_or_else(|| panic!("no baton in {body}")).to_owned()
}

#[test]
fn a_transaction_holds_its_actor_and_another_stream_waits_for_it_then_gets_busy() {
    let server = start(&["--busy-timeout", "0.3"]);
    let addr = server.addr.clone();
    pipeline(&addr, A, TOKEN_A, None, json!([{"type": "sequence", "sql": "CREATE TABLE t(x)"}, {"type": "close"}]));
    let open = pipeline(&addr, A, TOKEN_A, None, json!([execute("BEGIN", json!([])), execute("INSERT INTO t VALUES (1)", json!([]))]));
    let held = baton(&open);

    // Another stream gives up after the busy timeout, with SQLITE_BUSY.
    let started = Instant::now();
    let busy = pipeline(&addr, A, GLOBAL_TOKEN, None, json!([execute("SELECT count(*) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(error_code(&busy, 0), "SQLITE_BUSY");
    assert!(started.elapsed() >= Duration::from_millis(300), "it gave up before the busy timeout: {:?}", started.elapsed());
    assert_eq!(busy["results"][1]["type"], "ok", "close needs no actor: {busy}");

    // Another actor is not held up.
    let other = pipeline(&addr, ACTOR_B, TOKEN_B, None, json!([execute("SELECT 1", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&other, 0)), "1");

    // The holder commits; the next stream sees the row.
    let done = pipeline(&addr, A, TOKEN_A, Some(&held), json!([execute("COMMIT", json!([])), {"type": "close"}]));
    assert!(done["baton"].is_null(), "close ends the stream: {done}");
    let after = pipeline(&addr, A, TOKEN_A, None, json!([execute("SELECT count(*) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&after, 0)), "1");
}

#[test]
fn a_waiting_stream_runs_as_soon_as_the_transaction_ends() {
    let server = start(&["--busy-timeout", "30"]);
    let addr = server.addr.clone();
    pipeline(&addr, A, TOKEN_A, None, json!([{"type": "sequence", "sql": "CREATE TABLE t(x)"}, {"type": "close"}]));
    let open = pipeline(&addr, A, TOKEN_A, None, json!([execute("BEGIN", json!([])), execute("INSERT INTO t VALUES (7)", json!([]))]));
    let held = baton(&open);
    let waiter_addr = addr.clone();
    let waiter = std::thread::spawn(move || {
        pipeline(&waiter_addr, A, TOKEN_A, None, json!([execute("SELECT sum(x) FROM t", json!([])), {"type": "close"}]))
    });
    // The waiter cannot finish while the transaction is open: it would
    // have to read the uncommitted row, or no row, and either is wrong.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "a stream ran while another held the actor's transaction");
    pipeline(&addr, A, TOKEN_A, Some(&held), json!([execute("COMMIT", json!([])), {"type": "close"}]));
    let seen = waiter.join().unwrap();
    assert_eq!(scalar(ok_result(&seen, 0)), "7", "the waiter ran after the commit: {seen}");
}

#[test]
fn an_abandoned_transaction_is_rolled_back_when_its_stream_expires() {
    let server = start(&["--stream-timeout", "0.3", "--busy-timeout", "30"]);
    let addr = server.addr.clone();
    pipeline(&addr, A, TOKEN_A, None, json!([{"type": "sequence", "sql": "CREATE TABLE t(x)"}, {"type": "close"}]));
    let open = pipeline(&addr, A, TOKEN_A, None, json!([execute("BEGIN", json!([])), execute("INSERT INTO t VALUES (1)", json!([]))]));
    let abandoned = baton(&open);
    // This waits for the expiry, then finds the insert rolled back.
    let after = pipeline(&addr, A, TOKEN_A, None, json!([execute("SELECT count(*) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&after, 0)), "0");
    let late = http(&addr, "POST", &format!("/{A}/v2/pipeline"), Some(TOKEN_A), Some(&json!({"baton": abandoned, "requests": [execute("COMMIT", json!([]))]})));
    assert_eq!(late.status, 400, "{late:?}");
    assert_eq!(late.json()["code"], "STREAM_EXPIRED");
}

#[test]
fn temp_tables_pragmas_and_last_insert_rowid_do_not_pass_between_streams() {
    let server = start(&[]);
    let addr = server.addr.clone();
    pipeline(&addr, A, TOKEN_A, None, json!([{"type": "sequence", "sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, x)"}, {"type": "close"}]));
    let before = pipeline(&addr, A, TOKEN_A, None, json!([execute("PRAGMA recursive_triggers", json!([])), {"type": "close"}]));
    let default = scalar(ok_result(&before, 0));

    let first = pipeline(
        &addr,
        A,
        TOKEN_A,
        None,
        json!([
            execute("CREATE TEMP TABLE scratch(y)", json!([])),
            execute(if default == "0" { "PRAGMA recursive_triggers = 1" } else { "PRAGMA recursive_triggers = 0" }, json!([])),
            execute("INSERT INTO t(id, x) VALUES (41, 'a')", json!([])),
        ]),
    );
    assert_eq!(ok_result(&first, 2)["last_insert_rowid"], "41");
    // Its own state lasts as long as the stream.
    let first_baton = baton(&first);
    let same = pipeline(&addr, A, TOKEN_A, Some(&first_baton), json!([execute("SELECT count(*) FROM temp.scratch", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&same, 0)), "0", "the stream's own temp table is still there");

    let next = pipeline(
        &addr,
        A,
        TOKEN_A,
        None,
        json!([
            execute("SELECT count(*) FROM sqlite_temp_schema", json!([])),
            execute("PRAGMA recursive_triggers", json!([])),
            execute("SELECT last_insert_rowid()", json!([])),
            {"type": "close"}
        ]),
    );
    assert_eq!(scalar(ok_result(&next, 0)), "0", "a TEMP table passed to the next stream");
    assert_eq!(scalar(ok_result(&next, 1)), default, "a PRAGMA passed to the next stream");
    assert_eq!(scalar(ok_result(&next, 2)), "0", "last_insert_rowid passed to the next stream");

    // A stream that inserts, lets the actor go (autocommit) and comes back
    // still sees its own last insert, even after another stream inserted.
    let mine = pipeline(&addr, A, TOKEN_A, None, json!([execute("INSERT INTO t(id, x) VALUES (50, 'b')", json!([]))]));
    let mine_baton = baton(&mine);
    pipeline(&addr, A, TOKEN_A, None, json!([execute("INSERT INTO t(id, x) VALUES (60, 'c')", json!([])), {"type": "close"}]));
    let back = pipeline(&addr, A, TOKEN_A, Some(&mine_baton), json!([execute("SELECT last_insert_rowid()", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&back, 0)), "50");
}

#[test]
fn a_baton_works_once_and_only_for_its_actor_and_token() {
    let server = start(&[]);
    let addr = server.addr.clone();
    let opened = pipeline(&addr, A, TOKEN_A, None, json!([execute("SELECT 1", json!([]))]));
    let b = baton(&opened);
    let post = |actor: &str, token: &str, baton: &str| {
        http(&addr, "POST", &format!("/{actor}/v2/pipeline"), Some(token), Some(&json!({"baton": baton, "requests": [execute("SELECT 2", json!([]))]})))
    };
    let elsewhere = post(ACTOR_B, GLOBAL_TOKEN, &b);
    assert_eq!((elsewhere.status, elsewhere.json()["code"].clone()), (400, json!("STREAM_EXPIRED")), "another actor");
    let other_token = post(A, GLOBAL_TOKEN, &b);
    assert_eq!(other_token.status, 400, "another token: {other_token:?}");
    let own = post(A, TOKEN_A, &b);
    assert_eq!(own.status, 200, "the refusals did not use the baton up: {own:?}");
    let next = own.json()["baton"].as_str().unwrap().to_owned();
    assert_ne!(next, b, "every response gives a new baton");
    assert_eq!(post(A, TOKEN_A, &b).status, 400, "a baton works once");
    assert_eq!(post(A, TOKEN_A, &next).status, 200);
}

#[test]
fn batches_follow_their_conditions_and_v3_answers_autocommit_describe_and_stored_sql() {
    let server = start(&[]);
    let addr = server.addr.clone();
    let body = json!({"baton": null, "requests": [
        {"type": "store_sql", "sql_id": 1, "sql": "INSERT INTO t VALUES (?)"},
        {"type": "batch", "batch": {"steps": [
            {"stmt": {"sql": "CREATE TABLE t(x INTEGER UNIQUE)"}},
            {"condition": {"type": "ok", "step": 0}, "stmt": {"sql": "BEGIN"}},
            {"condition": {"type": "ok", "step": 1}, "stmt": {"sql_id": 1, "args": [{"type": "integer", "value": "1"}]}},
            {"condition": {"type": "ok", "step": 2}, "stmt": {"sql_id": 1, "args": [{"type": "integer", "value": "1"}]}},
            {"condition": {"type": "error", "step": 3}, "stmt": {"sql": "ROLLBACK"}},
            {"condition": {"type": "and", "conds": [{"type": "is_autocommit"}, {"type": "not", "cond": {"type": "ok", "step": 3}}]},
             "stmt": {"sql": "SELECT 'rolled back'"}},
        ]}},
        {"type": "get_autocommit"},
        {"type": "describe", "sql": "SELECT x AS y FROM t WHERE x > :min AND x < ?"},
        {"type": "close_sql", "sql_id": 1},
        {"type": "execute", "stmt": {"sql_id": 1, "args": []}},
        {"type": "close"},
    ]});
    let response = http(&addr, "POST", &format!("/{A}/v3/pipeline"), Some(TOKEN_A), Some(&body));
    assert_eq!(response.status, 200, "{response:?}");
    let out = response.json();
    let batch = &out["results"][1]["response"]["result"];
    let ran: Vec<bool> = (0..6).map(|i| !batch["step_results"][i].is_null()).collect();
    assert_eq!(ran, [true, true, true, false, true, true], "{batch}");
    assert_eq!(batch["step_errors"][3]["code"], "SQLITE_CONSTRAINT_UNIQUE", "{batch}");
    assert_eq!(batch["step_results"][5]["rows"][0][0]["value"], "rolled back");
    assert_eq!(out["results"][2]["response"]["is_autocommit"], true);
    let described = &out["results"][3]["response"]["result"];
    assert_eq!(described["params"], json!([{"name": ":min"}, {"name": null}]), "{described}");
    assert_eq!(described["cols"], json!([{"name": "y", "decltype": "INTEGER"}]), "{described}");
    assert_eq!((described["is_readonly"].clone(), described["is_explain"].clone()), (json!(true), json!(false)));
    assert_eq!(error_code(&out, 5), "SQL_NOT_FOUND", "close_sql forgot the text");
    assert!(out["baton"].is_null());

    // A condition that looks forward fails the batch before anything runs.
    let forward = json!({"requests": [{"type": "batch", "batch": {"steps": [
        {"stmt": {"sql": "INSERT INTO t VALUES (99)"}},
        {"condition": {"type": "ok", "step": 1}, "stmt": {"sql": "SELECT 1"}},
    ]}}, execute("SELECT count(*) FROM t WHERE x = 99", json!([])), {"type": "close"}]});
    let refused = http(&addr, "POST", &format!("/{A}/v3/pipeline"), Some(TOKEN_A), Some(&forward)).json();
    assert_eq!(error_code(&refused, 0), "BATCH_COND_INVALID");
    assert_eq!(scalar(ok_result(&refused, 1)), "0", "no step of the refused batch ran");
}

#[test]
fn the_cursor_sends_its_entries_one_per_line() {
    let server = start(&[]);
    let addr = server.addr.clone();
    let body = json!({"baton": null, "batch": {"steps": [
        {"stmt": {"sql": "CREATE TABLE t(x TEXT)"}},
        {"stmt": {"sql": "INSERT INTO t VALUES ('a'), ('b')"}},
        {"stmt": {"sql": "SELECT x FROM t ORDER BY x"}},
        {"condition": {"type": "error", "step": 2}, "stmt": {"sql": "SELECT 'skipped'"}},
        {"stmt": {"sql": "SELECT * FROM missing"}},
    ]}});
    let response = http(&addr, "POST", &format!("/{A}/v3/cursor"), Some(TOKEN_A), Some(&body));
    assert_eq!(response.status, 200, "{response:?}");
    let lines: Vec<Value> = response.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines[0]["baton"].is_string(), "the head line carries the baton: {}", lines[0]);
    let kinds: Vec<&str> = lines[1..].iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["step_begin", "step_end", "step_begin", "step_end", "step_begin", "row", "row", "step_end", "step_error"],
        "{}",
        response.body
    );
    assert_eq!(lines[4]["affected_row_count"], 2);
    assert_eq!(lines[5]["cols"], json!([{"name": "x", "decltype": "TEXT"}]));
    assert_eq!(lines[6]["row"], json!([{"type": "text", "value": "a"}]));
    assert_eq!((lines[9]["step"].clone(), lines[9]["error"]["code"].clone()), (json!(4), json!("SQLITE_ERROR")));
}

#[test]
fn oversized_requests_and_responses_are_refused_with_their_cap() {
    let server = start(&["--max-request-bytes", "10000", "--max-response-bytes", "100000"]);
    let addr = server.addr.clone();
    let big = "x".repeat(20_000);
    let refused = http(&addr, "POST", &format!("/{A}/v2/pipeline"), Some(TOKEN_A), Some(&json!({"requests": [execute("SELECT ?", json!([{"type": "text", "value": big}]))]})));
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.json()["code"], "REQUEST_TOO_LARGE");
    assert!(refused.json()["message"].as_str().unwrap().contains("10000 bytes"));

    let out = pipeline(
        &addr,
        A,
        TOKEN_A,
        None,
        json!([
            {"type": "sequence", "sql": "CREATE TABLE t(x)"},
            execute("SELECT zeroblob(60000), zeroblob(60000)", json!([])),
            execute("SELECT 1", json!([])),
            {"type": "close"}
        ]),
    );
    assert_eq!(error_code(&out, 1), "RESPONSE_TOO_LARGE");
    // Each below the cap, together past it: the statement after does not run.
    let out = pipeline(
        &addr,
        A,
        TOKEN_A,
        None,
        json!([
            execute("SELECT zeroblob(50000)", json!([])),
            execute("SELECT zeroblob(50000)", json!([])),
            execute("INSERT INTO t VALUES (1)", json!([])),
            {"type": "close"}
        ]),
    );
    assert_eq!((out["results"][0]["type"].clone(), out["results"][1]["type"].clone()), (json!("ok"), json!("ok")), "{out}");
    assert_eq!(error_code(&out, 2), "RESPONSE_TOO_LARGE");
    let count = pipeline(&addr, A, TOKEN_A, None, json!([execute("SELECT count(*) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&count, 0)), "0", "the refused statement did not run");
}

#[test]
fn sigterm_rolls_back_open_transactions_and_keeps_commits() {
    let server = start(&[]);
    let addr = server.addr.clone();
    pipeline(&addr, A, TOKEN_A, None, json!([{"type": "sequence", "sql": "CREATE TABLE t(x); INSERT INTO t VALUES (1)"}, {"type": "close"}]));
    pipeline(&addr, A, TOKEN_A, None, json!([execute("BEGIN", json!([])), execute("INSERT INTO t VALUES (2)", json!([]))]));
    let (status, dir) = server.stop();
    assert!(status.success(), "exit status {status}");
    let again = Server::start(dir, &[]);
    let out = pipeline(&again.addr, A, TOKEN_A, None, json!([execute("SELECT group_concat(x) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&out, 0)), "1");
}

#[test]
fn a_libsql_read_transaction_refuses_writes_until_it_ends() {
    let server = start(&[]);
    let addr = server.addr.clone();
    pipeline(&addr, A, TOKEN_A, None, json!([{"type": "sequence", "sql": "CREATE TABLE t(x)"}, {"type": "close"}]));
    // What @libsql/client sends for transaction("read").
    let read = pipeline(
        &addr,
        A,
        TOKEN_A,
        None,
        json!([execute("BEGIN TRANSACTION READONLY", json!([])), execute("SELECT count(*) FROM t", json!([])), execute("INSERT INTO t VALUES (1)", json!([]))]),
    );
    assert_eq!(scalar(ok_result(&read, 1)), "0");
    assert_eq!(error_code(&read, 2), "SQLITE_READONLY", "a write inside a read transaction");
    let after = pipeline(&addr, A, TOKEN_A, Some(&baton(&read)), json!([execute("COMMIT", json!([])), execute("INSERT INTO t VALUES (2)", json!([])), {"type": "close"}]));
    assert_eq!(after["results"][1]["type"], "ok", "the stream writes again once its read transaction ended: {after}");
    let other = pipeline(&addr, A, TOKEN_A, None, json!([execute("INSERT INTO t VALUES (3)", json!([])), execute("SELECT group_concat(x) FROM t", json!([])), {"type": "close"}]));
    assert_eq!(scalar(ok_result(&other, 1)), "2,3");
}

#[test]
fn hostile_requests_get_one_clear_error_and_the_server_carries_on() {
    let server = start(&[]);
    let addr = server.addr.clone();
    let raw = |path: &str, body: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {GLOBAL_TOKEN}\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out.split(' ').nth(1).unwrap().parse().unwrap();
        let body: Value = serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        (status, body["code"].as_str().unwrap_or_default().to_owned(), body["message"].as_str().unwrap_or_default().to_owned())
    };
    let pipeline_path = format!("/{A}/v2/pipeline");
    let (status, code, message) = raw(&pipeline_path, "not json");
    assert_eq!((status, code.as_str()), (400, "PROTOCOL_ERROR"), "{message}");
    assert!(message.contains("not a Hrana request"), "{message}");
    let (status, code, _) = raw(&pipeline_path, r#"{"requests": [{"type": "drop_everything"}]}"#);
    assert_eq!((status, code.as_str()), (400, "PROTOCOL_ERROR"));
    // Conditions nested past any sane depth: refused by the parser, not a
    // stack overflow.
    let deep = format!(
        r#"{{"requests": [{{"type": "batch", "batch": {{"steps": [{{"condition": {}{{"type": "is_autocommit"}}{}, "stmt": {{"sql": "SELECT 1"}}}}]}}}}]}}"#,
        r#"{"type": "not", "cond": "#.repeat(5000),
        "}".repeat(5000)
    );
    let (status, code, _) = raw(&pipeline_path, &deep);
    assert_eq!((status, code.as_str()), (400, "PROTOCOL_ERROR"));
    let (status, code, message) = raw("/bad%2Fid/v2/pipeline", r#"{"requests": []}"#);
    assert_eq!((status, code.as_str()), (404, "ACTOR_INVALID"), "{message}");
    let (status, code, _) = raw(&format!("/{}/v2/pipeline", "a".repeat(200)), r#"{"requests": []}"#);
    assert_eq!((status, code.as_str()), (404, "ACTOR_INVALID"));
    let (status, code, message) = raw("/v2/pipeline", r#"{"requests": []}"#);
    assert_eq!((status, code.as_str()), (404, "ACTOR_MISSING"));
    assert!(message.contains("trailing slash"), "{message}");

    let out = pipeline(
        &addr,
        A,
        TOKEN_A,
        None,
        json!([
            execute("SELECT ?", json!([{"type": "integer", "value": "12x"}])),
            execute("SELECT ?", json!([{"type": "blob", "base64": "%%%"}])),
            {"type": "execute", "stmt": {"sql": "SELECT 1", "sql_id": 3}},
            execute("SELECT 1; SELECT 2", json!([])),
            execute("SELECT 42", json!([])),
            {"type": "close"}
        ]),
    );
    assert_eq!(error_code(&out, 0), "ARGS_INVALID");
    assert_eq!(error_code(&out, 1), "ARGS_INVALID");
    assert_eq!(error_code(&out, 2), "SQL_INPUT_ERROR");
    assert_eq!(error_code(&out, 3), "SQL_MANY_STATEMENTS");
    assert_eq!(scalar(ok_result(&out, 4)), "42", "the pipeline went on after the bad requests");
}

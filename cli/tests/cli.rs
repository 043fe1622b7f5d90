//! The `wasqlite` binary end to end, against a redb store in a temporary
//! directory: SQL in and rows out, persistence across processes, export to
//! and import from native SQLite files, raw KV dumps, destroying actors, the
//! shell, and a one-line error for each kind of bad input.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use rusqlite::Connection;
use tempfile::TempDir;

/// A temporary directory with a redb store URL in it.
struct Store {
    dir: TempDir,
    url: String,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("redb:{}", dir.path().join("data/kv.redb").display());
        Store { dir, url }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `wasqlite <args...> --store <url>`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = cargo_bin_cmd!("wasqlite");
        cmd.args(args).args(["--store", &self.url]);
        cmd
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn exec(&self, actor: &str, sql: &str) -> String {
        self.ok(&["exec", "--actor", actor, sql])
    }

    /// Runs a command that must fail with one line on stderr; that line.
    fn fails(&self, args: &[&str]) -> String {
        fails(self.cmd(args))
    }
}

fn fails(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "expected a failure, got stdout {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr:?}");
    stderr.trim_end().to_owned()
}

/// A native SQLite database with two rows, written by rusqlite.
fn native_db(path: &Path, setup: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(setup).unwrap();
    conn.execute_batch(
        "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, photo BLOB);
         INSERT INTO people VALUES (1, 'ada', x'00ff'), (2, 'grace', NULL);",
    )
    .unwrap();
}

fn native_rows(path: &Path, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect()).unwrap().map(Result::unwrap).collect()
}

#[test]
fn exec_prints_rows_as_tsv_and_json_and_data_persists_across_processes() {
    let s = Store::new();
    s.exec(
        "shop",
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL); INSERT INTO items VALUES (1, 'pen', 1.5);",
    );
    s.ok(&[
        "exec",
        "--actor",
        "shop",
        "INSERT INTO items VALUES (?1, ?2, ?3)",
        "--param",
        "2",
        "--param",
        "ink\tpot",
        "--param",
        "NULL",
    ]);
    s.ok(&["exec", "--actor", "shop", "--text", "INSERT INTO items(id, name) VALUES (3, ?1)", "--param", "42"]);

    // Every command above was its own process: the data is in the store.
    assert_eq!(
        s.exec("shop", "SELECT id, name, price, typeof(name) FROM items ORDER BY id"),
        "id\tname\tprice\ttypeof(name)\n1\tpen\t1.5\ttext\n2\tink\\tpot\t\ttext\n3\t42\t\ttext\n"
    );
    let json = s.ok(&[
        "exec",
        "--actor",
        "shop",
        "--json",
        "SELECT id, name, price, x'00ff' AS b FROM items WHERE id < 3 ORDER BY id",
    ]);
    assert_eq!(
        json,
        "{\"id\":1,\"name\":\"pen\",\"price\":1.5,\"b\":{\"blob\":\"00ff\"}}\n\
         {\"id\":2,\"name\":\"ink\\tpot\",\"price\":null,\"b\":{\"blob\":\"00ff\"}}\n"
    );
    // Several statements print the rows of each one that has columns.
    assert_eq!(
        s.exec("shop", "SELECT 1 AS a; UPDATE items SET price = 2; SELECT count(*) AS n FROM items;"),
        "a\n1\nn\n3\n"
    );
    assert_eq!(s.ok(&["actors", "list"]), "shop\n");
}

#[test]
fn sql_errors_exit_non_zero_with_sqlites_message() {
    let s = Store::new();
    let err = s.fails(&["exec", "--actor", "a", "SELECT * FROM nope"]);
    assert!(err.contains("no such table: nope") && err.contains("actor a"), "{err}");
    let err = s.fails(&["exec", "--actor", "a", "SELECT ?1, ?2", "--param", "1"]);
    assert!(err.contains("2 parameters but 1 were given"), "{err}");
}

#[test]
fn export_writes_a_file_native_sqlite_reads_with_identical_rows() {
    let s = Store::new();
    s.exec(
        "books",
        "CREATE TABLE books(id INTEGER PRIMARY KEY, title TEXT, cover BLOB, score REAL);
         WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 500)
         INSERT INTO books(title, cover, score) SELECT 'book ' || value, randomblob(300), value / 7.0 FROM s;
         CREATE INDEX books_title ON books(title);",
    );
    let file = s.path("books.sqlite");
    let out = s.ok(&["export", "--actor", "books", file.to_str().unwrap()]);
    assert!(out.contains("integrity_check ok"), "{out}");

    let sql = "SELECT id, title, hex(cover), score FROM books ORDER BY id";
    let native = native_rows(&file, sql);
    assert_eq!(native.len(), 500);
    let conn = Connection::open(&file).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    // The same rows through the actor, compared as JSON.
    let through_actor: Vec<serde_json::Value> =
        s.ok(&["exec", "--actor", "books", "--json", sql]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(through_actor.len(), native.len());
    for (json, row) in through_actor.iter().zip(&native) {
        use rusqlite::types::Value as V;
        let [V::Integer(id), V::Text(title), V::Text(cover), V::Real(score)] = &row[..] else { panic!("{row:?}") };
        assert_eq!(json["id"], *id);
        assert_eq!(json["title"], *title);
        assert_eq!(json["hex(cover)"], *cover);
        assert_eq!(json["score"], *score);
    }
}

#[test]
fn import_loads_native_files_converting_page_size_and_wal() {
    let s = Store::new();
    let plain = s.path("plain.sqlite");
    native_db(&plain, "PRAGMA page_size = 4096;");
    let out = s.ok(&["import", "--actor", "plain", plain.to_str().unwrap()]);
    assert!(out.contains("integrity_check ok") && !out.contains("converted"), "{out}");
    assert_eq!(
        s.exec("plain", "SELECT id, name, hex(photo) FROM people ORDER BY id"),
        "id\tname\thex(photo)\n1\tada\t00FF\n2\tgrace\t\n"
    );

    let odd = s.path("odd.sqlite");
    native_db(&odd, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;");
    let out = s.ok(&["import", "--actor", "odd", odd.to_str().unwrap()]);
    assert!(out.contains("converted"), "{out}");
    assert_eq!(s.exec("odd", "PRAGMA page_size"), "page_size\n4096\n");
    assert_eq!(s.exec("odd", "SELECT count(*) FROM people"), "count(*)\n2\n");

    // An actor with data is only replaced with --force.
    let err = s.fails(&["import", "--actor", "plain", odd.to_str().unwrap()]);
    assert!(err.contains("already has data") && err.contains("--force"), "{err}");
    s.exec("plain", "DELETE FROM people WHERE id = 1");
    s.ok(&["import", "--actor", "plain", "--force", plain.to_str().unwrap()]);
    assert_eq!(s.exec("plain", "SELECT count(*) FROM people"), "count(*)\n2\n");
}

#[test]
fn kv_dump_and_load_round_trip_into_a_fresh_store_and_destroy_leaves_nothing() {
    let s = Store::new();
    s.exec(
        "src",
        "CREATE TABLE t(x); WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20) \
         INSERT INTO t SELECT randomblob(5000) FROM s;",
    );
    let expected = s.exec("src", "SELECT count(*), sum(length(x)), hex(max(x)) FROM t");
    let dump = s.path("src.jsonl");
    s.ok(&["kv", "dump", "--actor", "src", dump.to_str().unwrap()]);
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.lines().count() > 20, "{text}");
    // Keys use rivetkit's layout: the main file's meta key is 08010000.
    assert!(text.lines().any(|l| l.starts_with("{\"key\":\"08010000\",\"value\":\"0100")), "{text}");

    let other = Store::new();
    other.ok(&["kv", "load", "--actor", "copy", dump.to_str().unwrap()]);
    assert_eq!(other.exec("copy", "SELECT count(*), sum(length(x)), hex(max(x)) FROM t"), expected);
    // Reading writes nothing: the copy dumps to the same lines (stdout form).
    assert_eq!(other.ok(&["kv", "dump", "--actor", "copy"]), text);
    // Loading over existing keys needs --force.
    let err = other.fails(&["kv", "load", "--actor", "copy", dump.to_str().unwrap()]);
    assert!(err.contains("already has") && err.contains("--force"), "{err}");
    other.ok(&["kv", "load", "--actor", "copy", "--force", dump.to_str().unwrap()]);

    let out = s.ok(&["actors", "destroy", "src"]);
    assert!(out.starts_with("destroyed actor src ("), "{out}");
    assert_eq!(s.ok(&["kv", "dump", "--actor", "src"]), "");
    assert_eq!(s.ok(&["actors", "list"]), "");
    let err = s.fails(&["actors", "destroy", "src"]);
    assert!(err.contains("actor src has no data"), "{err}");
}

#[test]
fn kv_load_reads_stdin_and_loads_nothing_from_a_malformed_file() {
    let s = Store::new();
    let good = "{\"key\":\"6b31\",\"value\":\"7631\"}\n";
    s.cmd(&["kv", "load", "--actor", "raw"]).write_stdin(good).assert().success();
    assert_eq!(s.ok(&["kv", "dump", "--actor", "raw"]), good);

    let bad = format!("{good}{{\"key\":\"6b32\",\"value\":\"7632\"}}\n{{\"key\":\"zz\",\"value\":\"00\"}}\n");
    let mut cmd = s.cmd(&["kv", "load", "--actor", "fresh"]);
    cmd.write_stdin(bad);
    let err = fails(cmd);
    assert!(err.contains("line 3") && err.contains("\"key\" is not hex"), "{err}");
    let mut cmd = s.cmd(&["kv", "load", "--actor", "fresh"]);
    cmd.write_stdin("{\"key\": \"00\", \"value\": \n");
    let err = fails(cmd);
    assert!(err.contains("line 1: invalid JSON"), "{err}");
    assert_eq!(s.ok(&["kv", "dump", "--actor", "fresh"]), "");
}

#[test]
fn bad_input_gets_one_line_naming_the_problem() {
    let s = Store::new();
    let err = fails({
        let mut cmd = cargo_bin_cmd!("wasqlite");
        cmd.args(["actors", "list", "--store", "postgres://db"]);
        cmd
    });
    assert!(err.contains("unknown store URL \"postgres://db\"") && err.contains("redb:PATH"), "{err}");

    let err = s.fails(&["exec", "--actor", "a b", "SELECT 1"]);
    assert!(err.contains("invalid actor id \"a b\""), "{err}");

    let missing = s.path("missing.sqlite");
    let err = s.fails(&["import", "--actor", "a", missing.to_str().unwrap()]);
    assert!(err.contains("reading") && err.contains("missing.sqlite"), "{err}");

    let text = s.path("notes.txt");
    std::fs::write(&text, "hello, this is not a database\n".repeat(10)).unwrap();
    let err = s.fails(&["import", "--actor", "a", text.to_str().unwrap()]);
    assert!(err.contains("notes.txt is not an SQLite database"), "{err}");

    let err = s.fails(&["export", "--actor", "nobody", s.path("x.sqlite").to_str().unwrap()]);
    assert!(err.contains("actor nobody has no database"), "{err}");
    assert!(!s.path("x.sqlite").exists());
}

/// Export renames a checked temporary file over its target, which would
/// turn a device node, a FIFO or a symbolic link into a regular file; each
/// is refused with one line and left as it was.
#[test]
fn export_writes_only_regular_files() {
    use std::os::unix::fs::FileTypeExt;
    let s = Store::new();
    s.exec("a", "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
    let export_to = |path: &Path| s.fails(&["export", "--actor", "a", path.to_str().unwrap()]);

    let fifo = s.path("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let err = export_to(&fifo);
    assert!(err.contains("it is a FIFO"), "{err}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let target = s.path("real.sqlite");
    std::fs::write(&target, b"kept").unwrap();
    let link = s.path("link.sqlite");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = export_to(&link);
    assert!(err.contains("it is a symbolic link"), "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"kept");

    let err = export_to(s.dir.path());
    assert!(err.contains("it is a directory"), "{err}");

    // A character device of its own (root only, as CI runs): the same
    // numbers as /dev/null, so that a regression replaces only this node.
    let device = s.path("null");
    if std::process::Command::new("mknod").arg(&device).args(["c", "1", "3"]).status().is_ok_and(|st| st.success()) {
        let err = export_to(&device);
        assert!(err.contains("it is a device node"), "{err}");
        assert!(std::fs::symlink_metadata(&device).unwrap().file_type().is_char_device());
    }

    // A regular file is replaced, as before.
    s.ok(&["export", "--actor", "a", target.to_str().unwrap()]);
    assert_ne!(std::fs::read(&target).unwrap(), b"kept");
}

/// One statement spread over 40,000 lines (a long string literal) runs once
/// and whole: the shell looks for the statement's end only on lines with a
/// ';', not by rescanning the statement after every line.
#[test]
fn shell_takes_a_statement_of_many_lines() {
    let s = Store::new();
    let script = format!("SELECT length('{}') AS n;\nSELECT 'next' AS status;\n", vec!["a"; 40_000].join("\n"));
    let out = s.cmd(&["shell", "--actor", "long"]).write_stdin(script).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("79999") && stdout.contains("next"), "{stdout}");
}

#[test]
fn shell_runs_a_piped_script() {
    let s = Store::new();
    let script = "\
CREATE TABLE t(id INTEGER PRIMARY KEY,
  name TEXT);
INSERT INTO t(name) VALUES ('ada'), ('bob');
.tables
.schema t
SELECT id, name FROM t ORDER BY id;
SELECT * FROM missing;
SELECT 'still running' AS status;
.quit
SELECT 'not reached';
";
    let out = s.cmd(&["shell", "--actor", "sh"]).write_stdin(script).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stdout,
        "t\nCREATE TABLE t(id INTEGER PRIMARY KEY,\n  name TEXT);\n\
         id  name\n--  ----\n 1  ada\n 2  bob\n\
         status\n-------------\nstill running\n"
    );
    assert!(stderr.contains("Error:") && stderr.contains("no such table: missing"), "{stderr}");
    // Piped input that hit an error exits 1, like sqlite3.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s.exec("sh", "SELECT count(*) FROM t"), "count(*)\n2\n");
}

/// A runaway statement stops at `--timeout` with one line naming the
/// timeout, and what committed before is intact.
#[test]
fn exec_stops_a_runaway_statement_at_its_timeout() {
    let s = Store::new();
    s.exec("t", "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)");
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
    let line = s.fails(&["exec", "--actor", "t", "--timeout", "0.3", endless]);
    assert!(line.contains("timeout of 300ms"), "{line}");
    let line = s.fails(&["exec", "--actor", "t", "--timeout", "inf", "SELECT 1"]);
    assert!(line.contains("--timeout"), "{line}");
    assert_eq!(s.exec("t", "SELECT sum(x) FROM t"), "sum(x)\n3\n");
}

/// Ctrl-C (SIGINT) in the shell stops the running statement, as in sqlite3,
/// and the shell goes on with the next one.
#[test]
fn ctrl_c_in_the_shell_interrupts_the_statement_not_the_shell() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let s = Store::new();
    s.exec("sh", "CREATE TABLE t(x); INSERT INTO t VALUES (7)");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("wasqlite"))
        .args(["shell", "--actor", "sh", "--timeout", "0", "--store", &s.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"SELECT 'ready' AS status;\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c;\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the shell ended before printing 'ready'");
    }
    // The endless statement is the next line in the pipe; each signal that
    // finds it running interrupts it, and the shell says so on stderr.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let pid = child.id().to_string();
    let mut seen = Vec::new();
    'signal: for _ in 0..200 {
        assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(50)) {
            seen.push(line);
            if seen.iter().any(|l| l.contains("interrupted")) {
                break 'signal;
            }
        }
    }
    assert!(seen.iter().any(|l| l.contains("Interrupted")), "{seen:?}");
    stdin.write_all(b"SELECT x FROM t;\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("7"), "the shell did not go on after the interrupt: {rest:?}");
    assert_eq!(status.code(), Some(1), "piped input that hit an error exits 1");
}

/// Row 11 of the sandbox issue: `import --force` of a file that passes the
/// header check but is corrupt is refused before the actor is touched, and
/// the actor keeps its data.
#[test]
fn import_force_of_a_corrupt_file_leaves_the_actor_as_it_was() {
    let s = Store::new();
    s.exec("kept", "CREATE TABLE mine(x); INSERT INTO mine VALUES (1), (2), (3)");
    let good = s.path("good.sqlite");
    native_db(&good, "PRAGMA page_size = 4096;");
    let mut bytes = std::fs::read(&good).unwrap();
    // Scribble over the b-tree of page 2 (the table), leaving the header.
    for b in &mut bytes[4096 + 8..4096 + 200] {
        *b = 0xA5;
    }
    let corrupt = s.path("corrupt.sqlite");
    std::fs::write(&corrupt, &bytes).unwrap();
    let err = s.fails(&["import", "--actor", "kept", "--force", corrupt.to_str().unwrap()]);
    assert!(err.contains("integrity_check") && err.contains("not touched"), "{err}");
    assert_eq!(s.exec("kept", "SELECT sum(x) FROM mine"), "sum(x)\n6\n");
    // A good file then replaces it, and the old table is gone.
    s.ok(&["import", "--actor", "kept", "--force", good.to_str().unwrap()]);
    assert_eq!(s.exec("kept", "SELECT name FROM sqlite_schema WHERE type = 'table'"), "name\npeople\n");
}

/// Row 6: endless input gets one line and bounded memory, not a process
/// that reads /dev/zero into memory.
#[test]
fn endless_input_is_refused_with_one_line() {
    let s = Store::new();
    let err = s.fails(&["kv", "load", "--actor", "z", "/dev/zero"]);
    assert!(err.contains("line 1 is longer than"), "{err}");
    // assert_cmd would read all of /dev/zero to feed it: hand the file over.
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin!("wasqlite"))
        .args(["kv", "load", "--actor", "z", "--store", &s.url])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success() && err.contains("line 1 is longer than") && err.trim_end().lines().count() == 1, "{err}");
    let err = s.fails(&["import", "--actor", "z", "/dev/zero"]);
    assert!(err.contains("not an SQLite database"), "{err}");
    assert_eq!(s.ok(&["kv", "dump", "--actor", "z"]), "");
}

/// Row 4: a crafted meta size is one line at export (SQLITE_CORRUPT), not
/// an abort trying to allocate it, and nothing is written.
#[test]
fn export_of_a_crafted_size_is_one_line() {
    let s = Store::new();
    s.exec("crafted", "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
    let dump = s.ok(&["kv", "dump", "--actor", "crafted"]);
    for size in [1u64 << 60, u64::MAX] {
        let meta = format!("0100{}", size.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let crafted: String = dump
            .lines()
            .map(|l| if l.starts_with("{\"key\":\"08010000\"") { format!("{{\"key\":\"08010000\",\"value\":\"{meta}\"}}\n") } else { format!("{l}\n") })
            .collect();
        let mut cmd = s.cmd(&["kv", "load", "--actor", "crafted", "--force"]);
        cmd.write_stdin(crafted);
        cmd.assert().success();
        let target = s.path("out.sqlite");
        let err = s.fails(&["export", "--actor", "crafted", target.to_str().unwrap()]);
        assert!(err.contains("SQLITE_CORRUPT") && err.contains(&size.to_string()), "{err}");
        assert!(!target.exists());
    }
}

/// The Redis Cluster of `WASQLITE_TEST_REDIS` as a store with a prefix of
/// its own; `None` (a skip, but not under CI) when unset.
fn redis_store() -> Option<Store> {
    let Ok(url) = std::env::var("WASQLITE_TEST_REDIS") else {
        assert!(std::env::var_os("CI").is_none(), "CI must run the Redis tests: set WASQLITE_TEST_REDIS");
        eprintln!("WASQLITE_TEST_REDIS is not set: skipping");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let url = format!("{url}?prefix=cli-{}-{nanos}", std::process::id());
    Some(Store { dir: tempfile::tempdir().unwrap(), url })
}

/// Separate `wasqlite` processes over one Redis Cluster serve an actor in
/// turn; while one holds it, another is told who does; a dump from Redis
/// loaded into redb is the same database.
#[test]
fn processes_share_actors_on_a_redis_cluster_and_dumps_move_to_redb() {
    let Some(redis) = redis_store() else { return };
    redis.exec("shared", "CREATE TABLE t(x INTEGER)");
    for i in 0..4 {
        redis.exec("shared", &format!("INSERT INTO t VALUES ({i})"));
    }
    assert_eq!(redis.exec("shared", "SELECT group_concat(x) AS xs FROM t"), "xs\n0,1,2,3\n");

    // A shell holds the actor awake, so its lease lives: an exec elsewhere
    // is refused with one line naming the holder, and works once it ends.
    let mut shell = std::process::Command::new(assert_cmd::cargo::cargo_bin!("wasqlite"))
        .args(["shell", "--actor", "shared", "--store", &redis.url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(shell.stdout.take().unwrap());
    use std::io::{BufRead, Write};
    writeln!(stdin, "SELECT 'holding' AS status;").unwrap();
    let mut line = String::new();
    while !line.contains("holding") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the shell ended early");
    }
    let err = redis.fails(&["exec", "--actor", "shared", "SELECT 1"]);
    assert!(err.contains(&format!("owned by wasqlite-cli-{}", shell.id())), "{err}");
    // --take-over fences the shell out: its next write lands nothing.
    redis.ok(&["exec", "--actor", "shared", "--take-over", "INSERT INTO t VALUES (9)"]);
    writeln!(stdin, "INSERT INTO t VALUES (10);").unwrap();
    drop(stdin);
    assert!(!shell.wait().unwrap().success(), "the fenced-out shell's write succeeded");
    assert_eq!(redis.exec("shared", "SELECT group_concat(x) AS xs FROM t"), "xs\n0,1,2,3,9\n");

    let dump = redis.path("shared.jsonl");
    redis.ok(&["kv", "dump", "--actor", "shared", dump.to_str().unwrap()]);
    let redb = Store::new();
    redb.ok(&["kv", "load", "--actor", "shared", dump.to_str().unwrap()]);
    let query = "SELECT x FROM t ORDER BY x";
    assert_eq!(redb.exec("shared", query), redis.exec("shared", query));
    assert_eq!(redb.exec("shared", "PRAGMA integrity_check"), "integrity_check\nok\n");
    redis.ok(&["actors", "destroy", "shared"]);
}

#[test]
fn the_demo_runs_through_the_manager_inside_its_budget() {
    let out = cargo_bin_cmd!("wasqlite")
        .args(["demo", "--store", "memory", "--actors", "40", "--hold", "5", "--budget", "6", "--concurrency", "8", "--rows", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.contains("manager:")).unwrap_or_else(|| panic!("no manager line in {stdout}"));
    let peak: usize = line.split_whitespace().nth(3).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!((1..=6).contains(&peak), "{line}");
    assert!(stdout.contains("every note of every actor checked"), "{stdout}");
    assert!(stdout.contains("live instances: 0"), "{stdout}");
}

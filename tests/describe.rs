//! What a libSQL (Hrana) server needs from an actor beyond rows:
//! `Actor::run` (columns with declared types, changes, last insert rowid),
//! `Actor::describe`, named parameters without a prefix, and
//! `Actor::set_last_insert_rowid`.

mod common;

use std::sync::Arc;

use wasqlite::{Column, Error, Host, HostConfig, Limits, MemoryKv, Params, Value, named_params, params};

/// Each column as (name, declared type), `Column` being non-exhaustive.
fn typed(columns: &[Column]) -> Vec<(&str, Option<&str>)> {
    columns.iter().map(|c| (c.name.as_str(), c.decltype.as_deref())).collect()
}

fn names(columns: &[Column]) -> Vec<&str> {
    columns.iter().map(|c| c.name.as_str()).collect()
}

#[tokio::test]
async fn columns_carry_declared_types_even_without_rows() {
    let host = common::host();
    let mut a = host.wake("decltypes").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, untyped, price DECIMAL(10, 2))").await.unwrap();
    let sql = "SELECT id, name AS who, untyped, price, id + 1 AS next, 'x' FROM t";
    let want = vec![
        ("id", Some("INTEGER")),
        ("who", Some("TEXT")),
        ("untyped", None),
        ("price", Some("DECIMAL(10, 2)")),
        ("next", None),
        ("'x'", None),
    ];
    // No rows yet: the columns are still there, on the result and its rows.
    let empty = a.run(sql, (), true).await.unwrap();
    assert_eq!(typed(&empty.columns), want);
    assert!(empty.rows.is_empty());
    assert_eq!(empty.rows.columns(), names(&empty.columns));

    a.execute("INSERT INTO t(name, untyped, price) VALUES ('ada', 1, 2.5), ('alan', NULL, 3)", ()).await.unwrap();
    let full = a.run(sql, (), true).await.unwrap();
    assert_eq!(typed(&full.columns), want);
    assert_eq!(full.rows.len(), 2);
    assert_eq!(full.rows.get(0).unwrap().values(), [Value::Integer(1), Value::Text("ada".into()), Value::Integer(1), Value::Real(2.5), Value::Integer(2), Value::Text("x".into())]);

    // Not wanted: stepped through and dropped, the columns still reported.
    let dropped = a.run(sql, (), false).await.unwrap();
    assert_eq!(typed(&dropped.columns), want);
    assert!(dropped.rows.is_empty());
    assert_eq!(dropped.rows.columns(), names(&dropped.columns));

    // The same statement, cached now, through the older API.
    assert_eq!(a.query(sql, ()).await.unwrap().len(), 2);
    // A view over a table keeps the table's types; an expression has none.
    a.execute_batch("CREATE VIEW v AS SELECT name, price * 2 AS doubled FROM t").await.unwrap();
    let view = a.run("SELECT * FROM v", (), true).await.unwrap();
    assert_eq!(typed(&view.columns), [("name", Some("TEXT")), ("doubled", None)]);
}

#[tokio::test]
async fn run_reports_changes_and_last_insert_rowid() {
    let host = common::host();
    let mut a = host.wake("changes").await.unwrap();
    let created = a.run("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", (), true).await.unwrap();
    assert_eq!((created.columns.len(), created.rows.len(), created.changes, created.last_insert_rowid), (0, 0, 0, 0));

    let inserted = a.run("INSERT INTO t(v) VALUES ('a'), ('b'), ('c')", (), true).await.unwrap();
    assert_eq!((inserted.changes, inserted.last_insert_rowid), (3, 3));
    assert!(inserted.columns.is_empty() && inserted.rows.is_empty());

    let updated = a.run("UPDATE t SET v = upper(v) WHERE id >= ?", params![2], false).await.unwrap();
    assert_eq!((updated.changes, updated.last_insert_rowid), (2, 3));

    let returning = a.run("INSERT INTO t(v) VALUES (?) RETURNING id, v", params!["d"], true).await.unwrap();
    assert_eq!((returning.changes, returning.last_insert_rowid), (1, 4));
    assert_eq!(typed(&returning.columns), [("id", Some("INTEGER")), ("v", Some("TEXT"))]);
    assert_eq!(returning.rows.get(0).unwrap().values(), [Value::Integer(4), Value::Text("d".into())]);
    assert_eq!(a.last_insert_rowid().await.unwrap(), 4);

    let deleted = a.run("DELETE FROM t WHERE id = 1", (), false).await.unwrap();
    assert_eq!((deleted.changes, deleted.last_insert_rowid), (1, 4));

    // The same rules as execute and query.
    assert!(matches!(a.run("SELECT 1; SELECT 2", (), true).await, Err(Error::MultipleStatements)));
    assert!(matches!(a.run("SELECT ?", (), true).await, Err(Error::ParameterCount { expected: 1, given: 0 })));
    let err = a.run("INSERT INTO nowhere VALUES (1)", (), true).await.unwrap_err();
    assert!(err.to_string().contains("no such table: nowhere"), "{err}");
}

#[tokio::test]
async fn text_without_a_statement_runs_nothing() {
    let host = common::host();
    let mut a = host.wake("empty").await.unwrap();
    a.execute("CREATE TABLE t(v)", ()).await.unwrap();
    a.execute("INSERT INTO t VALUES (1)", ()).await.unwrap();
    for sql in ["", "   ", "-- only a comment\n", "/* a comment */ ;", ";"] {
        let result = a.run(sql, (), true).await.unwrap();
        assert!(result.columns.is_empty() && result.rows.is_empty() && result.rows.columns().is_empty(), "{sql:?}");
        assert_eq!(result.changes, 0, "{sql:?}");
        assert_eq!(a.describe(sql).await.unwrap(), Default::default(), "{sql:?}");
    }
    // Parameters it cannot take are an error, as for a statement without any.
    assert!(matches!(a.run(" ", params![1], true).await, Err(Error::ParameterCount { expected: 0, given: 1 })));
    assert!(matches!(a.run(" ", named_params! { "x": 1 }, true).await, Err(Error::UnknownParameter { name }) if name == "x"));
    // What execute and query did with such a text, they still do.
    assert!(a.execute("  ", ()).await.is_err());
    // SQLite skips empty statements before a real one, which then runs.
    let after = a.run("; ; SELECT v FROM t;;", (), true).await.unwrap();
    assert_eq!(after.rows.len(), 1);
}

#[tokio::test]
async fn run_keeps_to_the_result_size_cap() {
    let limits = Limits { max_result_bytes: 1 << 20, ..Default::default() };
    let host = Host::with_config(Arc::new(MemoryKv::new()), HostConfig { limits, ..Default::default() }).unwrap();
    let mut a = host.wake("cap").await.unwrap();
    let big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300) SELECT x, randomblob(10000) FROM c";
    let err = a.run(big, (), true).await.unwrap_err();
    assert!(matches!(err, Error::ResultTooBig { limit } if limit == 1 << 20), "{err}");
    // Rows not wanted are not collected, so the cap does not apply.
    let dropped = a.run(big, (), false).await.unwrap();
    assert_eq!(dropped.columns.len(), 2);
    assert!(dropped.rows.is_empty());
    assert_eq!(a.run("SELECT 7", (), true).await.unwrap().rows.get(0).unwrap().get::<i64>(0).unwrap(), 7);
}

#[tokio::test]
async fn describe_reports_parameters_columns_and_flags_without_running() {
    let host = common::host();
    let mut a = host.wake("describe").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n REAL)").await.unwrap();

    let select = a.describe("SELECT name, n * 2 FROM t WHERE id = ? AND n = ?3 AND (name = :a OR name = @b OR name = $c)").await.unwrap();
    let want: Vec<Option<String>> = vec![None, None, Some("?3".into()), Some(":a".into()), Some("@b".into()), Some("$c".into())];
    assert_eq!(select.params, want);
    assert_eq!(typed(&select.columns), [("name", Some("TEXT")), ("n * 2", None)]);
    assert!(select.is_readonly && !select.is_explain);

    let insert = a.describe("INSERT INTO t(name, n) VALUES (:name, ?)").await.unwrap();
    assert_eq!(insert.params, [Some(":name".to_owned()), None]);
    assert!(insert.columns.is_empty());
    assert!(!insert.is_readonly && !insert.is_explain);
    // Described, not run.
    assert_eq!(a.query_row("SELECT count(*) FROM t", ()).await.unwrap().get::<i64>(0).unwrap(), 0);
    // And cached: running it now works as if it had never been described.
    a.execute("INSERT INTO t(name, n) VALUES (:name, ?)", params!["x", 1]).await.unwrap();

    let explain = a.describe("EXPLAIN SELECT * FROM t").await.unwrap();
    assert!(explain.is_explain && explain.is_readonly);
    assert_eq!(names(&explain.columns), ["addr", "opcode", "p1", "p2", "p3", "p4", "p5", "comment"]);
    let plan = a.describe("EXPLAIN QUERY PLAN DELETE FROM t").await.unwrap();
    assert!(plan.is_explain);
    assert_eq!(names(&plan.columns), ["id", "parent", "notused", "detail"]);
    let create = a.describe("CREATE TABLE u(x)").await.unwrap();
    assert!(!create.is_readonly && create.params.is_empty());
    assert!(a.describe("BEGIN").await.unwrap().is_readonly, "SQLite calls BEGIN read-only");

    assert!(matches!(a.describe("SELECT 1; SELECT 2").await, Err(Error::MultipleStatements)));
    let err = a.describe("SELEC 1").await.unwrap_err();
    assert!(err.to_string().contains("syntax error"), "{err}");
    let err = a.describe("SELECT * FROM nowhere").await.unwrap_err();
    assert!(err.to_string().contains("no such table"), "{err}");
}

#[tokio::test]
async fn names_without_a_prefix_bind_to_whichever_the_statement_has() {
    let host = common::host();
    let mut a = host.wake("unprefixed").await.unwrap();
    for sql in ["SELECT :x", "SELECT @x", "SELECT $x"] {
        let row = a.query_row(sql, named_params! { "x": 5 }).await.unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 5, "{sql}");
        let result = a.run(sql, named_params! { "x": "five" }, true).await.unwrap();
        assert_eq!(result.rows.get(0).unwrap().values(), [Value::Text("five".into())], "{sql}");
    }
    // A statement with several: ':' first, then '@', then '$'.
    let row = a.query_row("SELECT :x, @x, $x", named_params! { "x": 1 }).await.unwrap();
    assert_eq!(row.values(), [Value::Integer(1), Value::Null, Value::Null]);
    let row = a.query_row("SELECT @x, $x", named_params! { "x": 1 }).await.unwrap();
    assert_eq!(row.values(), [Value::Integer(1), Value::Null]);
    // A prefix binds exactly that one.
    let row = a.query_row("SELECT :x, @x, $x", named_params! { "$x": 3, "@x": 2 }).await.unwrap();
    assert_eq!(row.values(), [Value::Null, Value::Integer(2), Value::Integer(3)]);
    let row = a.query_row("SELECT ?2, ?1", named_params! { "?1": "one", "?2": "two" }).await.unwrap();
    assert_eq!(row.values(), [Value::Text("two".into()), Value::Text("one".into())]);
    // Repeated uses of one parameter take one value, and bulk runs bind alike.
    a.execute_batch("CREATE TABLE t(a, b)").await.unwrap();
    a.execute_many("INSERT INTO t VALUES (@v, @v * 10)", [named_params! { "v": 1 }, named_params! { "v": 2 }]).await.unwrap();
    let sums = a.query_row("SELECT sum(a), sum(b) FROM t", ()).await.unwrap();
    assert_eq!(sums.values(), [Value::Integer(3), Value::Integer(30)]);
}

#[tokio::test]
async fn unknown_named_parameters_are_refused_by_the_name_given() {
    let host = common::host();
    let mut a = host.wake("unknown-names").await.unwrap();
    let cases = [("SELECT :x", "y"), ("SELECT :x", ":y"), ("SELECT :x", "@x"), ("SELECT @x", "$x"), ("SELECT ?1", "?2"), ("SELECT :x", "")];
    for (sql, name) in cases {
        let params = Params::Named(vec![(name.to_owned(), Value::Integer(1))]);
        let err = a.run(sql, params.clone(), true).await.unwrap_err();
        assert!(matches!(&err, Error::UnknownParameter { name: n } if n == name), "{sql} with {name:?}: {err}");
        let err = a.query(sql, params).await.unwrap_err();
        assert!(matches!(&err, Error::UnknownParameter { name: n } if n == name), "{sql} with {name:?}: {err}");
    }
    // A name SQLite would read only up to a NUL binds nothing.
    let err = a.query("SELECT :x", Params::Named(vec![(":x\0y".into(), Value::Integer(1))])).await.unwrap_err();
    assert!(matches!(&err, Error::UnknownParameter { name } if name == ":x\0y"), "{err}");
    // Past the longest name the guest takes.
    let long = "x".repeat(300);
    let err = a.query(&format!("SELECT :{long}"), Params::Named(vec![(long.clone(), Value::Integer(1))])).await.unwrap_err();
    assert!(matches!(&err, Error::UnknownParameter { name } if *name == long), "{err}");
    // The actor is fine after all of that.
    assert_eq!(a.query_row("SELECT :x", named_params! { "x": 9 }).await.unwrap().get::<i64>(0).unwrap(), 9);
}

#[tokio::test]
async fn last_insert_rowid_can_be_set() {
    let host = common::host();
    let mut a = host.wake("reset-rowid").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v)").await.unwrap();
    a.execute("INSERT INTO t(id, v) VALUES (41, 'a')", ()).await.unwrap();
    assert_eq!(a.last_insert_rowid().await.unwrap(), 41);
    a.set_last_insert_rowid(0).await.unwrap();
    assert_eq!(a.last_insert_rowid().await.unwrap(), 0);
    // SQLite's own counter went back too: the next statement reports it.
    let select = a.run("SELECT v FROM t", (), true).await.unwrap();
    assert_eq!(select.last_insert_rowid, 0);
    let insert = a.run("INSERT INTO t(v) VALUES ('b')", (), false).await.unwrap();
    assert_eq!((insert.changes, insert.last_insert_rowid), (1, 42));
    assert_eq!(a.last_insert_rowid().await.unwrap(), 42);
    a.set_last_insert_rowid(7).await.unwrap();
    assert_eq!(a.run("SELECT last_insert_rowid()", (), true).await.unwrap().rows.get(0).unwrap().get::<i64>(0).unwrap(), 7);
}

/// Each row's values, for comparing whole results.
fn values(rows: &wasqlite::Rows) -> Vec<Vec<Value>> {
    rows.iter().map(|r| r.values().to_vec()).collect()
}

#[tokio::test]
async fn a_cached_statement_follows_a_schema_change() {
    let host = common::host();
    let mut a = host.wake("reprepare").await.unwrap();
    a.execute_batch("CREATE TABLE t(a TEXT); INSERT INTO t VALUES ('x')").await.unwrap();
    let star = "SELECT * FROM t";
    assert_eq!(typed(&a.describe(star).await.unwrap().columns), [("a", Some("TEXT"))]);
    let rows = a.query(star, ()).await.unwrap();
    assert_eq!((rows.columns(), values(&rows)), (&["a".to_owned()][..], vec![vec![Value::Text("x".into())]]));

    // One more column: SQLite re-prepares the cached statement as it steps it.
    a.execute_batch("ALTER TABLE t ADD COLUMN b INTEGER").await.unwrap();
    let rows = a.query(star, ()).await.unwrap();
    assert_eq!(rows.columns(), ["a", "b"]);
    assert_eq!(values(&rows), [[Value::Text("x".into()), Value::Null]]);
    let rows = a.query(star, ()).await.unwrap();
    assert_eq!(values(&rows), [[Value::Text("x".into()), Value::Null]]);
    a.execute("INSERT INTO t VALUES ('y', 2)", ()).await.unwrap();
    let run = a.run(star, (), true).await.unwrap();
    assert_eq!(typed(&run.columns), [("a", Some("TEXT")), ("b", Some("INTEGER"))]);
    assert_eq!(run.rows.columns(), ["a", "b"]);
    assert_eq!(values(&run.rows), [[Value::Text("x".into()), Value::Null], [Value::Text("y".into()), Value::Integer(2)]]);
    assert_eq!(typed(&a.describe(star).await.unwrap().columns), [("a", Some("TEXT")), ("b", Some("INTEGER"))]);

    // The same count, new names: described right after the change, and run
    // without its rows, the statement still reports the new ones.
    a.execute_batch("ALTER TABLE t RENAME COLUMN a TO c").await.unwrap();
    assert_eq!(typed(&a.describe(star).await.unwrap().columns), [("c", Some("TEXT")), ("b", Some("INTEGER"))]);
    a.execute_batch("ALTER TABLE t RENAME COLUMN c TO d").await.unwrap();
    let dropped = a.run(star, (), false).await.unwrap();
    assert_eq!(names(&dropped.columns), ["d", "b"]);
    assert_eq!(dropped.rows.columns(), ["d", "b"]);
    assert_eq!(a.query(star, ()).await.unwrap().columns(), ["d", "b"]);
    assert_eq!(typed(&a.describe(star).await.unwrap().columns), [("d", Some("TEXT")), ("b", Some("INTEGER"))]);

    // One column fewer, met first by rows handed over a batch at a time.
    a.execute_batch("ALTER TABLE t DROP COLUMN b").await.unwrap();
    let mut batches = Vec::new();
    a.query_batches(star, (), |rows| {
        batches.push((rows.columns().to_vec(), values(&rows)));
        std::ops::ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(batches, [(vec!["d".to_owned()], vec![vec![Value::Text("x".into())], vec![Value::Text("y".into())]])]);
    let run = a.run(star, (), true).await.unwrap();
    assert_eq!(typed(&run.columns), [("d", Some("TEXT"))]);
    assert_eq!(values(&run.rows).len(), 2);

    // Met first by a call that wants no columns: the next one fetches them.
    a.execute_batch("ALTER TABLE t ADD COLUMN e REAL DEFAULT 1.5").await.unwrap();
    assert_eq!(a.execute(star, ()).await.unwrap(), 0);
    let rows = a.query(star, ()).await.unwrap();
    assert_eq!(rows.columns(), ["d", "e"]);
    assert_eq!(values(&rows)[1], [Value::Text("y".into()), Value::Real(1.5)]);

    // No guest error on the way: the instance was never rebuilt.
    assert_eq!(a.usage().wakes, 1);
}

#[tokio::test]
async fn a_read_only_statement_reports_no_changes() {
    let host = common::host();
    let mut a = host.wake("readonly-changes").await.unwrap();
    a.execute_batch("CREATE TABLE t(v)").await.unwrap();
    let inserted = a.run("INSERT INTO t VALUES (1), (2), (3)", (), false).await.unwrap();
    assert_eq!(inserted.changes, 3);
    // sqlite3_changes64() would still say 3 here: the INSERT's count.
    let select = a.run("SELECT v FROM t", (), true).await.unwrap();
    assert_eq!((select.changes, select.rows.len()), (0, 3));
    assert_eq!(a.run("SELECT v FROM t", (), false).await.unwrap().changes, 0);
    assert_eq!(a.execute("SELECT v FROM t", ()).await.unwrap(), 0);
    assert_eq!(a.execute_many("SELECT ?", [params![1], params![2]]).await.unwrap(), 0);
    // BEGIN and COMMIT are read-only to SQLite too.
    assert_eq!(a.run("BEGIN", (), false).await.unwrap().changes, 0);
    assert_eq!(a.run("UPDATE t SET v = v + 1 WHERE v > 1", (), false).await.unwrap().changes, 2);
    assert_eq!(a.run("COMMIT", (), false).await.unwrap().changes, 0);
    assert_eq!(a.execute("DELETE FROM t", ()).await.unwrap(), 3);
}

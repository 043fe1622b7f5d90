//! The SQL API: statements, parameters, value types, transactions, errors.

mod common;

use common::{integrity, memory_host};
use wasqlite::{Error, Params, Value, named_params, params};

#[tokio::test]
async fn crud_round_trip() {
    let host = common::host();
    let mut a = host.wake("crud").await.unwrap();
    a.execute_batch("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER)").await.unwrap();
    assert_eq!(a.execute("INSERT INTO users(name, age) VALUES (?1, ?2)", params!["ada", 36]).await.unwrap(), 1);
    assert_eq!(a.last_insert_rowid().await.unwrap(), 1);
    a.execute("INSERT INTO users(name, age) VALUES (?1, ?2)", params!["alan", 41]).await.unwrap();
    assert_eq!(a.last_insert_rowid().await.unwrap(), 2);

    let changed = a
        .execute("UPDATE users SET age = :age WHERE name = :name", named_params! { ":age": 37, "name": "ada" })
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let row = a.query_row("SELECT name, age FROM users WHERE id = ?1", params![1]).await.unwrap();
    assert_eq!(row.columns(), ["name", "age"]);
    assert_eq!(row.get::<String>(0).unwrap(), "ada");
    assert_eq!(row.get_named::<i64>("age").unwrap(), 37);
    let err = row.get_named::<i64>("height").unwrap_err();
    assert!(matches!(&err, Error::UnknownColumn { name } if name == "height"), "{err:?}");
    assert_eq!(err.to_string(), "the row has no column named 'height'");

    assert_eq!(a.execute("DELETE FROM users WHERE age > ?1", params![40]).await.unwrap(), 1);
    let names: Vec<String> =
        a.query("SELECT name FROM users ORDER BY id", ()).await.unwrap().iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(names, ["ada"]);
    assert!(matches!(a.query_row("SELECT 1 FROM users WHERE id = 99", ()).await, Err(Error::NoRows)));
}

#[tokio::test]
async fn multi_statement_batches_and_single_statement_rule() {
    let host = common::host();
    let mut a = host.wake("batch").await.unwrap();
    a.execute_batch(
        "CREATE TABLE t(x INTEGER); -- a comment
         INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);
         /* another */ INSERT INTO t VALUES (3);",
    )
    .await
    .unwrap();
    let sum: i64 = a.query_row("SELECT sum(x) FROM t", ()).await.unwrap().get(0).unwrap();
    assert_eq!(sum, 6);

    // A batch stops at the first failing statement; earlier ones stay.
    let err = a.execute_batch("INSERT INTO t VALUES (10); INSERT INTO nope VALUES (1); INSERT INTO t VALUES (20)").await;
    assert!(matches!(&err, Err(Error::Sqlite { message, .. }) if message.contains("no such table: nope")), "{err:?}");
    let sum: i64 = a.query_row("SELECT sum(x) FROM t", ()).await.unwrap().get(0).unwrap();
    assert_eq!(sum, 16);

    assert!(matches!(a.execute("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", ()).await, Err(Error::MultipleStatements)));
    // A second statement that cannot prepare yet (its table comes from the
    // first) is still a second statement, not something to drop silently.
    let err = a.execute("CREATE TABLE u(x); INSERT INTO u VALUES (1)", ()).await;
    assert!(matches!(err, Err(Error::MultipleStatements)), "{err:?}");
    assert_eq!(a.query("SELECT name FROM sqlite_schema WHERE name = 'u'", ()).await.unwrap().len(), 0);
    // Trailing comments and semicolons are not a second statement.
    assert_eq!(a.execute("INSERT INTO t VALUES (4); -- done", ()).await.unwrap(), 1);
}

#[tokio::test]
async fn every_value_type_round_trips() {
    let host = common::host();
    let mut a = host.wake("types").await.unwrap();
    a.execute_batch("CREATE TABLE v(id INTEGER PRIMARY KEY, x ANY) STRICT").await.unwrap();
    let blob_32k: Vec<u8> = (0..32 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let values = vec![
        Value::Null,
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Integer(0),
        Value::Real(-0.5),
        Value::Real(f64::MAX),
        Value::Real(1e-300),
        Value::Text(String::new()),
        Value::Text("héllo, 世界 \u{1F600}".into()),
        Value::Blob(Vec::new()),
        Value::Blob(vec![0, 255, 0]),
        Value::Blob(blob_32k),
        Value::Text("x".repeat(20_000)),
    ];
    for v in &values {
        a.execute("INSERT INTO v(x) VALUES (?1)", params![v]).await.unwrap();
    }
    let got: Vec<Value> =
        a.query("SELECT x FROM v ORDER BY id", ()).await.unwrap().iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(got, values);
    // Typed getters convert or refuse clearly.
    let row = a.query_row("SELECT 1, 2.5, 'a', NULL", ()).await.unwrap();
    assert_eq!(row.get::<Option<i64>>(3).unwrap(), None);
    assert_eq!(row.get::<f64>(0).unwrap(), 1.0);
    let err = row.get::<i64>(2).unwrap_err();
    assert!(matches!(err, Error::ColumnType { index: 2, found: "TEXT", .. }), "{err}");
    assert!(matches!(row.get::<i64>(9), Err(Error::ColumnIndex { index: 9, count: 4 })));
}

#[tokio::test]
async fn rows_that_cross_chunk_boundaries() {
    let host = common::host();
    let mut a = host.wake("overflow").await.unwrap();
    a.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, body BLOB)").await.unwrap();
    // 10 KiB rows span overflow pages, and so several 4 KiB chunks each.
    for i in 0..20u8 {
        a.execute("INSERT INTO big(body) VALUES (?1)", params![vec![i; 10 * 1024 + i as usize]]).await.unwrap();
    }
    a.sleep().await.unwrap();
    let mut a = host.wake("overflow").await.unwrap();
    for (i, row) in a.query("SELECT body FROM big ORDER BY id", ()).await.unwrap().iter().enumerate() {
        let body: Vec<u8> = row.get(0).unwrap();
        assert_eq!(body, vec![i as u8; 10 * 1024 + i]);
    }
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn thousand_inserts() {
    let host = common::host();
    let mut a = host.wake("thousand").await.unwrap();
    a.execute_batch("CREATE TABLE t(i INTEGER, s TEXT)").await.unwrap();
    for i in 0..1000i64 {
        a.execute("INSERT INTO t VALUES (?1, ?2)", params![i, format!("row {i}")]).await.unwrap();
    }
    let row = a.query_row("SELECT count(*), sum(i), max(s) FROM t", ()).await.unwrap();
    assert_eq!(row.get::<i64>(0).unwrap(), 1000);
    assert_eq!(row.get::<i64>(1).unwrap(), 999 * 1000 / 2);
    assert_eq!(row.get::<String>(2).unwrap(), "row 999");
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let host = common::host();
    let mut a = host.wake("tx").await.unwrap();
    a.execute_batch("CREATE TABLE t(x INTEGER UNIQUE)").await.unwrap();

    let mut tx = a.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (?1)", params![1]).await.unwrap();
    tx.execute("INSERT INTO t VALUES (?1)", params![2]).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = a.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (?1)", params![3]).await.unwrap();
    tx.rollback().await.unwrap();

    // An error inside a transaction, then the guard is dropped: rolled back.
    {
        let mut tx = a.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (?1)", params![4]).await.unwrap();
        let dup = tx.execute("INSERT INTO t VALUES (?1)", params![1]).await.unwrap_err();
        assert_eq!(dup.sqlite_code(), Some(libsqlite3_sys::SQLITE_CONSTRAINT_UNIQUE), "{dup}");
    }
    let xs: Vec<i64> = a.query("SELECT x FROM t ORDER BY x", ()).await.unwrap().iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(xs, [1, 2]);
    assert!(a.is_autocommit().await.unwrap());
}

#[tokio::test]
async fn errors_carry_extended_codes_and_messages() {
    let host = common::host();
    let mut a = host.wake("errors").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)").await.unwrap();
    let err = a.execute("INSERT INTO t(id, v) VALUES (1, NULL)", ()).await.unwrap_err();
    assert_eq!(err.sqlite_code(), Some(libsqlite3_sys::SQLITE_CONSTRAINT_NOTNULL));
    assert!(err.to_string().contains("NOT NULL constraint failed: t.v"), "{err}");
    assert!(err.to_string().contains("SQLITE_CONSTRAINT_NOTNULL"), "{err}");

    let err = a.query("SELEC 1", ()).await.unwrap_err();
    assert!(matches!(&err, Error::Sqlite { code: 1, message, .. } if message.contains("syntax error")), "{err}");

    let err = a.execute("INSERT INTO t(v) VALUES (?1)", params![]).await.unwrap_err();
    assert!(matches!(err, Error::ParameterCount { expected: 1, given: 0 }), "{err}");
    let err = a.execute("INSERT INTO t(v) VALUES (:v)", named_params! { ":w": "x" }).await.unwrap_err();
    assert!(matches!(&err, Error::UnknownParameter { name } if name == ":w"), "{err}");
    // The actor is fine after all of that.
    a.execute("INSERT INTO t(v) VALUES (:v)", named_params! { ":v": "ok" }).await.unwrap();
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn fts5_and_json_are_built_in() {
    let host = common::host();
    let mut a = host.wake("features").await.unwrap();
    a.execute_batch("CREATE VIRTUAL TABLE docs USING fts5(body)").await.unwrap();
    a.execute("INSERT INTO docs VALUES (?1)", params!["the quick brown fox"]).await.unwrap();
    let n: i64 = a.query_row("SELECT count(*) FROM docs WHERE docs MATCH 'quick'", ()).await.unwrap().get(0).unwrap();
    assert_eq!(n, 1);
    let v: i64 = a.query_row("SELECT json_extract(?1, '$.a[1]')", params![r#"{"a":[1,2]}"#]).await.unwrap().get(0).unwrap();
    assert_eq!(v, 2);
}

#[tokio::test]
async fn attach_cannot_reach_outside_the_actor() {
    let host = common::host();
    let mut a = host.wake("sandbox").await.unwrap();
    let err = a.execute_batch("ATTACH 'other.db' AS o; CREATE TABLE o.t(x)").await.unwrap_err();
    assert_eq!(err.sqlite_code().map(|c| c & 0xff), Some(libsqlite3_sys::SQLITE_CANTOPEN), "{err}");
    a.execute_batch("CREATE TABLE t(x)").await.unwrap();
}

#[tokio::test]
async fn execute_many_runs_every_set_in_one_commit() {
    let (host, kv) = memory_host();
    let mut a = host.wake("many").await.unwrap();
    a.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT NOT NULL)").await.unwrap();
    kv.reset_counters(&common::id("many"));
    // 20,000 sets of about 40 bytes: several guest calls' worth.
    let rows = (0..20_000i64).map(|i| params![i, format!("row {i} of the bulk insert")]);
    assert_eq!(a.execute_many("INSERT INTO t(id, s) VALUES (?1, ?2)", rows).await.unwrap(), 20_000);
    assert_eq!(a.last_insert_rowid().await.unwrap(), 19_999);
    // Outside a transaction the sets commit together: one KV batch write.
    assert_eq!(kv.counters(&common::id("many")).batch_puts, 1);
    let row = a.query_row("SELECT count(*), sum(id), max(s) FROM t", ()).await.unwrap();
    assert_eq!(row.get::<i64>(0).unwrap(), 20_000);
    assert_eq!(row.get::<i64>(1).unwrap(), 19_999 * 20_000 / 2);
    assert_eq!(row.get::<String>(2).unwrap(), "row 9999 of the bulk insert");
    assert!(a.is_autocommit().await.unwrap());

    // Named sets, and a statement that returns rows (discarded).
    let sets = [named_params! { ":s": "x" }, named_params! { ":s": "y" }];
    assert_eq!(a.execute_many("UPDATE t SET s = :s WHERE id < 3 RETURNING id", sets).await.unwrap(), 6);
    assert_eq!(a.query_row("SELECT s FROM t WHERE id = 0", ()).await.unwrap().get::<String>(0).unwrap(), "y");
    // No sets: nothing runs, but the SQL is still checked.
    assert_eq!(a.execute_many("DELETE FROM t", Vec::<Params>::new()).await.unwrap(), 0);
    assert!(a.execute_many("DELETE FROM nope", Vec::<Params>::new()).await.unwrap_err().to_string().contains("no such table"));
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn execute_many_outside_a_transaction_is_all_or_nothing() {
    let host = common::host();
    let mut a = host.wake("many-atomic").await.unwrap();
    a.execute_batch("CREATE TABLE t(x INTEGER UNIQUE, pad TEXT)").await.unwrap();
    a.execute("INSERT INTO t VALUES (?1, '')", params![-1]).await.unwrap();
    let count = async |a: &mut wasqlite::Actor| a.query_row("SELECT count(*) FROM t", ()).await.unwrap().get::<i64>(0).unwrap();

    // Set 4321 collides, in the second or later guest call (sets of ~1 KiB).
    let pad = "p".repeat(1000);
    let sets = (0..5000i64).map(|i| params![if i == 4321 { -1 } else { i }, pad.as_str()]);
    let err = a.execute_many("INSERT INTO t VALUES (?1, ?2)", sets).await.unwrap_err();
    assert!(matches!(&err, Error::ParameterSet { index: 4321, .. }), "{err}");
    assert_eq!(err.sqlite_code(), Some(libsqlite3_sys::SQLITE_CONSTRAINT_UNIQUE), "{err}");
    assert!(err.to_string().starts_with("parameter set 4321: UNIQUE constraint failed: t.x"), "{err}");
    assert_eq!(count(&mut a).await, 1);
    assert!(a.is_autocommit().await.unwrap());

    // A set the host cannot encode: nothing runs either.
    let sets = vec![params![10, "a"], params![11, "b"], params![12]];
    let err = a.execute_many("INSERT INTO t VALUES (?1, ?2)", sets).await.unwrap_err();
    assert!(
        matches!(&err, Error::ParameterSet { index: 2, source } if matches!(**source, Error::ParameterCount { expected: 2, given: 1 })),
        "{err}"
    );
    assert_eq!(count(&mut a).await, 1);
    let err = a
        .execute_many("INSERT INTO t VALUES (:x, '')", [named_params! { ":x": 20 }, named_params! { ":y": 21 }])
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::ParameterSet { index: 1, source } if matches!(&**source, Error::UnknownParameter { name } if name == ":y")), "{err}");
    assert_eq!(count(&mut a).await, 1);

    // Inside a transaction the sets before the failing one stay until the
    // caller decides.
    let mut tx = a.transaction().await.unwrap();
    let err = tx.execute_many("INSERT INTO t VALUES (?1, '')", [params![1], params![2], params![-1], params![3]]).await.unwrap_err();
    assert!(matches!(&err, Error::ParameterSet { index: 2, .. }), "{err}");
    assert_eq!(tx.query_row("SELECT count(*) FROM t", ()).await.unwrap().get::<i64>(0).unwrap(), 3);
    tx.rollback().await.unwrap();
    assert_eq!(count(&mut a).await, 1);
    assert_eq!(integrity(&mut a).await, "ok");
}

#[tokio::test]
async fn a_run_without_values_does_not_reuse_the_last_ones() {
    let host = common::host();
    let mut a = host.wake("rebind").await.unwrap();
    a.execute_batch("CREATE TABLE t(x)").await.unwrap();
    let insert = "INSERT INTO t VALUES (:x)";
    a.execute(insert, named_params! { ":x": 7 }).await.unwrap();
    // No value for :x this time: it is NULL, not the cached statement's 7.
    a.execute(insert, Params::Named(Vec::new())).await.unwrap();
    a.execute_many(insert, [named_params! { ":x": 8 }, Params::Named(Vec::new())]).await.unwrap();
    let xs: Vec<Value> = a.query("SELECT x FROM t ORDER BY rowid", ()).await.unwrap().iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(xs, [Value::Integer(7), Value::Null, Value::Integer(8), Value::Null]);
}

/// A value too large for the guest's memory cap fails with SQLITE_NOMEM and
/// a message saying so (it used to read "not an error"), and the actor goes
/// on working. SQLITE_LIMIT_LENGTH is raised past the memory cap for this,
/// since the default stops such a value earlier, with SQLITE_TOOBIG.
#[tokio::test]
async fn a_row_too_large_for_the_guest_is_a_clear_out_of_memory_error() {
    let mut limits = wasqlite::Limits::default();
    limits.sql.length = 1_000_000_000;
    let config = wasqlite::HostConfig { limits, ..Default::default() };
    let host = wasqlite::Host::with_config(std::sync::Arc::new(wasqlite::MemoryKv::new()), config).unwrap();
    let mut a = host.wake("big").await.unwrap();
    let err = a.query("SELECT zeroblob(150000000)", ()).await.unwrap_err();
    assert_eq!(err.sqlite_code().map(wasqlite::code_name).as_deref(), Some("SQLITE_NOMEM"), "{err}");
    let text = err.to_string();
    assert!(text.contains("out of memory") && !text.contains("not an error"), "{text}");
    let n: i64 = a.query_row("SELECT 40 + 2", ()).await.unwrap().get(0).unwrap();
    assert_eq!(n, 42);
}

//! Differential testing: the same random SQL on wasqlite and on native
//! SQLite (rusqlite, bundled, the same 3.54.1) must give identical rows,
//! change counts and errors, including across sleep/wake at random points.
//!
//! The generator stays inside what both builds share: no double-quoted
//! strings (the guest sets SQLITE_DQS=0), no math functions (only the guest
//! has them), no ANALYZE (only native has STAT4).

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use wasqlite::simulation::{from_native, to_native};
use wasqlite::{Actor, Error, Host, MemoryKv, Value};

const SEEDS: u64 = 12;
const STATEMENTS: usize = 250;

#[derive(Debug, PartialEq)]
enum Outcome {
    Rows { columns: Vec<String>, rows: Vec<Vec<Value>>, changes: u64 },
    Failed { code: i32, message: String },
}

/// changes() is only compared for data changes: a sleep/wake starts a new
/// connection, whose counter starts at zero.
fn is_dml(sql: &str) -> bool {
    ["INSERT", "UPDATE", "DELETE"].iter().any(|verb| sql.starts_with(verb))
}

fn native_run(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> Outcome {
    let failed = |e: rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(err, message) => {
            Outcome::Failed { code: err.extended_code, message: message.unwrap_or_default() }
        }
        rusqlite::Error::SqlInputError { error, msg, .. } => Outcome::Failed { code: error.extended_code, message: msg },
        other => panic!("unexpected rusqlite error {other}"),
    };
    let mut stmt = match conn.prepare(sql) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let columns: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let n = columns.len();
    let mut rows = Vec::new();
    let mut cursor = match stmt.query(rusqlite::params_from_iter(params.iter().map(to_native))) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    loop {
        match cursor.next() {
            Ok(Some(row)) => rows.push((0..n).map(|i| from_native(row.get_ref(i).unwrap())).collect()),
            Ok(None) => break,
            Err(e) => return failed(e),
        }
    }
    drop(cursor);
    drop(stmt);
    Outcome::Rows { columns, rows, changes: if is_dml(sql) { conn.changes() } else { 0 } }
}

async fn wasm_run(actor: &mut Actor, sql: &str, params: &[Value]) -> Outcome {
    match actor.query(sql, params.to_vec()).await {
        Ok(rows) => {
            let columns = rows.columns().to_vec();
            let rows: Vec<Vec<Value>> = rows.into_iter().map(|r| r.into_values()).collect();
            let changes = if is_dml(sql) {
                actor.query_row("SELECT changes()", ()).await.unwrap().get::<i64>(0).unwrap() as u64
            } else {
                0
            };
            Outcome::Rows { columns, rows, changes }
        }
        Err(Error::Sqlite { code, message, .. }) => Outcome::Failed { code, message },
        Err(other) => panic!("unexpected wasqlite error for {sql}: {other}"),
    }
}

/// A random SQL statement with its parameters. Tables t0..t2 have columns
/// (id INTEGER PRIMARY KEY, a, b, c) with varying types and constraints.
struct Gen {
    rng: SmallRng,
    in_tx: bool,
}

impl Gen {
    fn value(&mut self) -> Value {
        match self.rng.random_range(0..10) {
            0 => Value::Null,
            1..=3 => Value::Integer(self.rng.random_range(-50..50)),
            4 => Value::Integer(self.rng.random()),
            5..=6 => Value::Real(self.rng.random_range(-1000.0..1000.0)),
            7 => Value::Text(["", "a", "abc", "Zed", "10", "1.5", "x y", "ünï"][self.rng.random_range(0..8)].into()),
            8 => Value::Text(format!("s{}", self.rng.random_range(0..30))),
            _ => Value::Blob((0..self.rng.random_range(0..6)).map(|_| self.rng.random()).collect()),
        }
    }

    fn table(&mut self) -> String {
        format!("t{}", self.rng.random_range(0..3))
    }

    fn column(&mut self) -> &'static str {
        ["id", "a", "b", "c"][self.rng.random_range(0..4)]
    }

    fn expr(&mut self) -> String {
        let c = self.column();
        match self.rng.random_range(0..14) {
            0 => c.to_string(),
            1 => format!("{c} + ?"),
            2 => format!("length({c})"),
            3 => format!("typeof({c})"),
            4 => format!("coalesce({c}, ?)"),
            5 => format!("upper({c})"),
            6 => format!("substr({c}, 2, 3)"),
            7 => format!("abs({c})"),
            8 => format!("{c} || 'x'"),
            9 => format!("hex({c})"),
            10 => format!("round({c}, 1)"),
            11 => format!("{c} / ?"),
            12 => format!("json_array({c}, ?)"),
            _ => format!("CAST({c} AS TEXT)"),
        }
    }

    fn cond(&mut self) -> String {
        let c = self.column();
        match self.rng.random_range(0..7) {
            0 => format!("{c} = ?"),
            1 => format!("{c} > ?"),
            2 => format!("{c} IS NULL"),
            3 => format!("{c} LIKE 's%'"),
            4 => format!("{c} BETWEEN ? AND ?"),
            5 => format!("{c} IN (?, ?, ?)"),
            _ => format!("id % {} = 0", self.rng.random_range(2..5)),
        }
    }

    /// Returns SQL and how many `?` it holds.
    fn statement(&mut self) -> String {
        let t = self.table();
        match self.rng.random_range(0..100) {
            0..=24 => {
                let cols = ["a", "b", "c"];
                let n = self.rng.random_range(1..=3);
                let verb = ["INSERT", "INSERT OR REPLACE", "INSERT OR IGNORE"][self.rng.random_range(0..3)];
                if self.rng.random_bool(0.3) {
                    format!("{verb} INTO {t}(id, {}) VALUES (?, {})", cols[..n].join(", "), vec!["?"; n].join(", "))
                } else {
                    format!("{verb} INTO {t}({}) VALUES ({})", cols[..n].join(", "), vec!["?"; n].join(", "))
                }
            }
            25..=34 => format!("UPDATE {t} SET {} = {} WHERE {}", ["a", "b", "c"][self.rng.random_range(0..3)], self.expr(), self.cond()),
            35..=41 => format!("DELETE FROM {t} WHERE {}", self.cond()),
            42..=59 => format!("SELECT id, {}, {} FROM {t} WHERE {} ORDER BY 1, 2, 3", self.expr(), self.expr(), self.cond()),
            60..=66 => {
                let c = self.column();
                format!(
                    "SELECT typeof({c}), count(*), sum(id), min({c}), max({c}), group_concat(id) FROM {t} GROUP BY 1 ORDER BY 1"
                )
            }
            67..=70 => {
                let u = self.table();
                format!("SELECT x.id, y.id, x.a, y.b FROM {t} x JOIN {u} y ON x.a = y.a ORDER BY 1, 2 LIMIT 20")
            }
            71..=73 => format!("SELECT count(*) FROM {t} WHERE id IN (SELECT id FROM {} WHERE {})", self.table(), self.cond()),
            74..=76 => format!("CREATE INDEX IF NOT EXISTS {t}_{0} ON {t}({0})", ["a", "b", "c"][self.rng.random_range(0..3)]),
            77 => format!("DROP TABLE IF EXISTS {t}"),
            78..=80 => self.create(&t),
            81..=84 if !self.in_tx => {
                self.in_tx = true;
                "BEGIN".into()
            }
            85..=88 if self.in_tx => {
                self.in_tx = false;
                ["COMMIT", "ROLLBACK"][self.rng.random_range(0..2)].into()
            }
            89..=90 => format!("SAVEPOINT sp{}", self.rng.random_range(0..2)),
            91 => format!("RELEASE sp{}", self.rng.random_range(0..2)),
            92 => format!("ROLLBACK TO sp{}", self.rng.random_range(0..2)),
            93 => format!("SELECT json_extract(json_object('k', {}), '$.k'), json_valid(?) FROM {t} ORDER BY id", self.expr()),
            94 => format!("SELECT * FROM {t} ORDER BY id LIMIT ? OFFSET 1"),
            95 => "SELECT nosuchcolumn FROM t0".into(),
            96 => format!("INSERT INTO {t}(id, a) SELECT id, a FROM {t} WHERE id < 3"),
            _ => format!("SELECT {} FROM {t} ORDER BY 1", self.expr()),
        }
    }

    fn create(&mut self, t: &str) -> String {
        match self.rng.random_range(0..4) {
            0 => format!("CREATE TABLE IF NOT EXISTS {t}(id INTEGER PRIMARY KEY, a, b, c)"),
            1 => format!("CREATE TABLE IF NOT EXISTS {t}(id INTEGER PRIMARY KEY, a INTEGER, b TEXT UNIQUE, c REAL) STRICT"),
            2 => format!("CREATE TABLE IF NOT EXISTS {t}(id INTEGER PRIMARY KEY, a TEXT NOT NULL DEFAULT 'd', b ANY, c BLOB CHECK (length(c) < 4)) STRICT"),
            _ => format!("CREATE TABLE IF NOT EXISTS {t}(id INTEGER PRIMARY KEY, a NUMERIC, b UNIQUE, c NOT NULL DEFAULT 0)"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sql_matches_native_sqlite() {
    let host = Host::new(Arc::new(MemoryKv::new())).unwrap();
    let mut compared = 0;
    let mut errors = 0;
    let mut wakes = 0;
    for seed in 0..SEEDS {
        let native = rusqlite::Connection::open_in_memory().unwrap();
        native.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let name = format!("diff-{seed}");
        let mut actor = host.wake(&name).await.unwrap();
        let mut g = Gen { rng: SmallRng::seed_from_u64(seed), in_tx: false };
        let setup = [
            "CREATE TABLE t0(id INTEGER PRIMARY KEY, a, b, c)",
            "CREATE TABLE t1(id INTEGER PRIMARY KEY, a INTEGER, b TEXT UNIQUE, c REAL) STRICT",
            "CREATE TABLE t2(id INTEGER PRIMARY KEY, a NUMERIC, b UNIQUE, c NOT NULL DEFAULT 0)",
        ];
        for sql in setup {
            assert_eq!(wasm_run(&mut actor, sql, &[]).await, native_run(&native, sql, &[]));
        }
        for i in 0..STATEMENTS {
            let sql = g.statement();
            let params: Vec<Value> = (0..sql.matches('?').count()).map(|_| g.value()).collect();
            let want = native_run(&native, &sql, &params);
            let got = wasm_run(&mut actor, &sql, &params).await;
            assert_eq!(got, want, "seed {seed}, statement {i}: {sql} with {params:?}");
            compared += 1;
            errors += usize::from(matches!(want, Outcome::Failed { .. }));
            // Keep the generator's idea of the transaction state true.
            g.in_tx = !native.is_autocommit();
            if !g.in_tx && g.rng.random_bool(0.05) {
                actor.sleep().await.unwrap();
                actor = host.wake(&name).await.unwrap();
                wakes += 1;
            }
        }
        let dump = "SELECT name, sql FROM sqlite_schema ORDER BY name";
        assert_eq!(wasm_run(&mut actor, dump, &[]).await, native_run(&native, dump, &[]));
        actor.sleep().await.unwrap();
    }
    eprintln!("{compared} statements compared, {errors} of them errors, {wakes} sleep/wake cycles");
    assert!(errors > 10 && wakes > 10);
}

//! The `mixed` workload of `bench sql`: a read/write mix modeled on SQLite's
//! speedtest1 (the test numbers below are speedtest1's). For a size `n`
//! (`--rows`), each round starts from two empty tables,
//!
//! ```text
//! m1(a INTEGER, b INTEGER, c TEXT)  with an index on each of a, b and c
//! m2(a INTEGER PRIMARY KEY, b INTEGER, c TEXT)  with an index on b
//! ```
//!
//! and runs seven steps, each in one transaction as speedtest1 does:
//!
//! | step | statements | like speedtest1 |
//! |---|---|---|
//! | insert-3-indexes | n INSERTs into m1 (random a, ordered b, text c) | 180 |
//! | insert-ipk-unordered | n INSERTs into m2, primary keys shuffled | 120 |
//! | select-range-indexed | n/5 `SELECT count(*), avg(b), sum(length(c)) FROM m1 WHERE a BETWEEN` (≈10 rows) | 160 |
//! | join | n/10 joins of m1 and m2 on m2's primary key, over a range of m1.a (≈20 rows) | 310 |
//! | update-range-indexed | n/10 `UPDATE m1 … WHERE a BETWEEN` (≈10 rows) | 230 |
//! | update-rows | n `UPDATE m2 … WHERE a = ?` | 240 |
//! | delete-range-indexed | n/20 `DELETE FROM m1 WHERE a BETWEEN` (≈10 rows) | 270 |
//!
//! Every parameter comes from a seeded generator, so every backend runs the
//! same statements; the round's checksum (query rows and change counts)
//! must then be the same on all of them.

use std::time::Instant;

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use wasqlite::Value;

use super::sql_db::{Db, checksum};

/// Step names, in order.
pub(crate) const STEPS: [&str; 7] = [
    "insert-3-indexes",
    "insert-ipk-unordered",
    "select-range-indexed",
    "join",
    "update-range-indexed",
    "update-rows",
    "delete-range-indexed",
];

const SETUP: &str = "DROP TABLE IF EXISTS m1; DROP TABLE IF EXISTS m2; \
    CREATE TABLE m1(a INTEGER, b INTEGER, c TEXT); \
    CREATE INDEX m1a ON m1(a); CREATE INDEX m1b ON m1(b); CREATE INDEX m1c ON m1(c); \
    CREATE TABLE m2(a INTEGER PRIMARY KEY, b INTEGER, c TEXT); CREATE INDEX m2b ON m2(b);";

const INSERT_M1: &str = "INSERT INTO m1(a, b, c) VALUES (?1, ?2, ?3)";
const INSERT_M2: &str = "INSERT INTO m2(a, b, c) VALUES (?1, ?2, ?3)";
const SELECT_RANGE: &str = "SELECT count(*), avg(b), sum(length(c)) FROM m1 WHERE a BETWEEN ?1 AND ?2";
const JOIN: &str =
    "SELECT count(*), sum(m2.b), max(length(m2.c)) FROM m1 JOIN m2 ON m2.a = m1.b WHERE m1.a BETWEEN ?1 AND ?2";
const UPDATE_RANGE: &str = "UPDATE m1 SET b = b * 2 WHERE a BETWEEN ?1 AND ?2";
const UPDATE_ROW: &str = "UPDATE m2 SET b = ?2, c = ?3 WHERE a = ?1";
const DELETE_RANGE: &str = "DELETE FROM m1 WHERE a BETWEEN ?1 AND ?2";

/// A number spelled digit by digit ("four two"), for text columns of
/// varying length.
pub(crate) fn words(mut n: u64) -> String {
    const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    let mut digits = Vec::new();
    loop {
        digits.push(DIGITS[(n % 10) as usize]);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    digits.join(" ")
}

/// Every statement's parameters for one round.
pub(crate) struct Plan {
    m1: Vec<[Value; 3]>,
    m2: Vec<[Value; 3]>,
    selects: Vec<[Value; 2]>,
    joins: Vec<[Value; 2]>,
    update_ranges: Vec<[Value; 2]>,
    row_updates: Vec<[Value; 3]>,
    deletes: Vec<[Value; 2]>,
}

impl Plan {
    pub(crate) fn new(n: usize, seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = n.max(20);
        let top = n as i64;
        let text = |rng: &mut SmallRng| Value::Text(words(rng.random_range(0..1_000_000_000)));
        let range = |rng: &mut SmallRng, width: i64| {
            let lo = rng.random_range(0..top);
            [Value::Integer(lo), Value::Integer(lo + width)]
        };
        let m1 = (1..=n as i64)
            .map(|i| [Value::Integer(rng.random_range(0..top)), Value::Integer(i), text(&mut rng)])
            .collect();
        let mut keys: Vec<i64> = (1..=n as i64).collect();
        keys.shuffle(&mut rng);
        let m2 = keys
            .iter()
            .map(|&k| [Value::Integer(k), Value::Integer(rng.random_range(0..top)), text(&mut rng)])
            .collect();
        let selects = (0..n / 5).map(|_| range(&mut rng, 10)).collect();
        let joins = (0..n / 10).map(|_| range(&mut rng, 20)).collect();
        let update_ranges = (0..n / 10).map(|_| range(&mut rng, 10)).collect();
        let row_updates = (0..n)
            .map(|_| {
                [Value::Integer(rng.random_range(1..=top)), Value::Integer(rng.random_range(0..top)), text(&mut rng)]
            })
            .collect();
        let deletes = (0..n / 20).map(|_| range(&mut rng, 10)).collect();
        Plan { m1, m2, selects, joins, update_ranges, row_updates, deletes }
    }
}

/// Milliseconds per step, and the round's checksum.
pub(crate) struct Outcome {
    pub(crate) step_ms: [f64; STEPS.len()],
    pub(crate) checksum: u64,
}

async fn writes(db: &mut Db, sql: &str, rows: &[impl AsRef<[Value]>], sum: &mut u64) -> Result<()> {
    db.batch("BEGIN").await?;
    for params in rows {
        let changed = db.execute(sql, params.as_ref().to_vec()).await?;
        *sum = checksum(*sum, &[Value::Integer(changed as i64)]);
    }
    db.batch("COMMIT").await
}

async fn reads(db: &mut Db, sql: &str, rows: &[impl AsRef<[Value]>], sum: &mut u64) -> Result<()> {
    db.batch("BEGIN").await?;
    for params in rows {
        let digest = db.query(sql, params.as_ref().to_vec()).await?;
        *sum = checksum(*sum, &[Value::Integer(digest as i64)]);
    }
    db.batch("COMMIT").await
}

/// Runs one round of the plan on `db`: fresh tables (not timed), then the
/// seven steps, each timed with its COMMIT.
pub(crate) async fn run(db: &mut Db, plan: &Plan) -> Result<Outcome> {
    db.batch(SETUP).await?;
    let mut step_ms = [0.0; STEPS.len()];
    let mut sum = 0u64;
    for (step, ms) in step_ms.iter_mut().enumerate() {
        let start = Instant::now();
        match step {
            0 => writes(db, INSERT_M1, &plan.m1, &mut sum).await?,
            1 => writes(db, INSERT_M2, &plan.m2, &mut sum).await?,
            2 => reads(db, SELECT_RANGE, &plan.selects, &mut sum).await?,
            3 => reads(db, JOIN, &plan.joins, &mut sum).await?,
            4 => writes(db, UPDATE_RANGE, &plan.update_ranges, &mut sum).await?,
            5 => writes(db, UPDATE_ROW, &plan.row_updates, &mut sum).await?,
            _ => writes(db, DELETE_RANGE, &plan.deletes, &mut sum).await?,
        }
        *ms = start.elapsed().as_secs_f64() * 1e3;
    }
    Ok(Outcome { step_ms, checksum: sum })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_spell_digits() {
        assert_eq!(words(0), "zero");
        assert_eq!(words(42), "four two");
        assert_eq!(words(907), "nine zero seven");
    }

    #[test]
    fn plans_are_reproducible() {
        let (a, b) = (Plan::new(100, 7), Plan::new(100, 7));
        assert_eq!(a.m1, b.m1);
        assert_eq!(a.row_updates, b.row_updates);
        assert_eq!(a.selects.len(), 20);
    }
}

//! SQL text as the command line gets it: split into statements, parameters
//! parsed from strings, and each statement run with its rows handed back.
//!
//! Splitting follows SQLite's own rule: a statement ends at a `;` outside
//! quotes and comments where `sqlite3_complete` (native SQLite, the same
//! version as the guest) agrees the text so far is complete, so the `;`s
//! inside a `CREATE TRIGGER ... BEGIN ... END` body do not split it.

use std::ffi::CString;
use std::ops::ControlFlow;

use anyhow::{Result, bail};
use wasqlite::{Actor, Params, Rows, Value};

/// Whether `sql` ends with a complete statement (SQLite's
/// `sqlite3_complete`). Text with a NUL byte counts as complete, so that
/// SQLite itself reports it.
pub(crate) fn is_complete(sql: &str) -> bool {
    let Ok(text) = CString::new(sql) else { return true };
    // SAFETY: `text` is a valid NUL-terminated string that outlives the call;
    // sqlite3_complete only reads it.
    unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

/// Splits `sql` into statements, each with its `;` when it has one.
/// Pieces that hold only whitespace, comments and `;` are dropped.
pub(crate) fn split_statements(sql: &str) -> Vec<&str> {
    #[derive(PartialEq)]
    enum State {
        Normal,
        Quoted(u8),
        LineComment,
        BlockComment,
    }
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut state = State::Normal;
    let mut start = 0;
    let mut has_content = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match state {
            State::Normal => match c {
                b'\'' | b'"' | b'`' => {
                    state = State::Quoted(c);
                    has_content = true;
                }
                b'[' => {
                    state = State::Quoted(b']');
                    has_content = true;
                }
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    state = State::LineComment;
                    i += 1;
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    state = State::BlockComment;
                    i += 1;
                }
                b';' => {
                    let piece = &sql[start..=i];
                    if is_complete(piece) {
                        if has_content {
                            out.push(piece.trim());
                        }
                        start = i + 1;
                        has_content = false;
                    }
                }
                c if c.is_ascii_whitespace() => {}
                _ => has_content = true,
            },
            // A doubled quote inside a quoted string reads as leaving and
            // re-entering it, which ends in the same state.
            State::Quoted(close) if c == close => state = State::Normal,
            State::Quoted(_) => {}
            State::LineComment if c == b'\n' => state = State::Normal,
            State::LineComment => {}
            State::BlockComment if c == b'*' && bytes.get(i + 1) == Some(&b'/') => {
                state = State::Normal;
                i += 1;
            }
            State::BlockComment => {}
        }
        i += 1;
    }
    if has_content {
        out.push(sql[start..].trim());
    }
    out
}

/// A command-line parameter as a value: `NULL` is null, a whole number that
/// fits i64 is an integer, a finite decimal number is a real, anything else
/// is text. `force_text` makes every value text.
pub(crate) fn parse_param(raw: &str, force_text: bool) -> Value {
    if force_text {
        return Value::Text(raw.to_owned());
    }
    if raw == "NULL" {
        return Value::Null;
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Value::Integer(i);
    }
    // Rust also parses "inf" and "NaN": only digits make a number here.
    let numeric = raw.bytes().any(|b| b.is_ascii_digit())
        && raw.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if numeric
        && let Ok(r) = raw.parse::<f64>()
        && r.is_finite()
    {
        return Value::Real(r);
    }
    Value::Text(raw.to_owned())
}

/// How a statement's rows reach the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// All at once (an aligned table needs every row), up to the
    /// library's cap on one result.
    Whole,
    /// A batch at a time as the guest returns them, so that memory stays
    /// bounded however many rows there are.
    Batches,
}

/// Runs every statement of `sql` in order, handing each statement's rows to
/// `on_rows` with `true` for its first batch (statements without result
/// columns are skipped). Parameters need exactly one statement. Stops at
/// the first error.
pub(crate) async fn run_statements(
    actor: &mut Actor,
    sql: &str,
    params: Vec<Value>,
    delivery: Delivery,
    mut on_rows: impl FnMut(&Rows, bool) -> Result<()> + Send,
) -> Result<()> {
    let statements = split_statements(sql);
    if !params.is_empty() && statements.len() != 1 {
        bail!("parameters need exactly one SQL statement, and {} were given", statements.len());
    }
    let params = if params.is_empty() { Params::None } else { Params::Positional(params) };
    for statement in statements {
        if delivery == Delivery::Whole {
            let rows = actor.query(statement, params.clone()).await?;
            if !rows.columns().is_empty() {
                on_rows(&rows, true)?;
            }
            continue;
        }
        let (mut first, mut failed) = (true, None);
        actor
            .query_batches(statement, params.clone(), |rows| {
                if rows.columns().is_empty() {
                    return ControlFlow::Continue(());
                }
                if let Err(e) = on_rows(&rows, std::mem::take(&mut first)) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })
            .await?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_quotes_comments_and_triggers() {
        let sql = "CREATE TABLE t(x); INSERT INTO t VALUES('a;b'); -- c;\n/* d; */ SELECT \"e;\" FROM t;\n\
                   CREATE TRIGGER r AFTER INSERT ON t BEGIN DELETE FROM t; SELECT 1; END; ;; -- tail";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TABLE t(x);",
                "INSERT INTO t VALUES('a;b');",
                "-- c;\n/* d; */ SELECT \"e;\" FROM t;",
                "CREATE TRIGGER r AFTER INSERT ON t BEGIN DELETE FROM t; SELECT 1; END;",
            ]
        );
        assert_eq!(split_statements("SELECT 1"), vec!["SELECT 1"]);
        assert!(split_statements(" -- nothing\n ; ").is_empty());
    }

    #[test]
    fn parameters_parse_by_shape() {
        assert_eq!(parse_param("42", false), Value::Integer(42));
        assert_eq!(parse_param("-7", false), Value::Integer(-7));
        assert_eq!(parse_param("2.5", false), Value::Real(2.5));
        assert_eq!(parse_param("1e3", false), Value::Real(1000.0));
        assert_eq!(parse_param("NULL", false), Value::Null);
        assert_eq!(parse_param("null", false), Value::Text("null".into()));
        assert_eq!(parse_param("inf", false), Value::Text("inf".into()));
        assert_eq!(parse_param("99999999999999999999", false), Value::Real(1e20));
        assert_eq!(parse_param("42", true), Value::Text("42".into()));
        assert_eq!(parse_param("", false), Value::Text(String::new()));
    }
}

//! How values and rows are printed: tab-separated, JSON lines, and the
//! shell's aligned table.
//!
//! ```text
//!            tab-separated        JSON lines                shell table
//! NULL       (empty)              null                      NULL
//! integer    42                   42                        42
//! real       2.5, 1.0             2.5, 1.0                  2.5
//! text       as is, with \t \n    "string"                  as is
//!            \r \\ escaped
//! blob       x'0aff'              {"blob": "0aff"}          x'0aff'
//! ```

use std::fmt::Write as _;

use serde_json::{Map, Value as Json};
use wasqlite::vfs::layout::hex;
use wasqlite::{Rows, Value};

/// A real as SQLite's CLI would show it: always with a point or exponent.
fn real(r: f64) -> String {
    format!("{r:?}")
}

/// One value in tab-separated output.
pub(crate) fn tsv_cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => real(*r),
        Value::Text(s) => {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                match c {
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out
        }
        Value::Blob(b) => format!("x'{}'", hex(b)),
    }
}

/// The header line (when `header`) and one line per row, tab-separated,
/// each ending in \n.
pub(crate) fn tsv(rows: &Rows, header: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str(&rows.columns().join("\t"));
        out.push('\n');
    }
    for row in rows {
        let cells: Vec<String> = row.values().iter().map(tsv_cell).collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out
}

/// One value as JSON.
pub(crate) fn json_value(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::from(*i),
        // Non-finite reals have no JSON form; serde_json writes null.
        Value::Real(r) => Json::from(*r),
        Value::Text(s) => Json::from(s.as_str()),
        Value::Blob(b) => Json::Object(Map::from_iter([("blob".to_owned(), Json::from(hex(b)))])),
    }
}

/// One JSON object per row, in column order, each line ending in \n. A
/// repeated column name gets `:2`, `:3`... so that no value is lost.
pub(crate) fn json_lines(rows: &Rows) -> String {
    let mut names: Vec<String> = Vec::with_capacity(rows.columns().len());
    for name in rows.columns() {
        let mut unique = name.clone();
        let mut n = 1;
        while names.contains(&unique) {
            n += 1;
            unique = format!("{name}:{n}");
        }
        names.push(unique);
    }
    let mut out = String::new();
    for row in rows {
        let object: Map<String, Json> = names.iter().cloned().zip(row.values().iter().map(json_value)).collect();
        out.push_str(&Json::Object(object).to_string());
        out.push('\n');
    }
    out
}

/// One value in the shell's table.
fn table_cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Text(s) => s.clone(),
        other => tsv_cell(other),
    }
}

/// An aligned table: header, a rule, one line per row; numbers right-aligned.
pub(crate) fn table(rows: &Rows) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.values().iter().map(table_cell).collect()).collect();
    let mut widths: Vec<usize> = rows.columns().iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..widths.len())
        .map(|i| {
            rows.iter().all(|r| matches!(r.values().get(i), Some(Value::Integer(_) | Value::Real(_) | Value::Null)))
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = (usize, &str)>| {
        let mut text = String::new();
        for (i, cell) in cells {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if numeric[i] && !rows.is_empty() {
                let _ = write!(text, "{}{cell}", " ".repeat(pad));
            } else {
                let _ = write!(text, "{cell}{}", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut rows.columns().iter().map(String::as_str).enumerate());
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &mut rules.iter().map(String::as_str).enumerate());
    for row in &cells {
        line(&mut out, &mut row.iter().map(String::as_str).enumerate());
    }
    out
}

//! What SQLite reports about a statement besides its rows: each `Column`'s
//! name and declared type, a `StatementResult` (everything one run of
//! `Actor::run` reported) and a `Description` (what `Actor::describe` learns
//! without running the statement); and the decoding of the guest's column and
//! description encodings (vfs/wasqlite_abi.h), which the host trusts no more
//! than any other guest output.

use std::sync::Arc;

use crate::error::Error;
use crate::guest::abi::NO_TEXT;
use crate::sql::row::Rows;

/// One column of a statement's result: its name and declared type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Column {
    /// Its name, as `sqlite3_column_name` gives it (an `AS` alias when there
    /// is one).
    pub name: String,
    /// The type the table declares for it (`sqlite3_column_decltype`), as
    /// written there; `None` for an expression, or a table column declared
    /// without a type.
    pub decltype: Option<String>,
}

/// Everything one statement reported, from [`Actor::run`](crate::Actor::run).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StatementResult {
    /// Its columns, reported even when no row came back.
    pub columns: Vec<Column>,
    /// Its rows; empty when they were not wanted (they were stepped through
    /// and dropped).
    pub rows: Rows,
    /// The rows the statement inserted, updated or deleted
    /// (`sqlite3_changes64()` after it). 0 for a statement that SQLite calls
    /// read-only (`sqlite3_stmt_readonly`: a SELECT, BEGIN, COMMIT), for
    /// which SQLite's count would be an earlier statement's. A statement
    /// that writes but is no INSERT, UPDATE or DELETE (CREATE TABLE, say)
    /// still reports the most recent one's count, as in SQLite.
    pub changes: u64,
    /// `sqlite3_last_insert_rowid()` after the statement.
    pub last_insert_rowid: i64,
}

/// What SQLite says about a statement without running it, from
/// [`Actor::describe`](crate::Actor::describe).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Description {
    /// Parameters 1, 2, ... in order: each one's name with its prefix
    /// (`":a"`, `"@b"`, `"$c"`, `"?3"`), `None` for a nameless `?`.
    pub params: Vec<Option<String>>,
    /// The columns its rows would have.
    pub columns: Vec<Column>,
    /// It is an `EXPLAIN` or `EXPLAIN QUERY PLAN` (`sqlite3_stmt_isexplain`).
    pub is_explain: bool,
    /// It writes nothing to the database (`sqlite3_stmt_readonly`).
    pub is_readonly: bool,
}

/// A statement's columns as the statement cache keeps them.
#[derive(Debug)]
pub(crate) struct ColumnSet {
    /// Just the names, shared with every `Rows` of the statement.
    pub(crate) names: Arc<[String]>,
    pub(crate) columns: Box<[Column]>,
}

/// Reads the guest's column and description encodings, failing on any
/// length past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    context: &'static str,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: &str) -> Error {
        Error::guest(self.context, what.to_owned())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < n {
            return Err(self.malformed("the buffer ends inside a value"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A text-or-NULL: a length (`NO_TEXT` for NULL) and UTF-8 bytes.
    fn text_or_null(&mut self) -> Result<Option<String>, Error> {
        let n = self.u32()?;
        if n == NO_TEXT {
            return Ok(None);
        }
        // SQLite stores names and types as the SQL text spelled them, which
        // the host handed in as UTF-8; a broken guest gets replacement
        // characters, not a panic.
        Ok(Some(String::from_utf8_lossy(self.take(n as usize)?).into_owned()))
    }

    /// Refuses a count that the remaining bytes cannot hold at `min_bytes`
    /// each, before it sizes a loop or an allocation.
    fn check_count(&self, count: usize, min_bytes: usize) -> Result<(), Error> {
        match count.checked_mul(min_bytes) {
            Some(need) if need <= self.bytes.len() => Ok(()),
            _ => Err(self.malformed("the count does not fit the buffer")),
        }
    }

    fn finish(self) -> Result<(), Error> {
        match self.bytes.is_empty() {
            true => Ok(()),
            false => Err(self.malformed("the buffer has bytes past its end")),
        }
    }
}

/// Decodes what `wasqlite_column_names` encoded for a statement that
/// `wasqlite_prepare`, or the last step of it, said has `count` columns:
/// exactly that many, each with a name.
pub(crate) fn decode_columns(bytes: &[u8], count: usize) -> Result<ColumnSet, Error> {
    let mut reader = Reader { bytes, context: "decoding column names" };
    // Each column takes at least its two lengths.
    reader.check_count(count, 8)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let name = reader.text_or_null()?.ok_or_else(|| reader.malformed("a column has no name"))?;
        columns.push(Column { name, decltype: reader.text_or_null()? });
    }
    reader.finish()?;
    let names = columns.iter().map(|c| c.name.clone()).collect();
    Ok(ColumnSet { names, columns: columns.into() })
}

/// Decodes what `wasqlite_describe` encoded for a statement that
/// `wasqlite_prepare` said has `param_count` parameters; `columns` is left
/// empty for the caller.
pub(crate) fn decode_description(bytes: &[u8], param_count: usize) -> Result<Description, Error> {
    let mut reader = Reader { bytes, context: "decoding a statement's description" };
    let is_readonly = reader.u32()? != 0;
    let is_explain = reader.u32()? != 0;
    if usize::try_from(reader.u32()?).ok() != Some(param_count) {
        return Err(reader.malformed("the parameter count differs from the one the statement was prepared with"));
    }
    // Each name takes at least its length.
    reader.check_count(param_count, 4)?;
    let mut params = Vec::with_capacity(param_count);
    for _ in 0..param_count {
        params.push(reader.text_or_null()?);
    }
    reader.finish()?;
    Ok(Description { params, columns: Vec::new(), is_explain, is_readonly })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => {
                out.extend((s.len() as u32).to_le_bytes());
                out.extend(s.as_bytes());
            }
            None => out.extend(NO_TEXT.to_le_bytes()),
        }
    }

    #[test]
    fn decodes_columns_and_refuses_what_a_broken_guest_might_send() {
        let mut bytes = Vec::new();
        text(&mut bytes, Some("id"));
        text(&mut bytes, Some("INTEGER"));
        text(&mut bytes, Some("n"));
        text(&mut bytes, None);
        let set = decode_columns(&bytes, 2).unwrap();
        assert_eq!(&*set.names, ["id", "n"]);
        assert_eq!(set.columns[0], Column { name: "id".into(), decltype: Some("INTEGER".into()) });
        assert_eq!(set.columns[1].decltype, None);
        assert!(decode_columns(&[], 0).unwrap().columns.is_empty());
        // A count other than the prepared one, either way.
        assert!(decode_columns(&bytes, 1).is_err());
        assert!(decode_columns(&bytes, 3).is_err());
        // Counts that would size an allocation, and lengths past the end.
        assert!(decode_columns(&bytes, usize::MAX).is_err());
        assert!(decode_columns(&bytes, 1 << 40).is_err());
        assert!(decode_columns(&bytes[..bytes.len() - 1], 2).is_err());
        let mut long = Vec::new();
        long.extend(0x7fff_fff0u32.to_le_bytes());
        long.extend([0; 8]);
        assert!(decode_columns(&long, 1).is_err());
        // A column without a name.
        let mut nameless = Vec::new();
        text(&mut nameless, None);
        text(&mut nameless, None);
        assert!(decode_columns(&nameless, 1).is_err());
    }

    #[test]
    fn decodes_descriptions_and_refuses_what_a_broken_guest_might_send() {
        let mut bytes = Vec::new();
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(2u32.to_le_bytes());
        bytes.extend(2u32.to_le_bytes());
        text(&mut bytes, None);
        text(&mut bytes, Some(":a"));
        let d = decode_description(&bytes, 2).unwrap();
        assert_eq!(d, Description { params: vec![None, Some(":a".into())], columns: vec![], is_explain: true, is_readonly: true });
        assert!(decode_description(&bytes, 1).is_err());
        assert!(decode_description(&bytes[..bytes.len() - 1], 2).is_err());
        assert!(decode_description(&[bytes.as_slice(), &[0]].concat(), 2).is_err());
        assert!(decode_description(&bytes[..8], 0).is_err());
        let mut huge = vec![0; 8];
        huge.extend(u32::MAX.to_le_bytes());
        assert!(decode_description(&huge, u32::MAX as usize).is_err());
    }
}

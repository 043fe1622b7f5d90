//! `Row` and `Rows`: query results, decoded from the guest's row encoding
//! (vfs/wasqlite_abi.h).

use std::sync::Arc;

use crate::error::Error;
use crate::guest::abi::tag;
use crate::sql::value::{FromValue, Value, convert};

/// One result row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// Column `index` (0-based) converted to `T`.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnIndex`] past the last column, [`Error::ColumnType`] when
    /// the value does not convert.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, Error> {
        let value = self.values.get(index).ok_or(Error::ColumnIndex { index, count: self.values.len() })?;
        convert(value, index)
    }

    /// The column named `name` converted to `T`.
    ///
    /// # Errors
    ///
    /// As [`Row::get`]; [`Error::UnknownColumn`] when no column has the
    /// name.
    pub fn get_named<T: FromValue>(&self, name: &str) -> Result<T, Error> {
        let index = self.columns.iter().position(|c| c == name).ok_or_else(|| Error::UnknownColumn { name: name.to_owned() })?;
        self.get(index)
    }

    /// Every value, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, by move.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

/// Every row of a query, with its column names.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Rows {
    columns: Arc<[String]>,
    rows: Vec<Row>,
}

impl Rows {
    pub(crate) fn new(columns: Arc<[String]>) -> Rows {
        Rows { columns, rows: Vec::new() }
    }

    pub(crate) fn push(&mut self, values: Vec<Value>) {
        self.rows.push(Row { columns: self.columns.clone(), values });
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows.
    pub fn iter(&self) -> std::slice::Iter<'_, Row> {
        self.rows.iter()
    }

    /// Row `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Row> {
        self.rows.get(index)
    }
}

impl IntoIterator for Rows {
    type Item = Row;
    type IntoIter = std::vec::IntoIter<Row>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.into_iter()
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a Row;
    type IntoIter = std::slice::Iter<'a, Row>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

fn malformed(what: &str) -> Error {
    Error::guest("decoding a row", what.to_owned())
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if bytes.len() < n {
        return Err(malformed("the row buffer ends inside a value"));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

fn take_len(bytes: &mut &[u8]) -> Result<usize, Error> {
    Ok(u32::from_le_bytes(take(bytes, 4)?.try_into().expect("4 bytes")) as usize)
}

/// Decodes one encoded row of `columns` values from the front of `bytes`.
pub(crate) fn decode_row(bytes: &mut &[u8], columns: usize) -> Result<Vec<Value>, Error> {
    // The count comes from the guest: reserve no more than the bytes can
    // hold (every value takes at least its tag byte).
    let mut values = Vec::with_capacity(columns.min(bytes.len()));
    for _ in 0..columns {
        let value = match take(bytes, 1)?[0] {
            tag::INTEGER => Value::Integer(i64::from_le_bytes(take(bytes, 8)?.try_into().expect("8 bytes"))),
            tag::REAL => Value::Real(f64::from_le_bytes(take(bytes, 8)?.try_into().expect("8 bytes"))),
            tag::TEXT => {
                let n = take_len(bytes)?;
                let text = take(bytes, n)?;
                // SQLite hands back what was stored; invalid UTF-8 that got in
                // through a blob cast is replaced rather than refused. The
                // strict check first: it is the faster one, and almost
                // every text is valid.
                Value::Text(match std::str::from_utf8(text) {
                    Ok(valid) => valid.to_owned(),
                    Err(_) => String::from_utf8_lossy(text).into_owned(),
                })
            }
            tag::BLOB => {
                let n = take_len(bytes)?;
                Value::Blob(take(bytes, n)?.to_vec())
            }
            tag::NULL => Value::Null,
            other => return Err(malformed(&format!("unknown value tag {other}"))),
        };
        values.push(value);
    }
    Ok(values)
}

/// Decodes `count` rows of `columns` values that fill `bytes` exactly.
pub(crate) fn decode_rows(mut bytes: &[u8], count: usize, columns: usize, mut push: impl FnMut(Vec<Value>)) -> Result<(), Error> {
    // Both counts come from the guest. A statement without columns returns
    // no rows, and every value takes at least one byte: anything else is a
    // broken guest, refused before a loop or an allocation is sized by it.
    if count > 0 && (columns == 0 || count.checked_mul(columns).is_none_or(|values| values > bytes.len())) {
        return Err(malformed("the row count does not fit the row buffer"));
    }
    for _ in 0..count {
        push(decode_row(&mut bytes, columns)?);
    }
    if !bytes.is_empty() {
        return Err(malformed("the row buffer has bytes past the last row"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_type_and_rejects_truncation() {
        let mut bytes = vec![tag::INTEGER];
        bytes.extend((-5i64).to_le_bytes());
        bytes.push(tag::REAL);
        bytes.extend(2.5f64.to_le_bytes());
        bytes.extend([tag::TEXT, 2, 0, 0, 0, b'h', b'i', tag::BLOB, 1, 0, 0, 0, 9, tag::NULL]);
        let one = vec![Value::Integer(-5), Value::Real(2.5), Value::Text("hi".into()), Value::Blob(vec![9]), Value::Null];
        let two = [bytes.clone(), bytes.clone()].concat();
        let mut rows = Vec::new();
        decode_rows(&two, 2, 5, |r| rows.push(r)).unwrap();
        assert_eq!(rows, vec![one.clone(), one]);
        assert!(decode_rows(&bytes[..bytes.len() - 3], 1, 5, drop).is_err());
        // Counts a broken guest might report: no loop, no allocation by them.
        assert!(decode_rows(&[], usize::MAX, 0, drop).is_err());
        assert!(decode_rows(&bytes, 1 << 40, 5, drop).is_err());
        assert!(decode_rows(&bytes, 1, usize::MAX, drop).is_err());
        assert!(decode_rows(&bytes, 1, 4, drop).is_err());
        assert!(decode_rows(&two, 1, 5, drop).is_err());
    }
}

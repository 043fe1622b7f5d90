//! `Params`: the values bound to a statement, positional or named, and their
//! encoding for `wasqlite_bind` (format in vfs/wasqlite_abi.h). Values are
//! always bound, never spliced into SQL text.

use crate::error::Error;
use crate::guest::abi::tag;
use crate::sql::value::{ToValue, Value};

/// Parameters for one execution of a statement.
///
/// Build them with [`params!`](crate::params) (positional, `?` or `?N`) or
/// [`named_params!`](crate::named_params) (`:name`, `@name`, `$name`, `?N`,
/// or a bare `name`); `()` means none.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// Values for `?1`, `?2`, ... in order.
    Positional(Vec<Value>),
    /// Values by name. A name with a prefix (`:a`, `@a`, `$a`, `?3`) binds to
    /// exactly that parameter; one without (`a`) to `:a`, `@a` or `$a`,
    /// the first of those the statement has.
    Named(Vec<(String, Value)>),
}

impl From<()> for Params {
    fn from((): ()) -> Self {
        Params::None
    }
}

impl From<Vec<Value>> for Params {
    fn from(values: Vec<Value>) -> Self {
        Params::Positional(values)
    }
}

impl From<&[Value]> for Params {
    fn from(values: &[Value]) -> Self {
        Params::Positional(values.to_vec())
    }
}

impl<T: ToValue, const N: usize> From<[T; N]> for Params {
    fn from(values: [T; N]) -> Self {
        Params::Positional(values.iter().map(ToValue::to_value).collect())
    }
}

/// Positional parameters: `params![1, "two", 3.0, None::<i64>]`.
#[macro_export]
macro_rules! params {
    () => { $crate::Params::None };
    ($($value:expr),+ $(,)?) => {
        $crate::Params::Positional(vec![$($crate::ToValue::to_value(&$value)),+])
    };
}

/// Named parameters: `named_params! { ":id": 7, ":name": "ada" }`; a name
/// without a prefix (`"id"`) binds to `:id`, `@id` or `$id`, whichever the
/// statement has.
#[macro_export]
macro_rules! named_params {
    () => { $crate::Params::None };
    ($($name:literal : $value:expr),+ $(,)?) => {
        $crate::Params::Named(vec![$((::std::string::String::from($name), $crate::ToValue::to_value(&$value))),+])
    };
}

impl Params {
    /// Encodes the parameters for a statement that has `expected` of them.
    ///
    /// # Errors
    ///
    /// [`Error::ParameterCount`] when positional parameters do not match the
    /// statement's count, [`Error::TooBig`] for a value over 2 GiB.
    pub(crate) fn encode(&self, expected: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.encode_into(&mut out, expected)?;
        Ok(out)
    }

    /// As [`Params::encode`], appended to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
        match self {
            Params::None if expected == 0 => {}
            Params::None => return Err(Error::ParameterCount { expected, given: 0 }),
            Params::Positional(values) => {
                if values.len() != expected {
                    return Err(Error::ParameterCount { expected, given: values.len() });
                }
                for (i, value) in values.iter().enumerate() {
                    out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
                    encode_value(out, value)?;
                }
            }
            Params::Named(pairs) => {
                for (name, value) in pairs {
                    encode_named(out, name, value)?;
                }
            }
        }
        Ok(())
    }

    /// For an SQLITE_RANGE from the guest: the encoding of each named
    /// parameter alone, to find the one the statement lacks.
    pub(crate) fn each_named(&self) -> Vec<(String, Vec<u8>)> {
        let Params::Named(pairs) = self else { return Vec::new() };
        pairs
            .iter()
            .filter_map(|(name, value)| {
                let mut out = Vec::new();
                encode_named(&mut out, name, value).ok()?;
                Some((name.clone(), out))
            })
            .collect()
    }
}

/// Longest parameter name the guest binds (`MAX_PARAM_NAME` in
/// vfs/sql_api.c); SQLite has no use for a longer one.
const MAX_NAME: usize = 255;

/// Encodes one named parameter, its name as given: the guest resolves a
/// name without a prefix, since only it knows which of `:a`, `@a` and `$a`
/// the statement has.
fn encode_named(out: &mut Vec<u8>, name: &str, value: &Value) -> Result<(), Error> {
    if name.len() > MAX_NAME {
        return Err(Error::UnknownParameter { name: name.to_owned() });
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    encode_value(out, value)
}

fn encode_value(out: &mut Vec<u8>, value: &Value) -> Result<(), Error> {
    match value {
        Value::Null => out.push(tag::NULL),
        Value::Integer(i) => {
            out.push(tag::INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Real(f) => {
            out.push(tag::REAL);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Text(s) => encode_bytes(out, tag::TEXT, s.as_bytes(), "text parameter")?,
        Value::Blob(b) => encode_bytes(out, tag::BLOB, b, "blob parameter")?,
    }
    Ok(())
}

fn encode_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8], what: &'static str) -> Result<(), Error> {
    let len = u32::try_from(bytes.len()).ok().filter(|n| *n < i32::MAX as u32).ok_or(Error::TooBig { what, len: bytes.len() })?;
    out.push(tag);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_count_must_match() {
        assert!(matches!(params![1, 2].encode(3), Err(Error::ParameterCount { expected: 3, given: 2 })));
        assert!(matches!(Params::None.encode(1), Err(Error::ParameterCount { expected: 1, given: 0 })));
        assert_eq!(Params::None.encode(0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn encoding_follows_the_header() {
        let bytes = params![7i64, "é", None::<i64>].encode(3).unwrap();
        let mut want = vec![1, 0, 0, 0, tag::INTEGER, 7, 0, 0, 0, 0, 0, 0, 0];
        want.extend([2, 0, 0, 0, tag::TEXT, 2, 0, 0, 0, 0xc3, 0xa9]);
        want.extend([3, 0, 0, 0, tag::NULL]);
        assert_eq!(bytes, want);
        // Names go as given; the guest finds the prefix of one without.
        let named = named_params! { "id": 1.5f64 }.encode(1).unwrap();
        assert_eq!(&named[..10], &[0, 0, 0, 0, 2, 0, 0, 0, b'i', b'd']);
        assert!(matches!(Params::Named(vec![("a".repeat(256), Value::Null)]).encode(1), Err(Error::UnknownParameter { .. })));
        assert!(Params::Named(vec![("a".repeat(255), Value::Null)]).encode(1).is_ok());
    }
}

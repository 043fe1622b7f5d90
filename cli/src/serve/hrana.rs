//! Hrana's JSON structures as Hrana over HTTP carries them (versions 2 and
//! 3 share them; 3 adds `get_autocommit`, the `is_autocommit` condition and
//! cursors), and the conversion of values both ways.
//!
//! Unknown fields are ignored, as the specification asks, so newer clients
//! keep working; an unknown request or value type fails the whole body.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use wasqlite::{Rows, Value};

/// sqld writes blobs without padding; clients send them either way.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Deserialize, Debug)]
pub(crate) struct PipelineRequest {
    #[serde(default)]
    pub(crate) baton: Option<String>,
    pub(crate) requests: Vec<StreamRequest>,
}

#[derive(Serialize, Debug)]
pub(crate) struct PipelineResponse {
    pub(crate) baton: Option<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) results: Vec<StreamResult>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct CursorRequest {
    #[serde(default)]
    pub(crate) baton: Option<String>,
    pub(crate) batch: Batch,
}

#[derive(Serialize, Debug)]
pub(crate) struct CursorResponse {
    pub(crate) baton: Option<String>,
    pub(crate) base_url: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamResult {
    Ok { response: StreamResponse },
    Error { error: HranaError },
}

#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamRequest {
    Close,
    Execute {
        stmt: Stmt,
    },
    Batch {
        batch: Batch,
    },
    Sequence {
        #[serde(default)]
        sql: Option<String>,
        #[serde(default)]
        sql_id: Option<i32>,
    },
    Describe {
        #[serde(default)]
        sql: Option<String>,
        #[serde(default)]
        sql_id: Option<i32>,
    },
    StoreSql {
        sql_id: i32,
        sql: String,
    },
    CloseSql {
        sql_id: i32,
    },
    GetAutocommit,
}

impl StreamRequest {
    /// Whether answering it takes the actor's connection.
    pub(crate) fn needs_actor(&self) -> bool {
        !matches!(self, StreamRequest::Close | StreamRequest::StoreSql { .. } | StreamRequest::CloseSql { .. })
    }

    /// Every SQL text the request carries inline.
    pub(crate) fn inline_sql(&self) -> Vec<&str> {
        match self {
            StreamRequest::Execute { stmt } => stmt.sql.as_deref().into_iter().collect(),
            StreamRequest::Batch { batch } => batch.steps.iter().filter_map(|s| s.stmt.sql.as_deref()).collect(),
            StreamRequest::Sequence { sql, .. } | StreamRequest::Describe { sql, .. } => sql.as_deref().into_iter().collect(),
            StreamRequest::StoreSql { sql, .. } => vec![sql.as_str()],
            StreamRequest::Close | StreamRequest::CloseSql { .. } | StreamRequest::GetAutocommit => Vec::new(),
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamResponse {
    Close,
    Execute { result: StmtResult },
    Batch { result: BatchResult },
    Sequence,
    Describe { result: DescribeResult },
    StoreSql,
    CloseSql,
    GetAutocommit { is_autocommit: bool },
}

#[derive(Deserialize, Debug)]
pub(crate) struct Stmt {
    #[serde(default)]
    pub(crate) sql: Option<String>,
    #[serde(default)]
    pub(crate) sql_id: Option<i32>,
    #[serde(default)]
    pub(crate) args: Vec<HranaValue>,
    #[serde(default)]
    pub(crate) named_args: Vec<NamedArg>,
    #[serde(default)]
    pub(crate) want_rows: Option<bool>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct NamedArg {
    pub(crate) name: String,
    pub(crate) value: HranaValue,
}

#[derive(Deserialize, Debug)]
pub(crate) struct Batch {
    pub(crate) steps: Vec<BatchStep>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct BatchStep {
    #[serde(default)]
    pub(crate) condition: Option<BatchCond>,
    pub(crate) stmt: Stmt,
}

#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BatchCond {
    Ok { step: u32 },
    Error { step: u32 },
    Not { cond: Box<BatchCond> },
    And { conds: Vec<BatchCond> },
    Or { conds: Vec<BatchCond> },
    IsAutocommit,
}

/// A value as a client sends it. Integers travel as strings so that no
/// JSON parser rounds them; a bare number is taken too.
#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum HranaValue {
    Null,
    Integer { value: serde_json::Value },
    Float { value: f64 },
    Text { value: String },
    Blob { base64: String },
}

impl HranaValue {
    /// The value to bind, or why it is not one.
    pub(crate) fn into_value(self) -> Result<Value, String> {
        Ok(match self {
            HranaValue::Null => Value::Null,
            HranaValue::Integer { value } => {
                let parsed = match &value {
                    serde_json::Value::String(s) => s.parse::<i64>().ok(),
                    serde_json::Value::Number(n) => n.as_i64(),
                    _ => None,
                };
                Value::Integer(parsed.ok_or_else(|| format!("integer argument {value} is not a 64-bit signed integer"))?)
            }
            HranaValue::Float { value } => Value::Real(value),
            HranaValue::Text { value } => Value::Text(value),
            HranaValue::Blob { base64 } => {
                Value::Blob(BASE64.decode(base64.as_bytes()).map_err(|e| format!("blob argument is not base64: {e}"))?)
            }
        })
    }
}

/// Hrana's error structure: a message for people, a code for programs.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct HranaError {
    pub(crate) message: String,
    pub(crate) code: Option<String>,
}

impl HranaError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> HranaError {
        HranaError { message: message.into(), code: Some(code.to_owned()) }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct Col {
    pub(crate) name: Option<String>,
    pub(crate) decltype: Option<String>,
}

/// One statement's result; rows are written straight from the actor's
/// values, without an intermediate JSON tree.
#[derive(Serialize, Debug)]
pub(crate) struct StmtResult {
    pub(crate) cols: Vec<Col>,
    #[serde(serialize_with = "rows_json")]
    pub(crate) rows: Rows,
    pub(crate) affected_row_count: u64,
    #[serde(serialize_with = "rowid_json")]
    pub(crate) last_insert_rowid: i64,
    pub(crate) rows_read: u64,
    pub(crate) rows_written: u64,
    pub(crate) query_duration_ms: f64,
}

#[derive(Serialize, Debug)]
pub(crate) struct BatchResult {
    pub(crate) step_results: Vec<Option<StmtResult>>,
    pub(crate) step_errors: Vec<Option<HranaError>>,
}

#[derive(Serialize, Debug)]
pub(crate) struct DescribeResult {
    pub(crate) params: Vec<DescribeParam>,
    pub(crate) cols: Vec<DescribeCol>,
    pub(crate) is_explain: bool,
    pub(crate) is_readonly: bool,
}

#[derive(Serialize, Debug)]
pub(crate) struct DescribeParam {
    pub(crate) name: Option<String>,
}

#[derive(Serialize, Debug)]
pub(crate) struct DescribeCol {
    pub(crate) name: String,
    pub(crate) decltype: Option<String>,
}

/// One line of a cursor's response after the first.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum CursorEntry<'a> {
    StepBegin {
        step: usize,
        cols: &'a [Col],
    },
    StepEnd {
        affected_row_count: u64,
        #[serde(serialize_with = "rowid_json")]
        last_insert_rowid: i64,
    },
    StepError {
        step: usize,
        error: &'a HranaError,
    },
    Row {
        #[serde(serialize_with = "row_json")]
        row: &'a [Value],
    },
    Error {
        error: &'a HranaError,
    },
}

fn rowid_json<S: Serializer>(rowid: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rowid.to_string())
}

fn rows_json<S: Serializer>(rows: &Rows, s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(rows.len()))?;
    for row in rows.iter() {
        seq.serialize_element(&RowJson(row.values()))?;
    }
    seq.end()
}

fn row_json<S: Serializer>(row: &&[Value], s: S) -> Result<S::Ok, S::Error> {
    RowJson(row).serialize(s)
}

struct RowJson<'a>(&'a [Value]);

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            seq.serialize_element(&ValueJson(value))?;
        }
        seq.end()
    }
}

struct ValueJson<'a>(&'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        match self.0 {
            Value::Null => map.serialize_entry("type", "null")?,
            Value::Integer(i) => {
                map.serialize_entry("type", "integer")?;
                map.serialize_entry("value", &i.to_string())?;
            }
            // JSON has no infinities (SQLite makes them from 1e999), and a
            // writer would put null: 1e999 is what JavaScript reads back as
            // Infinity.
            Value::Real(f) => {
                map.serialize_entry("type", "float")?;
                match f.is_finite() {
                    true => map.serialize_entry("value", f)?,
                    false => map.serialize_entry("value", infinity(*f))?,
                }
            }
            Value::Text(t) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("value", t)?;
            }
            Value::Blob(b) => {
                map.serialize_entry("type", "blob")?;
                map.serialize_entry("base64", &BASE64.encode(b))?;
            }
        }
        map.end()
    }
}

fn infinity(f: f64) -> &'static serde_json::value::RawValue {
    let text: &'static str = if f > 0.0 { "1e999" } else if f < 0.0 { "-1e999" } else { "null" };
    serde_json::from_str(text).expect("a literal")
}

/// About how many bytes a value takes in the JSON response, for the
/// response cap: its payload (base64 grows a third) and its framing.
pub(crate) fn json_size(value: &Value) -> usize {
    const FRAMING: usize = 32;
    FRAMING
        + match value {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 24,
            Value::Text(t) => t.len() + t.len() / 8,
            Value::Blob(b) => b.len().div_ceil(3) * 4,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_clients_read_them() {
        let json = |v: Value| serde_json::to_string(&ValueJson(&v)).expect("serializes");
        assert_eq!(json(Value::Integer(i64::MIN)), r#"{"type":"integer","value":"-9223372036854775808"}"#);
        assert_eq!(json(Value::Real(1.5)), r#"{"type":"float","value":1.5}"#);
        assert_eq!(json(Value::Real(f64::INFINITY)), r#"{"type":"float","value":1e999}"#);
        assert_eq!(json(Value::Real(f64::NEG_INFINITY)), r#"{"type":"float","value":-1e999}"#);
        assert_eq!(json(Value::Blob(vec![0, 255])), r#"{"type":"blob","base64":"AP8"}"#);
        assert_eq!(json(Value::Null), r#"{"type":"null"}"#);
    }
}

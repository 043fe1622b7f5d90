//! Running one pipeline's stream requests on an actor: statements, batches
//! with their conditions, sequences, descriptions, stored SQL texts and the
//! autocommit state, each answered in Hrana's shapes.
//!
//! Everything here runs on the guest thread that holds the actor, so a
//! whole pipeline costs one hop from the HTTP task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use wasqlite::{Actor, Error, Params, Rows, Value};

use super::hrana::{
    BatchCond, BatchResult, Col, DescribeCol, DescribeParam, DescribeResult, HranaError, Stmt, StmtResult, StreamRequest,
    StreamResponse, StreamResult, json_size,
};

/// Most SQL texts one stream may store: each is a client's prepared
/// statement, and a stream that stores without closing must not grow
/// without end.
const MAX_STORED_SQL: usize = 1024;

/// Bytes of SQL text all streams together may store: stored texts live as
/// long as their streams, which clients may leave open.
const MAX_STORED_SQL_BYTES: usize = 256 << 20;

/// The SQL texts a stream stored with `store_sql`, counted against the
/// server's budget until they are closed or the stream ends.
#[derive(Default, Debug)]
pub(crate) struct StoredSql {
    texts: HashMap<i32, String>,
    bytes: usize,
    budget: Arc<AtomicUsize>,
}

impl StoredSql {
    pub(crate) fn new(budget: &Arc<AtomicUsize>) -> StoredSql {
        StoredSql { texts: HashMap::new(), bytes: 0, budget: budget.clone() }
    }

    fn store(&mut self, sql_id: i32, sql: String) -> Result<(), HranaError> {
        let refuse = |m: String| Err(HranaError::new("SQL_STORE_ERROR", m));
        if self.texts.contains_key(&sql_id) {
            return refuse(format!("SQL text id {sql_id} is already in use on this stream"));
        }
        if self.texts.len() >= MAX_STORED_SQL {
            return refuse(format!("a stream stores at most {MAX_STORED_SQL} SQL texts; close some"));
        }
        if self.budget.fetch_add(sql.len(), Ordering::Relaxed) + sql.len() > MAX_STORED_SQL_BYTES {
            self.budget.fetch_sub(sql.len(), Ordering::Relaxed);
            return refuse(format!("the server holds {MAX_STORED_SQL_BYTES} bytes of stored SQL at most; close some, or send SQL inline"));
        }
        self.bytes += sql.len();
        self.texts.insert(sql_id, sql);
        Ok(())
    }

    fn close(&mut self, sql_id: i32) {
        if let Some(sql) = self.texts.remove(&sql_id) {
            self.bytes -= sql.len();
            self.budget.fetch_sub(sql.len(), Ordering::Relaxed);
        }
    }

    fn get(&self, sql_id: i32) -> Option<&String> {
        self.texts.get(&sql_id)
    }
}

impl Drop for StoredSql {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What one pipeline's requests share: what they may still add to the
/// response, and whether one began a read-only transaction.
#[derive(Debug)]
pub(crate) struct PipelineState {
    pub(crate) left: usize,
    pub(crate) cap: usize,
    /// The stream's `BEGIN TRANSACTION READONLY` made the connection
    /// `query_only` until the transaction ends.
    pub(crate) read_only: bool,
}

impl PipelineState {
    pub(crate) fn new(cap: usize, read_only: bool) -> PipelineState {
        PipelineState { left: cap, cap, read_only }
    }

    /// Turns `query_only` off once the read-only transaction has ended.
    pub(crate) async fn end_read_only_if_done(&mut self, actor: &mut Actor) -> Result<(), Error> {
        if self.read_only && actor.is_autocommit().await? {
            actor.execute("PRAGMA query_only = 0", ()).await?;
            self.read_only = false;
        }
        Ok(())
    }

    /// Refuses a statement once the response is full: it would run and its
    /// rows could not be sent.
    fn check(&self) -> Result<(), HranaError> {
        match self.left {
            0 => Err(HranaError::new(
                "RESPONSE_TOO_LARGE",
                format!("the response reached its cap of {} bytes (--max-response-bytes); the statement did not run", self.cap),
            )),
            _ => Ok(()),
        }
    }

    fn spend(&mut self, rows: &Rows) {
        let size: usize = rows.iter().flat_map(|r| r.values()).map(json_size).sum();
        self.left = self.left.saturating_sub(size);
    }
}

/// The results of a pipeline's requests, and whether one closed the
/// stream.
pub(crate) struct Answered {
    pub(crate) results: Vec<StreamResult>,
    pub(crate) closed: bool,
}

/// Answers `requests` in order. `actor` is `None` when the stream could not
/// get its actor (`unavailable` says why): requests that need it fail with
/// that error, the others are answered.
pub(crate) async fn answer(
    mut actor: Option<&mut Actor>,
    unavailable: &HranaError,
    requests: Vec<StreamRequest>,
    stored: &mut StoredSql,
    budget: &mut PipelineState,
) -> Answered {
    let mut answered = Answered { results: Vec::with_capacity(requests.len()), closed: false };
    for request in requests {
        if answered.closed {
            answered.results.push(StreamResult::Error {
                error: HranaError::new("STREAM_CLOSED", "the stream was closed by an earlier request of this pipeline"),
            });
            continue;
        }
        let response = match (request, actor.as_deref_mut()) {
            (StreamRequest::Close, _) => {
                answered.closed = true;
                Ok(StreamResponse::Close)
            }
            (StreamRequest::StoreSql { sql_id, sql }, _) => stored.store(sql_id, sql).map(|()| StreamResponse::StoreSql),
            (StreamRequest::CloseSql { sql_id }, _) => {
                stored.close(sql_id);
                Ok(StreamResponse::CloseSql)
            }
            (_, None) => Err(unavailable.clone()),
            (StreamRequest::Execute { stmt }, Some(actor)) => {
                execute(actor, stmt, stored, budget).await.map(|result| StreamResponse::Execute { result })
            }
            (StreamRequest::Batch { batch }, Some(actor)) => {
                batch_result(actor, batch.steps, stored, budget).await.map(|result| StreamResponse::Batch { result })
            }
            (StreamRequest::Sequence { sql, sql_id }, Some(actor)) => match sql_text(sql.as_deref(), sql_id, stored) {
                Ok(sql) => actor.execute_batch(&sql).await.map(|()| StreamResponse::Sequence).map_err(|e| hrana_error(&e)),
                Err(e) => Err(e),
            },
            (StreamRequest::Describe { sql, sql_id }, Some(actor)) => match sql_text(sql.as_deref(), sql_id, stored) {
                Ok(sql) => describe(actor, &sql).await.map(|result| StreamResponse::Describe { result }),
                Err(e) => Err(e),
            },
            (StreamRequest::GetAutocommit, Some(actor)) => {
                actor.is_autocommit().await.map(|is_autocommit| StreamResponse::GetAutocommit { is_autocommit }).map_err(|e| hrana_error(&e))
            }
        };
        answered.results.push(match response {
            Ok(response) => StreamResult::Ok { response },
            Err(error) => StreamResult::Error { error },
        });
    }
    answered
}

/// The text a request names: inline or stored, exactly one of the two.
fn sql_text(sql: Option<&str>, sql_id: Option<i32>, stored: &StoredSql) -> Result<String, HranaError> {
    match (sql, sql_id) {
        (Some(sql), None) => Ok(sql.to_owned()),
        (None, Some(id)) => stored
            .get(id)
            .cloned()
            .ok_or_else(|| HranaError::new("SQL_NOT_FOUND", format!("no SQL text with id {id} is stored on this stream"))),
        (Some(_), Some(_)) => Err(HranaError::new("SQL_INPUT_ERROR", "a statement gives both sql and sql_id; give one")),
        (None, None) => Err(HranaError::new("SQL_INPUT_ERROR", "a statement gives neither sql nor sql_id")),
    }
}

/// The parameters of a statement. Arguments are bound, never spliced in.
fn params(stmt: &mut Stmt) -> Result<Params, HranaError> {
    let invalid = |m: String| HranaError::new("ARGS_INVALID", m);
    match (stmt.args.is_empty(), stmt.named_args.is_empty()) {
        (true, true) => Ok(Params::None),
        (false, true) => {
            let values = std::mem::take(&mut stmt.args).into_iter().map(|v| v.into_value()).collect::<Result<Vec<Value>, _>>();
            Ok(Params::Positional(values.map_err(invalid)?))
        }
        (true, false) => {
            let named = std::mem::take(&mut stmt.named_args)
                .into_iter()
                .map(|a| a.value.into_value().map(|v| (a.name, v)))
                .collect::<Result<Vec<_>, _>>();
            Ok(Params::Named(named.map_err(invalid)?))
        }
        (false, false) => Err(invalid("this server takes positional or named arguments in one statement, not both".into())),
    }
}

async fn execute(actor: &mut Actor, mut stmt: Stmt, stored: &StoredSql, budget: &mut PipelineState) -> Result<StmtResult, HranaError> {
    budget.check()?;
    let sql = sql_text(stmt.sql.as_deref(), stmt.sql_id, stored)?;
    let read_only = is_libsql_read_transaction(&sql);
    let sql = if read_only { "BEGIN DEFERRED".to_owned() } else { sql };
    let params = params(&mut stmt)?;
    let before = actor.usage();
    let started = Instant::now();
    let result = actor.run(&sql, params, stmt.want_rows.unwrap_or(true)).await;
    match (read_only, &result) {
        // Writes are refused until the transaction ends; then query_only
        // goes off again, or the stream's end sleeps the actor.
        (true, Ok(_)) => {
            budget.read_only = true;
            actor.execute("PRAGMA query_only = 1", ()).await.map_err(|e| hrana_error(&e))?;
        }
        _ => budget.end_read_only_if_done(actor).await.map_err(|e| hrana_error(&e))?,
    }
    let result = result.map_err(|e| hrana_error(&e))?;
    let elapsed = started.elapsed();
    let used = actor.usage() - before;
    budget.spend(&result.rows);
    Ok(StmtResult {
        cols: result.columns.into_iter().map(|c| Col { name: Some(c.name), decltype: c.decltype }).collect(),
        rows: result.rows,
        affected_row_count: result.changes,
        last_insert_rowid: result.last_insert_rowid,
        rows_read: used.reported.rows_read,
        rows_written: used.reported.rows_written,
        query_duration_ms: elapsed.as_secs_f64() * 1000.0,
    })
}

/// `BEGIN TRANSACTION READONLY`, libSQL's own syntax, which
/// `@libsql/client` sends for `transaction("read")`. SQLite has no such
/// statement: it runs as a deferred transaction on a `query_only`
/// connection.
fn is_libsql_read_transaction(sql: &str) -> bool {
    let words: Vec<&str> = sql.trim().trim_end_matches(';').split_ascii_whitespace().collect();
    matches!(words.as_slice(), [b, t, r] if b.eq_ignore_ascii_case("begin") && t.eq_ignore_ascii_case("transaction") && r.eq_ignore_ascii_case("readonly"))
}

/// Runs a batch's steps in order, each only if its condition holds.
pub(crate) async fn batch_result(
    actor: &mut Actor,
    steps: Vec<super::hrana::BatchStep>,
    stored: &StoredSql,
    budget: &mut PipelineState,
) -> Result<BatchResult, HranaError> {
    for (i, step) in steps.iter().enumerate() {
        if let Some(cond) = &step.condition {
            check_condition(cond, i)?;
        }
    }
    let mut result = BatchResult { step_results: Vec::with_capacity(steps.len()), step_errors: Vec::with_capacity(steps.len()) };
    for step in steps {
        let run = match &step.condition {
            None => true,
            Some(cond) => {
                let autocommit = match mentions_autocommit(cond) {
                    true => actor.is_autocommit().await.map_err(|e| hrana_error(&e))?,
                    false => false,
                };
                holds(cond, &result, autocommit)
            }
        };
        if !run {
            result.step_results.push(None);
            result.step_errors.push(None);
            continue;
        }
        match execute(actor, step.stmt, stored, budget).await {
            Ok(r) => {
                result.step_results.push(Some(r));
                result.step_errors.push(None);
            }
            Err(e) => {
                result.step_results.push(None);
                result.step_errors.push(Some(e));
            }
        }
    }
    Ok(result)
}

/// A condition may only look back: at steps that have run when it is
/// evaluated. Checked before any step runs, so a bad batch runs nothing.
fn check_condition(cond: &BatchCond, step: usize) -> Result<(), HranaError> {
    match cond {
        BatchCond::Ok { step: s } | BatchCond::Error { step: s } if *s as usize >= step => Err(HranaError::new(
            "BATCH_COND_INVALID",
            format!("the condition of step {step} refers to step {s}, which has not run by then"),
        )),
        BatchCond::Ok { .. } | BatchCond::Error { .. } | BatchCond::IsAutocommit => Ok(()),
        BatchCond::Not { cond } => check_condition(cond, step),
        BatchCond::And { conds } | BatchCond::Or { conds } => conds.iter().try_for_each(|c| check_condition(c, step)),
    }
}

fn mentions_autocommit(cond: &BatchCond) -> bool {
    match cond {
        BatchCond::IsAutocommit => true,
        BatchCond::Ok { .. } | BatchCond::Error { .. } => false,
        BatchCond::Not { cond } => mentions_autocommit(cond),
        BatchCond::And { conds } | BatchCond::Or { conds } => conds.iter().any(mentions_autocommit),
    }
}

fn holds(cond: &BatchCond, so_far: &BatchResult, autocommit: bool) -> bool {
    match cond {
        BatchCond::Ok { step } => so_far.step_results.get(*step as usize).is_some_and(Option::is_some),
        BatchCond::Error { step } => so_far.step_errors.get(*step as usize).is_some_and(Option::is_some),
        BatchCond::Not { cond } => !holds(cond, so_far, autocommit),
        BatchCond::And { conds } => conds.iter().all(|c| holds(c, so_far, autocommit)),
        BatchCond::Or { conds } => conds.iter().any(|c| holds(c, so_far, autocommit)),
        BatchCond::IsAutocommit => autocommit,
    }
}

async fn describe(actor: &mut Actor, sql: &str) -> Result<DescribeResult, HranaError> {
    let d = actor.describe(sql).await.map_err(|e| hrana_error(&e))?;
    Ok(DescribeResult {
        params: d.params.into_iter().map(|name| DescribeParam { name }).collect(),
        cols: d.columns.into_iter().map(|c| DescribeCol { name: c.name, decltype: c.decltype }).collect(),
        is_explain: d.is_explain,
        is_readonly: d.is_readonly,
    })
}

/// A library error as a Hrana error: SQLite's failures carry SQLite's code
/// by name (`SQLITE_CONSTRAINT_UNIQUE`), which the clients turn into their
/// own error types; the host's own failures get codes of sqld's style.
pub(crate) fn hrana_error(e: &Error) -> HranaError {
    let code = match e {
        Error::Sqlite { code, .. } => {
            let name = wasqlite::code_name(*code);
            // An extended code without a name of its own goes as its primary.
            name.split(',').next().unwrap_or("SQLITE_ERROR").to_owned()
        }
        Error::OutcomeUnknown { source } => return HranaError { code: hrana_error(source).code, message: e.to_string() },
        Error::ParameterCount { .. } | Error::UnknownParameter { .. } | Error::ParameterSet { .. } => "ARGS_INVALID".into(),
        Error::MultipleStatements => "SQL_MANY_STATEMENTS".into(),
        Error::Timeout { .. } | Error::Interrupted => "SQLITE_INTERRUPT".into(),
        Error::ResultTooBig { .. } => "RESPONSE_TOO_LARGE".into(),
        Error::TooComplex | Error::TooBig { .. } => "SQLITE_TOOBIG".into(),
        Error::TransactionAborted { .. } | Error::SessionEnded { .. } => "TRANSACTION_ABORTED".into(),
        Error::Overloaded { .. } => "SERVER_OVERLOADED".into(),
        Error::ShuttingDown { .. } => "SERVER_SHUTTING_DOWN".into(),
        Error::InvalidActorId { .. } => "ACTOR_INVALID".into(),
        _ => "INTERNAL".into(),
    };
    HranaError { message: e.to_string(), code: Some(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_sql_counts_against_one_budget_for_all_streams() {
        let budget = Arc::new(AtomicUsize::new(MAX_STORED_SQL_BYTES - 10));
        let mut a = StoredSql::new(&budget);
        let mut b = StoredSql::new(&budget);
        assert!(a.store(1, "SELECT 1".into()).is_ok());
        assert_eq!(b.store(1, "SELECT 2".into()).map_err(|e| e.code), Err(Some("SQL_STORE_ERROR".into())), "over the budget");
        assert!(a.store(1, "x".into()).is_err(), "an id in use");
        a.close(1);
        assert!(b.store(1, "SELECT 2".into()).is_ok(), "closing gave the bytes back");
        drop(b);
        assert_eq!(budget.load(Ordering::Relaxed), MAX_STORED_SQL_BYTES - 10, "a dropped stream gives its bytes back");
    }

    #[test]
    fn libsql_read_transactions_are_recognized() {
        assert!(is_libsql_read_transaction("BEGIN TRANSACTION READONLY"));
        assert!(is_libsql_read_transaction("  begin  transaction\treadonly ; "));
        assert!(!is_libsql_read_transaction("BEGIN TRANSACTION"));
        assert!(!is_libsql_read_transaction("SELECT 'BEGIN TRANSACTION READONLY'"));
    }

    #[test]
    fn conditions_may_only_look_back() {
        let later = BatchCond::Not { cond: Box::new(BatchCond::Ok { step: 2 }) };
        assert_eq!(check_condition(&later, 2).map_err(|e| e.code), Err(Some("BATCH_COND_INVALID".into())));
        assert!(check_condition(&BatchCond::And { conds: vec![BatchCond::Ok { step: 0 }, BatchCond::IsAutocommit] }, 1).is_ok());
    }

    #[test]
    fn integer_arguments_keep_all_64_bits_and_bad_ones_are_named() {
        let v = |json: &str| serde_json::from_str::<super::super::hrana::HranaValue>(json).expect("a value").into_value();
        assert_eq!(v(r#"{"type":"integer","value":"-9223372036854775808"}"#), Ok(Value::Integer(i64::MIN)));
        assert_eq!(v(r#"{"type":"integer","value":42}"#), Ok(Value::Integer(42)));
        assert!(v(r#"{"type":"integer","value":"9223372036854775808"}"#).is_err_and(|e| e.contains("not a 64-bit")));
        assert_eq!(v(r#"{"type":"blob","base64":"AP8"}"#), Ok(Value::Blob(vec![0, 255])), "unpadded, as the Rust client sends");
        assert_eq!(v(r#"{"type":"blob","base64":"AP8="}"#), Ok(Value::Blob(vec![0, 255])), "padded, as the JS client sends");
    }
}

//! Streams: what a client's baton stands for between its requests.
//!
//! An actor has one SQLite connection, where sqld gives every stream its
//! own, so a stream holds its actor (a manager `Session`) only while it
//! must: while its transaction is open, and from the first request whose
//! SQL may change the connection itself (a PRAGMA, a TEMP object, an
//! ATTACH, a libSQL read-only transaction) until it ends, when the actor is put to sleep so that the next
//! stream starts on a fresh connection. Between the other requests the
//! actor serves other streams, and its `last_insert_rowid` is set back to
//! the stream's own before each request, so no stream sees another's.
//!
//! Invariant: a baton names at most one stream, and only once: `resume`
//! takes the stream out, and `park` files it under a new baton. A replayed
//! or guessed baton finds nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use wasqlite::{ActorId, Session};

use super::auth::Credential;
use super::execute::StoredSql;
use super::hrana::HranaError;

pub(crate) struct Stream {
    pub(crate) actor: ActorId,
    credential: Credential,
    pub(crate) stored: StoredSql,
    /// The actor, while the stream's transaction is open or once the
    /// stream changed its connection.
    pub(crate) session: Option<Session>,
    /// The stream ran SQL that may change the connection beyond the
    /// database: it keeps its actor to its end, and the actor sleeps then.
    pub(crate) changed_connection: bool,
    /// The stream's read-only transaction has the connection `query_only`.
    pub(crate) read_only: bool,
    /// The connection's `last_insert_rowid` as this stream last left it.
    pub(crate) last_insert_rowid: i64,
    last_used: Instant,
    /// Counts the stream as running while a request has it out of
    /// `parked`, however its request ends.
    running: Option<Running>,
}

/// One stream out of `parked`: counted from its start or resumption until
/// it is parked again or dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::Relaxed);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Stream {
    /// A stream dropped other than through `finish` (a panic, shutdown)
    /// still must not hand its changed connection on.
    fn drop(&mut self) {
        if let (Some(session), true) = (self.session.take(), self.changed_connection)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = session.sleep().await;
            });
        }
    }
}

pub(crate) struct Streams {
    parked: Mutex<HashMap<String, Stream>>,
    /// Streams out of `parked` while a request runs on them.
    running: Arc<AtomicUsize>,
    /// Bytes of SQL text every stream has stored, against one budget.
    stored_bytes: Arc<AtomicUsize>,
    timeout: Duration,
    max: usize,
}

impl Streams {
    pub(crate) fn new(timeout: Duration, max: usize) -> Streams {
        Streams { parked: Mutex::default(), running: Arc::default(), stored_bytes: Arc::default(), timeout, max }
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new stream on `actor` for a request without a baton.
    pub(crate) fn start(&self, actor: ActorId, credential: Credential) -> Result<Stream, HranaError> {
        let open = self.open();
        if open >= self.max {
            return Err(HranaError::new(
                "SERVER_OVERLOADED",
                format!("{open} streams are open, the most this server keeps (--max-streams); close streams or retry later"),
            ));
        }
        Ok(Stream {
            actor,
            credential,
            stored: StoredSql::new(&self.stored_bytes),
            session: None,
            changed_connection: false,
            read_only: false,
            last_insert_rowid: 0,
            last_used: Instant::now(),
            running: Some(Running::new(&self.running)),
        })
    }

    /// The stream `baton` names, if it belongs to `actor` and was opened
    /// with the same credential.
    pub(crate) fn resume(&self, baton: &str, actor: &ActorId, credential: Credential) -> Result<Stream, HranaError> {
        let mut parked = self.parked();
        let belongs = parked.get(baton).is_some_and(|s| &s.actor == actor && s.credential == credential);
        let stream = match belongs {
            true => parked.remove(baton),
            false => None,
        };
        drop(parked);
        let stream = stream.ok_or_else(|| {
            HranaError::new(
                "STREAM_EXPIRED",
                format!("the baton names no open stream of this actor and token: it expired (after {:?} unused), was used already, or belongs elsewhere", self.timeout),
            )
        })?;
        let mut stream = stream;
        stream.running = Some(Running::new(&self.running));
        Ok(stream)
    }

    /// Files `stream` under a new baton and returns the baton.
    pub(crate) fn park(&self, mut stream: Stream) -> String {
        let baton = new_baton();
        stream.last_used = Instant::now();
        stream.running = None;
        self.parked().insert(baton.clone(), stream);
        baton
    }

    /// Takes out the streams unused past the timeout.
    pub(crate) fn expired(&self) -> Vec<Stream> {
        let mut parked = self.parked();
        let old: Vec<String> = parked.iter().filter(|(_, s)| s.last_used.elapsed() >= self.timeout).map(|(b, _)| b.clone()).collect();
        old.iter().filter_map(|b| parked.remove(b)).collect()
    }

    /// Takes out every parked stream, at shutdown.
    pub(crate) fn drain(&self) -> Vec<Stream> {
        self.parked().drain().map(|(_, s)| s).collect()
    }

    pub(crate) fn open(&self) -> usize {
        self.parked().len() + self.running.load(Ordering::Relaxed)
    }
}

/// 128 bits from the thread's CSPRNG: unguessable, so a baton is proof of
/// having been given it.
fn new_baton() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Stream {
    /// Gives the actor up, if the stream holds it: it sleeps when the stream
    /// changed its connection, and is let go otherwise (an open transaction
    /// is rolled back before the actor's next call). The stream may go on,
    /// and takes the actor again when it needs it.
    pub(crate) async fn let_go(&mut self) {
        self.read_only = false;
        let Some(session) = self.session.take() else { return };
        if self.changed_connection
            && let Err(e) = session.sleep().await
        {
            eprintln!("wasqlite serve: actor {}: closing the connection a stream changed failed: {e}", self.actor);
        }
    }
}

/// Ends a stream, giving its actor up.
pub(crate) async fn finish(mut stream: Stream) {
    stream.let_go().await;
}

/// Whether `sql` may change the connection rather than the database: it
/// names PRAGMA, TEMP (TEMPORARY), ATTACH or READONLY (libSQL's read-only
/// transaction, which sets `query_only`) as a word anywhere, even in a
/// string or a comment. Erring that way costs a wake, the other way would
/// let one stream's settings reach the next.
pub(crate) fn changes_connection(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()))
        .any(|w| ["pragma", "temp", "temporary", "attach", "readonly"].iter().any(|k| w.eq_ignore_ascii_case(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_change_the_connection_are_told_apart() {
        for sql in ["PRAGMA foreign_keys=ON", "create temp table t(x)", "CREATE TEMPORARY VIEW v AS SELECT 1", "attach ':memory:' as m",
            "SELECT * FROM temp.t", "/* x */pragma\tuser_version", "BEGIN TRANSACTION READONLY"] {
            assert!(changes_connection(sql), "{sql}");
        }
        for sql in ["SELECT temperature FROM pragmatic", "INSERT INTO attachments VALUES (1)", "UPDATE t SET tempo = 1"] {
            assert!(!changes_connection(sql), "{sql}");
        }
    }

    #[test]
    fn a_baton_opens_its_stream_once_and_only_for_its_actor_and_token() -> Result<(), wasqlite::Error> {
        let streams = Streams::new(Duration::from_secs(60), 10);
        let (a, b) = (ActorId::new("a")?, ActorId::new("b")?);
        let baton = streams.park(streams.start(a.clone(), Credential::Grant(0)).expect("room"));
        assert_eq!(baton.len(), 32);
        assert!(streams.resume(&baton, &b, Credential::Grant(0)).is_err(), "another actor");
        assert!(streams.resume(&baton, &a, Credential::Grant(1)).is_err(), "another token");
        let stream = streams.resume(&baton, &a, Credential::Grant(0)).expect("its own");
        assert!(streams.resume(&baton, &a, Credential::Grant(0)).is_err(), "a baton works once");
        let next = streams.park(stream);
        assert_ne!(next, baton);
        Ok(())
    }

    #[test]
    fn streams_past_the_cap_are_refused() -> Result<(), wasqlite::Error> {
        let streams = Streams::new(Duration::from_secs(60), 2);
        let a = ActorId::new("a")?;
        let first = streams.start(a.clone(), Credential::Anonymous).expect("room");
        let _second = streams.park(streams.start(a.clone(), Credential::Anonymous).expect("room"));
        let refused = streams.start(a.clone(), Credential::Anonymous).err().expect("full");
        assert_eq!(refused.code.as_deref(), Some("SERVER_OVERLOADED"));
        drop(first);
        assert!(streams.start(a, Credential::Anonymous).is_ok());
        Ok(())
    }
}

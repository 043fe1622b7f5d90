//! `wasqlite serve`: every actor reachable over HTTP by the libSQL clients,
//! through Hrana over HTTP (the JSON encoding of versions 2 and 3: the
//! pipeline and cursor endpoints), served from an actor manager.
//!
//! The URL a client is given picks the actor: `http://HOST:PORT/ACTOR/`.
//! The clients resolve their endpoints relative to it, so requests arrive
//! as `/ACTOR/v2/pipeline`, `/ACTOR/v3/pipeline` or `/ACTOR/v3/cursor`.
//! Protobuf (`v3-protobuf`) is answered 404, and the clients fall back to
//! JSON. `/health` and `/metrics` sit beside the actors.

mod auth;
mod execute;
mod hrana;
mod streams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use metrics_exporter_prometheus::PrometheusHandle;
use wasqlite::{Actor, ActorId, Host, HostConfig, Limits, Manager, ManagerConfig};

use auth::{Auth, Credential};
use execute::{Answered, PipelineState, answer, hrana_error};
use hrana::{CursorEntry, CursorRequest, CursorResponse, HranaError, PipelineRequest, PipelineResponse, StreamRequest, StreamResponse, StreamResult};
use streams::{Stream, Streams, changes_connection, finish};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Where actors live: `memory`, `redb:PATH` or
    /// `redis://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, value_name = "STORE", default_value = wasqlite::kv::DEFAULT_STORE)]
    store: String,
    /// Address to listen on; port 0 picks a free one (printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Tokens: lines of `ACTOR TOKEN` (one actor) or `* TOKEN` (every
    /// actor); clients send theirs as `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "PATH", required_unless_present = "no_auth", conflicts_with = "no_auth")]
    auth_file: Option<PathBuf>,
    /// Serve without tokens: anyone who reaches the port reaches every actor.
    #[arg(long)]
    no_auth: bool,
    #[command(flatten)]
    timeout: crate::cli::TimeoutArg,
    /// Put an actor to sleep after this many seconds without a request.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    idle_timeout: f64,
    /// Close a stream (and roll back its transaction) after this many
    /// seconds without a request.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    stream_timeout: f64,
    /// How long a request waits while another stream holds its actor (an
    /// open transaction) before it fails with SQLITE_BUSY.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    busy_timeout: f64,
    /// At most this many actors awake at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_awake: usize,
    /// At most this many streams open at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_streams: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    max_request_bytes: usize,
    /// Largest response body, in bytes (about): one statement's rows are
    /// capped at it, and once a response has reached it the request's later
    /// statements fail with RESPONSE_TOO_LARGE without running.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    max_response_bytes: usize,
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("--{flag} {value} is not a number of seconds"))
}

/// What every request handler shares.
struct Server {
    manager: Manager,
    auth: Auth,
    streams: Streams,
    busy_timeout: Duration,
    session_timeout: Duration,
    max_request_bytes: usize,
    max_response_bytes: usize,
    metrics: PrometheusHandle,
}

pub(crate) async fn run(args: ServeArgs, metrics: PrometheusHandle) -> Result<std::process::ExitCode> {
    let auth = match (&args.auth_file, args.no_auth) {
        (Some(path), false) => Auth::from_file(path)?,
        (None, true) => Auth::open(),
        _ => bail!("give --auth-file PATH, or --no-auth for a server anyone who reaches it may use"),
    };
    let call_timeout = args.timeout.get()?;
    let stream_timeout = seconds("stream-timeout", args.stream_timeout)?;
    let limits = Limits { call_timeout, max_result_bytes: args.max_response_bytes.min(Limits::default().max_result_bytes), ..Default::default() };
    let lease = wasqlite::LeaseConfig { owner: Some(format!("wasqlite-serve-{}", std::process::id())), ..Default::default() };
    let kv = wasqlite::kv::open_store(&args.store).with_context(|| format!("opening the store {}", args.store))?;
    let host = Host::with_config(kv, HostConfig { limits, lease, ..Default::default() }).context("starting the WebAssembly host")?;
    let manager_config =
        ManagerConfig { idle_timeout: seconds("idle-timeout", args.idle_timeout)?, max_awake: args.max_awake, ..Default::default() };
    let manager = Manager::new(host, manager_config)?;
    let server = Arc::new(Server {
        manager: manager.clone(),
        auth,
        streams: Streams::new(stream_timeout, args.max_streams),
        busy_timeout: seconds("busy-timeout", args.busy_timeout)?,
        // Longer than the stream's own timeout, so that the stream, not the
        // manager, ends it: ending a stream may have to sleep its actor.
        session_timeout: stream_timeout * 2 + Duration::from_secs(5),
        max_request_bytes: args.max_request_bytes,
        max_response_bytes: args.max_response_bytes,
        metrics,
    });
    describe_metrics();

    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let sweeper = tokio::spawn(sweep_streams(Arc::downgrade(&server), stream_timeout));
    let app = axum::Router::new().fallback(route).with_state(server.clone());
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving HTTP")?;

    // No request is running now: end every stream (rolling back open
    // transactions), then put every actor to sleep.
    sweeper.abort();
    for stream in server.streams.drain() {
        finish(stream).await;
    }
    manager.shutdown().await.context("putting the actors to sleep at shutdown")?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn sweep_streams(server: std::sync::Weak<Server>, timeout: Duration) {
    let mut tick = tokio::time::interval((timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else { return };
        for stream in server.streams.expired() {
            metrics::counter!("wasqlite_serve_streams_expired_total").increment(1);
            tokio::spawn(finish(stream));
        }
        metrics::gauge!("wasqlite_serve_streams").set(server.streams.open() as f64);
    }
}

fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("wasqlite_serve_requests_total", "HTTP requests to the Hrana endpoints, by endpoint and status.");
    describe_histogram!("wasqlite_serve_request_seconds", Unit::Seconds, "Hrana requests from the body read to the response, by endpoint.");
    describe_counter!("wasqlite_serve_busy_total", "Requests that waited past the busy timeout for an actor another stream held.");
    describe_counter!("wasqlite_serve_streams_expired_total", "Streams closed after going unused past the stream timeout.");
    describe_gauge!("wasqlite_serve_streams", "Open Hrana streams.");
}

/// A Hrana error as an HTTP response.
fn error_response(status: StatusCode, error: HranaError) -> Response {
    json_response(status, serde_json::to_vec(&error).unwrap_or_default())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[derive(Clone, Copy)]
enum Endpoint {
    Pipeline,
    Cursor,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Pipeline => "pipeline",
            Endpoint::Cursor => "cursor",
        }
    }
}

async fn route(State(server): State<Arc<Server>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    let endpoint = match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => return (StatusCode::OK, "ok\n").into_response(),
        (&Method::GET, ["metrics"]) => return server.metrics.render().into_response(),
        (_, [.., "v3-protobuf"] | [.., "v3-protobuf", _]) => {
            return error_response(
                StatusCode::NOT_FOUND,
                HranaError::new("PROTOCOL_NOT_SUPPORTED", "this server speaks Hrana over HTTP in JSON (v2, v3), not v3-protobuf"),
            );
        }
        (&Method::GET, [.., "v2" | "v3"]) => return StatusCode::OK.into_response(),
        (&Method::POST, [_, "v2" | "v3", "pipeline"]) => Endpoint::Pipeline,
        (&Method::POST, [_, "v3", "cursor"]) => Endpoint::Cursor,
        (&Method::POST, ["v2" | "v3", "pipeline" | "cursor"]) => {
            return error_response(
                StatusCode::NOT_FOUND,
                HranaError::new("ACTOR_MISSING", "the URL names no actor: give the client http://HOST:PORT/ACTOR/ (with the trailing slash)"),
            );
        }
        _ => {
            return error_response(
                StatusCode::NOT_FOUND,
                HranaError::new("NOT_FOUND", format!("{method} {path} is not an endpoint of this server (Hrana over HTTP: POST /ACTOR/v2/pipeline, /ACTOR/v3/pipeline, /ACTOR/v3/cursor)")),
            );
        }
    };
    let actor = percent_encoding::percent_decode_str(segments[0]).decode_utf8_lossy().into_owned();
    let started = Instant::now();
    // A task of its own, so that a client hanging up cannot cut a request
    // off between taking its stream out and parking it again.
    let task = tokio::spawn({
        let server = server.clone();
        async move { serve_hrana(&server, endpoint, &actor, request).await }
    });
    let response = match task.await {
        Ok(Ok(response)) => response,
        Ok(Err((status, error))) => error_response(status, error),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, HranaError::new("INTERNAL", format!("the request failed: {e}"))),
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!("wasqlite_serve_requests_total", "endpoint" => endpoint.label(), "status" => status).increment(1);
    metrics::histogram!("wasqlite_serve_request_seconds", "endpoint" => endpoint.label()).record(started.elapsed().as_secs_f64());
    response
}

type Failure = (StatusCode, HranaError);

async fn serve_hrana(server: &Arc<Server>, endpoint: Endpoint, actor: &str, request: Request) -> Result<Response, Failure> {
    let actor = ActorId::new(actor).map_err(|e| (StatusCode::NOT_FOUND, hrana_error(&e)))?;
    let credential = server
        .auth
        .check(&actor, request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
        .map_err(|why| (StatusCode::UNAUTHORIZED, HranaError::new("UNAUTHORIZED", why)))?;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            HranaError::new("REQUEST_TOO_LARGE", format!("the request body is larger than {} bytes (--max-request-bytes)", server.max_request_bytes)),
        )
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > server.max_request_bytes) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(request.into_body(), server.max_request_bytes).await.map_err(|_| too_large())?;
    let bad_body = |e: serde_json::Error| (StatusCode::BAD_REQUEST, HranaError::new("PROTOCOL_ERROR", format!("the request body is not a Hrana request: {e}")));
    match endpoint {
        Endpoint::Pipeline => {
            let request: PipelineRequest = serde_json::from_slice(&body).map_err(bad_body)?;
            let stream = server.stream(request.baton.as_deref(), actor, credential)?;
            let (answered, baton) = server.run(stream, request.requests).await;
            let response = PipelineResponse { baton, base_url: None, results: answered.results };
            Ok(json_response(StatusCode::OK, serde_json::to_vec(&response).unwrap_or_default()))
        }
        Endpoint::Cursor => {
            let request: CursorRequest = serde_json::from_slice(&body).map_err(bad_body)?;
            let stream = server.stream(request.baton.as_deref(), actor, credential)?;
            let (answered, baton) = server.run(stream, vec![StreamRequest::Batch { batch: request.batch }]).await;
            Ok(json_response(StatusCode::OK, cursor_body(CursorResponse { baton, base_url: None }, answered)))
        }
    }
}

/// A cursor's response: its head, then the batch's entries, one JSON
/// document per line. The batch has run to its end by now; the response cap
/// bounds what it holds.
fn cursor_body(head: CursorResponse, mut answered: Answered) -> Vec<u8> {
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    let mut line = |entry: &CursorEntry| {
        out.push(b'\n');
        out.extend(serde_json::to_vec(entry).unwrap_or_default());
    };
    match answered.results.pop() {
        Some(StreamResult::Ok { response: StreamResponse::Batch { result } }) => {
            for (step, (ok, error)) in result.step_results.iter().zip(&result.step_errors).enumerate() {
                match (ok, error) {
                    (Some(r), _) => {
                        line(&CursorEntry::StepBegin { step, cols: &r.cols });
                        for row in r.rows.iter() {
                            line(&CursorEntry::Row { row: row.values() });
                        }
                        line(&CursorEntry::StepEnd { affected_row_count: r.affected_row_count, last_insert_rowid: r.last_insert_rowid });
                    }
                    (None, Some(error)) => line(&CursorEntry::StepError { step, error }),
                    (None, None) => {}
                }
            }
        }
        Some(StreamResult::Error { error }) => line(&CursorEntry::Error { error: &error }),
        _ => line(&CursorEntry::Error { error: &HranaError::new("INTERNAL", "the batch gave no result") }),
    }
    out.push(b'\n');
    out
}

impl Server {
    fn stream(&self, baton: Option<&str>, actor: ActorId, credential: Credential) -> Result<Stream, Failure> {
        match baton {
            None => self.streams.start(actor, credential).map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e)),
            Some(baton) => self.streams.resume(baton, &actor, credential).map_err(|e| (StatusCode::BAD_REQUEST, e)),
        }
    }

    /// Runs a request's stream requests, then parks the stream under a new
    /// baton, or ends it when a request closed it.
    async fn run(&self, mut stream: Stream, requests: Vec<StreamRequest>) -> (Answered, Option<String>) {
        if requests.iter().flat_map(StreamRequest::inline_sql).any(changes_connection) {
            stream.changed_connection = true;
        }
        let answered = self.answer(&mut stream, requests).await;
        if answered.closed {
            finish(stream).await;
            return (answered, None);
        }
        (answered, Some(self.streams.park(stream)))
    }

    async fn answer(&self, stream: &mut Stream, requests: Vec<StreamRequest>) -> Answered {
        let mut budget = PipelineState::new(self.max_response_bytes, stream.read_only);
        let mut unavailable = HranaError::new("INTERNAL", "the actor was not reached");
        if stream.session.is_none() && requests.iter().any(StreamRequest::needs_actor) {
            let waited = tokio::time::timeout(self.busy_timeout, self.manager.session(stream.actor.as_str(), self.session_timeout)).await;
            match waited {
                Ok(Ok(session)) => stream.session = Some(session),
                Ok(Err(e)) => unavailable = hrana_error(&e),
                Err(_) => {
                    metrics::counter!("wasqlite_serve_busy_total").increment(1);
                    unavailable = HranaError::new(
                        "SQLITE_BUSY",
                        format!(
                            "actor {} stayed busy for the whole busy timeout of {:?}: another stream holds it (an open transaction), or every awake slot (--max-awake) is held",
                            stream.actor, self.busy_timeout
                        ),
                    );
                }
            }
        }
        let Some(session) = stream.session.as_mut() else {
            return answer(None, &unavailable, requests, &mut stream.stored, &mut budget).await;
        };
        let closes = requests.iter().any(|r| matches!(r, StreamRequest::Close));
        let count = requests.len();
        let stored = std::mem::take(&mut stream.stored);
        let rowid = stream.last_insert_rowid;
        let ran = session
            .with(async move |actor: &mut Actor| {
                let mut stored = stored;
                // The connection is shared between streams: this one must
                // see its own last insert, not another stream's. The host
                // keeps the connection's, so only a change costs a call.
                let seen = match actor.last_insert_rowid().await {
                    Ok(current) if current == rowid => Ok(()),
                    _ => actor.set_last_insert_rowid(rowid).await,
                };
                let answered = match seen {
                    Ok(()) => answer(Some(&mut *actor), &unavailable, requests, &mut stored, &mut budget).await,
                    Err(e) => answer(None, &hrana_error(&e), requests, &mut stored, &mut budget).await,
                };
                // A read-only transaction that ended other than by a
                // statement (a failure rolled it back).
                let ended = budget.end_read_only_if_done(actor).await;
                let state = match (ended, actor.is_autocommit().await) {
                    (Ok(()), Ok(autocommit)) => actor.last_insert_rowid().await.map(|rowid| (autocommit, rowid)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                Ok::<_, wasqlite::Error>((answered, stored, state, budget.read_only))
            })
            .await;
        match ran {
            Ok((answered, stored, state, read_only)) => {
                stream.stored = stored;
                stream.read_only = read_only;
                match state {
                    Ok((autocommit, rowid)) => {
                        stream.last_insert_rowid = rowid;
                        if autocommit && !stream.changed_connection {
                            stream.session = None;
                        }
                    }
                    Err(_) => stream.let_go().await,
                }
                answered
            }
            // The session ended before the requests ran (its actor was put
            // to sleep after a failure): none of them ran.
            Err(e) => {
                stream.let_go().await;
                let error = hrana_error(&e);
                let results = (0..count).map(|_| StreamResult::Error { error: error.clone() }).collect();
                Answered { results, closed: closes }
            }
        }
    }
}

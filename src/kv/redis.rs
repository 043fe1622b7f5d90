//! `RedisKv`: actors' keys in a Redis Cluster (or one Redis server), shared
//! by every host that reaches it, so that an actor can sleep on one machine
//! and wake on another.
//!
//! # Layout
//!
//! Every key of actor `A` carries the hash tag `{A}`, so all of them live in
//! one hash slot, on one master, and one Lua script may touch them all
//! atomically. `P` is the store's prefix (`wasqlite` unless configured).
//!
//! ```text
//! P:{A}:v     hash        field: the actor's key, value: its value
//! P:{A}:k     sorted set  every field of P:{A}:v, score 0: key order for
//!                         list_prefix and delete_range (ZRANGEBYLEX)
//! P:{A}:own   hash        gen (the fence generation), owner, until (lease
//!                         end, in the master's clock, ms)
//! P:actors    set         every actor ever claimed or written
//! ```
//!
//! `P:actors` lives in a slot of its own, so it cannot change in the same
//! atomic step as an actor's keys. It is added to alongside each claim (and
//! each unclaimed write) and never shrinks; `list_actors` keeps the ids whose
//! `P:{A}:k` exists. `P:{A}:own` survives `delete_actor`, as generations
//! must (see `kv::ownership`): a deleted actor costs two small keys.
//!
//! # Atomicity and cost
//!
//! Each write is one script on the actor's master, which checks the fence
//! before its first write, so a rejected batch changes nothing. A script's
//! cost is that of the keys it names or deletes, never the actor's size:
//! `delete_actor` UNLINKs (freed in the background), and `list_prefix`
//! pages through the sorted set. A `delete_range` over many keys is one
//! script as long as the keys it deletes (the VFS deletes ranges when a
//! file shrinks or goes away).
//!
//! # Durability
//!
//! A write is acknowledged when its master applied it; with
//! `appendfsync always` in the server's configuration that survives a
//! crash of the master process. With [`RedisOptions::replicas`] above 0,
//! each write is followed, in the same pipeline to the same master, by
//! `WAIT replicas timeout`; fewer acknowledgements within the timeout fail
//! the call (the write may still have landed). Replication stays
//! asynchronous: Redis 7.0 can lose a write that WAIT acknowledged if the
//! master fails before the replica that acknowledged it is promoted, and it
//! has no WAITAOF to wait for replicas' disks. SECURITY.md and README say
//! what that means for a deployment.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, Script, Value};
use tokio::sync::OnceCell;

use super::{ClaimRequest, Claimed, Fence, KvEntry, KvError, KvLimits, KvStore, Takeover};
use crate::actor_id::ActorId;

/// How a [`RedisKv`] names and writes its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Starts every key, so that several stores can share one cluster.
    pub prefix: String,
    /// Replicas that must acknowledge each write (`WAIT`); 0: none.
    pub replicas: u32,
    /// How long a write waits for those replicas.
    pub replica_timeout: Duration,
    /// How long a call waits for a connection or an answer before it fails
    /// (the host's own `kv_timeout` applies on top).
    pub response_timeout: Duration,
    /// For `rediss://`: a PEM file of the certificate authorities to trust
    /// instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "wasqlite".into(),
            replicas: 0,
            replica_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// What one script or command may carry: Lua's `unpack` stops near 8,000
/// values, and a script blocks its shard for as long as it runs.
const LIMITS: KvLimits = KvLimits {
    max_key_size: 2 * 1024,
    max_value_size: 512 * 1024,
    max_keys_per_batch: 512,
    max_batch_bytes: 4 << 20,
};

/// Entries per page of `list_prefix`.
const LIST_PAGE: usize = 512;

/// Every write script starts here: `KEYS[3]` is the ownership hash,
/// `ARGV[1]` the writer's fence.
const FENCE_CHECK: &str = r"
local gen = tonumber(redis.call('HGET', KEYS[3], 'gen') or '0')
if gen ~= tonumber(ARGV[1]) then return redis.error_reply('FENCED ' .. gen) end
";

const PUT: &str = r"
for i = 2, #ARGV, 400 do
  local last = math.min(i + 399, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  local members = {}
  for j = i, last, 2 do
    members[#members + 1] = 0
    members[#members + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[2], unpack(members))
end
return 1
";

const DELETE: &str = r"
for i = 2, #ARGV, 400 do
  local last = math.min(i + 399, #ARGV)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, last))
  redis.call('ZREM', KEYS[2], unpack(ARGV, i, last))
end
return 1
";

const DELETE_RANGE: &str = r"
local doomed = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. ARGV[2], '(' .. ARGV[3])
for i = 1, #doomed, 400 do
  redis.call('HDEL', KEYS[1], unpack(doomed, i, math.min(i + 399, #doomed)))
end
redis.call('ZREMRANGEBYLEX', KEYS[2], '[' .. ARGV[2], '(' .. ARGV[3])
return 1
";

const DELETE_ACTOR: &str = r"
redis.call('UNLINK', KEYS[1], KEYS[2])
return 1
";

/// KEYS: own, v. ARGV: owner, ttl ms, force (1/0), keys to read...
/// Returns {0, holder, ms left} when another owner's lease lives, else
/// {1, generation, values}.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'gen', 'owner', 'until')
if ARGV[3] ~= '1' and held[2] and held[2] ~= ARGV[1] and tonumber(held[3]) > now then
  return {0, held[2], tonumber(held[3]) - now}
end
local gen = tonumber(held[1] or '0') + 1
redis.call('HSET', KEYS[1], 'gen', gen, 'owner', ARGV[1], 'until', now + tonumber(ARGV[2]))
local values = {}
if #ARGV > 3 then values = redis.call('HMGET', KEYS[2], unpack(ARGV, 4, #ARGV)) end
return {1, gen, values}
";

/// KEYS: own. ARGV: fence, owner, ttl ms.
const RENEW: &str = r"
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen ~= tonumber(ARGV[1]) then return redis.error_reply('FENCED ' .. gen) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'until', now + tonumber(ARGV[3]))
return 1
";

/// KEYS: own. ARGV: fence.
const RELEASE: &str = r"
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen == tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], 'owner', 'until') end
return 1
";

/// KEYS: k, v. ARGV: first key (inclusive), end (exclusive, or empty for
/// none), count. Returns keys and values interleaved.
const LIST: &str = r"
local hi = '+'
if ARGV[2] ~= '' then hi = '(' .. ARGV[2] end
local keys = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1], hi, 'LIMIT', 0, tonumber(ARGV[3]))
if #keys == 0 then return {} end
local values = redis.call('HMGET', KEYS[2], unpack(keys))
local out = {}
for i = 1, #keys do
  out[#out + 1] = keys[i]
  out[#out + 1] = values[i]
end
return out
";

struct Scripts {
    put: Script,
    delete: Script,
    delete_range: Script,
    delete_actor: Script,
    claim: Script,
    renew: Script,
    release: Script,
    list: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let write = |body: &str| Script::new(&format!("{FENCE_CHECK}{body}"));
        Scripts {
            put: write(PUT),
            delete: write(DELETE),
            delete_range: write(DELETE_RANGE),
            delete_actor: write(DELETE_ACTOR),
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            list: Script::new(LIST),
        }
    }
}

/// A `KvStore` in a Redis Cluster.
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), wasqlite::Error> {
/// use std::sync::Arc;
/// use wasqlite::{Host, kv::RedisKv};
///
/// let kv = RedisKv::open("redis://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000")?;
/// let host = Host::new(Arc::new(kv))?;
/// let mut actor = host.wake("room-1").await?;
/// actor.execute_batch("CREATE TABLE IF NOT EXISTS t(x)").await?;
/// actor.sleep().await?;
/// # Ok(()) }
/// ```
pub struct RedisKv {
    client: ClusterClient,
    /// Connected on first use, so that opening a store needs no runtime.
    connection: OnceCell<ClusterConnection>,
    options: RedisOptions,
    nodes: String,
    scripts: Scripts,
    /// Actors this value has added to `P:actors` since it was opened.
    registered: Mutex<HashSet<ActorId>>,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv").field("nodes", &self.nodes).field("options", &self.options).finish_non_exhaustive()
    }
}

/// The generation in a script's `FENCED <generation>` error, however the
/// client wraps it (a pipeline's error quotes the code).
fn fenced(error: &redis::RedisError) -> Option<u64> {
    let text = error.to_string();
    let after = &text[text.find("FENCED")? + "FENCED".len()..];
    let digits = after.trim_start_matches(|c: char| !c.is_ascii_digit());
    digits.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn backend(what: &str, error: &redis::RedisError) -> KvError {
    KvError::Backend(format!("redis {what}: {error}"))
}

impl RedisKv {
    /// A store over the cluster that `url` names:
    /// `redis://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][?OPTIONS]`, or
    /// `rediss://` for TLS (the `redis-tls` feature). Options, `&`-separated:
    /// `prefix=P` (default `wasqlite`), `replicas=N` and
    /// `replica_timeout_ms=T` (`WAIT N T` after every write),
    /// `timeout_ms=T` (per call), `ca=PATH` (a PEM file of the authorities a
    /// `rediss://` store trusts). Any one reachable node is enough; the
    /// others are found from it. Nothing is connected until the first call.
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] naming what is wrong with the URL.
    pub fn open(url: &str) -> Result<RedisKv, KvError> {
        let (nodes, options) = parse_url(url)?;
        RedisKv::with_options(&nodes, options)
    }

    /// A store over `nodes` (each `redis://HOST:PORT`, with credentials if
    /// needed) with `options`.
    ///
    /// # Errors
    ///
    /// [`KvError::Backend`] when a node URL does not parse.
    pub fn with_options(nodes: &[String], options: RedisOptions) -> Result<RedisKv, KvError> {
        if nodes.is_empty() {
            return Err(KvError::Backend("a redis store needs at least one node".into()));
        }
        if options.prefix.is_empty() || options.prefix.contains(['{', '}']) {
            return Err(KvError::Backend(format!("redis key prefix {:?} must be non-empty and free of braces", options.prefix)));
        }
        // A write's answer includes its WAIT, which may take the whole
        // replica timeout: waiting less would turn "too few replicas" into a
        // bare timeout.
        let response_timeout = options.response_timeout.max(options.replica_timeout + Duration::from_secs(1));
        let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(options.response_timeout)
            .response_timeout(response_timeout);
        if nodes.iter().any(|n| n.starts_with("rediss://")) {
            builder = tls(builder, &options)?;
        } else if options.ca_file.is_some() {
            return Err(KvError::Backend("a CA file is for rediss:// stores; these nodes use redis://".into()));
        }
        // Node URLs may carry a password; messages name the nodes without it.
        let named: Vec<String> = nodes.iter().map(|n| without_password(n)).collect();
        let client = builder.build().map_err(|e| KvError::Backend(format!("redis nodes {}: {e}", named.join(","))))?;
        Ok(RedisKv {
            client,
            connection: OnceCell::new(),
            nodes: named.join(","),
            options,
            scripts: Scripts::new(),
            registered: Mutex::default(),
        })
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    async fn connection(&self) -> Result<ClusterConnection, KvError> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
            .map_err(|e| KvError::Backend(format!("connecting to redis cluster {}: {e}", self.nodes)))
    }

    fn key(&self, actor: &ActorId, part: &str) -> String {
        format!("{}:{{{}}}:{part}", self.options.prefix, actor.as_str())
    }

    fn registry(&self) -> String {
        format!("{}:actors", self.options.prefix)
    }

    /// Adds `actor` to the registry once per store value.
    async fn register(&self, actor: &ActorId) -> Result<(), KvError> {
        if self.registered.lock().unwrap_or_else(|p| p.into_inner()).contains(actor) {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let _: i64 = redis::cmd("SADD")
            .arg(self.registry())
            .arg(actor.as_str())
            .query_async(&mut connection)
            .await
            .map_err(|e| backend("registering the actor", &e))?;
        self.registered.lock().unwrap_or_else(|p| p.into_inner()).insert(actor.clone());
        Ok(())
    }

    /// EVALSHA of `script`, loading it first if the master lacks it.
    fn invocation(script: &Script, keys: &[String], args: Vec<Vec<u8>>) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
        for arg in args {
            cmd.arg(arg);
        }
        cmd
    }

    /// Runs a script that only reads or manages leases.
    async fn run(&self, what: &str, script: &Script, keys: &[String], args: Vec<Vec<u8>>) -> Result<Value, redis::RedisError> {
        let mut connection = self.connection().await.map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "connect", e.to_string())))?;
        let cmd = Self::invocation(script, keys, args);
        match cmd.query_async::<Value>(&mut connection).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                tracing::debug!("loading the {what} script into redis");
                script.load_async(&mut connection).await?;
                cmd.query_async(&mut connection).await
            }
            other => other,
        }
    }

    /// Runs a fenced write script on the actor's master, then, in the same
    /// pipeline, WAITs for the configured replicas.
    async fn write(&self, what: &'static str, script: &Script, actor: &ActorId, fence: Fence, args: Vec<Vec<u8>>) -> Result<(), KvError> {
        if fence == Fence::UNCLAIMED {
            self.register(actor).await?;
        }
        let keys = [self.key(actor, "v"), self.key(actor, "k"), self.key(actor, "own")];
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(fence.generation().to_string().into_bytes());
        all.extend(args);
        let mut pipe = Pipeline::new();
        pipe.add_command(Self::invocation(script, &keys, all));
        if self.options.replicas > 0 {
            let timeout = self.options.replica_timeout.as_millis().max(1) as u64;
            pipe.add_command(redis::cmd("WAIT").arg(self.options.replicas).arg(timeout).to_owned());
        }
        let mut connection = self.connection().await?;
        let mut answer: Result<Vec<Value>, _> = pipe.query_async(&mut connection).await;
        if matches!(&answer, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)) {
            // NOSCRIPT means the script did not run; load it and send again.
            script.load_async(&mut connection).await.map_err(|e| backend(what, &e))?;
            answer = pipe.query_async(&mut connection).await;
        }
        let answer = answer.map_err(|e| match fenced(&e) {
            Some(current) => KvError::OwnershipLost { held: fence.generation(), current },
            None => backend(what, &e),
        })?;
        if self.options.replicas > 0 {
            let acked = match answer.get(1) {
                Some(Value::Int(n)) => *n,
                other => return Err(KvError::Backend(format!("redis {what}: WAIT answered {other:?}"))),
            };
            if acked < i64::from(self.options.replicas) {
                return Err(KvError::Backend(format!(
                    "redis {what}: {acked} of {} replicas acknowledged the write within {:?}; it reached the master and may be lost if the master fails",
                    self.options.replicas, self.options.replica_timeout
                )));
            }
        }
        Ok(())
    }
}

/// TLS for every node: rustls with the ring provider, trusting the CA file
/// if one is given, the system's authorities otherwise.
#[cfg(feature = "redis-tls")]
fn tls(builder: redis::cluster::ClusterClientBuilder, options: &RedisOptions) -> Result<redis::cluster::ClusterClientBuilder, KvError> {
    // The process may have installed a provider of its own; that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = &options.ca_file else { return Ok(builder) };
    let root_cert = std::fs::read(path).map_err(|e| KvError::Backend(format!("reading CA file {}: {e}", path.display())))?;
    Ok(builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) }))
}

#[cfg(not(feature = "redis-tls"))]
fn tls(_: redis::cluster::ClusterClientBuilder, _: &RedisOptions) -> Result<redis::cluster::ClusterClientBuilder, KvError> {
    Err(KvError::Backend("rediss:// stores need wasqlite built with the `redis-tls` feature".into()))
}

fn bytes_of(value: Value, what: &str) -> Result<Option<Bytes>, KvError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(Bytes::from(b))),
        other => Err(KvError::Backend(format!("redis {what} answered {other:?} where a value belongs"))),
    }
}

fn int_of(value: &Value, what: &str) -> Result<i64, KvError> {
    match value {
        Value::Int(n) => Ok(*n),
        other => Err(KvError::Backend(format!("redis {what} answered {other:?} where a number belongs"))),
    }
}

/// The first key past every key that starts with `prefix`, or `None` when
/// no key is (the prefix is all 0xff bytes, or empty).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[async_trait]
impl KvStore for RedisKv {
    fn backend_name(&self) -> &'static str {
        "redis"
    }
    fn limits(&self) -> KvLimits {
        LIMITS
    }

    async fn get(&self, actor: &ActorId, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        LIMITS.check_keys(std::iter::once(key))?;
        let mut connection = self.connection().await?;
        let value: Value =
            redis::cmd("HGET").arg(self.key(actor, "v")).arg(key).query_async(&mut connection).await.map_err(|e| backend("get", &e))?;
        bytes_of(value, "get")
    }

    async fn batch_get(&self, actor: &ActorId, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, KvError> {
        LIMITS.check_keys(keys.iter().map(|k| &k[..]))?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection().await?;
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(actor, "v"));
        for key in keys {
            cmd.arg(&key[..]);
        }
        let values: Vec<Value> = cmd.query_async(&mut connection).await.map_err(|e| backend("batch_get", &e))?;
        values.into_iter().map(|v| bytes_of(v, "batch_get")).collect()
    }

    async fn batch_put(&self, actor: &ActorId, fence: Fence, entries: &[KvEntry]) -> Result<(), KvError> {
        LIMITS.check_put(entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        let args = entries.iter().flat_map(|(k, v)| [k.to_vec(), v.to_vec()]).collect();
        self.write("batch_put", &self.scripts.put, actor, fence, args).await
    }

    async fn batch_delete(&self, actor: &ActorId, fence: Fence, keys: &[Bytes]) -> Result<(), KvError> {
        LIMITS.check_keys(keys.iter().map(|k| &k[..]))?;
        if keys.is_empty() {
            return Ok(());
        }
        let args = keys.iter().map(|k| k.to_vec()).collect();
        self.write("batch_delete", &self.scripts.delete, actor, fence, args).await
    }

    async fn delete_range(&self, actor: &ActorId, fence: Fence, start: &[u8], end: &[u8]) -> Result<(), KvError> {
        if start >= end {
            // Nothing to delete, but a stale fence still hears about it.
            return self.write("delete_range", &self.scripts.delete, actor, fence, Vec::new()).await;
        }
        self.write("delete_range", &self.scripts.delete_range, actor, fence, vec![start.to_vec(), end.to_vec()]).await
    }

    async fn list_prefix(&self, actor: &ActorId, prefix: &[u8]) -> Result<Vec<KvEntry>, KvError> {
        let keys = [self.key(actor, "k"), self.key(actor, "v")];
        let end = prefix_end(prefix).unwrap_or_default();
        let mut from = prefix.to_vec();
        let mut out = Vec::new();
        loop {
            let args = vec![from.clone(), end.clone(), LIST_PAGE.to_string().into_bytes()];
            let page = match self.run("list", &self.scripts.list, &keys, args).await.map_err(|e| backend("list_prefix", &e))? {
                Value::Array(items) => items,
                other => return Err(KvError::Backend(format!("redis list_prefix answered {other:?}"))),
            };
            let full = page.len() == 2 * LIST_PAGE;
            let mut items = page.into_iter();
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                let key = bytes_of(key, "list_prefix")?.unwrap_or_default();
                // A key listed with no value was deleted between the two
                // reads of the script: impossible inside one script, so the
                // store is inconsistent.
                let value = bytes_of(value, "list_prefix")?
                    .ok_or_else(|| KvError::Backend(format!("redis list_prefix: key {key:?} has no value")))?;
                out.push((key, value));
            }
            if !full {
                return Ok(out);
            }
            let last = &out.last().expect("a full page").0;
            from = last.to_vec();
            from.push(0);
        }
    }

    async fn delete_actor(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        self.write("delete_actor", &self.scripts.delete_actor, actor, fence, Vec::new()).await
    }

    async fn list_actors(&self) -> Result<Vec<ActorId>, KvError> {
        let connection = self.connection().await?;
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.registry())
            .query_async(&mut connection.clone())
            .await
            .map_err(|e| backend("list_actors", &e))?;
        // An id that does not parse was not written by this library.
        let candidates: Vec<ActorId> = members.iter().filter_map(|m| ActorId::new(m).ok()).collect();
        // Each actor's keys sit in a slot of their own, so the checks cannot
        // share one pipeline; they run concurrently instead, a wave at a time.
        let mut ids = Vec::new();
        for wave in candidates.chunks(LIST_PAGE) {
            let mut checks = tokio::task::JoinSet::new();
            for id in wave {
                let (mut connection, key, id) = (connection.clone(), self.key(id, "k"), id.clone());
                checks.spawn(async move {
                    let exists: Result<i64, _> = redis::cmd("EXISTS").arg(key).query_async(&mut connection).await;
                    (id, exists)
                });
            }
            while let Some(checked) = checks.join_next().await {
                let (id, exists) = checked.map_err(|e| KvError::Backend(format!("redis list_actors: a check failed: {e}")))?;
                if exists.map_err(|e| backend("list_actors", &e))? == 1 {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    async fn claim(&self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Claimed, KvError> {
        LIMITS.check_keys(request.read.iter().map(|k| &k[..]))?;
        let keys = [self.key(actor, "own"), self.key(actor, "v")];
        let mut args = vec![
            request.owner.as_bytes().to_vec(),
            request.ttl.as_millis().max(1).to_string().into_bytes(),
            if request.takeover == Takeover::Force { b"1".to_vec() } else { b"0".to_vec() },
        ];
        args.extend(request.read.iter().map(|k| k.to_vec()));
        // The registry sits in another slot; it is written alongside, not in
        // the same step, which is why list_actors checks each entry.
        let (answer, registered) =
            tokio::join!(self.run("claim", &self.scripts.claim, &keys, args), self.register(actor));
        registered?;
        let answer = match answer.map_err(|e| backend("claim", &e))? {
            Value::Array(items) => items,
            other => return Err(KvError::Backend(format!("redis claim answered {other:?}"))),
        };
        match answer.as_slice() {
            [granted, holder, left] if int_of(granted, "claim")? == 0 => {
                let owner = match holder {
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                };
                let remaining = Duration::from_millis(int_of(left, "claim")?.max(0) as u64);
                Err(KvError::Owned { owner, remaining })
            }
            [_, generation, Value::Array(values)] => {
                let fence = Fence::from_generation(int_of(generation, "claim")? as u64);
                let values = values.iter().cloned().map(|v| bytes_of(v, "claim")).collect::<Result<_, _>>()?;
                Ok(Claimed { fence, values })
            }
            other => Err(KvError::Backend(format!("redis claim answered {other:?}"))),
        }
    }

    async fn renew(&self, actor: &ActorId, fence: Fence, owner: &str, ttl: Duration) -> Result<(), KvError> {
        let keys = [self.key(actor, "own")];
        let args = vec![
            fence.generation().to_string().into_bytes(),
            owner.as_bytes().to_vec(),
            ttl.as_millis().max(1).to_string().into_bytes(),
        ];
        self.run("renew", &self.scripts.renew, &keys, args).await.map(drop).map_err(|e| match fenced(&e) {
            Some(current) => KvError::OwnershipLost { held: fence.generation(), current },
            None => backend("renew", &e),
        })
    }

    async fn release(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        let keys = [self.key(actor, "own")];
        let args = vec![fence.generation().to_string().into_bytes()];
        self.run("release", &self.scripts.release, &keys, args).await.map(drop).map_err(|e| backend("release", &e))
    }
}

/// `node` with any password in it replaced by `***`.
fn without_password(node: &str) -> String {
    match (node.split_once("://"), node.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (credentials, host) = rest.rsplit_once('@').expect("has @");
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        _ => node.to_owned(),
    }
}

/// Splits a store URL into node URLs and options.
fn parse_url(url: &str) -> Result<(Vec<String>, RedisOptions), KvError> {
    let bad = |why: String| KvError::Backend(format!("redis store URL {url:?}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected redis://HOST:PORT[,HOST:PORT...]".into()))?;
    if scheme != "redis" && scheme != "rediss" {
        return Err(bad(format!("unknown scheme {scheme:?}; expected redis or rediss")));
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.trim_end_matches('/');
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = host.rsplit_once(':').ok_or_else(|| bad(format!("node {host:?} has no port")))?;
        if name.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad(format!("node {host:?} is not HOST:PORT")));
        }
        let auth = credentials.map(|c| format!("{c}@")).unwrap_or_default();
        nodes.push(format!("{scheme}://{auth}{host}"));
    }
    let mut options = RedisOptions::default();
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| bad(format!("option {pair:?} has no value")))?;
        match name {
            "prefix" => options.prefix = value.to_owned(),
            "replicas" => options.replicas = value.parse().map_err(|_| bad(format!("replicas={value:?} is not a count")))?,
            "replica_timeout_ms" => {
                options.replica_timeout = Duration::from_millis(value.parse().map_err(|_| bad(format!("{pair:?} is not a number")))?)
            }
            "timeout_ms" => {
                options.response_timeout = Duration::from_millis(value.parse().map_err(|_| bad(format!("{pair:?} is not a number")))?)
            }
            "ca" => options.ca_file = Some(value.into()),
            _ => return Err(bad(format!("unknown option {name:?}; known: prefix, replicas, replica_timeout_ms, timeout_ms, ca"))),
        }
    }
    Ok((nodes, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_every_node_and_option() {
        let (nodes, options) = parse_url("redis://:secret@127.0.0.1:7000,127.0.0.1:7001/?prefix=t1&replicas=1").unwrap();
        assert_eq!(nodes, ["redis://:secret@127.0.0.1:7000", "redis://:secret@127.0.0.1:7001"]);
        assert_eq!((options.prefix.as_str(), options.replicas), ("t1", 1));
        assert_eq!(without_password(&nodes[0]), "redis://:***@127.0.0.1:7000");
        assert_eq!(without_password("redis://h:1"), "redis://h:1");
        for bad in ["redis://", "redis://host", "http://h:1", "redis://h:1?replicas=x", "redis://h:1?colour=red", "redis://h:99999"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefix_ends_are_the_next_key_past_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}

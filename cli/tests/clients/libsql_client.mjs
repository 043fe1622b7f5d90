// The real npm @libsql/client against `wasqlite serve` (run by
// cli/tests/serve_clients.rs; by hand:
//   WASQLITE_TEST_CLIENTS=DIR node libsql_client.mjs http://127.0.0.1:PORT ACTOR_A=TOKEN_A ACTOR_B=TOKEN_B
// ). Each check asserts; the first failure prints what was expected and
// what came back, and the script exits 1.
//
// Environment: WASQLITE_TEST_CLIENTS (or the first NODE_PATH entry's
// parent) holds node_modules/@libsql/client (scripts/install-test-clients.sh);
// WASQLITE_IDLE_TIMEOUT (seconds, optional) turns on the sleep/wake check,
// which polls GET /metrics; WASQLITE_GLOBAL_TOKEN (optional) is sent to
// /metrics.
import { createRequire } from "node:module";
import { join, dirname } from "node:path";

const clientsDir = process.env.WASQLITE_TEST_CLIENTS
  ?? (process.env.NODE_PATH ? dirname(process.env.NODE_PATH.split(":")[0]) : undefined);
if (!clientsDir) fail("set WASQLITE_TEST_CLIENTS (or NODE_PATH) to the directory of scripts/install-test-clients.sh");
// ESM ignores NODE_PATH, so the client is resolved from the install dir.
const require = createRequire(join(clientsDir, "resolve-from-here.js"));
const { createClient, LibsqlError } = require("@libsql/client");

const [root, specA, specB] = process.argv.slice(2);
if (!root || !specA || !specB) fail("usage: node libsql_client.mjs BASE_URL ACTOR_A=TOKEN_A ACTOR_B=TOKEN_B");
const [actorA, tokenA] = splitSpec(specA);
const [actorB, tokenB] = splitSpec(specB);
const base = root.replace(/\/+$/, "");

let step = "start";
function fail(message) {
  console.error(`libsql_client.mjs FAILED at [${step}]: ${message}`);
  process.exit(1);
}
function splitSpec(spec) {
  const i = spec.indexOf("=");
  if (i <= 0) fail(`expected ACTOR=TOKEN, got ${JSON.stringify(spec)}`);
  return [spec.slice(0, i), spec.slice(i + 1)];
}
function show(v) {
  return JSON.stringify(v, (_, x) =>
    typeof x === "bigint" ? `${x}n` : x instanceof ArrayBuffer ? `ArrayBuffer(${hex(new Uint8Array(x))})` : x);
}
function hex(bytes) {
  return Buffer.from(bytes).toString("hex");
}
function eq(actual, expected, what) {
  if (actual instanceof ArrayBuffer || expected instanceof ArrayBuffer) {
    const a = actual instanceof ArrayBuffer ? hex(new Uint8Array(actual)) : `not an ArrayBuffer: ${show(actual)}`;
    const e = expected instanceof ArrayBuffer ? hex(new Uint8Array(expected)) : hex(expected);
    if (a !== e) fail(`${what}: expected bytes ${e}, got ${a}`);
    return;
  }
  if (show(actual) !== show(expected) || typeof actual !== typeof expected) {
    fail(`${what}: expected ${show(expected)} (${typeof expected}), got ${show(actual)} (${typeof actual})`);
  }
}
function ok(cond, what) {
  if (!cond) fail(what);
}
async function check(name, fn) {
  step = name;
  try {
    await fn();
  } catch (e) {
    fail(`unexpected ${e?.name} code=${e?.code}: ${e?.message}${e?.cause ? ` (cause: ${e.cause.name}: ${e.cause.message})` : ""}`);
  }
  console.log(`ok - ${name}`);
}
/** Runs `fn`, which must throw a LibsqlError; returns it. */
async function rejects(fn, what) {
  try {
    const r = await fn();
    fail(`${what}: expected an error, got ${show(r)}`);
  } catch (e) {
    if (!(e instanceof LibsqlError)) fail(`${what}: expected a LibsqlError, got ${e?.name}: ${e?.message}`);
    console.log(`   ${what}: ${e.name} code=${e.code} extendedCode=${e.extendedCode} message=${JSON.stringify(e.message)}`);
    return e;
  }
}

// The trailing slash matters: the client resolves "v2/pipeline" against the
// URL, and without it the actor segment would be replaced.
const a = createClient({ url: `${base}/${actorA}/`, authToken: tokenA, intMode: "bigint" });
const b = createClient({ url: `${base}/${actorB}/`, authToken: tokenB, intMode: "bigint" });

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
const big = 2n ** 60n + 7n; // beyond 2^53: only exact as a bigint
const text = "héllo wörld ✓ 日本語 😀 \t\n\"quoted\" end";

await check("schema with declared types", async () => {
  await a.execute("DROP TABLE IF EXISTS t");
  const rs = await a.execute(
    "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, u TEXT UNIQUE)");
  eq(rs.rows.length, 0, "CREATE TABLE rows");
  eq(rs.columns.length, 0, "CREATE TABLE columns");
});

await check("execute with positional parameters of every type", async () => {
  const rs = await a.execute({
    sql: "INSERT INTO t (i, r, s, b, u) VALUES (?, ?, ?, ?, ?)",
    args: [big, 3.25, text, allBytes, null],
  });
  eq(rs.rowsAffected, 1, "rowsAffected of an INSERT");
  eq(rs.lastInsertRowid, 1n, "lastInsertRowid of the first INSERT");
  eq(rs.rows.length, 0, "rows of an INSERT");
});

await check("read back: values, columns, columnTypes", async () => {
  const rs = await a.execute("SELECT id, i, r, s, b, u, typeof(i) AS ti, typeof(r) AS tr, typeof(b) AS tb, length(b) AS lb FROM t WHERE id = 1");
  eq(rs.columns, ["id", "i", "r", "s", "b", "u", "ti", "tr", "tb", "lb"], "columns");
  eq(rs.columnTypes, ["INTEGER", "INTEGER", "REAL", "TEXT", "BLOB", "TEXT", "", "", "", ""], "columnTypes (decltype)");
  eq(rs.rows.length, 1, "row count");
  const row = rs.rows[0];
  eq(row.id, 1n, "id");
  eq(row.i, big, "integer beyond 2^53 (intMode bigint)");
  eq(row[1], big, "the same value by index");
  eq(row.r, 3.25, "float");
  eq(row.s, text, "unicode text");
  eq(row.b, allBytes.buffer, "BLOB round trip, all 256 byte values");
  eq(row.u, null, "null");
  eq([row.ti, row.tr, row.tb, row.lb], ["integer", "real", "blob", 256n], "SQL types as stored");
  eq(rs.rowsAffected, 0, "rowsAffected of a SELECT");
});

await check("blob given as ArrayBuffer, empty blob, and extreme integers", async () => {
  const buf = new Uint8Array([0xff, 0x00, 0x80, 0x7f]).buffer;
  const rs = await a.execute({
    sql: "SELECT ? AS b1, ? AS b0, ? AS mx, ? AS mn, ? AS neg, ? AS f, ? AS t, typeof(?) AS empty_type",
    args: [buf, new Uint8Array(0), 2n ** 63n - 1n, -(2n ** 63n), -1n, -0.5, true, new Uint8Array(0)],
  });
  const row = rs.rows[0];
  eq(row.b1, buf, "ArrayBuffer blob");
  eq(row.b0, new ArrayBuffer(0), "empty blob");
  eq(row.mx, 2n ** 63n - 1n, "i64 max");
  eq(row.mn, -(2n ** 63n), "i64 min");
  eq(row.neg, -1n, "negative integer");
  eq(row.f, -0.5, "negative float");
  eq(row.t, 1n, "true binds as integer 1");
  eq(row.empty_type, "blob", "an empty blob stays a blob");
});

await check("JS numbers travel as floats (client behaviour) and integers stay exact", async () => {
  const rs = await a.execute({ sql: "SELECT ? + 1 AS n, ? AS big", args: [41, 9007199254740993n] });
  eq(Number(rs.rows[0].n), 42, "41 + 1");
  eq(rs.rows[0].big, 9007199254740993n, "2^53 + 1 as a bigint");
});

await check("named parameters: :a, @b, $c and a name without prefix", async () => {
  const rs = await a.execute({
    sql: "SELECT :a AS a, @b AS b, $c AS c, :d AS d, :a || '!' AS a2",
    args: { ":a": "alpha", "@b": 2n, "$c": 3.5, d: new Uint8Array([1, 2, 3]) },
  });
  const row = rs.rows[0];
  eq(row.a, "alpha", ":a");
  eq(row.b, 2n, "@b");
  eq(row.c, 3.5, "$c");
  eq(row.d, new Uint8Array([1, 2, 3]).buffer, ":d bound by the bare name d");
  eq(row.a2, "alpha!", ":a used twice");
  const ins = await a.execute({
    sql: "INSERT INTO t (i, s, u) VALUES (:i, :s, :u)",
    args: { i: 2n, s: "named", u: "u2" },
  });
  eq(ins.lastInsertRowid, 2n, "lastInsertRowid after a named INSERT");
});

await check("batch in write mode", async () => {
  const res = await a.batch([
    { sql: "INSERT INTO t (i, s, u) VALUES (?, ?, ?)", args: [3n, "batch", "u3"] },
    { sql: "INSERT INTO t (i, s, u) VALUES (?, ?, ?)", args: [4n, "batch", "u4"] },
    "UPDATE t SET r = 1.5 WHERE s = 'batch'",
    "SELECT count(*) AS n FROM t",
  ], "write");
  eq(res.length, 4, "one result per statement");
  eq(res[0].rowsAffected, 1, "first insert");
  eq(res[1].lastInsertRowid, 4n, "second insert's rowid");
  eq(res[2].rowsAffected, 2, "update count");
  eq(res[3].rows[0].n, 4n, "count inside the batch");
});

await check("a failing batch rolls back as a whole", async () => {
  const e = await rejects(() => a.batch([
    { sql: "INSERT INTO t (i, s, u) VALUES (?, ?, ?)", args: [5n, "doomed", "u5"] },
    { sql: "INSERT INTO t (i, s, u) VALUES (?, ?, ?)", args: [6n, "dup", "u2"] },
  ], "write"), "UNIQUE violation in a batch");
  ok(String(e.code).startsWith("SQLITE_CONSTRAINT"), `batch error code ${e.code}, expected SQLITE_CONSTRAINT*`);
  eq(e.statementIndex, 1, "statementIndex of the failing statement");
  const rs = await a.execute("SELECT count(*) AS n FROM t WHERE s = 'doomed'");
  eq(rs.rows[0].n, 0n, "the batch's first insert was rolled back");
});

await check("interactive transaction that commits", async () => {
  const tx = await a.transaction("write");
  const ins = await tx.execute({ sql: "INSERT INTO t (i, s, u) VALUES (?, 'tx', 'tx-commit')", args: [10n] });
  eq(ins.rowsAffected, 1, "insert in the transaction");
  const inside = await tx.execute("SELECT count(*) AS n FROM t WHERE u = 'tx-commit'");
  eq(inside.rows[0].n, 1n, "the transaction sees its own write");
  const more = await tx.batch(["UPDATE t SET r = 2.5 WHERE u = 'tx-commit'", "SELECT r FROM t WHERE u = 'tx-commit'"]);
  eq(more[1].rows[0].r, 2.5, "batch inside the transaction");
  await tx.commit();
  ok(tx.closed, "the transaction is closed after commit");
  const after = await a.execute("SELECT i, r FROM t WHERE u = 'tx-commit'");
  eq(after.rows.length, 1, "committed row visible afterwards");
  eq(after.rows[0].r, 2.5, "committed update visible afterwards");
});

await check("interactive transaction that rolls back", async () => {
  const tx = await a.transaction("write");
  await tx.execute("INSERT INTO t (i, s, u) VALUES (11, 'tx', 'tx-rollback')");
  await tx.execute("DELETE FROM t WHERE u = 'tx-commit'");
  const inside = await tx.execute("SELECT count(*) AS n FROM t WHERE u IN ('tx-rollback', 'tx-commit')");
  eq(inside.rows[0].n, 1n, "inside: the insert and the delete");
  await tx.rollback();
  const after = await a.execute("SELECT u FROM t WHERE u IN ('tx-rollback', 'tx-commit') ORDER BY u");
  eq(after.rows.map((r) => r.u), ["tx-commit"], "after rollback: insert gone, delete undone");
});

await check("a statement error inside a transaction leaves it usable", async () => {
  const tx = await a.transaction("write");
  await tx.execute("INSERT INTO t (i, s, u) VALUES (12, 'tx', 'tx-partial')");
  const e = await rejects(() => tx.execute("INSERT INTO t (i, s, u) VALUES (13, 'tx', 'u2')"), "UNIQUE violation in a transaction");
  ok(String(e.code).startsWith("SQLITE_CONSTRAINT"), `code ${e.code}`);
  await tx.commit();
  const after = await a.execute("SELECT count(*) AS n FROM t WHERE u = 'tx-partial'");
  eq(after.rows[0].n, 1n, "the statement before the error was committed");
});

await check("deferred and read transactions", async () => {
  const d = await a.transaction("deferred");
  eq((await d.execute("SELECT count(*) AS n FROM t WHERE u = 'tx-commit'")).rows[0].n, 1n, "read in a deferred tx");
  await d.commit();
  // The client sends the libSQL form "BEGIN TRANSACTION READONLY".
  const r = await a.transaction("read");
  eq((await r.execute("SELECT count(*) AS n FROM t WHERE u = 'tx-commit'")).rows[0].n, 1n, "read in a read tx");
  const refused = await rejects(() => r.execute("INSERT INTO t (u) VALUES ('in-a-read-tx')"), "a write in a read tx");
  eq(refused.code, "SQLITE_READONLY", "the code of a write in a read tx");
  await r.commit();
  eq((await a.execute("SELECT count(*) AS n FROM t WHERE u = 'in-a-read-tx'")).rows[0].n, 0n, "the refused write left nothing");
  // Writes work again after it.
  await a.execute("INSERT INTO t (u) VALUES ('after-a-read-tx')");
  eq((await a.execute("SELECT count(*) AS n FROM t WHERE u = 'after-a-read-tx'")).rows[0].n, 1n, "a write after a read tx");
});

await check("executeMultiple (a sequence)", async () => {
  await a.executeMultiple(`
    CREATE TABLE IF NOT EXISTS seq (x INTEGER);
    INSERT INTO seq VALUES (1);
    INSERT INTO seq VALUES (2);
  `);
  eq((await a.execute("SELECT sum(x) AS s FROM seq")).rows[0].s, 3n, "the sequence ran every statement");
});

await check("errors with codes", async () => {
  const uniq = await rejects(() => a.execute("INSERT INTO t (u) VALUES ('u2')"), "UNIQUE violation");
  ok(String(uniq.code).startsWith("SQLITE_CONSTRAINT"), `UNIQUE violation code ${uniq.code}, expected SQLITE_CONSTRAINT*`);
  ok(/UNIQUE constraint failed/.test(uniq.message), `UNIQUE violation message: ${uniq.message}`);
  const syntax = await rejects(() => a.execute("SELEKT 1"), "syntax error");
  ok(typeof syntax.code === "string" && syntax.code.length > 0, `syntax error without a code: ${syntax.message}`);
  ok(/syntax error/.test(syntax.message), `syntax error message: ${syntax.message}`);
  const missing = await rejects(() => a.execute("SELECT * FROM no_such_table_here"), "no such table");
  ok(typeof missing.code === "string" && missing.code.length > 0, `no such table without a code: ${missing.message}`);
  ok(/no such table/.test(missing.message), `no such table message: ${missing.message}`);
  eq((await a.execute("SELECT 1 AS one")).rows[0].one, 1n, "the client still works after errors");
});

await check("concurrent requests from one client", async () => {
  const results = await Promise.all(Array.from({ length: 20 }, (_, k) =>
    a.execute({ sql: "SELECT ? * 2 AS d", args: [BigInt(k)] })));
  results.forEach((rs, k) => eq(rs.rows[0].d, BigInt(2 * k), `concurrent result ${k}`));
});

await check("two actors do not see each other", async () => {
  await b.execute("DROP TABLE IF EXISTS t");
  await b.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)");
  await b.execute({ sql: "INSERT INTO t (s) VALUES (?)", args: [`only in ${actorB}`] });
  const inB = await b.execute("SELECT s FROM t");
  eq(inB.rows.map((r) => r.s), [`only in ${actorB}`], `${actorB} sees only its own row`);
  eq(inB.columns, ["s"], `${actorB}'s table has its own schema`);
  const inA = await a.execute("SELECT count(*) AS n FROM t WHERE s = ?", [`only in ${actorB}`]);
  eq(inA.rows[0].n, 0n, `${actorA} does not see ${actorB}'s row`);
  await rejects(() => b.execute("SELECT * FROM seq"), `${actorB} has no table seq of ${actorA}`);
});

await check("a token for one actor does not open another", async () => {
  const wrong = createClient({ url: `${base}/${actorB}/`, authToken: tokenA, intMode: "bigint" });
  const e = await rejects(() => wrong.execute("SELECT 1"), `${actorA}'s token on ${actorB}`);
  ok(!String(e.code).startsWith("SQLITE_"), `expected an auth error, got SQLite error ${e.code}`);
  wrong.close();
  const none = createClient({ url: `${base}/${actorA}/`, intMode: "bigint" });
  await rejects(() => none.execute("SELECT 1"), "no token");
  none.close();
  const bad = createClient({ url: `${base}/${actorA}/`, authToken: tokenA + "x", intMode: "bigint" });
  await rejects(() => bad.execute("SELECT 1"), "a wrong token");
  bad.close();
});

const idle = Number(process.env.WASQLITE_IDLE_TIMEOUT ?? 0);
if (idle > 0) {
  await check("an actor sleeps when idle and wakes with its data", async () => {
    const before = await metrics();
    const sleptBefore = before.idleSleeps;
    // A request first, so the actor is awake now and any sleep seen below
    // came after it; awake 0 then means this actor slept too.
    eq((await a.execute("SELECT count(*) AS n FROM seq")).rows[0].n, 2n, "a read before the sleep");
    const deadline = Date.now() + (idle * 1000) + 30_000;
    let now = await metrics();
    while (now.idleSleeps <= sleptBefore || now.awake !== 0) {
      if (Date.now() > deadline) {
        fail(`no idle sleep within ${idle} s + 30 s: idle sleeps ${sleptBefore} -> ${now.idleSleeps}, awake ${now.awake}`);
      }
      await new Promise((r) => setTimeout(r, 100));
      now = await metrics();
    }
    const rs = await a.execute("SELECT count(*) AS n, sum(length(b)) AS bytes FROM t");
    eq(rs.rows[0].bytes, 256n, "the blob survived the sleep");
    eq((await a.execute("SELECT r FROM t WHERE u = 'tx-commit'")).rows[0].r, 2.5, "committed data survived the sleep");
    const after = await metrics();
    ok(after.wakes > now.wakes, `the read woke the actor: wakes ${now.wakes} -> ${after.wakes}`);
  });
}

async function metrics() {
  const headers = process.env.WASQLITE_GLOBAL_TOKEN ? { authorization: `Bearer ${process.env.WASQLITE_GLOBAL_TOKEN}` } : {};
  const resp = await fetch(`${base}/metrics`, { headers });
  const body = await resp.text();
  if (!resp.ok) fail(`GET /metrics: HTTP ${resp.status}: ${body.slice(0, 200)}`);
  const sample = (name, label) => {
    let total = 0;
    for (const line of body.split("\n")) {
      if (line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (m && m[1] === name && (!label || (m[2] ?? "").includes(label))) total += Number(m[3]);
    }
    return total;
  };
  return {
    wakes: sample("wasqlite_wakes_total"),
    idleSleeps: sample("wasqlite_sleeps_total", 'reason="idle"'),
    awake: sample("wasqlite_awake_actors"),
  };
}

a.close();
b.close();
step = "end";
console.log("libsql_client.mjs: all checks passed");

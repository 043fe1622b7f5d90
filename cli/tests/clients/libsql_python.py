"""The Python `libsql` package (the Rust libsql crate's remote mode, Hrana
v3 over HTTP: describe + v3/cursor) against `wasqlite serve`.

Run by cli/tests/serve_clients.rs; by hand:
    PYTHONPATH=DIR/python python3 libsql_python.py http://127.0.0.1:PORT ACTOR_A=TOKEN_A ACTOR_B=TOKEN_B

Known client quirks worked around here (libsql 0.1.11): Python ints outside
the 32-bit range are sent as floats, so large integers are passed as text
and cast in SQL; parameters must be a tuple (a dict raises ValueError), so
named placeholders are bound by position; every error is a ValueError whose
text carries the Hrana error's code.
"""

import sys

step = "start"


def fail(message):
    print(f"libsql_python.py FAILED at [{step}]: {message}", file=sys.stderr)
    sys.exit(1)


def eq(actual, expected, what):
    if actual != expected or type(actual) is not type(expected):
        fail(f"{what}: expected {expected!r} ({type(expected).__name__}), got {actual!r} ({type(actual).__name__})")


def check(name):
    def run(fn):
        global step
        step = name
        try:
            fn()
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001 - any client error is a failure here
            fail(f"unexpected {type(e).__name__}: {e}")
        print(f"ok - {name}")
        return fn

    return run


def raises(fn, what):
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001
        print(f"   {what}: {type(e).__name__}: {e}")
        return str(e)
    fail(f"{what}: expected an error, got {r!r}")


try:
    import libsql
except ImportError as e:
    fail(f"cannot import libsql ({e}); set PYTHONPATH to DIR/python of scripts/install-test-clients.sh")

if len(sys.argv) != 4 or "=" not in sys.argv[2] or "=" not in sys.argv[3]:
    fail("usage: libsql_python.py BASE_URL ACTOR_A=TOKEN_A ACTOR_B=TOKEN_B")
base = sys.argv[1].rstrip("/")
actor_a, token_a = sys.argv[2].split("=", 1)
actor_b, token_b = sys.argv[3].split("=", 1)


def connect(actor, token):
    # isolation_level=None: autocommit, transactions are explicit below.
    return libsql.connect(f"{base}/{actor}/", auth_token=token, isolation_level=None)


a = connect(actor_a, token_a)
b = connect(actor_b, token_b)
blob = bytes(range(256))
text = "héllo wörld ✓ 日本語 😀"


@check("schema and execute with parameters of every type")
def _():
    a.execute("DROP TABLE IF EXISTS py")
    a.execute("CREATE TABLE py (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, u TEXT UNIQUE)")
    cur = a.execute(
        "INSERT INTO py (i, r, s, b, u) VALUES (CAST(? AS INTEGER), ?, ?, ?, ?)",
        (str(2**62 + 3), 3.25, text, blob, None),
    )
    eq(cur.rowcount, 1, "rowcount of an INSERT")
    eq(cur.lastrowid, 1, "lastrowid of the first INSERT")


@check("read back: values and description")
def _():
    cur = a.execute("SELECT id, i, r, s, b, u, typeof(i) FROM py WHERE id = ?", (1,))
    rows = cur.fetchall()
    eq(len(rows), 1, "row count")
    eq(rows[0], (1, 2**62 + 3, 3.25, text, blob, None, "integer"), "the row")
    eq([d[0] for d in cur.description], ["id", "i", "r", "s", "b", "u", "typeof(i)"], "column names")


@check("small integers, booleans and named placeholders bound by position")
def _():
    row = a.execute("SELECT :x + 1, :y, ?3", (41, True, b"\x00\xff")).fetchone()
    eq(row, (42, 1, b"\x00\xff"), "row")


@check("a transaction that commits and one that rolls back")
def _():
    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO py (i, u) VALUES (?, ?)", (10, "commit"))
    eq(a.in_transaction, True, "in_transaction after BEGIN")
    a.execute("COMMIT")
    a.execute("BEGIN")
    a.execute("INSERT INTO py (i, u) VALUES (?, ?)", (11, "rollback"))
    eq(a.execute("SELECT count(*) FROM py WHERE u = 'rollback'").fetchone(), (1,), "visible inside")
    a.execute("ROLLBACK")
    eq(
        a.execute("SELECT u FROM py WHERE u IN ('commit', 'rollback') ORDER BY u").fetchall(),
        [("commit",)],
        "committed row kept, rolled back row gone",
    )


@check("DB-API implicit transaction: commit() and rollback()")
def _():
    c = libsql.connect(f"{base}/{actor_a}/", auth_token=token_a)  # default isolation: implicit BEGIN
    c.execute("INSERT INTO py (i, u) VALUES (?, ?)", (20, "dbapi-commit"))
    c.commit()
    c.execute("INSERT INTO py (i, u) VALUES (?, ?)", (21, "dbapi-rollback"))
    c.rollback()
    eq(
        a.execute("SELECT u FROM py WHERE u LIKE 'dbapi-%' ORDER BY u").fetchall(),
        [("dbapi-commit",)],
        "commit() kept its row, rollback() dropped its row",
    )


@check("errors carry their codes")
def _():
    msg = raises(lambda: a.execute("INSERT INTO py (u) VALUES ('commit')").fetchall(), "UNIQUE violation")
    if "SQLITE_CONSTRAINT" not in msg or "UNIQUE constraint failed" not in msg:
        fail(f"UNIQUE violation: expected SQLITE_CONSTRAINT* and the SQLite message, got {msg!r}")
    msg = raises(lambda: a.execute("SELEKT 1").fetchall(), "syntax error")
    if "syntax error" not in msg:
        fail(f"syntax error: got {msg!r}")
    msg = raises(lambda: a.execute("SELECT * FROM no_such_table_here").fetchall(), "no such table")
    if "no such table" not in msg:
        fail(f"no such table: got {msg!r}")
    eq(a.execute("SELECT 1").fetchone(), (1,), "the connection works after errors")


@check("two actors do not see each other")
def _():
    b.execute("DROP TABLE IF EXISTS py")
    b.execute("CREATE TABLE py (s TEXT)")
    b.execute("INSERT INTO py VALUES (?)", (f"only in {actor_b}",))
    eq(b.execute("SELECT s FROM py").fetchall(), [(f"only in {actor_b}",)], f"{actor_b} sees its row only")
    eq(a.execute("SELECT count(*) FROM py WHERE u = 'commit'").fetchone(), (1,), f"{actor_a} keeps its rows")
    wrong = libsql.connect(f"{base}/{actor_b}/", auth_token=token_a, isolation_level=None)
    msg = raises(lambda: wrong.execute("SELECT 1").fetchall(), f"{actor_a}'s token on {actor_b}")
    if "401" not in msg:
        fail(f"expected HTTP 401 for another actor's token, got {msg!r}")


step = "end"
print("libsql_python.py: all checks passed")

"""The DB-API pool behind a real PgBouncer (issue 15, item 1), in transaction and session pooling mode.

The suite's PgBouncer (geventpool.testing.pgbouncer) runs in front of the
suite's PostgreSQL; the fault tests have a bouncer and a server of their own.
Row K11: session state set through a transaction-pooling bouncer is refused,
or invisible to every other client of the bouncer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import psycopg
import psycopg2
import pytest

from geventpool import ConfigurationError, PoolTimeout
from geventpool.dbapi import ConnectionPool, discard_all
from geventpool.dbapi.pgbouncer import TransactionPoolingError, breaks_transaction_pooling
from geventpool.testing.invariants import check_invariants
from geventpool.testing.monitor import HubMonitor
from geventpool.testing.pgbouncer import PgBouncerServer
from geventpool.testing.postgres import PostgresServer
from geventpool.testing.waiting import wait_until

MakePool = Callable[..., ConnectionPool]
DRIVERS = [psycopg2, psycopg]


def _one(conn: Any, sql: str) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        row = cur.fetchone() if cur.description is not None else None
    finally:
        cur.close()
    return None if row is None else row[0]


def _others_seeing(bouncer: PgBouncerServer, sql: str, value: str, clients: int = 10) -> int:
    """How many of ``clients`` fresh clients of the bouncer get ``value`` from ``sql``."""
    conns = [psycopg2.connect(bouncer.dsn, application_name="other-client") for _ in range(clients)]
    try:
        seen = 0
        for conn in conns:
            seen += _one(conn, sql) == value
            conn.rollback()
        return seen
    finally:
        for conn in conns:
            conn.close()


# -- the finding, and row K11 --------------------------------------------------------------


def test_unaware_pool_leaks_a_setting_to_every_client_of_a_transaction_bouncer(
    pgbouncers: dict[str, PgBouncerServer], make_pool: MakePool
) -> None:
    """What the issue found (kept as a witness that the fixture reproduces it): a pool not told it is
    behind a transaction-mode bouncer lets ``SET search_path`` through, and other clients see it while
    the borrower still holds its connection (the return's ``DISCARD ALL`` then runs on whichever
    server session is free)."""
    bouncer = pgbouncers["transaction"]
    pool = make_pool(psycopg2, bouncer.dsn, max_size=1)
    conn = pool.get()
    conn.autocommit = True
    _one(conn, "SET search_path TO pg_catalog")
    try:
        assert _others_seeing(bouncer, "SHOW search_path", "pg_catalog") == 10
    finally:
        pool.put(conn)
        bouncer.admin("RECONNECT")  # new server sessions for the other tests
        wait_until(lambda: _others_seeing(bouncer, "SHOW search_path", "pg_catalog", 3) == 0, 5)


@pytest.mark.parametrize("module", DRIVERS, ids=lambda m: m.__name__)
def test_a_borrowers_search_path_never_reaches_other_clients(
    pgbouncer: PgBouncerServer, make_pool: MakePool, module: Any
) -> None:
    pool = make_pool(module, pgbouncer.dsn, max_size=1, pgbouncer=pgbouncer.pool_mode)
    conn = pool.get()
    conn.autocommit = True
    if pgbouncer.pool_mode == "transaction":
        with pytest.raises(TransactionPoolingError, match="SET LOCAL"):
            _one(conn, "SET search_path TO pg_catalog")
        assert _one(conn, "SELECT 1") == 1  # the connection is still usable
    else:
        _one(conn, "SET search_path TO pg_catalog")  # the session is this connection's alone
    assert _others_seeing(pgbouncer, "SHOW search_path", "pg_catalog") == 0  # while it is held
    pool.put(conn)
    assert _others_seeing(pgbouncer, "SHOW search_path", "pg_catalog") == 0
    with pool.item() as conn:  # the next borrower of the same connection neither
        assert _one(conn, "SHOW search_path") != "pg_catalog"


REFUSED = [
    "SET statement_timeout TO 1",
    "set time zone 'Asia/Tokyo'",
    "/* hint */ SET SESSION AUTHORIZATION DEFAULT",
    "SELECT 1; RESET ALL",
    "LISTEN channel",
    "PREPARE borrowed AS SELECT 1",
    "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
    "CREATE TEMP TABLE borrowed (x int)",
    "SELECT pg_advisory_lock(4242)",
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)",
    "LOAD 'auto_explain'",
]
ALLOWED = [
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET LOCAL statement_timeout TO 1000",
    "SELECT pg_advisory_xact_lock(4242)",
    "CREATE TEMP TABLE scratch (x int) ON COMMIT DROP",
    "SELECT set_config('search_path', 'pg_catalog', true)",
    "DECLARE plain CURSOR FOR SELECT 1",
    "SELECT 'SET is only text here'",
]


def test_what_transaction_pooling_breaks_is_recognised() -> None:
    for sql in REFUSED:
        assert breaks_transaction_pooling(sql) is not None, sql
        assert breaks_transaction_pooling(sql.encode()) is not None, sql
    for sql in ALLOWED:
        assert breaks_transaction_pooling(sql) is None, sql


@pytest.mark.parametrize("module", DRIVERS, ids=lambda m: m.__name__)
def test_transaction_mode_refuses_session_state_and_allows_its_transaction_forms(
    pgbouncers: dict[str, PgBouncerServer], make_pool: MakePool, module: Any
) -> None:
    bouncer = pgbouncers["transaction"]
    pool = make_pool(module, bouncer.dsn, max_size=2, pgbouncer="transaction")
    with pool.item() as conn:
        for sql in REFUSED:
            with pytest.raises(TransactionPoolingError):
                _one(conn, sql)
        with pytest.raises(TransactionPoolingError, match="WITH HOLD"):
            conn.cursor("held", withhold=True).execute("SELECT 1")  # psycopg2: at cursor()
        conn.rollback()
        for sql in ALLOWED:  # one transaction: SET TRANSACTION comes first
            _one(conn, sql)
        assert _one(conn, "SHOW statement_timeout") == "1s"  # SET LOCAL, in this transaction
        conn.rollback()
    assert _others_seeing(bouncer, "SHOW statement_timeout", "1s") == 0
    check_invariants(pool)


def test_psycopg3_prepared_statements_are_off_in_transaction_mode(
    pgbouncers: dict[str, PgBouncerServer], make_pool: MakePool
) -> None:
    bouncer = pgbouncers["transaction"]
    with pytest.raises(ConfigurationError, match="prepare_threshold"):
        ConnectionPool(psycopg, bouncer.dsn, pgbouncer="transaction", prepare_threshold=5)
    pool = make_pool(psycopg, bouncer.dsn, max_size=3, pgbouncer="transaction")
    greenlets = [gevent.spawn(_repeat, pool, 20) for _ in range(6)]  # prepared by default after 5
    gevent.joinall(greenlets, timeout=20, raise_error=True)
    with pool.item() as conn:
        assert conn.prepare_threshold is None
        conn.prepare_threshold = 0
        with pytest.raises(TransactionPoolingError, match="prepare"):
            conn.execute("SELECT 1")
    with pool.item() as conn:
        assert conn.prepare_threshold is None  # set back on return
        with pytest.raises(TransactionPoolingError, match="prepare"):
            conn.execute("SELECT 1", prepare=True)


def _repeat(pool: ConnectionPool, times: int) -> None:
    for i in range(times):
        with pool.connection() as conn:
            assert conn.execute("SELECT %s::int + 1", [i]).fetchone() == (i + 1,)


def test_configuration_is_checked_at_construction() -> None:
    for bad in ("statement", "TRANSACTION", True, 1):
        with pytest.raises(ConfigurationError, match="pgbouncer must be"):
            ConnectionPool(psycopg2, "host=127.0.0.1 port=1", pgbouncer=bad)
    with pytest.raises(ConfigurationError, match="discard_all"):
        ConnectionPool(psycopg2, "host=127.0.0.1 port=1", pgbouncer="transaction", reset=discard_all)
    ConnectionPool(psycopg2, "host=127.0.0.1 port=1", pgbouncer="session", reset=discard_all).close()


# -- return hygiene through the bouncer ------------------------------------------------------------


@pytest.mark.parametrize("module", DRIVERS, ids=lambda m: m.__name__)
def test_returned_inside_a_transaction_is_rolled_back(
    pgbouncer: PgBouncerServer, pg: PostgresServer, make_pool: MakePool, module: Any
) -> None:
    pg.execute("CREATE TABLE IF NOT EXISTS bouncer_rows (mode text)")
    pool = make_pool(module, pgbouncer.dsn, max_size=1, pgbouncer=pgbouncer.pool_mode)
    conn = pool.get()
    _one(conn, f"INSERT INTO bouncer_rows VALUES ('{pgbouncer.pool_mode}')")
    pool.put(conn)  # no commit
    with pool.item() as conn:
        assert _one(conn, f"SELECT count(*) FROM bouncer_rows WHERE mode = '{pgbouncer.pool_mode}'") == 0
    assert not [s for s in pg.sessions() if s["state"] == "idle in transaction"]


def test_each_mode_resets_with_what_it_supports(
    pgbouncer: PgBouncerServer, pg: PostgresServer, make_pool: MakePool
) -> None:
    """Session mode: the pool's own reset between borrowers (PgBouncer's DISCARD ALL only runs when a
    client leaves), so a temp table, a lock and a setting are gone.  Transaction mode: nothing needs
    it and the pool sends no DISCARD ALL to a shared session."""
    name = f"reset-{pgbouncer.pool_mode}"
    pool = make_pool(psycopg2, pgbouncer.dsn, max_size=1, pgbouncer=pgbouncer.pool_mode,
                     application_name=name)
    conn = pool.get()
    conn.autocommit = True
    if pgbouncer.pool_mode == "session":
        _one(conn, "CREATE TEMP TABLE borrowed (x int)")
        _one(conn, "SELECT pg_advisory_lock(4243)")
        _one(conn, "SET statement_timeout TO 1234")
    else:
        _one(conn, "SELECT set_config('application_name', 'x', true)")  # watched: may change the session
    pool.put(conn)
    queries = [s["query"] for s in pg.sessions(name)]
    if pgbouncer.pool_mode == "session":  # DISCARD ALL, or its parts when a SET came with the login
        assert len(queries) == 1 and ("DISCARD ALL" in queries[0] or "RESET ALL" in queries[0])
        with pool.item() as conn:
            assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'borrowed'") == 0
            assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'") == 0
            assert _one(conn, "SHOW statement_timeout") == "0"
    else:
        assert "DISCARD ALL" not in queries


# -- faults ---------------------------------------------------------------------------------------


def test_pgbouncer_restart(pgbouncer_private: PgBouncerServer, make_pool: MakePool) -> None:
    bouncer = pgbouncer_private
    pool = make_pool(psycopg2, bouncer.dsn, min_size=3, max_size=3, ping_after=0,
                     pgbouncer=bouncer.pool_mode)
    pool.wait(5)
    bouncer.restart()
    for _ in range(6):
        with pool.item() as conn:
            assert _one(conn, "SELECT 1") == 1  # dead connections dropped by the check, never lent
    assert pool.stats()["connections_lost"] >= 1
    check_invariants(pool)


def test_postgres_restart_behind_the_bouncer(
    pgbouncer_private: PgBouncerServer, make_pool: MakePool
) -> None:
    bouncer = pgbouncer_private
    pool = make_pool(psycopg2, bouncer.dsn, min_size=2, max_size=2, ping_after=0,
                     pgbouncer=bouncer.pool_mode)
    pool.wait(5)
    bouncer.postgres.restart("fast")
    for _ in range(6):
        with pool.item() as conn:
            assert _one(conn, "SELECT 1") == 1
    check_invariants(pool)


def test_pause_resume_and_reconnect(pgbouncer_private: PgBouncerServer, make_pool: MakePool) -> None:
    bouncer = pgbouncer_private
    pool = make_pool(psycopg2, bouncer.dsn, max_size=2, ping_after=None, pgbouncer=bouncer.pool_mode)
    with pool.item() as conn:
        before = _one(conn, "SELECT pg_backend_pid()")
    pool.clear()  # session mode: PAUSE waits for every client to leave
    bouncer.admin("PAUSE")
    worker = gevent.spawn(_select_backend, pool)
    wait_until(lambda: bouncer.pools()[0]["cl_waiting"] >= 1, 5, message="a client waits at the bouncer")
    assert not worker.ready()
    bouncer.admin("RESUME")
    assert isinstance(worker.get(timeout=5), int)
    bouncer.admin("RECONNECT")  # server connections are replaced once released
    wait_until(lambda: _select_backend(pool) != before, 5, message="a new server session")
    check_invariants(pool)


def _select_backend(pool: ConnectionPool) -> int:
    with pool.item() as conn:
        pid: int = _one(conn, "SELECT pg_backend_pid()")
    pool.clear()  # session mode: the server session goes with the client connection
    return pid


@pytest.mark.parametrize("how", ["kill", "timeout"])
def test_killed_greenlet_cancels_its_query_through_the_bouncer(
    pgbouncer: PgBouncerServer, pg: PostgresServer, make_pool: MakePool, how: str
) -> None:
    """The pid PgBouncer reports is its own, so ``pg_cancel_backend`` cannot reach the query: the
    protocol's cancel request is sent, before the connection closes (PgBouncer drops a cancel for a
    client that has left, and the server would run the query to its end).  psycopg2 only: psycopg 3
    is cooperative only under monkey-patching, which the suite does not do."""
    name = f"cancel-{pgbouncer.pool_mode}-{how}"
    pool = make_pool(psycopg2, pgbouncer.dsn, max_size=2, pgbouncer=pgbouncer.pool_mode,
                     application_name=name)

    def slow() -> None:
        with pool.item() as conn:
            conn.cursor().execute(f"SELECT pg_sleep(60) /* {name} */")

    with HubMonitor() as monitor:
        if how == "kill":
            worker = gevent.spawn(slow)
            wait_until(lambda: pg.running_queries(name), 5)
            worker.kill(block=True, timeout=5)
            assert worker.dead
        else:
            with pytest.raises(gevent.Timeout), gevent.Timeout(0.3):
                slow()
        wait_until(lambda: not pg.running_queries(name), 3, message="query still running on the server")
        assert monitor.max_stall < 0.1
    assert pool.stats()["pool_in_use"] == 0
    with pool.item() as conn:
        assert _one(conn, "SELECT 1") == 1


_PSYCOPG3_KILL = """
from gevent import monkey
monkey.patch_all()
import sys, gevent, psycopg
from geventpool.dbapi import ConnectionPool
from geventpool.testing.waiting import wait_until
bouncer_dsn, mode, pg_dsn = sys.argv[1:]
pool = ConnectionPool(psycopg, bouncer_dsn, max_size=2, pgbouncer=mode, application_name="p3-kill")
def running():
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                             "AND query LIKE %s", ["%/* p3-kill */%"]).fetchone()[0]
def slow():
    with pool.item() as conn:
        conn.execute("SELECT pg_sleep(60) /* p3-kill */")
worker = gevent.spawn(slow)
wait_until(running, 5)
worker.kill(block=True, timeout=5)
wait_until(lambda: running() == 0, 3, message="query still running on the server")
pool.close()
print("cancelled")
"""


def test_psycopg3_killed_greenlet_cancels_its_query_through_the_bouncer(
    pgbouncer: PgBouncerServer, pg: PostgresServer
) -> None:
    """psycopg 3 under gevent's monkey-patching (in a process of its own): ``cancel_safe()`` sends the
    protocol's cancel request while the connection is open, and PgBouncer forwards it."""
    result = subprocess.run(
        [sys.executable, "-c", _PSYCOPG3_KILL, pgbouncer.dsn, pgbouncer.pool_mode, pg.dsn],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0 and "cancelled" in result.stdout, result.stderr[-2000:]


def test_pool_timeout_while_the_bouncer_is_paused(
    pgbouncer_private: PgBouncerServer, make_pool: MakePool
) -> None:
    """A paused bouncer holds new logins too: a checkout that needs a new connection gets
    PoolTimeout at the pool's timeout, and the pool works again after RESUME."""
    bouncer = pgbouncer_private
    pool = make_pool(psycopg2, bouncer.dsn, max_size=1, timeout=0.5, connect_timeout=1,
                     pgbouncer=bouncer.pool_mode)
    bouncer.admin("PAUSE")
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout), gevent.Timeout(5):
            with pool.item() as conn:
                _one(conn, "SELECT 1")
        assert time.monotonic() - started < 1.5
    finally:
        bouncer.admin("RESUME")
    wait_until(lambda: pool.snapshot().in_use == 0, 5)
    with pool.item() as conn:
        assert _one(conn, "SELECT 1") == 1


def test_example_runs() -> None:
    """examples/dbapi_pgbouncer.py starts its own PostgreSQL and PgBouncer and checks its claims."""
    script = Path(__file__).resolve().parents[2] / "examples" / "dbapi_pgbouncer.py"
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("refused: refused before sending: SET", "inside the transaction: statement_timeout = 2s",
                 "next transaction: statement_timeout = 0", "answers: 1275",
                 "query left on the server after kill: 0"):
        assert line in result.stdout, result.stdout
    assert "Traceback" not in result.stderr

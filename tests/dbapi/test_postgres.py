"""The DB-API pool against a real PostgreSQL: API, transparency, return hygiene (F1-F6), cancel, J1."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

from geventpool import ConfigurationError, ConnectTimeout, PoolTimeout
from geventpool.dbapi import ConnectionPool, ConnectionReturned, PooledConnection, discard_all, unwrap
from geventpool.dbapi.psycopg2 import installed
from geventpool.testing.invariants import check_invariants
from geventpool.testing.monitor import HubMonitor
from geventpool.testing.postgres import PostgresServer
from geventpool.testing.resources import fd_count
from geventpool.testing.waiting import wait_until

MakePool = Callable[..., ConnectionPool]


def _one(conn: Any, sql: str, params: Any = None) -> Any:
    cur = conn.cursor()
    cur.execute(sql, params)
    row = cur.fetchone()
    cur.close()
    return row[0] if row else None


def _backend(conn: Any) -> int:
    pid: int = conn.info.backend_pid
    return pid


def test_get_put_and_the_dead_proxy(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=2)
    assert installed()
    conn = pool.get()
    assert isinstance(conn, PooledConnection)
    assert isinstance(conn.raw, psycopg2.extensions.connection)
    assert unwrap(conn) is conn.raw
    assert _one(conn, "SELECT 41 + 1") == 42
    pool.put(conn)
    assert conn.returned
    assert not conn  # falsy once returned, as eventlet's wrapper
    for use in (conn.cursor, lambda: conn.autocommit, conn.commit, lambda: conn.raw):
        with pytest.raises(ConnectionReturned, match="returned to pool"):
            use()
        with pytest.raises(AttributeError):  # eventlet's dead wrapper raises AttributeError
            use()
    pool.put(conn)  # a second put() and close() are harmless, as in eventlet
    conn.close()
    assert pool.free() == 2
    with pool.item() as c2:
        assert _one(c2, "SELECT 1") == 1
        c2.close()  # eventlet: close() returns it
    assert pool.stats()["pool_in_use"] == 0
    assert pool.free() == 2 and pool.waiting() == 0


def test_transparent_proxy(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    with pool.item() as conn:
        conn.autocommit = True
        assert conn.raw.autocommit is True
        conn.set_session(readonly=True, isolation_level="SERIALIZABLE")
        assert conn.readonly is True
        cur = conn.cursor()
        cur.execute("LISTEN ch; NOTIFY ch, 'hi'")
        conn.poll()
        assert conn.notifies and conn.notifies[0].payload == "hi"
        assert conn.info.server_version >= 150000
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        conn.autocommit = False
        named = conn.cursor(name="srv", cursor_factory=psycopg2.extras.DictCursor)
        named.execute("SELECT generate_series(1, 3) AS n")
        assert [r["n"] for r in named.fetchmany(2)] == [1, 2]
        named.close()
        with conn:  # psycopg2's own meaning: a transaction, committed; the connection stays open
            _one(conn, "SELECT 1")
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        assert not conn.closed
        discard_all(conn.raw)  # the reset the attributes test below relies on
    with pool.item() as conn:  # attributes restored (F5)
        assert conn.autocommit is False and conn.readonly is None and conn.isolation_level is None


def test_f1_returned_inside_a_transaction_is_rolled_back(pg: PostgresServer, make_pool: MakePool) -> None:
    pg.execute("CREATE TABLE IF NOT EXISTS f1 (x int)")
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    conn = pool.get()
    conn.cursor().execute("INSERT INTO f1 VALUES (1)")
    pool.put(conn)
    assert not [s for s in pg.sessions() if s["state"] == "idle in transaction"]
    with pool.item() as conn:
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        assert _one(conn, "SELECT count(*) FROM f1") == 0


def test_f2_returned_in_error_state(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    conn = pool.get()
    pid = _backend(conn)
    with pytest.raises(psycopg2.errors.UndefinedTable):
        conn.cursor().execute("SELECT * FROM no_such_table")
    pool.put(conn)
    with pool.item() as conn:
        assert _backend(conn) == pid  # reused, not discarded
        assert _one(conn, "SELECT 7") == 7


def test_f3_unread_server_side_cursor_is_closed(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    conn = pool.get()
    cur = conn.cursor(name="unread")
    cur.execute("SELECT generate_series(1, 100000)")
    cur.fetchmany(5)
    pool.put(conn)
    with pool.item() as conn:
        assert _one(conn, "SELECT count(*) FROM pg_cursors") == 0


def test_f4_rollback_fails_on_return_discards(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    conn = pool.get()
    pid = _backend(conn)
    conn.cursor().execute("SELECT 1")  # a transaction is open
    pg.terminate(pid)
    wait_until(lambda: all(s["pid"] != pid for s in pg.sessions()), 5)
    pool.put(conn)  # the rollback fails: discarded, quietly
    assert pool.stats()["connections_discarded"] == 1
    with pool.item() as conn:
        assert _backend(conn) != pid


def test_f5_session_state_with_discard_all(pg: PostgresServer, make_pool: MakePool) -> None:
    pg.execute("DO $$ BEGIN CREATE ROLE f5role; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    pool = make_pool(psycopg2, pg.dsn, max_size=1, reset=discard_all)
    with pool.item() as conn:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET ROLE f5role")
        cur.execute("SET search_path = pg_catalog")
        cur.execute("CREATE TEMP TABLE t5 (x int)")
        cur.execute("SELECT pg_advisory_lock(55)")
        cur.execute("LISTEN f5")
        cur.execute("PREPARE p5 AS SELECT 1")
        pid = _backend(conn)
    with pool.item() as conn:
        assert _backend(conn) == pid and conn.autocommit is False
        assert _one(conn, "SELECT current_user") == "postgres"
        assert _one(conn, "SHOW search_path") == '"$user", public'
        assert _one(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        assert _one(conn, "SELECT count(*) FROM pg_prepared_statements") == 0
        assert _one(conn, "SELECT count(*) FROM pg_listening_channels()") == 0
        assert _one(conn, "SELECT to_regclass('t5') IS NULL") is True


def test_f6_exception_in_block_rolls_back_and_returns(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    with pytest.raises(ZeroDivisionError):
        with pool.item() as conn:
            pid = _backend(conn)
            conn.cursor().execute("SELECT 1")
            1 / 0  # noqa: B018
    assert pool.stats()["connections_discarded"] == 0
    with pool.item() as conn:
        assert _backend(conn) == pid
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_connection_commits_item_does_not(pg: PostgresServer, make_pool: MakePool) -> None:
    pg.execute("CREATE TABLE IF NOT EXISTS tx (x int)")
    pg.execute("TRUNCATE tx")
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    with pool.connection() as conn:
        conn.cursor().execute("INSERT INTO tx VALUES (1)")
    with pool.item() as conn:
        conn.cursor().execute("INSERT INTO tx VALUES (2)")
    with pytest.raises(RuntimeError), pool.connection() as conn:
        conn.cursor().execute("INSERT INTO tx VALUES (3)")
        raise RuntimeError
    assert pg.execute("SELECT x FROM tx") == [(1,)]


def test_eventlet_cleanup_arguments(pg: PostgresServer, make_pool: MakePool) -> None:
    """eventlet's ``cleanup=``: in the constructor, per put(), per item(); the rollback is never skipped."""
    calls: list[str] = []
    pool = make_pool(psycopg2, pg.dsn, max_size=1, cleanup=lambda conn: calls.append("pool"))
    conn = pool.get()
    conn.cursor().execute("SELECT 1")  # a transaction is open
    pool.put(conn)
    conn = pool.get()
    pool.put(conn, cleanup=lambda conn: calls.append("put"))
    conn = pool.get()
    pool.put(conn, cleanup=None)
    with pool.item(lambda conn: calls.append("item")) as conn:
        conn.cursor().execute("SELECT 1")
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    with pool.item() as conn:
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert calls == ["pool", "put", "item", "pool"]
    with pytest.raises(ConfigurationError, match="cleanup must be callable"):
        pool.item("rollback")
    with pytest.raises(ConfigurationError, match="not both"):
        ConnectionPool(psycopg2, pg.dsn, reset=discard_all, cleanup=discard_all)
    from geventpool.dbapi import ConnectTimeout as EventletName

    assert EventletName is ConnectTimeout


def test_a_cursor_kept_past_put_cannot_reach_the_next_borrower(
    pg: PostgresServer, make_pool: MakePool
) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    conn = pool.get()
    kept = conn.cursor()
    kept.execute("SELECT 1")
    pool.put(conn)
    other = pool.get()
    with pytest.raises(psycopg2.InterfaceError, match="closed"):
        kept.execute("SELECT 1")
    assert other.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert _one(other, "SELECT 2") == 2
    pool.put(other)


def test_errors_classified_per_driver(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1)
    with pytest.raises(psycopg2.extensions.QueryCanceledError), pool.item() as conn:
        pid = _backend(conn)
        conn.cursor().execute("SET statement_timeout = 50; SELECT pg_sleep(5)")
    assert pool.stats()["connections_discarded"] == 0  # an OperationalError that is not a disconnect
    with pool.item() as conn:
        assert _backend(conn) == pid
    with pytest.raises(psycopg2.OperationalError), pool.item() as conn:
        conn.cursor().execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert pool.stats()["connections_discarded"] == 1
    assert pool.is_disconnect(psycopg2.InterfaceError("connection already closed"))
    assert not pool.is_disconnect(psycopg2.errors.UniqueViolation())


def test_d8_is_disconnect_override_recycles_read_only_nodes(pg: PostgresServer) -> None:
    class ReadOnlyAware(ConnectionPool):
        def is_disconnect(self, exc: BaseException) -> bool:
            return getattr(exc, "pgcode", None) == "25006" or super().is_disconnect(exc)

    pool = ReadOnlyAware(psycopg2, pg.dsn, max_size=1, configure=lambda c: setattr(c, "readonly", True))
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), pool.item() as conn:
            conn.cursor().execute("CREATE TEMP TABLE ro (x int)")
        assert pool.stats()["connections_discarded"] == 1
    finally:
        pool.close()


@pytest.mark.parametrize("how", ["kill", "timeout"])
def test_cancel_on_kill_stops_the_query_on_the_server(
    pg: PostgresServer, make_pool: MakePool, how: str
) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=2, application_name=f"cancel-{how}")

    def slow() -> None:
        with pool.item() as conn:
            conn.cursor().execute("SELECT pg_sleep(60) /* cancel-me */")

    with HubMonitor() as monitor:
        if how == "kill":
            worker = gevent.spawn(slow)
            wait_until(lambda: pg.running_queries("cancel-me"), 5)
            worker.kill(block=True, timeout=5)
            assert worker.dead
        else:
            with pytest.raises(gevent.Timeout), gevent.Timeout(0.3):
                slow()
        wait_until(lambda: not pg.running_queries("cancel-me"), 2, message="query still running")
        assert monitor.max_stall < 0.1
    wait_until(lambda: not pg.sessions(f"cancel-{how}"), 2)
    stats = pool.stats()
    assert stats["connections_discarded"] == 1 and stats["pool_in_use"] == 0
    with pool.item() as conn:  # the pool still works
        assert _one(conn, "SELECT 1") == 1


def test_connect_timeout_from_get_without_freezing_the_hub(deaf_port: int, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, host="127.0.0.1", port=deaf_port, connect_timeout=0.3, timeout=5)
    with HubMonitor() as monitor:
        with pytest.raises(ConnectTimeout):
            pool.get()
        assert monitor.max_stall < 0.1
    # libpq's own connect_timeout (psycogreen ignores it) is honoured by the wait callback
    pool2 = make_pool(psycopg2, f"host=127.0.0.1 port={deaf_port} connect_timeout=2", connect_timeout=30,
                      timeout=4)
    with pytest.raises(PoolTimeout) as info:
        pool2.get()
    assert "timeout expired" in str(info.value)


def test_max_idle_zero_closes_on_return(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=2, max_idle=0, application_name="maxidle0")
    with pool.item() as conn:
        pid = _backend(conn)
    wait_until(lambda: not pg.sessions("maxidle0"), 2)
    with pool.item() as conn:
        assert _backend(conn) != pid
    assert pool.size == 0


def test_d7_ping_replaces_a_terminated_idle_connection(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=1, ping_after=0)
    with pool.item() as conn:
        pid = _backend(conn)
    pg.terminate(pid)
    wait_until(lambda: all(s["pid"] != pid for s in pg.sessions()), 5)
    with pool.item() as conn:  # no error: the check found it dead
        assert _backend(conn) != pid
        assert _one(conn, "SELECT 1") == 1
    assert pool.stats()["connections_lost"] == 1


def test_check_callback(pg: PostgresServer, make_pool: MakePool) -> None:
    calls = []

    def check(conn: Any) -> None:
        calls.append(conn)
        if len(calls) == 1:
            raise psycopg2.OperationalError("node is a standby")

    pool = make_pool(psycopg2, pg.dsn, max_size=1, ping_after=0, check=check)
    with pool.item() as conn:
        first = conn.raw
    with pool.item() as conn:
        assert conn.raw is not first  # the first check failed: replaced (a new one is not checked)
        second = conn.raw
    with pool.item() as conn:
        assert conn.raw is second
    assert len(calls) == 2


def test_leaked_proxy_is_reclaimed(
    pg: PostgresServer, make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="geventpool")
    pool = make_pool(psycopg2, pg.dsn, max_size=1, timeout=5)
    pool.get()  # dropped at once
    gc.collect()
    with pool.item() as conn:
        assert _one(conn, "SELECT 1") == 1
    assert any("reclaimed" in r.getMessage() for r in caplog.records)


def test_j1_steady_load(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = make_pool(psycopg2, pg.dsn, max_size=10, application_name="j1")
    fds = fd_count()
    done = []
    max_sessions = [0]

    def work(n: int) -> None:
        for _ in range(n):
            with pool.item() as conn:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                done.append(cur.fetchone()[0])

    stop = gevent.event.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            max_sessions[0] = max(max_sessions[0], len(pg.sessions("j1")))

    watcher = gevent.spawn(watch)
    with HubMonitor() as monitor:
        gevent.joinall([gevent.spawn(work, 50) for _ in range(200)], raise_error=True)
    stop.set()
    watcher.join(5)
    assert len(done) == 10_000
    assert max_sessions[0] <= 10
    assert pool.stats()["pool_in_use"] == 0
    check_invariants(pool)
    assert monitor.max_stall < 0.1
    pool.close()
    assert fd_count() <= fds


@pytest.mark.parametrize("how", ["raised", "killed"])
def test_a_dead_borrowers_connection_is_reclaimed_and_its_session_ends(
    pg: PostgresServer, make_pool: MakePool, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Issue 11, item 3: ``conn = pool.get()`` in a greenlet that raises or is killed mid-transaction;
    the application keeps the greenlet (so its traceback keeps the proxy): the slot comes back."""
    caplog.set_level(logging.WARNING, logger="geventpool")
    pool = make_pool(psycopg2, pg.dsn, max_size=2, timeout=5, application_name=f"dead-{how}")
    started = gevent.event.Event()
    backends: list[int] = []

    def borrower() -> None:
        conn = pool.get()
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE half_done (x int)")  # a transaction left open
        backends.append(_backend(conn))
        started.set()
        if how == "raised":
            raise RuntimeError("the request failed")
        gevent.sleep(60)

    kept = []
    for _ in range(2):
        started.clear()
        greenlet = gevent.spawn(borrower)
        kept.append(greenlet)
        started.wait(5)
        if how == "killed":
            greenlet.kill()
    pool.run_housekeeping()
    with pool.item() as conn:  # not a PoolTimeout for ever
        assert _one(conn, "SELECT 1") == 1
        assert _backend(conn) not in backends
    live = {s["pid"] for s in pg.sessions(f"dead-{how}")}
    wait_until(lambda: not set(backends) & {s["pid"] for s in pg.sessions(f"dead-{how}")}, timeout=5)
    assert live  # the new session
    assert sum("reclaimed" in r.getMessage() for r in caplog.records) == 2
    check_invariants(pool)

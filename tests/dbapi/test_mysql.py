"""MySQL/MariaDB for real (issue 13, items 2 and 3): mysqlclient (MySQLdb) in thread-pool mode and
PyMySQL on gevent sockets, against a private MariaDB; the faults of test_faults.py and
test_postgres.py (restart, a kill mid-query, connect_timeout) and return hygiene."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest

from geventpool import ConnectTimeout, PoolError
from geventpool.dbapi import ConnectionPool
from geventpool.dbapi.threaded import ThreadedConnection
from geventpool.testing.invariants import check_invariants
from geventpool.testing.mariadb import MariaDBServer
from geventpool.testing.monitor import HubMonitor
from geventpool.testing.waiting import wait_until

from .test_tpool import stall_of

MySQLdb = pytest.importorskip("MySQLdb")
pymysql = pytest.importorskip("pymysql")

pytestmark = pytest.mark.mariadb

MakePool = Callable[..., ConnectionPool]
DRIVERS = pytest.mark.parametrize("module", [MySQLdb, pymysql], ids=["MySQLdb", "pymysql"])


def _one(pool: ConnectionPool, sql: str = "SELECT 1") -> Any:
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchone()[0]


@DRIVERS
def test_mode_and_hub_free_during_a_1s_query(
    mariadb: MariaDBServer, make_pool: MakePool, module: Any
) -> None:
    pool = make_pool(module, max_size=2, **mariadb.connect_kwargs())
    assert pool.threaded is (module is MySQLdb)
    with pool.item() as conn:
        assert isinstance(conn.raw, ThreadedConnection) is (module is MySQLdb)
        cur = conn.cursor()

        def query() -> None:
            cur.execute("SELECT SLEEP(1)")
            assert cur.fetchone()[0] == 0

        # the thread-pool mode's promise: under 20 ms; PyMySQL parses every packet in the hub
        assert stall_of(query) < (0.020 if module is MySQLdb else 0.050)


@DRIVERS
@pytest.mark.parametrize("how", ["kill", "timeout"])
def test_killed_mid_query_is_gone_server_side(
    mariadb: MariaDBServer, make_pool: MakePool, module: Any, how: str
) -> None:
    """The greenlet dies or times out in ``SELECT SLEEP(30)``: the connection is discarded and the
    statement is stopped server-side by ``KILL QUERY`` (SHOW PROCESSLIST no longer lists it)."""
    pool = make_pool(module, max_size=1, **mariadb.connect_kwargs())
    tag = f"kill_{module.__name__}_{how}"

    def slow() -> None:
        with pool.item() as conn:
            cur = conn.cursor()
            if how == "timeout":
                with gevent.Timeout(0.3):
                    cur.execute(f"SELECT SLEEP(30) /* {tag} */")
            else:
                cur.execute(f"SELECT SLEEP(30) /* {tag} */")

    worker = gevent.spawn(slow)
    wait_until(lambda: mariadb.processlist(tag), 5)
    started = time.monotonic()
    if how == "kill":
        worker.kill()
    else:
        worker.join(5)
        assert isinstance(worker.exception, gevent.Timeout)
    wait_until(lambda: not mariadb.processlist(tag), 5, message="the query is gone server-side")
    assert time.monotonic() - started < 3
    assert pool.stats()["connections_discarded"] == 1
    assert _one(pool) == 1  # a new connection (the slot was not lost)
    check_invariants(pool)


@DRIVERS
def test_server_restart_while_idle(mariadb_private: MariaDBServer, make_pool: MakePool, module: Any) -> None:
    pool = make_pool(module, min_size=2, max_size=2, ping_after=0.2, **mariadb_private.connect_kwargs())
    pool.wait(10)
    mariadb_private.restart()
    gevent.sleep(0.3)  # idle past ping_after, as in production (the pool's own window, not a race)
    for _ in range(4):
        assert _one(pool) == 1  # the dead ones were found by the check, never handed out
    assert pool.stats()["connections_lost"] >= 1


@DRIVERS
def test_server_killed_mid_query(mariadb_private: MariaDBServer, make_pool: MakePool, module: Any) -> None:
    pool = make_pool(module, max_size=2, ping_after=None, **mariadb_private.connect_kwargs())
    errors: list[BaseException] = []
    tag = f"died_{module.__name__}"

    def slow() -> None:
        try:
            _one(pool, f"SELECT SLEEP(30) /* {tag} */")
        except module.Error as error:
            errors.append(error)

    worker = gevent.spawn(slow)
    wait_until(lambda: mariadb_private.processlist(tag), 5)
    with HubMonitor() as monitor:
        started = time.monotonic()
        mariadb_private.kill()
        worker.join(5)
        assert time.monotonic() - started < 2.0
    assert monitor.max_stall < 0.1
    assert errors and isinstance(errors[0], module.OperationalError)
    assert pool.driver.is_disconnect(errors[0])
    mariadb_private.start()
    for _ in range(3):
        assert _one(pool) == 1
    check_invariants(pool)


@DRIVERS
def test_connect_timeout_on_a_silent_server(deaf_port: int, make_pool: MakePool, module: Any) -> None:
    """A server that accepts TCP but never greets: ``get()`` raises ConnectTimeout after about
    ``connect_timeout``, and the hub runs meanwhile (a thread for MySQLdb, a gevent socket for PyMySQL)."""
    pool = make_pool(module, max_size=1, connect_timeout=1, timeout=5, host="127.0.0.1", port=deaf_port,
                     user="nobody", password="x")
    with HubMonitor() as monitor:
        started = time.monotonic()
        with pytest.raises((ConnectTimeout, PoolError)) as info:
            pool.get()
        elapsed = time.monotonic() - started
    assert isinstance(info.value, ConnectTimeout), repr(info.value)
    assert 0.9 < elapsed < 3.0
    assert monitor.max_stall < 0.2  # never the connect's whole second (a loaded CI machine: GC, others)


@DRIVERS
def test_return_hygiene(mariadb: MariaDBServer, make_pool: MakePool, module: Any) -> None:
    """What a borrower changed is gone for the next one, on the same connection: its transaction,
    autocommit, isolation level, session and user variables, temporary tables; the connect's own
    ``init_command`` holds again."""
    pool = make_pool(module, max_size=1, init_command="SET @@session.time_zone = '+02:00'",
                     **mariadb.connect_kwargs())
    setup = "CREATE TABLE IF NOT EXISTS hygiene (x INT) ENGINE=InnoDB"
    with pool.connection() as conn:
        conn.cursor().execute(setup)
        conn.cursor().execute("DELETE FROM hygiene")

    def state(conn: Any) -> tuple[Any, ...]:
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID(), @@tx_isolation, @x, @@sql_mode, @@time_zone, "
                    "(SELECT count(*) FROM hygiene)")
        row = tuple(cur.fetchone())
        cur.execute("SHOW TABLES LIKE 'scratch'")  # temporary tables are not listed: probe it
        try:
            cur.execute("SELECT count(*) FROM scratch")
            scratch = True
        except module.Error:
            scratch = False
        return (*row, scratch, bool(conn.get_autocommit()))

    with pool.item() as conn:
        before = state(conn)
        cur = conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        cur.execute("SET @x = 5")
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("SET @@session.time_zone = '+05:00'")
        cur.execute("CREATE TEMPORARY TABLE scratch (y INT)")
        conn.autocommit(True)
        cur.execute("START TRANSACTION")
        cur.execute("INSERT INTO hygiene VALUES (1)")  # left uncommitted
        changed = state(conn)
    with pool.item() as conn:
        after = state(conn)
    with pool.item():
        pass  # an untouched borrower
    with pool.item() as conn:
        assert state(conn) == before
    assert changed[0] == before[0] and after[0] == before[0]  # the same connection all along
    assert changed[1:] != before[1:]
    assert after == before
    assert before[1:] == ("REPEATABLE-READ", None, before[3], "+02:00", 0, False, False)
    check_invariants(pool)


def test_example_dbapi_mysql_runs() -> None:
    """examples/dbapi_mysql.py starts its own MariaDB and checks its own claims."""
    script = Path(__file__).resolve().parents[2] / "examples" / "dbapi_mysql.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "dbapi_mysql: all checks passed" in result.stdout
    assert "Traceback" not in result.stderr


def test_pymysql_tls_stays_green(tmp_path: Path, make_pool: MakePool) -> None:
    """PyMySQL's TLS (its default "preferred" mode, and a verified one) runs on gevent's ssl."""
    from geventpool.testing.slapd import TestCA

    ca = TestCA(str(tmp_path))
    cert, key = ca.issue("mariadb", hosts=("127.0.0.1",))
    with MariaDBServer(settings={"ssl-cert": cert, "ssl-key": key}) as server:
        for extra in ({}, {"ssl_ca": ca.cert_file, "ssl_verify_identity": True}):
            pool = make_pool(pymysql, max_size=1, **server.connect_kwargs(**extra))
            assert not pool.threaded
            with pool.item() as conn, HubMonitor() as monitor:
                cur = conn.cursor()
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                assert cur.fetchone()[1], extra  # encrypted
                cur.execute("SELECT SLEEP(0.3)")
            assert monitor.max_stall < 0.1


def test_pymysql_connect_callables(mariadb: MariaDBServer, make_pool: MakePool) -> None:
    """A partial of pymysql.connect stays green; any other callable opens blocking sockets, so the
    pool learns the driver at the first connect and runs the connections in threads."""
    kwargs = mariadb.connect_kwargs()
    partial = make_pool(functools.partial(pymysql.connect, **kwargs), max_size=1)
    assert not partial.threaded
    assert _one(partial) == 1
    opaque = make_pool(lambda: pymysql.connect(**kwargs), max_size=1)
    assert _one(opaque) == 1
    assert opaque.threaded and opaque.driver.name == "pymysql"
    with opaque.item() as conn:
        assert isinstance(conn.raw, ThreadedConnection)


def test_mysqldb_cursors_in_threads(mariadb: MariaDBServer, make_pool: MakePool) -> None:
    """A stored result is fetched in the calling greenlet (no thread hop); an unbuffered cursor
    (SSCursor) reads from the server, so its fetches run in threads; iteration works for both."""
    pool = make_pool(MySQLdb, max_size=1, **mariadb.connect_kwargs())
    with pool.item() as conn:
        stored = conn.cursor()
        stored.execute("SELECT seq FROM seq_1_to_1000")
        assert "fetchall" in stored._local
        assert [row[0] for row in stored] == list(range(1, 1001))
        unbuffered = conn.cursor(MySQLdb.cursors.SSCursor)
        assert not unbuffered._local
        unbuffered.execute("SELECT seq FROM seq_1_to_1000")
        assert unbuffered.fetchone() == (1,)
        assert len(unbuffered.fetchmany(10)) == 10
        assert [row[0] for row in unbuffered][-1] == 1000
        unbuffered.close()

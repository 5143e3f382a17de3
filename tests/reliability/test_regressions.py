"""Minimal regression tests for the defects the model and chaos runs found (issue 6).

Both are fixed: R1 by sending the cancel as ``pg_cancel_backend()`` on a
green side connection (``geventpool.dbapi.psycopg2.cancel_query``), R2 by
bounding every reset with ``keepalive_timeout`` (``ConnectionPool._run_reset``).

R1  geventpool/dbapi/psycopg2.py ``cancel_query``: psycopg2's ``cancel()``
    (``PQcancel``) holds the GIL while libpq waits for the server to close
    the cancel connection, so running it in gevent's threadpool does not
    help: every thread and the hub freeze until the server answers — for
    the whole pause when the server is SIGSTOPped, forever when the thing
    that would answer (a proxy, the code resuming the server) lives in the
    same process.  Found by the PostgreSQL chaos run (a killed query during
    ``server pause``).
R2  geventpool/dbapi/pool.py ``_reset`` (the rollback on ``put()``) runs with
    no deadline: a connection returned inside a transaction to a server
    that stopped answering blocks ``put()`` (and the ``with pool.item()``
    block) forever.  Found by the chaos run (workers stuck in
    ``put -> _reset -> conn.rollback()`` after a proxy blackhole).
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator

import gevent
import psycopg2
import pytest
from gevent import subprocess

from geventpool.testing import FaultProxy
from geventpool.testing.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.resume()
        server.cleanup()


R1_SCRIPT = textwrap.dedent(
    """
    import sys
    import gevent
    import psycopg2
    sys.path.insert(0, {root!r})
    from geventpool.dbapi import ConnectionPool
    from geventpool.testing import HubMonitor

    pool = ConnectionPool(psycopg2, {dsn!r}, max_size=1, timeout=5)
    conn = pool.get()

    def query():
        conn.cursor().execute("SELECT pg_sleep(30)")

    with HubMonitor(interval=0.01) as hub:
        worker = gevent.spawn(query)
        gevent.sleep(0.3)
        print("READY", flush=True)
        gevent.get_hub().threadpool.spawn(sys.stdin.readline).get()
        hub.reset()
        worker.kill(block=True, timeout=10)   # the wait callback sends a cancel request
        gevent.sleep(0.1)
    print("STALL %.3f" % hub.max_stall, flush=True)
    """
)


def test_r1_cancel_on_a_paused_server_does_not_freeze_the_process(pg: PostgresServer) -> None:
    root = __file__.rsplit("/tests/", 1)[0]
    code = R1_SCRIPT.format(root=root, dsn=pg.dsn)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with gevent.Timeout(30):
            assert proc.stdout.readline().strip() == b"READY"
            pg.pause()  # SIGSTOP: the postmaster will not answer the cancel request
            proc.stdin.write(b"GO\n")
            proc.stdin.flush()
            gevent.sleep(2.0)  # the pause lasts 2 s whatever the child does
            pg.resume()
            out, _err = proc.communicate()
    finally:
        pg.resume()
        if proc.poll() is None:
            proc.kill()
    stall = float(out.split(b"STALL")[1])
    # a green cancel would leave the hub free while the server is paused
    assert stall < 0.5, f"the process froze for {stall:.2f} s while the server was paused"


def test_r2_put_into_a_silent_server_is_bounded(pg: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from geventpool.dbapi import ConnectionPool
    from geventpool.dbapi import psycopg2 as green

    monkeypatch.setattr(green, "cancel_query", lambda conn: None)  # R1 would freeze this process
    with FaultProxy(upstream=(pg.host, pg.port)) as proxy:
        pool = ConnectionPool(psycopg2, host="127.0.0.1", port=proxy.port, user=pg.user, dbname=pg.dbname,
                              max_size=1, timeout=2, connect_timeout=2)
        try:
            conn = pool.get()
            conn.cursor().execute("SELECT 1")  # psycopg2 opened a transaction: put() rolls it back
            proxy.set_mode("blackhole")
            started = time.monotonic()
            returner = gevent.spawn(pool.put, conn)
            returner.join(timeout=8)
            elapsed = time.monotonic() - started
            returner.kill(block=True, timeout=5)
            # bounded like a check (keepalive_timeout = min(5, timeout) = 2 s), then discarded
            assert elapsed < 4, f"put() still blocked after {elapsed:.1f} s"
            assert pool.stats()["connections_discarded"] >= 1
        finally:
            proxy.set_mode("pass")
            pool.close(timeout=1)

"""Rows I1, I2: fork after use, and a pool built before monkey-patching (gunicorn --preload)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import gevent
import gevent.os

from geventpool.testing import check_invariants

from .helpers import LinePool, LineServer, echo


def test_i1_forked_children_never_touch_inherited_connections(server: LineServer, tmp_path: Path) -> None:
    pool = LinePool(server.address, 5)
    pool.wait(5)
    parent_ports = {slot.conn.getsockname()[1] for slot in pool.snapshot().idle_slots}
    before = {port: server.received.get(port, 0) for port in parent_ports}
    children = []
    for _ in range(4):
        pid = gevent.os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                # The child inherits the test server's listening socket and accept loop: left
                # running, a sibling could accept this child's connection and reset it on exit.
                server.pause()
                with pool.get(timeout=5) as conn:
                    echo(conn, b"child\n")
                    mine = conn.getsockname()[1]
                code = 0 if mine not in parent_ports else 2
            except BaseException:
                (tmp_path / f"child-{os.getpid()}.txt").write_text(traceback.format_exc())
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = gevent.os.waitpid(pid, 0)
        report = tmp_path / f"child-{pid}.txt"
        assert os.WEXITSTATUS(status) == 0, report.read_text() if report.exists() else "no child report"
    assert {port: server.received.get(port, 0) for port in parent_ports} == before
    for _ in range(5):
        with pool.get() as conn:
            echo(conn, b"parent\n")
    assert pool.connects == 5  # the parent's sessions still work, none replaced
    check_invariants(pool)
    pool.close()


def test_i2_pool_built_before_monkey_patching(server: LineServer) -> None:
    script = textwrap.dedent(
        f"""
        import socket
        from geventpool import ConnectionPool

        class Pool(ConnectionPool):
            def _new_connection(self):
                return socket.create_connection(("127.0.0.1", {server.port}))

        POOL = Pool(10)   # built at import time, as with gunicorn --preload

        from gevent import monkey
        monkey.patch_all()
        import gevent

        def op(i):
            with POOL.get(timeout=10) as conn:
                conn.sendall(b"x%d\\n" % i)
                data = b""
                while not data.endswith(b"\\n"):
                    data += conn.recv(100)
                assert data == b"x%d\\n" % i, data

        done = gevent.joinall([gevent.spawn(op, i) for i in range(200)], raise_error=True, timeout=30)
        print("ok", len(done), POOL.size)
        """
    )

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )

    result = gevent.get_hub().threadpool.apply(run)
    assert result.returncode == 0, result.stderr
    ok, done, size = result.stdout.split()
    assert (ok, done) == ("ok", "200")
    # it grows one connection at a time for waiters: how far depends on the machine's speed
    assert 1 <= int(size) <= 10

"""The fork rule of the model (row I1), in a subprocess: random steps, then forked children.

The server runs in this (pytest) process; a subprocess drives a pool through
seeded random steps and, between them, forks children that use the pool.
Each child must start with an empty pool and open its own connections; the
parent's connections must see no byte from a child (asked of the server with
``STAT <port>``) and keep working afterwards.
"""

from __future__ import annotations

import sys
import textwrap

import gevent
import pytest
from gevent import subprocess

from .servers import LineServer

SCRIPT = textwrap.dedent(
    """
    import os, random, socket, sys
    import gevent, gevent.os, gevent.socket
    sys.path.insert(0, {root!r})
    from geventpool.testing import check_invariants
    from tests.reliability.servers import TcpPool, echo, read_line

    ADDRESS = ("127.0.0.1", {port})

    def stat(port):
        sock = gevent.socket.create_connection(ADDRESS)
        try:
            sock.sendall(b"STAT %d\\n" % port)
            return int(read_line(sock))
        finally:
            sock.close()

    def child(pool, parent_ports):
        code = 1
        try:
            assert pool.size == 0, "the child inherited connections"
            for _ in range(3):
                with pool.get(timeout=5) as conn:
                    echo(conn, b"child\\n")
                    assert conn.getsockname()[1] not in parent_ports, "child used a parent socket"
            check_invariants(pool)
            pool.close()
            code = 0
        finally:
            os._exit(code)

    rng = random.Random({seed})
    pool = TcpPool(ADDRESS, min_size=2, max_size=4, timeout=5)
    pool.wait(5)
    held = []
    for step in range(30):
        action = rng.choice(["get", "put", "use", "discard", "fork", "housekeeping"])
        if action == "get" and len(held) < 3:
            held.append(pool.get(timeout=5))
            held[-1].__enter__()
        elif action == "put" and held:
            held.pop(rng.randrange(len(held))).__exit__(None, None, None)
        elif action == "discard" and held:
            held.pop(rng.randrange(len(held))).release(ConnectionResetError("model"))
        elif action == "use":
            with pool.get(timeout=5) as conn:
                echo(conn, b"parent\\n")
        elif action == "housekeeping":
            pool.run_housekeeping()
        elif action == "fork":
            slots = list(pool.snapshot().slots)
            parent_ports = {{slot.conn.getsockname()[1] for slot in slots}}
            before = {{port: stat(port) for port in parent_ports}}
            pids = []
            for _ in range(2):
                pid = gevent.os.fork()
                if pid == 0:
                    child(pool, parent_ports)
                pids.append(pid)
            for pid in pids:
                _, status = gevent.os.waitpid(pid, 0)
                assert os.WEXITSTATUS(status) == 0, f"child failed at step {{step}}"
            after = {{port: stat(port) for port in parent_ports}}
            assert after == before, f"a child wrote on a parent connection: {{before}} -> {{after}}"
        check_invariants(pool)
    for lease in held:
        lease.__exit__(None, None, None)
    for _ in range(4):
        with pool.get(timeout=5) as conn:
            echo(conn, b"parent after\\n")
    check_invariants(pool)
    pool.close()
    print("OK")
    """
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fork_rule_in_a_subprocess(seed: int) -> None:
    root = __file__.rsplit("/tests/", 1)[0]
    with LineServer() as server:
        code = SCRIPT.format(root=root, port=server.port, seed=seed)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with gevent.Timeout(60):
            out, err = proc.communicate()
    assert proc.returncode == 0 and out.strip().endswith(b"OK"), err.decode()[-3000:]

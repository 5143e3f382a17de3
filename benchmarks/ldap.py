"""LDAP throughput: geventpool.ldap against ldappool, ldap3 and raw async python-ldap.

One *operation* is a base search of one user entry through the implementation's
own idiom (check out a connection, search, give it back).  Every implementation
runs in its own worker subprocess, with ``gevent.monkey.patch_all()`` first (as in
a gunicorn gevent worker), against the same private slapd; the parent interleaves
the rounds (round r runs every implementation once, in an order rotated by r) and
reports the median of the rounds in operations per second, the ratios to ldappool
and to the raw limit, and the hub's longest stall seen by a heartbeat greenlet in
the worker.  Scenarios: slapd directly, and slapd behind a FaultProxy adding 5 ms
each way (the proxy runs in a process of its own, since ldappool blocks its hub).

    .venv/bin/python benchmarks/ldap.py            # full run (~3 min)
    .venv/bin/python benchmarks/ldap.py --quick    # smoke run

The peers are installed on demand (pip, PyPI) into benchmarks/.peers/ldap-lib
with ``--no-deps`` (ldappool 3.0.0 plus ``six``, which it uses without declaring,
and ``prettytable``; ldap3 and ``pyasn1``) and put on the workers' ``sys.path``;
they use this venv's python-ldap and gevent.

Implementations:

- ``geventpool``: ``LDAPPool(size=10)``, ``with pool.connection() as c: c.search_s(...)``;
- ``ldappool``: ``ConnectionManager(size=10)``, the same idiom (blocking C calls);
- ``ldap3-safesync``: 10 ``SAFE_SYNC`` connections in a ``gevent.queue.Queue``;
- ``ldap3-reusable``: one ``REUSABLE`` connection (``pool_size=10``), ``search`` then
  ``get_response``;
- ``raw``: the limit — min(greenlets, 10) persistent python-ldap connections in a
  queue, ``search_ext`` then ``wait_read`` + ``result3(msgid, timeout=0)``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["IMPLEMENTATIONS", "main", "worker"]

HERE = Path(__file__).resolve().parent
# Run as a script, this file's directory comes first on sys.path, and this file
# (ldap.py) would shadow python-ldap: take the directory out.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
PEERS_LIB = HERE / ".peers" / "ldap-lib"
PEERS = ["ldappool==3.0.0", "six==1.17.0", "prettytable==3.16.0", "wcwidth==0.2.13", "ldap3==2.9.1",
         "pyasn1==0.6.1"]
IMPLEMENTATIONS = ["geventpool", "ldappool", "ldap3-safesync", "ldap3-reusable", "raw"]
SERVICE_DN = "uid=svc1,ou=services,dc=example,dc=com"
SERVICE_PW = "svcpw"
POOL_SIZE = 10


def ensure_peers() -> None:
    """Install the peer libraries into benchmarks/.peers/ldap-lib unless they are there."""
    marker = PEERS_LIB / ".installed"
    if marker.exists() and marker.read_text() == "\n".join(PEERS):
        return
    PEERS_LIB.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(PEERS_LIB),
         *PEERS],
        check=True,
    )
    marker.write_text("\n".join(PEERS))


# -- worker (one implementation, one scenario, in its own process) ---------------------------


def _user_dn(n: int) -> str:
    return f"uid=user{n % 1000:04d},ou=people,dc=example,dc=com"


def _setup(name: str, host: str, port: int) -> Any:
    """Return ``op(n)``: one search through implementation ``name`` (connections warmed up)."""
    import gevent.queue
    import ldap

    uri = f"ldap://{host}:{port}"
    if name == "geventpool":
        from geventpool.ldap import LDAPPool

        pool = LDAPPool(uri, SERVICE_DN, SERVICE_PW, size=POOL_SIZE, min_size=POOL_SIZE, timeout=30)
        pool.wait(30)

        def op(n: int) -> None:
            with pool.connection() as conn:
                conn.search_s(_user_dn(n), ldap.SCOPE_BASE)

        return op
    if name == "ldappool":
        from ldappool import ConnectionManager

        cm = ConnectionManager(uri, SERVICE_DN, SERVICE_PW, size=POOL_SIZE)

        def op(n: int) -> None:
            with cm.connection() as conn:
                conn.search_s(_user_dn(n), ldap.SCOPE_BASE)

        return op
    if name == "ldap3-safesync":
        import ldap3

        server = ldap3.Server(host, port=port)
        conns: gevent.queue.Queue[Any] = gevent.queue.Queue()
        for _ in range(POOL_SIZE):
            conns.put(ldap3.Connection(server, SERVICE_DN, SERVICE_PW, client_strategy=ldap3.SAFE_SYNC,
                                       auto_bind=True))

        def op(n: int) -> None:
            conn = conns.get()
            try:
                conn.search(_user_dn(n), "(objectClass=*)", search_scope=ldap3.BASE,
                            attributes=ldap3.ALL_ATTRIBUTES)
            finally:
                conns.put(conn)

        return op
    if name == "ldap3-reusable":
        import ldap3

        server = ldap3.Server(host, port=port)
        shared = ldap3.Connection(server, SERVICE_DN, SERVICE_PW, client_strategy=ldap3.REUSABLE,
                                  pool_size=POOL_SIZE, pool_lifetime=3600)
        shared.bind()

        def op(n: int) -> None:
            msgid = shared.search(_user_dn(n), "(objectClass=*)", search_scope=ldap3.BASE,
                                  attributes=ldap3.ALL_ATTRIBUTES)
            shared.get_response(msgid)

        return op
    if name == "raw":
        from gevent import socket

        queue: gevent.queue.Queue[Any] = gevent.queue.Queue()

        def add_connection() -> None:
            sock = socket.create_connection((host, port))
            conn = ldap.initialize(uri, fileno=os.dup(sock.fileno()))
            conn.simple_bind_s(SERVICE_DN, SERVICE_PW)
            queue.put((conn, sock))

        def op(n: int) -> None:
            conn, sock = queue.get()
            try:
                msgid = conn.search_ext(_user_dn(n), ldap.SCOPE_BASE)
                fd = sock.fileno()
                while True:
                    socket.wait_read(fd, 30)
                    if conn.result3(msgid, 1, 0)[0] is not None:
                        break
            finally:
                queue.put((conn, sock))

        op.add_connection = add_connection  # type: ignore[attr-defined]
        return op
    raise SystemExit(f"unknown implementation {name!r}")


def worker(name: str, host: str, port: int, greenlets: int, seconds: float) -> dict[str, Any]:
    """Run ``greenlets`` loops of ``op`` for ``seconds``; return ops/s and the longest hub stall."""
    import gevent

    from geventpool.testing import HubMonitor

    op = _setup(name, host, port)
    if name == "raw":
        for _ in range(min(greenlets, POOL_SIZE)):
            op.add_connection()
    for n in range(20):  # warm-up
        op(n)
    done = [0]
    deadline = time.monotonic() + seconds

    def loop(start: int) -> None:
        # each loop checks the clock itself: a blocking implementation never lets another greenlet run
        n = start
        while time.monotonic() < deadline:
            op(n)
            n += greenlets
            done[0] += 1

    with HubMonitor(interval=0.005) as hub:
        started = time.monotonic()
        deadline = started + seconds
        jobs = [gevent.spawn(loop, i) for i in range(greenlets)]
        gevent.joinall(jobs, raise_error=True)
        elapsed = time.monotonic() - started
        gevent.sleep(0.02)  # let the heartbeat run once more: a blocked hub shows as one late beat
        stall = hub.max_stall
    return {"ops": done[0] / elapsed, "stall_ms": stall * 1000.0}


# -- parent ----------------------------------------------------------------------------------------


def _run_worker(name: str, port: int, greenlets: int, seconds: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PEERS_LIB), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--port", str(port), "--greenlets", str(greenlets),
         "--seconds", str(seconds)],
        capture_output=True, env=env, timeout=600, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{proc.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


_PROXY = """
import sys, gevent
from geventpool.testing import FaultProxy
proxy = FaultProxy(upstream=("127.0.0.1", int(sys.argv[1]))).start()
proxy.set_mode("delay", ms=float(sys.argv[2]))
print(proxy.port, flush=True)
gevent.get_hub().threadpool.spawn(sys.stdin.read).get()
"""


def _start_proxy(port: int, delay_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROXY, str(port), str(delay_ms)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--only", nargs="*", choices=IMPLEMENTATIONS)
    parser.add_argument("--json", help="also write the medians here: {rows: [{scenario, greenlets, name, "
                                       "ops_per_s, max_stall_ms, rounds}]}")
    parser.add_argument("--worker")
    parser.add_argument("--port", type=int)
    parser.add_argument("--greenlets", type=int)
    args = parser.parse_args(argv)
    if args.worker:
        from gevent import monkey

        monkey.patch_all()
        print(json.dumps(worker(args.worker, "127.0.0.1", args.port, args.greenlets, args.seconds)))
        return 0
    sys.path.insert(0, str(ROOT))
    from geventpool.testing.slapd import Slapd

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so that slapd and the proxy are stopped

    signal.signal(signal.SIGTERM, _terminate)
    ensure_peers()
    rounds, seconds = (1, 1.0) if args.quick else (args.rounds, args.seconds)
    names = args.only or IMPLEMENTATIONS
    with Slapd(users=1000, tls=False, threads=8) as slapd:
        proxy, proxy_port = _start_proxy(slapd.port, 5.0)
        try:
            scenarios = [("direct", slapd.port, 1), ("direct", slapd.port, 50),
                         ("+5 ms", proxy_port, 1), ("+5 ms", proxy_port, 50)]
            results: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
            for r in range(rounds):
                for scenario, port, greenlets in scenarios:
                    order = names[r % len(names):] + names[:r % len(names)]
                    for name in order:
                        res = _run_worker(name, port, greenlets, seconds)
                        results.setdefault((scenario, greenlets, name), []).append(res)
                        print(f"round {r + 1} {scenario:>6} {greenlets:>2} greenlets {name:<15} "
                              f"{res['ops']:>9.0f} ops/s  stall {res['stall_ms']:.1f} ms", flush=True)
        finally:
            assert proxy.stdin is not None
            proxy.stdin.close()
            proxy.wait(10)
    rows: list[dict[str, Any]] = []
    print()
    print(f"{'scenario':<8} {'greenlets':>9} {'implementation':<15} {'ops/s':>9} {'x ldappool':>10} "
          f"{'x raw':>6} {'max hub stall':>14}")
    for scenario, _port, greenlets in scenarios:
        medians = {n: statistics.median(r["ops"] for r in results[(scenario, greenlets, n)]) for n in names}
        for name in names:
            stall = max(r["stall_ms"] for r in results[(scenario, greenlets, name)])
            vs_lp = medians[name] / medians["ldappool"] if "ldappool" in medians else float("nan")
            vs_raw = medians[name] / medians["raw"] if "raw" in medians else float("nan")
            print(f"{scenario:<8} {greenlets:>9} {name:<15} {medians[name]:>9.0f} {vs_lp:>10.2f} "
                  f"{vs_raw:>6.2f} {stall:>11.1f} ms")
            rows.append({
                "scenario": scenario, "greenlets": greenlets, "name": name, "ops_per_s": medians[name],
                "max_stall_ms": stall, "rounds": [r["ops"] for r in results[(scenario, greenlets, name)]],
            })
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "rounds": rounds, "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

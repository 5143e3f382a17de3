"""What ``make demo`` runs: a server crash and restart, carried through by ``@retry``.

An in-process TCP server on 127.0.0.1 answers PING with PONG.  A pool of 10
connections (keepalive on) serves a few hundred greenlets that call an
``@retry``-decorated function in a loop.  Mid-run the server is killed (every
connection reset, the listener closed) and, a moment later, restarted on
the same port.  The callers whose connections broke retry; those who asked
for a connection while the server was down wait in the pool's queue; the
pool reconnects in the background with backoff.  No call fails.

A progress line is printed every second; at the end, a summary, the pool's
status table and ``pool.stats()``.  Meanwhile ``geventpool.testing`` checks
the pool's bookkeeping every 50 ms and measures how long the hub was blocked.
The exit status is 1 if any call failed or any invariant broke.
Needs only gevent and geventpool; no network.

Run: ``python examples/demo.py`` (about 9 s), or ``--quick`` (about 3 s).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import gevent
import gevent.event
import gevent.pool
from _servers import LineServer
from gevent import socket

from geventpool import ConnectionPool, retry
from geventpool.testing import HubMonitor, pool_problems

log = logging.getLogger("demo")


class DemoPool(ConnectionPool):
    """PING/PONG connections to the demo server."""

    #: Reconnect quickly once the server is back (the default cap is 5 s).
    reconnect_backoff_max = 0.25

    def __init__(self, address, size, **options):
        self.address = address
        super().__init__(size, **options)

    def _new_connection(self):
        s = socket.create_connection(self.address, timeout=2.0)
        s.settimeout(5.0)  # a reply that never comes is a socket.error too
        return s

    def _keepalive(self, c):
        c.sendall(b"PING\n")
        if c.recv(5) != b"PONG\n":
            raise socket.error("no PONG")


class Plan:
    """When things happen (seconds from the start), and how many callers."""

    def __init__(self, quick):
        self.greenlets = 100 if quick else 300
        self.kill_at = 1.0 if quick else 3.0
        self.restart_at = 1.6 if quick else 4.5
        self.end_at = 2.6 if quick else 8.0


class Tally:
    """What the callers did."""

    def __init__(self):
        self.calls = 0  # completed calls
        self.attempts = 0  # tries, including the retries
        self.attempt_errors = 0  # tries that hit a broken connection
        self.failed = 0  # calls that raised despite @retry
        self.failures = []
        self.after_restart = 0  # calls completed after the restart
        self.checks = 0  # invariant checks of the pool's bookkeeping
        self.problems = []  # broken invariants seen


def run(plan, pool_timeout):
    server = LineServer(delay=0.002).start()  # ~2 ms of "work" per request
    pool = DemoPool(server.address, 10, name="demo", keepalive=1.0, timeout=pool_timeout)
    tally = Tally()
    restarted = gevent.event.Event()

    @retry(exc_classes=(socket.error,), logger=log, max_failures=8, interval=0.02,
           backoff=2.0, max_interval=0.5, jitter=1.0)
    def request():
        tally.attempts += 1
        try:
            with pool.get() as c:
                c.sendall(b"PING\n")
                if c.recv(5) != b"PONG\n":
                    raise socket.error("bad reply")
        except socket.error:
            tally.attempt_errors += 1
            raise

    def caller(stop):
        while not stop.is_set():
            try:
                request()
            except Exception as error:
                tally.failed += 1
                tally.failures.append(repr(error))
            else:
                tally.calls += 1
                if restarted.is_set():
                    tally.after_restart += 1

    def check():
        tally.checks += 1
        tally.problems.extend(pool_problems(pool))

    def watch():
        while True:
            check()
            gevent.sleep(0.05)

    started = time.monotonic()

    def elapsed():
        return time.monotonic() - started

    def progress():
        while True:
            gevent.sleep(1.0)
            s = pool.stats()
            state = f"up, {server.connections} conns" if server.running else "DOWN"
            print(
                f"[{elapsed():4.1f}s] ops {tally.calls:6d}  retries {tally.attempt_errors:3d}  "
                f"failed {tally.failed}  | pool size {s['pool_size']:.0f} idle {s['pool_available']:.0f} "
                f"in use {s['pool_in_use']:.0f} waiting {s['requests_waiting']:.0f}  | server {state}",
                flush=True,
            )

    print(f"server listening on {server.address[0]}:{server.port}; pool {pool!r}")
    pool.wait(timeout=10)
    print(f"pool filled; starting {plan.greenlets} greenlets", flush=True)
    stop = gevent.event.Event()
    callers = gevent.pool.Group()
    for _ in range(plan.greenlets):
        callers.spawn(caller, stop)
    ticker = gevent.spawn(progress)
    watcher = gevent.spawn(watch)
    monitor = HubMonitor().start()

    gevent.sleep(max(plan.kill_at - elapsed(), 0))
    reset = server.kill()
    print(f"*** [{elapsed():4.1f}s] server killed: {reset} connections reset, listener closed", flush=True)
    gevent.sleep(max(plan.restart_at - elapsed(), 0))
    server.restart()
    restarted.set()
    print(f"*** [{elapsed():4.1f}s] server restarted on {server.address[0]}:{server.port}", flush=True)
    gevent.sleep(max(plan.end_at - elapsed(), 0))

    stop.set()
    callers.join(timeout=20)
    ticker.kill()
    watcher.kill()
    monitor.stop()
    duration = elapsed()
    check()
    stats = pool.stats()
    print()
    print(f"summary: {tally.calls} operations by {plan.greenlets} greenlets in {duration:.1f} s "
          f"({tally.calls / duration:.0f}/s)")
    print(f"  retries: {tally.attempt_errors} (attempts that hit a broken connection and were retried)")
    print(f"  failed calls: {tally.failed} (expected 0)")
    print(f"  connections opened: {stats['connections_num']:.0f}, lost: {stats['connections_lost']:.0f}, "
          f"connect attempts refused while down: {stats['connections_errors']:.0f}")
    print(f"  operations after the restart: {tally.after_restart}")
    print(f"  pool invariants checked {tally.checks} times: "
          f"{'all held' if not tally.problems else f'{len(tally.problems)} broken'}")
    print(f"  longest the gevent hub was blocked: {monitor.max_stall * 1000:.1f} ms")
    print()
    print(pool)
    print()
    print("pool.stats():")
    for key, value in stats.items():
        print(f"  {key:22s} {value:g}")
    pool.close()
    check()
    server.stop()
    ok = True
    if len(callers):
        print(f"FAILED: {len(callers)} callers did not finish")
        ok = False
    if tally.failed:
        print(f"FAILED: {tally.failed} calls failed, first: {tally.failures[0]}")
        ok = False
    if tally.problems:
        print(f"FAILED: pool invariants broken {len(tally.problems)} times, first: {tally.problems[:3]}")
        ok = False
    if not tally.after_restart:
        print("FAILED: no operation completed after the restart")
        ok = False
    if ok:
        print("demo: OK, no call failed")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (for tests)")
    parser.add_argument("--verbose", action="store_true", help="log every retry and reconnect attempt")
    parser.add_argument("--pool-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="how long a caller waits for a connection (default 15; shorter than the "
                        "outage: calls fail)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # a refused reconnect is logged at WARNING: expected here, and counted in the summary
        logging.getLogger("geventpool").setLevel(logging.ERROR)
    return 0 if run(Plan(args.quick), args.pool_timeout) else 1


if __name__ == "__main__":
    sys.exit(main())

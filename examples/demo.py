"""What ``make demo`` runs: pools under load, faults on a schedule, a live status table.

The embedded part needs only gevent and geventpool, and no network:

- ``tcp``: a pool of 10 connections (keepalive on) over two in-process TCP
  servers on 127.0.0.1 (``servers=``, strategy FIRST_ACTIVE: *primary*, and
  *backup* for failover), each behind a ``geventpool.testing.FaultProxy``.  A
  few hundred greenlets call an ``@retry``-decorated PING in a loop.
- ``sqlite``: a ``geventpool.dbapi`` pool of sqlite3 connections on a
  temporary file; greenlets insert rows.

When they are installed, a private slapd (``ldap``, ``geventpool.ldap``) and a
private PostgreSQL (``postgres``, ``geventpool.dbapi`` with psycopg2) join in,
each run from a temporary directory on free ports (``geventpool.testing``).

Then the faults, on a schedule: the primary server crashes (its connections
reset, its listener closed: the pool fails over to the backup) and comes
back (its circuit closes, the pool fails back one connection at a time);
every connection is reset; the network to both servers stalls (callers
wait in the pool's queue); an outside writer locks the sqlite file; slapd is
killed and restarted; every PostgreSQL session is terminated.  The callers
whose connections broke retry; no call fails.

In a terminal the status table is redrawn in place (plain ANSI escapes):
pool sizes, waiting callers, each TCP server's circuit, ops/s, retries and
failed calls, the hub's longest stall and the pool invariants checked every
50 ms.  ``--no-live`` (the default when the output is not a terminal) prints
log lines instead.  At the end: a summary, the tcp pool's status table and
``pool.stats()``.  The exit status is 1 if any call failed or any invariant
broke.

Run: ``python examples/demo.py`` (about 25 s), ``--quick`` (about 6 s plus
the servers' start-up), ``--embedded`` (no slapd, no PostgreSQL).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time

import gevent
import gevent.event
import gevent.pool
from _servers import LineServer
from gevent import socket

from geventpool import ConnectionPool, PoolError, Server, ServerPool, retry
from geventpool.dbapi import ConnectionPool as DBPool
from geventpool.servers import POOLING_STRATEGY_FIRST_ACTIVE
from geventpool.testing import FaultProxy, HubMonitor, pool_problems

log = logging.getLogger("demo")


# -- the TCP service -------------------------------------------------------------------------


class DemoPool(ConnectionPool):
    """PING/PONG connections to whichever demo server the server pool picks."""

    #: Reconnect quickly once a server is back (the default cap is 5 s).
    reconnect_backoff_max = 0.25
    #: Housekeeping (failback: one connection per pass) five times a second.
    housekeeping_interval = 0.2

    def _new_connection(self, server):
        s = socket.create_connection(server.address, timeout=2.0)
        s.settimeout(5.0)  # a reply that never comes is a socket.error too
        try:
            self._keepalive(s)  # a greeting: a server that accepts but cannot answer is down
        except BaseException:
            s.close()
            raise
        return s

    def _keepalive(self, c):
        c.sendall(b"PING\n")
        if c.recv(5) != b"PONG\n":
            raise socket.error("no PONG")


class Backend:
    """One TCP server, the FaultProxy in front of it, and the pool's Server for it."""

    def __init__(self, name, priority):
        self.name = name
        self.server = LineServer(delay=0.002).start()  # ~2 ms of "work" per request
        self.proxy = FaultProxy(self.server.address).start()
        self.target = Server("127.0.0.1", self.proxy.port, priority=priority, name=name)
        self.target.health.cooldown = 0.2  # probe a failed server every 0.2 s
        self.target.health.probe_timeout = 1.0
        self.link = "pass"
        self.peak = 0  # most pool connections seen on this server

    @property
    def process(self):
        return "up" if self.server.running else "DOWN"

    def close(self):
        self.proxy.stop()
        self.server.stop()


# -- what the callers did ---------------------------------------------------------------------


class Section:
    """One pool under load: its callers, their operation, and what they did."""

    def __init__(self, key, backend, pool, op, greenlets, errors, think=0.0, max_failures=8):
        self.key = key
        self.backend = backend  # what it talks to, for the table
        self.pool = pool
        self.greenlets = greenlets
        self.think = think  # mean seconds each caller pauses between calls (uniformly random)
        self.errors = errors  # what a broken connection raises: retried
        self.calls = 0
        self.retried = 0  # attempts that hit a broken connection (then retried)
        self.failed = 0  # calls that raised despite @retry
        self.failures = []
        self.after_fault = 0  # calls completed once `faulted` is set (tcp: after the restart)
        self.faulted = False
        self.samples = collections.deque(maxlen=64)  # (time, calls) for ops/s
        self.checks = 0
        self.problems = []

        @retry(exc_classes=errors, logger=log, max_failures=max_failures, interval=0.02,
               backoff=2.0, max_interval=0.5, jitter=1.0)
        def call():
            try:
                op()
            except errors:
                self.retried += 1
                raise

        self.call = call

    def caller(self, stop):
        while not stop.is_set():
            try:
                self.call()
            except Exception as error:
                self.failed += 1
                self.failures.append(repr(error))
            else:
                self.calls += 1
                if self.faulted:
                    self.after_fault += 1
            if self.think:
                gevent.sleep(random.uniform(0.0, 2.0 * self.think))

    def check(self):
        self.checks += 1
        try:
            self.problems.extend(pool_problems(self.pool))
        except TypeError:
            pass  # not a core pool

    def rate(self, now):
        self.samples.append((now, self.calls))
        while len(self.samples) > 2 and now - self.samples[1][0] >= 1.0:
            self.samples.popleft()
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


# -- the sections ------------------------------------------------------------------------------


def tcp_section(plan, pool_timeout):
    primary, backup = Backend("primary", 0), Backend("backup", 1)
    servers = ServerPool([primary.target, backup.target], POOLING_STRATEGY_FIRST_ACTIVE)
    pool = DemoPool(10, servers=servers, name="tcp", keepalive=1.0, timeout=pool_timeout,
                    connect_timeout=1.0)

    def op():
        with pool.get() as c:
            c.sendall(b"PING\n")
            if c.recv(5) != b"PONG\n":
                raise socket.error("bad reply")

    # callers pause between calls: the pool is busy, not saturated, so that idle
    # connections exist for the failback (it retires idle ones, one per pass)
    section = Section("tcp", "2 TCP servers, FIRST_ACTIVE", pool, op, plan.greenlets, (socket.error,),
                      think=plan.think)
    section.backends = [primary, backup]
    return section


def sqlite_section(directory):
    path = os.path.join(directory, "demo.db")

    def configure(conn):
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # no fsync: a commit must not block the hub

    pool = DBPool(sqlite3, path, max_size=4, timeout=10, name="sqlite", configure=configure)
    with pool.item() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS hits (n INTEGER)")
        conn.commit()

    def op():
        with pool.item() as conn:
            conn.execute("INSERT INTO hits VALUES (1)")
            conn.commit()

    section = Section("sqlite", "sqlite3, a temporary file (WAL)", pool, op, 20, (sqlite3.OperationalError,),
                      think=0.02)
    section.path = path
    return section


def ldap_section(stack, say):
    if shutil.which("slapd") is None and not os.path.exists("/usr/sbin/slapd"):
        return None, "slapd not installed"
    try:
        import ldap

        from geventpool.ldap import LOST_CONNECTION_ERRORS, LDAPPool
        from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, user_dn
    except ImportError as error:
        return None, f"python-ldap missing ({error})"
    say("starting a private slapd ...")
    try:
        slapd = Slapd(users=50, tls=False).start()
    except Exception as error:
        return None, f"slapd did not start ({type(error).__name__})"
    stack.append(slapd.close)
    pool = LDAPPool(slapd.uri, SERVICE_DN, SERVICE_PW, size=5, timeout=5, connect_timeout=2,
                    checkout_timeout=10, retry_max=1, name="ldap")
    stack.append(pool.close)
    counter = [0]

    def op():
        counter[0] += 1
        dn = user_dn(counter[0] % 50)
        with pool.connection() as conn:
            if conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["uid"])[0][0] != dn:
                raise AssertionError("wrong entry")

    section = Section("ldap", f"slapd {slapd.uri}", pool, op, 10, (*LOST_CONNECTION_ERRORS, PoolError),
                      think=0.02, max_failures=14)
    section.slapd = slapd
    return section, None


def postgres_section(stack, say):
    try:
        import psycopg2

        from geventpool.testing.postgres import PostgresServer, find_bin_dir

        find_bin_dir()
    except (ImportError, FileNotFoundError) as error:
        return None, f"not installed ({error})"
    say("starting a private PostgreSQL ...")
    pg = PostgresServer()
    try:
        pg.start()
    except Exception as error:
        pg.cleanup()
        return None, f"PostgreSQL did not start ({type(error).__name__})"
    stack.append(pg.cleanup)
    pool = DBPool(psycopg2, pg.dsn, max_size=5, timeout=10, name="postgres",
                  application_name="geventpool-demo",
                  configure=lambda c: setattr(c, "autocommit", True))
    stack.append(pool.close)

    def op():
        with pool.item() as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            cur.close()

    errors = (psycopg2.OperationalError, psycopg2.InterfaceError, PoolError)
    section = Section("postgres", f"PostgreSQL {pg.host}:{pg.port}", pool, op, 10, errors,
                      think=0.02, max_failures=14)
    section.pg = pg
    return section, None


# -- the schedule ------------------------------------------------------------------------------


class Plan:
    """When things happen (seconds from the start of the load), and how many callers."""

    def __init__(self, quick):
        self.quick = quick
        self.greenlets = 100 if quick else 300
        self.think = 0.06 if quick else 0.2  # a tcp caller's mean pause between calls
        self.stall = 0.5 if quick else 1.5  # seconds the network stalls
        self.lock = 0.3 if quick else 1.0  # seconds the outside writer holds the sqlite lock
        if quick:
            self.times = {"kill": 0.8, "restart": 1.4, "reset": 2.2, "stall": 2.8, "lock": 3.6,
                          "ldap": 4.2, "postgres": 4.8}
            self.end_at = 5.6
        else:
            self.times = {"kill": 2.5, "restart": 5.0, "reset": 9.0, "stall": 11.0, "lock": 14.0,
                          "ldap": 16.0, "postgres": 18.5}
            self.end_at = 21.0


def faults(plan, sections, say):
    """The fault schedule: (time, function) pairs; each function says what it did."""
    tcp = sections["tcp"]
    primary, backup = tcp.backends

    def kill():
        reset = primary.server.kill()
        tcp.faulted = False
        say(f"tcp: primary server killed: {reset} connections reset, listener closed")

    def restart():
        primary.server.restart()
        tcp.faulted = True
        say(f"tcp: primary server restarted on {primary.server.address[0]}:{primary.server.port}")

    def reset():
        count = primary.proxy.connections + backup.proxy.connections
        primary.proxy.reset_all()
        backup.proxy.reset_all()
        say(f"tcp: every connection reset (RST) by the proxies: {count}")

    def stall():
        for b in (primary, backup):
            b.proxy.set_mode("stall")
            b.link = "STALL"
        say(f"tcp: network stall: both proxies hold all traffic for {plan.stall:g} s")
        gevent.sleep(plan.stall)
        for b in (primary, backup):
            b.proxy.set_mode("pass")
            b.link = "pass"
        say("tcp: stall over: the held requests go through")

    def lock():
        locker = sqlite3.connect(sections["sqlite"].path, timeout=0, isolation_level=None)
        try:
            while True:
                try:
                    locker.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:
                    gevent.sleep(0.001)
            say(f"sqlite: an outside writer holds the write lock for {plan.lock:g} s")
            gevent.sleep(plan.lock)
            locker.execute("COMMIT")
        finally:
            locker.close()
        say("sqlite: lock released (the pool's writers waited green)")

    def ldap_restart():
        section = sections["ldap"]
        say("ldap: slapd killed (SIGKILL), restarting ...")
        section.slapd.restart(graceful=False)
        section.faulted = True
        say(f"ldap: slapd restarted on {section.slapd.uri}")

    def pg_terminate():
        section = sections["postgres"]
        count = section.pg.terminate_all("geventpool-demo")
        section.faulted = True
        say(f"postgres: every session terminated (pg_terminate_backend): {count}")

    def sqlite_faulted():
        sections["sqlite"].faulted = True

    schedule = [(plan.times["kill"], kill), (plan.times["restart"], restart),
                (plan.times["reset"], reset), (plan.times["stall"], stall),
                (plan.times["lock"], lambda: (lock(), sqlite_faulted()))]
    if "ldap" in sections:
        schedule.append((plan.times["ldap"], ldap_restart))
    if "postgres" in sections:
        schedule.append((plan.times["postgres"], pg_terminate))
    return schedule


# -- the screen --------------------------------------------------------------------------------

_COLORS = {"closed": "32", "up": "32", "pass": "32", "open": "31;1", "DOWN": "31;1", "STALL": "33;1",
           "half-open": "33;1", "BROKEN": "31;1"}
_WORDS = re.compile(r"(?<![\w-])(half-open|closed|open|DOWN|STALL|BROKEN)(?![\w-])")


def colorize(line):
    return _WORDS.sub(lambda m: f"\x1b[{_COLORS[m.group(1)]}m{m.group(1)}\x1b[0m", line)


class Screen:
    """The live status table, redrawn in place; or, with ``live=False``, log lines."""

    def __init__(self, live, out=sys.stdout):
        self.live = live
        self.out = out
        self.drawn = 0  # lines of the last frame
        self.events = collections.deque(maxlen=9)

    def event(self, text):
        self.events.append(text)
        if not self.live:
            print(f"*** {text}", file=self.out, flush=True)

    def draw(self, lines):
        width = max(shutil.get_terminal_size((120, 40)).columns - 1, 40)
        # first frame: hide the cursor and start at the top of a clear screen;
        # then go back up over the previous frame and overwrite it
        parts = [f"\x1b[{self.drawn}F" if self.drawn else "\x1b[?25l\x1b[H\x1b[2J"]
        for line in lines:
            parts.append(colorize(line[:width]) + "\x1b[K\n")
        parts.append("\x1b[J")
        self.out.write("".join(parts))
        self.out.flush()
        self.drawn = len(lines)

    def done(self):
        if self.live:
            self.out.write("\x1b[?25h")
            self.out.flush()


def frame(now, plan, sections, missing, monitor, screen):
    tcp = sections["tcp"]
    used = ", ".join(s.key for s in sections.values())
    lines = [
        f"geventpool demo   {now:5.1f} s of {plan.end_at:.1f} s   pools: {used}"
        + (f"   (not used: {'; '.join(missing)})" if missing else ""),
        "",
        f"{'POOL':9}{'BACKEND':44}{'SIZE':>5}{'IDLE':>6}{'USED':>6}{'OPEN':>6}{'WAIT':>6}"
        f"{'OPS/S':>8}{'OPS':>9}{'RETRIED':>9}{'FAILED':>8}",
    ]
    for s in sections.values():
        st = s.pool.stats()
        backend = s.backend if len(s.backend) <= 42 else "..." + s.backend[-39:]
        lines.append(
            f"{s.key:9}{backend:44}{st['pool_size']:5.0f}{st['pool_available']:6.0f}"
            f"{st['pool_in_use']:6.0f}{st['pool_opening']:6.0f}{st['requests_waiting']:6.0f}"
            f"{s.rate(now):8.0f}{s.calls:9d}{s.retried:9d}{s.failed:8d}"
        )
    lines += ["", f"{'TCP SERVER':12}{'PROXY -> SERVER':18}{'PRIORITY':>9}  {'PROCESS':9}{'LINK':7}"
                  f"{'CIRCUIT':11}{'FAILURES':>9}{'CONNS':>7}"]
    health = tcp.pool.server_stats()
    for b in tcp.backends:
        h = health.get(b.name, {})
        conns = h.get("connections", 0)
        lines.append(
            f"{b.name:12}{f':{b.proxy.port} -> :{b.server.port}':18}{b.target.priority:9d}  {b.process:9}"
            f"{b.link:7}{h.get('state', '?'):11}{h.get('total_failures', 0):9d}{conns:7d}"
        )
    problems = sum(len(s.problems) for s in sections.values())
    checks = sum(s.checks for s in sections.values())
    lines += [
        "",
        f"hub: longest stall {monitor.max_stall * 1000:.1f} ms    invariants: {checks} checks, "
        + ("all held" if not problems else f"{problems} BROKEN"),
        "",
        "events:",
        *(f"  {e}" for e in screen.events),
    ]
    return lines


def progress_line(now, sections):
    parts = []
    for s in sections.values():
        st = s.pool.stats()
        parts.append(f"{s.key} ops {s.calls} retried {s.retried} failed {s.failed} "
                     f"size {st['pool_size']:.0f} idle {st['pool_available']:.0f} "
                     f"in use {st['pool_in_use']:.0f} waiting {st['requests_waiting']:.0f}")
    tcp = sections["tcp"]
    health = tcp.pool.server_stats()
    servers = ", ".join(
        f"{b.name} {b.process}/{health[b.name]['state']}/{health[b.name]['connections']} conns"
        for b in tcp.backends
    )
    return f"[{now:4.1f}s] " + " | ".join(parts) + f" | servers: {servers}"


# -- the run -------------------------------------------------------------------------------------


class CircuitLog(logging.Handler):
    """Shows the servers' circuit changes (geventpool.servers) as events."""

    def __init__(self, event, backends):
        super().__init__(logging.INFO)
        self.event = event
        self.names = {f"127.0.0.1:{b.proxy.port}": b.name for b in backends}

    def emit(self, record):
        message = re.sub(r" \(\d+ failures, last: .*\)", "", record.getMessage())
        for address, name in self.names.items():
            message = message.replace(f"server {address}", f"tcp: {name} server")
        self.event(message)


def run(plan, pool_timeout, live, embedded):
    screen = Screen(live)
    started = [time.monotonic()]

    def elapsed():
        return time.monotonic() - started[0]

    def say(text):  # set-up messages, before the live table takes the screen
        print(text, flush=True)

    stack = []  # cleanups, run in reverse
    directory = tempfile.mkdtemp(prefix="geventpool-demo-")
    missing = []
    sections = {}
    try:
        sections["tcp"] = tcp_section(plan, pool_timeout)
        stack.append(lambda: [b.close() for b in sections["tcp"].backends])
        sections["sqlite"] = sqlite_section(directory)
        if embedded:
            missing.append("slapd, PostgreSQL: --embedded")
        else:
            for key, make in (("ldap", ldap_section), ("postgres", postgres_section)):
                section, why = make(stack, say)
                if section is None:
                    missing.append(f"{key}: {why}")
                else:
                    sections[key] = section
        if missing:
            say(f"not used: {'; '.join(missing)}")
        tcp = sections["tcp"]
        primary, backup = tcp.backends
        say(f"tcp servers: primary 127.0.0.1:{primary.server.port} (proxy :{primary.proxy.port}), "
            f"backup 127.0.0.1:{backup.server.port} (proxy :{backup.proxy.port}); pool {tcp.pool!r}")
        for s in sections.values():
            s.pool.wait(timeout=10)
        say(f"pool filled; starting {plan.greenlets} greenlets on tcp, "
            f"{sum(s.greenlets for s in sections.values()) - plan.greenlets} on "
            f"{', '.join(k for k in sections if k != 'tcp')}")
        return drive(plan, sections, missing, screen, elapsed, started)
    finally:
        screen.done()
        for cleanup in reversed(stack):
            try:
                cleanup()
            except Exception as error:
                log.warning("cleanup failed: %r", error)
        shutil.rmtree(directory, ignore_errors=True)


def drive(plan, sections, missing, screen, elapsed, started):
    def event(text):
        screen.event(f"[{elapsed():4.1f}s] {text}")

    circuits = CircuitLog(event, sections["tcp"].backends)
    logging.getLogger("geventpool.servers").addHandler(circuits)
    logging.getLogger("geventpool.servers").setLevel(logging.INFO)
    logging.getLogger("geventpool.servers").propagate = False
    stop = gevent.event.Event()
    callers = gevent.pool.Group()
    started[0] = time.monotonic()
    for s in sections.values():
        for _ in range(s.greenlets):
            callers.spawn(s.caller, stop)
    monitor = HubMonitor().start()

    def watch():
        tcp = sections["tcp"]
        while True:
            for s in sections.values():
                s.check()
            health = tcp.pool.server_stats()
            for b in tcp.backends:
                b.peak = max(b.peak, health.get(b.name, {}).get("connections", 0))
            gevent.sleep(0.05)

    def show():
        while True:
            now = elapsed()
            if screen.live:
                screen.draw(frame(now, plan, sections, missing, monitor, screen))
                gevent.sleep(0.25)
            else:
                gevent.sleep(1.0)
                print(progress_line(elapsed(), sections), flush=True)

    def run_faults():
        for at, action in faults(plan, sections, event):
            gevent.sleep(max(at - elapsed(), 0))
            action()

    helpers = [gevent.spawn(watch), gevent.spawn(show)]
    chaos = gevent.spawn(run_faults)
    gevent.sleep(max(plan.end_at - elapsed(), 0))
    chaos.join(timeout=30)
    stop.set()
    callers.join(timeout=20)
    duration = elapsed()
    for s in sections.values():
        s.check()
    if screen.live:
        screen.draw(frame(duration, plan, sections, missing, monitor, screen))
    for helper in helpers:
        helper.kill()
    monitor.stop()
    logging.getLogger("geventpool.servers").removeHandler(circuits)
    return summary(plan, sections, callers, chaos, duration, monitor, started[0])


def summary(plan, sections, callers, chaos, duration, monitor, started):
    tcp = sections["tcp"]
    primary, backup = tcp.backends
    total = sum(s.calls for s in sections.values())
    failed = sum(s.failed for s in sections.values())
    problems = [p for s in sections.values() for p in s.problems]
    checks = sum(s.checks for s in sections.values())
    stats = tcp.pool.stats()
    health = tcp.pool.server_stats()
    print()
    print(f"summary: {total} operations by {sum(s.greenlets for s in sections.values())} "
          f"greenlets in {duration:.1f} s ({total / duration:.0f}/s)")
    for s in sections.values():
        print(f"  {s.key:9} {s.calls:7d} operations  {s.retried:4d} retried  {s.failed} failed   "
              f"({s.backend})")
    print(f"  retries: {sum(s.retried for s in sections.values())} "
          "(attempts that hit a broken connection and were retried)")
    print(f"  failed calls: {failed} (expected 0)")
    print(f"  tcp connections opened: {stats['connections_num']:.0f}, lost: {stats['connections_lost']:.0f}, "
          f"connect attempts that failed: {stats['connections_errors']:.0f}")
    print(f"  failover: up to {backup.peak} connections on the backup; failback: "
          f"{health[primary.name]['connections']} of {tcp.pool.size} on the primary at the end")
    print(f"  circuit breakers: {primary.name} counted {primary.target.health.total_failures} failed "
          f"connects, {backup.name} {backup.target.health.total_failures}")
    print(f"  tcp operations after the restart: {tcp.after_fault}")
    print(f"  pool invariants checked {checks} times: "
          f"{'all held' if not problems else f'{len(problems)} broken'}")
    worst = max(monitor.worst, default=None)
    when = f" (at {worst.due - started:.1f} s)" if worst is not None else ""
    print(f"  longest the gevent hub was blocked: {monitor.max_stall * 1000:.1f} ms{when}")
    print()
    print(tcp.pool)
    print()
    print("pool.stats():")
    for key, value in stats.items():
        print(f"  {key:22s} {value:g}")
    for s in sections.values():
        s.pool.close()
        s.check()
    ok = True
    if len(callers):
        print(f"FAILED: {len(callers)} callers did not finish")
        ok = False
    if not chaos.dead:
        print("FAILED: the fault schedule did not finish")
        ok = False
    for s in sections.values():
        if s.failed:
            print(f"FAILED: {s.key}: {s.failed} calls failed, first: {s.failures[0]}")
            ok = False
    if problems:
        print(f"FAILED: pool invariants broken {len(problems)} times, first: {problems[:3]}")
        ok = False
    if not tcp.after_fault:
        print("FAILED: no tcp operation completed after the restart")
        ok = False
    if not backup.peak:
        print("FAILED: the tcp pool never failed over to the backup")
        ok = False
    if ok:
        print("demo: OK, no call failed")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (for tests)")
    live = parser.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_true", default=None,
                      help="redraw a status table in place (the default in a terminal)")
    live.add_argument("--no-live", dest="live", action="store_false",
                      help="print log lines instead of redrawing (the default otherwise)")
    parser.add_argument("--embedded", action="store_true",
                        help="only the embedded backends (TCP, sqlite3): no slapd, no PostgreSQL")
    parser.add_argument("--verbose", action="store_true", help="log every retry and reconnect attempt")
    parser.add_argument("--pool-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="how long a tcp caller waits for a connection (default 15; shorter than "
                        "the network stall: calls fail)")
    args = parser.parse_args(argv)
    if args.live is None:
        args.live = sys.stdout.isatty() and os.environ.get("TERM", "dumb") != "dumb"
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO if args.verbose and not args.live else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose or args.live:
        # a refused reconnect is logged at WARNING: expected here, and counted in the summary
        logging.getLogger("geventpool").setLevel(logging.ERROR)
        log.setLevel(logging.ERROR)
    try:
        return 0 if run(Plan(args.quick), args.pool_timeout, args.live, args.embedded) else 1
    except KeyboardInterrupt:  # the servers were stopped and the cursor restored on the way out
        print("\ndemo: interrupted", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())

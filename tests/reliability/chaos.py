"""The chaos and soak runner: many greenlets on real pools while faults are injected.

Rows C5, J2, J3 and J4 of the reliability matrix.  A :class:`Target` is one
pool with its real server, the operation a worker runs on it, the errors a
caller is promised (typed errors) and the faults that can be injected
(server restart, SIGSTOP pause, proxy reset/stall/blackhole/refuse).
:func:`run` starts ``workers`` greenlets per target, each looping over the
operation, injects one fault per target every ``fault_every`` seconds, kills
``kill_fraction`` of the workers at random points in every such period,
samples the pools every ``sample_every`` seconds (checking their invariants
each time) and returns a :class:`Report`:

- every operation is accounted for: ``ok + typed errors + killed == started``
  (anything else is *lost*: an untyped error or a worker that never ended);
- every operation ended within its target's deadline (``late`` otherwise);
- fd and RSS after warm-up, the longest hub stall, connections opened.

Builders for the three pools (:func:`tcp_target`, :func:`postgres_target`,
:func:`ldap_target`) are context managers that start private servers behind
a :class:`~geventpool.testing.FaultProxy`.  Used by tests/reliability and by
``scripts/soak.py``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.pool
from gevent import GreenletExit

from geventpool import ConnectionPool, PoolError
from geventpool.testing import FaultProxy, HubMonitor, fd_count, wait_until
from geventpool.testing.invariants import pool_problems

from .servers import LineServer, TcpPool, echo

__all__ = [
    "Target",
    "Report",
    "Sample",
    "run",
    "tcp_target",
    "postgres_target",
    "ldap_target",
    "rss_bytes",
    "summary_table",
]

#: Seconds a fault that has a duration (pause, stall, blackhole, refuse) lasts.
FAULT_HOLD = 1.0


class IdentityMismatch(AssertionError):
    """An LDAP operation ran as another identity than the one asked for (never a typed error)."""


class OperationTimeout(Exception):
    """A worker's own bound on one operation (a typed error: the caller sees it in time)."""


@dataclass
class Target:
    """One pool under chaos: how to use it, what may go wrong, what to break."""

    name: str
    pool: ConnectionPool[Any]
    #: One operation: check out, use, return; raises on failure.
    operation: Callable[[], None]
    #: The errors a caller is promised; anything else counts as lost.
    typed: tuple[type[BaseException], ...]
    #: Seconds an operation may take at most, whatever happens.
    deadline: float
    #: Fault name -> action (may take FAULT_HOLD seconds, it runs in its own greenlet).
    faults: dict[str, Callable[[], None]]
    #: Server-side session count (cheap; None: not sampled).
    sessions: Callable[[], int] | None = None
    #: Back to normal: every fault undone (run before the final checks).
    heal: Callable[[], None] = lambda: None
    #: The pools to check (a pool may be made of several; default: [pool]).
    members: Callable[[], list[ConnectionPool[Any]]] | None = None
    #: Server sessions the target may hold at most (default: the pool's max_size).
    session_cap: int | None = None
    #: Properties the operation verified, by name (e.g. identity checks); a violation is raised
    #: as an untyped error, so it counts as lost.
    checks: Counter[str] = field(default_factory=Counter)


@dataclass
class Sample:
    t: float
    target: str
    ok: int
    errors: int
    killed: int
    size: int
    idle: int
    in_use: int
    waiting: int
    sessions: int | None
    fds: int
    rss: int


@dataclass
class Tally:
    started: int = 0
    ok: int = 0
    killed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    untyped: Counter[str] = field(default_factory=Counter)
    late: int = 0
    slowest: float = 0.0
    slowest_error: float = 0.0
    in_flight: dict[Any, float] = field(default_factory=dict)

    @property
    def typed_errors(self) -> int:
        return sum(self.errors.values())

    @property
    def lost(self) -> int:
        return self.started - self.ok - self.typed_errors - self.killed


@dataclass
class Report:
    duration: float
    workers: int
    tallies: dict[str, Tally]
    faults: Counter[str]
    samples: list[Sample]
    fault_times: list[tuple[float, str, str]]
    invariant_failures: list[str]
    max_stall: float
    fd_warm: int
    fd_end: int
    fd_baseline: int
    fd_closed: int
    rss_warm: int
    rss_end: int
    connections_opened: dict[str, float]
    max_sessions: dict[str, int]
    stuck: int
    stuck_stacks: Counter[str] = field(default_factory=Counter)
    final_sessions: dict[str, int] = field(default_factory=dict)
    session_caps: dict[str, int] = field(default_factory=dict)
    #: What the pool held when ``final_sessions`` was read (sizes of every member pool).
    final_pool_sizes: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Counter[str]] = field(default_factory=dict)
    #: Live RSS: after a full garbage collection and handing the C heap's free pages back to the
    #: OS (``malloc_trim``), what the process really holds (0: not measured).  Killed greenlets
    #: leave reference cycles (the runner's own worker frames among them) that only the cyclic
    #: collector frees, and its full passes are rare: raw RSS rises between them.
    rss_warm_live: int = 0
    rss_end_live: int = 0

    @property
    def lost(self) -> int:
        return sum(t.lost for t in self.tallies.values()) + self.stuck

    @property
    def rss_drift(self) -> float:
        return (self.rss_end - self.rss_warm) / self.rss_warm if self.rss_warm else 0.0

    @property
    def rss_drift_live(self) -> float:
        if not self.rss_warm_live:
            return self.rss_drift
        return (self.rss_end_live - self.rss_warm_live) / self.rss_warm_live


def rss_bytes(live: bool = False) -> int:
    """Resident set size of this process (Linux ``/proc/self/statm``).

    ``live``: first collect garbage (``gc.collect()``) and give the C heap's
    free pages back to the OS (glibc's ``malloc_trim(0)``), so that the
    figure is what the process holds, not what awaits the collector or
    what the allocator kept after a peak.
    """
    if live:
        gc.collect()
        _malloc_trim()
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def run(
    targets: list[Target],
    *,
    duration: float,
    workers: int = 200,
    fault_every: float = 2.0,
    kill_fraction: float = 0.05,
    warmup: float | None = None,
    sample_every: float = 0.25,
    seed: int = 1,
    think: float = 0.0,
    error_pause: float = 0.02,
    until: Callable[[], bool] | None = None,
    max_duration: float | None = None,
    on_warm: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> Report:
    """Run the chaos profile for ``duration`` seconds; see the module docstring.

    With ``until``, the run goes on past ``duration`` until ``until()`` is true
    (a count of operations, say, whatever the machine's speed), but never past
    ``max_duration`` (default: four times ``duration``).  ``on_warm`` is called
    once, when the warm-up ends (a memory snapshot, say), ``on_end`` once the
    workers have stopped, before the pools are closed.

    ``think`` is a pause between two operations of a worker (0: back to back);
    after a typed error a worker pauses ``error_pause`` seconds on average.
    The pools are closed at the end (the report has fd before and after).
    """
    rng = random.Random(seed)
    warmup = duration * 0.25 if warmup is None else warmup
    fd_baseline = fd_count()
    tallies = {t.name: Tally() for t in targets}
    faults: Counter[str] = Counter()
    fault_times: list[tuple[float, str, str]] = []
    samples: list[Sample] = []
    invariant_failures: list[str] = []
    max_sessions = {t.name: 0 for t in targets}
    stop = [False]
    group = gevent.pool.Group()
    workers_of: dict[str, list[gevent.Greenlet]] = {t.name: [] for t in targets}
    start = time.monotonic()
    warm: dict[str, int] = {}
    connects_warm: dict[str, float] = {}

    def worker(target: Target, tally: Tally) -> None:
        me = gevent.getcurrent()
        while not stop[0]:
            began = time.monotonic()
            failed = False
            tally.started += 1
            tally.in_flight[me] = began
            try:
                target.operation()
            except GreenletExit:
                tally.killed += 1
                raise
            except target.typed as error:
                tally.errors[type(error).__name__] += 1
                tally.slowest_error = max(tally.slowest_error, time.monotonic() - began)
                failed = True
            except BaseException as error:  # lost: the caller got something it was not promised
                tally.untyped[f"{type(error).__name__}: {error}"[:200]] += 1
            else:
                tally.ok += 1
            finally:
                tally.in_flight.pop(me, None)
                elapsed = time.monotonic() - began
                tally.slowest = max(tally.slowest, elapsed)
                if elapsed > target.deadline:
                    tally.late += 1
            if failed:
                # a client backs off after an error (a fast-failing pool would otherwise be hammered)
                gevent.sleep(error_pause * rng.random() * 2)
            elif think:
                gevent.sleep(think * rng.random() * 2)
            else:
                gevent.sleep(0)

    def spawn_worker(target: Target) -> None:
        greenlet = group.spawn(worker, target, tallies[target.name])
        workers_of[target.name].append(greenlet)

    def killer() -> None:
        # kill_fraction of the workers per fault period, at random moments (so at random points)
        total = workers * len(targets)
        if kill_fraction <= 0:
            return
        per_kill = fault_every / max(total * kill_fraction, 1)
        while not stop[0]:
            gevent.sleep(per_kill * rng.random() * 2)
            if stop[0]:
                return
            target = rng.choice(targets)
            alive = [g for g in workers_of[target.name] if not g.dead]
            if alive:
                victim = rng.choice(alive)
                workers_of[target.name].remove(victim)
                victim.kill(block=False)
                faults["kill"] += 1
                spawn_worker(target)

    def injector(target: Target) -> None:
        names = sorted(target.faults)
        spent = 0.0
        order: list[str] = []
        while not stop[0]:
            # one fault about every fault_every seconds, start to start
            gevent.sleep(max(fault_every * (0.5 + rng.random()) - spent, 0.05))
            if stop[0] or not names:
                return
            if not order:  # every kind in turn, in a random order
                order.extend(rng.sample(names, len(names)))
            name = order.pop()
            faults[f"{name}"] += 1
            fault_times.append((time.monotonic() - start, target.name, name))
            began = time.monotonic()
            try:
                target.faults[name]()
            except Exception as error:  # a fault that failed to apply is reported, not fatal
                invariant_failures.append(f"{target.name}: fault {name} failed: {error!r}")
            spent = time.monotonic() - began

    def sampler() -> None:
        last = {t.name: (0, 0, 0) for t in targets}
        while not stop[0]:
            gevent.sleep(sample_every)
            now = time.monotonic() - start
            fds, rss = fd_count(), rss_bytes()
            for target in targets:
                tally = tallies[target.name]
                check_target(target, invariant_failures, now)
                sessions = None
                if target.sessions is not None:
                    try:
                        sessions = target.sessions()
                    except Exception:
                        sessions = None
                    if sessions is not None:
                        max_sessions[target.name] = max(max_sessions[target.name], sessions)
                pool = target.pool
                previous = last[target.name]
                current = (tally.ok, tally.typed_errors + sum(tally.untyped.values()), tally.killed)
                last[target.name] = current
                samples.append(Sample(
                    now, target.name, current[0] - previous[0], current[1] - previous[1],
                    current[2] - previous[2], pool.size, pool.snapshot().idle, pool.snapshot().in_use,
                    pool.snapshot().waiting, sessions, fds, rss,
                ))
            if now >= warmup and not warm:
                warm["fd"], warm["rss"] = fds, rss
                warm["rss_live"] = rss_bytes(live=True)
                for target in targets:
                    connects_warm[target.name] = target.pool.stats().get("connections_num", 0)
                if on_warm is not None:
                    on_warm()

    with HubMonitor(interval=0.005) as hub:
        for target in targets:
            for _ in range(workers):
                spawn_worker(target)
        helpers = [gevent.spawn(sampler), gevent.spawn(killer)]
        helpers += [gevent.spawn(injector, t) for t in targets]
        gevent.sleep(duration)
        if until is not None:
            limit_at = start + (max_duration if max_duration is not None else duration * 4)
            while not until() and time.monotonic() < limit_at:
                gevent.sleep(0.25)
        stop[0] = True
        gevent.joinall(helpers, timeout=FAULT_HOLD * 5 + 5)
        for helper in helpers:
            helper.kill(block=False)
        for target in targets:
            target.heal()
        # every worker finishes its operation within the deadline (plus a margin for the last fault)
        limit = max(t.deadline for t in targets) + FAULT_HOLD + 2
        group.join(timeout=limit)
        stuck_greenlets = [g for g in group if not g.dead]
        stuck = len(stuck_greenlets)
        stuck_stacks = Counter(
            "".join(traceback.format_stack(g.gr_frame)) for g in stuck_greenlets if g.gr_frame is not None
        )
        for greenlet in list(group):
            if not greenlet.dead:
                greenlet.kill(block=False)
        group.join(timeout=5)
        max_stall = hub.max_stall
    final_sessions: dict[str, int] = {}
    final_pool_sizes: dict[str, str] = {}
    caps = {t.name: t.session_cap if t.session_cap is not None else t.pool.max_size for t in targets}
    for target in targets:
        if target.sessions is not None:
            # server-side sessions follow the pool's closes a little later
            with contextlib.suppress(AssertionError):
                wait_until(lambda t=target: t.sessions() <= caps[t.name], timeout=10)  # type: ignore[misc]
            final_sessions[target.name] = target.sessions()
            members = target.members() if target.members is not None else [target.pool]
            final_pool_sizes[target.name] = ", ".join(
                f"{m.name}: {m.snapshot()[:6]}"
                for m in members
            )
    elapsed = time.monotonic() - start
    fd_end, rss_end = fd_count(), rss_bytes()
    rss_end_live = rss_bytes(live=True)
    if on_end is not None:
        on_end()
    opened = {}
    for target in targets:
        check_target(target, invariant_failures, elapsed)
        total = target.pool.stats().get("connections_num", 0)
        opened[target.name] = total - connects_warm.get(target.name, 0)
        if target.sessions is not None:
            with contextlib.suppress(Exception):
                max_sessions[target.name] = max(max_sessions[target.name], target.sessions())
    for target in targets:
        target.pool.close(timeout=2)
        check_target(target, invariant_failures, elapsed)
    try:
        wait_until(lambda: fd_count() <= fd_baseline, timeout=10)
    except AssertionError:
        pass
    return Report(
        duration=elapsed, workers=workers, tallies=tallies, faults=faults, samples=samples,
        fault_times=fault_times, invariant_failures=invariant_failures, max_stall=max_stall,
        fd_warm=warm.get("fd", fd_end), fd_end=fd_end, fd_baseline=fd_baseline, fd_closed=fd_count(),
        rss_warm=warm.get("rss", rss_end), rss_end=rss_end, connections_opened=opened,
        max_sessions=max_sessions, stuck=stuck, stuck_stacks=stuck_stacks, final_sessions=final_sessions,
        final_pool_sizes=final_pool_sizes,
        session_caps=caps, checks={t.name: Counter(t.checks) for t in targets if t.checks},
        rss_warm_live=warm.get("rss_live", rss_end_live), rss_end_live=rss_end_live,
    )


def check_target(target: Target, failures: list[str], now: float) -> None:
    members = target.members() if target.members is not None else [target.pool]
    for pool in members:
        for problem in pool_problems(pool):
            failures.append(f"{now:7.2f}s {target.name} {pool.name}: {problem}")


def summary_table(report: Report) -> str:
    """The report as a plain-text table (what ``make soak`` prints)."""
    rows = [("pool", "ops", "ok", "typed errors", "killed", "lost", "late", "slowest s", "opened",
             "max sessions", "end sessions")]
    for name, t in report.tallies.items():
        rows.append((
            name, str(t.started), str(t.ok), str(t.typed_errors), str(t.killed), str(t.lost), str(t.late),
            f"{t.slowest:.2f}", f"{report.connections_opened.get(name, 0):.0f}",
            str(report.max_sessions.get(name, "")), str(report.final_sessions.get(name, "")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=False)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    errors: Counter[str] = Counter()
    for t in report.tallies.values():
        errors.update(t.errors)
    lines.append("")
    lines.append(f"duration {report.duration:.1f} s, {report.workers} workers per pool")
    lines.append("faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(report.faults.items())))
    lines.append("typed errors: " + (", ".join(f"{k} {v}" for k, v in errors.most_common()) or "none"))
    untyped: Counter[str] = Counter()
    for t in report.tallies.values():
        untyped.update(t.untyped)
    if untyped:
        lines.append("UNTYPED: " + "; ".join(f"{k} x{v}" for k, v in untyped.most_common(5)))
    for name, counts in report.checks.items():
        lines.append(f"{name} checks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(f"lost {report.lost} (stuck workers {report.stuck}); "
                 f"invariant failures {len(report.invariant_failures)}")
    for stack, count in report.stuck_stacks.most_common(3):
        lines.append(f"STUCK x{count}:\n{stack}")
    lines.append(f"longest hub stall {report.max_stall * 1000:.1f} ms")
    lines.append(f"fd: baseline {report.fd_baseline}, after warm-up {report.fd_warm}, end {report.fd_end}, "
                 f"after close {report.fd_closed}")
    mib = 2.0**20
    lines.append(f"RSS: after warm-up {report.rss_warm / mib:.1f} MiB, end {report.rss_end / mib:.1f} MiB "
                 f"({report.rss_drift * 100:+.1f}%)")
    lines.append(f"live RSS (after gc.collect() and malloc_trim): after warm-up "
                 f"{report.rss_warm_live / mib:.1f} MiB, end {report.rss_end_live / mib:.1f} MiB "
                 f"({report.rss_drift_live * 100:+.1f}%)")
    step = max(report.duration / 10, 1.0)
    marks: dict[int, int] = {}
    for sample in report.samples:
        marks.setdefault(int(sample.t // step), sample.rss)
    lines.append("RSS over time (MiB): " + ", ".join(
        f"{index * step:.0f}s {rss / mib:.1f}" for index, rss in sorted(marks.items())))
    return "\n".join(lines)


# -- the three pools -----------------------------------------------------------------------------


def _hold(action: Callable[[], None], undo: Callable[[], None]) -> Callable[[], None]:
    def fault() -> None:
        action()
        try:
            gevent.sleep(FAULT_HOLD)
        finally:
            undo()

    return fault


def proxy_faults(proxy: FaultProxy) -> dict[str, Callable[[], None]]:
    """reset, stall, blackhole and refuse through the proxy (each held FAULT_HOLD seconds)."""
    back = lambda: proxy.set_mode("pass")  # noqa: E731
    return {
        "proxy reset": proxy.reset_all,
        "proxy stall": _hold(lambda: proxy.set_mode("stall"), back),
        "proxy blackhole": _hold(lambda: proxy.set_mode("blackhole"), back),
        "proxy refuse": _hold(lambda: proxy.set_mode("refuse"), back),
    }


@contextlib.contextmanager
def tcp_target(
    size: int = 10, *, timeout: float = 1.0, op_timeout: float = 0.5, max_lifetime: float = 1800.0,
    name: str = "tcp",
) -> Iterator[Target]:
    """The core pool over the line server, through a fault proxy."""
    server = LineServer().start()
    proxy = FaultProxy(upstream=server.address).start()
    pool = TcpPool(
        proxy.address, min_size=size, max_size=size, timeout=timeout, connect_timeout=0.5,
        keepalive_timeout=0.3, ping_after=0.5, op_timeout=op_timeout, max_lifetime=max_lifetime,
        name=name,
    )
    payload = [0]

    def operation() -> None:
        payload[0] += 1
        with pool.get() as conn:
            echo(conn, b"op %d\n" % payload[0])

    faults = proxy_faults(proxy)
    faults["server restart"] = server.restart
    faults["server pause"] = _hold(server.pause, server.resume)

    def heal() -> None:
        server.resume()
        server.start()
        proxy.set_mode("pass")

    # get: timeout + a ping per idle connection checked; use: op_timeout per recv (two at most)
    deadline = timeout + 0.3 * 2 + op_timeout * 2 + 0.5
    target = Target(name, pool, operation, (PoolError, OSError), deadline, faults,
                    sessions=lambda: server.connections, heal=heal)
    try:
        yield target
    finally:
        pool.close(timeout=1)
        proxy.stop()
        server.stop()


@contextlib.contextmanager
def postgres_target(
    size: int = 10, *, timeout: float = 1.0, op_timeout: float = 1.0, max_age: float = 1800.0,
    name: str = "postgres",
) -> Iterator[Target]:
    """The DB-API pool (psycopg2, green) over a private PostgreSQL, through a fault proxy."""
    import psycopg2

    from geventpool.dbapi import ConnectionPool as DBPool
    from geventpool.testing.postgres import PostgresServer

    pg = PostgresServer().start()
    proxy = FaultProxy(upstream=(pg.host, pg.port)).start()
    app = f"chaos-{os.getpid()}"
    pool = DBPool(
        psycopg2, host="127.0.0.1", port=proxy.port, user=pg.user, dbname=pg.dbname, application_name=app,
        min_size=size, max_size=size, timeout=timeout, connect_timeout=2, max_age=max_age,
        max_idle=600, name=name,
    )
    threadpool = gevent.get_hub().threadpool

    bound = timeout + op_timeout + 1.0

    def operation() -> None:
        # The whole checkout is bounded, return included (the reset on return is bounded by
        # keepalive_timeout since R2 was fixed; this bounds the query too).
        with gevent.Timeout(bound, OperationTimeout(f"{bound:g} s")), pool.item() as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            if cur.fetchone() != (1,):
                raise AssertionError("wrong answer")

    def restart() -> None:
        # pg_ctl runs in a native thread: the hub keeps running meanwhile
        threadpool.spawn(pg.restart, "fast").get()

    faults = proxy_faults(proxy)
    faults["server restart"] = restart
    faults["server pause"] = _hold(pg.pause, pg.resume)

    def heal() -> None:
        pg.resume()
        if not pg.running:
            threadpool.spawn(pg.start).get()
        proxy.set_mode("pass")

    def sessions() -> int:
        return len(pg.sessions(app)) if pg.running else 0

    deadline = bound + 0.5
    typed = (PoolError, OSError, psycopg2.Error, OperationTimeout)
    target = Target(name, pool, operation, typed, deadline, faults, sessions=sessions, heal=heal)
    try:
        yield target
    finally:
        pool.close(timeout=1)
        proxy.stop()
        pg.resume()
        pg.cleanup()


@contextlib.contextmanager
def ldap_target(
    size: int = 10, *, timeout: float = 1.0, op_timeout: float = 1.0, max_lifetime: float = 600.0,
    name: str = "ldap", users: int = 20,
) -> Iterator[Target]:
    """The LDAP pool over a private slapd, through a fault proxy, used by ``users`` identities too.

    Rows G1-G3 under chaos: of ten operations, three use the service identity,
    six bind as one of ``users`` users (``per_user="rebind"``: a quarter as many
    connections as users, so they are re-bound from one user to another all the
    time), one tries a wrong password (a checkout, or ``authenticate()``); each
    checks ``whoami_s()``.  A mismatch, or a wrong password accepted, is raised
    as :class:`IdentityMismatch` (not a typed error: lost).
    """
    import ldap

    from geventpool.ldap import LDAPPool
    from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, USER_PW, Slapd, user_dn

    user_size, auth_size = max(users // 4, 1), 2
    slapd = Slapd(users=users, tls=False).start()
    proxy = FaultProxy(upstream=("127.0.0.1", slapd.port)).start()
    pool = LDAPPool(
        f"ldap://127.0.0.1:{proxy.port}", SERVICE_DN, SERVICE_PW, size=size, min_size=size,
        timeout=op_timeout, connect_timeout=0.5, checkout_timeout=timeout, retry_max=1,
        max_lifetime=max_lifetime, name=name, user_size=user_size, auth_size=auth_size,
    )
    counter = [0]
    checks: Counter[str] = Counter()

    def expect(conn: Any, dn: str) -> None:
        got = conn.whoami_s()
        if got != f"dn:{dn}":
            checks["MISMATCHES"] += 1
            raise IdentityMismatch(f"expected dn:{dn}, got {got!r}")
        checks["whoami verified"] += 1

    def operation() -> None:
        counter[0] += 1
        # 11 is prime to 20: every kind of operation meets every user
        kind, number = counter[0] % 10, (counter[0] // 10 * 11 + counter[0]) % users
        if kind < 3:
            with pool.connection() as conn:
                expect(conn, SERVICE_DN)
        elif kind < 9:
            with pool.connection(user_dn(number), USER_PW) as conn:
                expect(conn, user_dn(number))
        elif counter[0] // 10 % 2:
            if pool.authenticate(user_dn(number), "not-" + USER_PW):
                checks["MISMATCHES"] += 1
                raise IdentityMismatch(f"authenticate() accepted a wrong password for {user_dn(number)}")
            checks["wrong password refused"] += 1
        else:
            try:
                with pool.connection(user_dn(number), "not-" + USER_PW):
                    pass
            except ldap.INVALID_CREDENTIALS:
                checks["wrong password refused"] += 1
            else:
                checks["MISMATCHES"] += 1
                raise IdentityMismatch(f"a wrong password for {user_dn(number)} was accepted")

    faults = proxy_faults(proxy)
    faults["server restart"] = lambda: slapd.restart(graceful=False)
    faults["server pause"] = _hold(slapd.pause, slapd.resume)

    def heal() -> None:
        slapd.resume()
        if slapd.pid is None:
            slapd.start()
        proxy.set_mode("pass")

    # checkout (a refill may take connect_timeout x retry_max) + ping + operation
    deadline = timeout + 0.5 + op_timeout * 2 + 1.0
    typed = (PoolError, OSError, ldap.LDAPError)
    cap = size + user_size + auth_size
    target = Target(name, pool, operation, typed, deadline, faults, sessions=lambda: proxy.connections,
                    heal=heal, members=pool._all_pools, session_cap=cap, checks=checks)
    try:
        yield target
    finally:
        pool.close(timeout=1)
        proxy.stop()
        slapd.close()

"""Checkout overhead of geventpool's ConnectionPool against its peers.

One *cycle* is one checkout and return of an already open connection by one
greenlet, with no I/O (``with pool.get() as _conn: pass`` or the peer's own idiom).
Every implementation runs in its own worker subprocess (eventlet is never
imported in a gevent process); the parent interleaves the rounds (round r runs
every implementation once, in an order rotated by r) so that noise from the
rest of the machine spreads over all of them, and reports the median of the
rounds in µs per cycle and the ratio to the floor (a minimal
``gevent.queue.Queue`` pool behind the thinnest hand-written context manager).

    .venv/bin/python benchmarks/peers/setup_peers.py   # once: the peers' venv
    .venv/bin/python benchmarks/overhead.py            # full run (~1 min)
    .venv/bin/python benchmarks/overhead.py --quick    # smoke run (seconds)

See benchmarks/README.rst for what each row measures.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["IMPLEMENTATIONS", "Bench", "TrivialConnection", "build", "time_loop", "measure", "main"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / ".peers"
PEERS_PYTHON = PEERS / "venv" / "bin" / "python"
GEVENTCONNPOOL_PATH = PEERS / "geventconnpool-0.2.1-patched"

#: Connections in every pool (all opened before timing; one is used at a time).
POOL_SIZE = 10
#: Lifetimes long enough that no connection expires during a run (geventpool's defaults).
MAX_IDLE, MAX_LIFETIME = 600.0, 1800.0
CONNINFO_ENV = "GEVENTPOOL_BENCH_CONNINFO"


class TrivialConnection:
    """A DB-API-shaped connection whose methods do nothing: the benchmark measures the pool."""

    def close(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


@dataclass
class Bench:
    """A built pool: ``loop(n)`` runs n cycles; ``close()`` tears the pool down.

    ``stats()``, if set, is called after each timed run; the worker sends what it returns to the
    parent with the times (contention.py records waits there).
    """

    loop: Callable[[int], None]
    close: Callable[[], None]
    pool: Any = None
    versions: dict[str, str] = field(default_factory=dict)
    stats: Callable[[], dict[str, Any]] | None = None


def _versions(*names: str) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "?"
    return found


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    import gevent

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        gevent.sleep(0.01)


# -- the floor -------------------------------------------------------------------------------


class _QueueLease:
    __slots__ = ("_queue", "conn")

    def __init__(self, queue: Any, conn: Any) -> None:
        self._queue = queue
        self.conn = conn

    def __enter__(self) -> Any:
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._queue.put(self.conn)


class QueuePool:
    """The floor: a gevent Queue of connections and the thinnest context manager (no features)."""

    def __init__(self, size: int) -> None:
        import gevent.queue

        self.queue = gevent.queue.Queue()
        for _ in range(size):
            self.queue.put(TrivialConnection())

    def get(self) -> _QueueLease:
        return _QueueLease(self.queue, self.queue.get())


def _build_floor() -> Bench:
    pool = QueuePool(POOL_SIZE)

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.get() as _conn:
                pass

    return Bench(loop, lambda: None, pool, _versions("gevent"))


def _build_floor_bare() -> Bench:
    queue = QueuePool(POOL_SIZE).queue

    def loop(n: int) -> None:
        for _ in range(n):
            c = queue.get()
            queue.put(c)

    return Bench(loop, lambda: None, queue, _versions("gevent"))


# -- geventpool --------------------------------------------------------------------------------


def _geventpool(**options: Any) -> Any:
    from geventpool import ConnectionPool

    class BenchPool(ConnectionPool[TrivialConnection]):
        def _new_connection(self) -> TrivialConnection:
            return TrivialConnection()

        def _keepalive(self, conn: TrivialConnection) -> None:
            pass

    pool = BenchPool(POOL_SIZE, name="bench", max_idle=MAX_IDLE, max_lifetime=MAX_LIFETIME, **options)
    pool.wait(30)
    return pool


def _geventpool_versions() -> dict[str, str]:
    import geventpool
    from geventpool import _accel

    where = Path(geventpool.__file__).resolve().parent.parent
    speedups = "C speedups" if _accel.active() else "pure Python"
    return {"geventpool": f"{geventpool.__version__} ({where}, {speedups})", **_versions("gevent")}


def _build_geventpool() -> Bench:
    pool = _geventpool()

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.get() as _conn:
                pass

    return Bench(loop, lambda: pool.close(5), pool, _geventpool_versions())


def _build_geventpool_python() -> Bench:
    os.environ["GEVENTPOOL_PURE_PYTHON"] = "1"  # before geventpool is imported in this worker
    return _build_geventpool()


def _build_geventpool_acquire() -> Bench:
    pool = _geventpool()

    def loop(n: int) -> None:
        for _ in range(n):
            c = pool.acquire()
            pool.release(c)

    return Bench(loop, lambda: pool.close(5), pool, _geventpool_versions())


def _build_geventpool_options() -> Bench:
    pool = _geventpool(keepalive=30, ping_after=60, leak_threshold=60, max_waiting=100, timeout=10)

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.get() as _conn:
                pass

    return Bench(loop, lambda: pool.close(5), pool, _geventpool_versions())


# -- the peers (each needs benchmarks/.peers) ------------------------------------------------------


def _build_geventconnpool() -> Bench:
    import geventconnpool

    class BenchPool(geventconnpool.ConnectionPool):  # type: ignore[misc]
        def _new_connection(self) -> TrivialConnection:
            return TrivialConnection()

    pool = BenchPool(POOL_SIZE)
    _wait_until(lambda: len(pool.conn) == POOL_SIZE, "geventconnpool to fill")

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.get() as _conn:
                pass

    return Bench(loop, lambda: None, pool, {"geventconnpool": "0.2.1 (patched)", **_versions("gevent")})


def _build_gsocketpool() -> Bench:
    import gsocketpool

    class BenchConnection(gsocketpool.Connection):  # type: ignore[misc]
        def open(self) -> None:
            self.connected = True

        def close(self) -> None:
            self.connected = False

        def get(self) -> BenchConnection:
            return self

        def is_connected(self) -> bool:
            return self.connected

    pool = gsocketpool.Pool(BenchConnection, {}, initial_connections=POOL_SIZE, max_connections=POOL_SIZE)

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.connection() as _conn:
                pass

    return Bench(loop, lambda: None, pool, _versions("gsocketpool", "gevent"))


def _eventlet_pool() -> Any:
    from eventlet import db_pool

    module = types.SimpleNamespace(connect=TrivialConnection)
    return db_pool.RawConnectionPool(
        module, min_size=POOL_SIZE, max_size=POOL_SIZE, max_idle=MAX_IDLE, max_age=MAX_LIFETIME
    )


def _build_eventlet() -> Bench:
    pool = _eventlet_pool()

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.item() as _conn:
                pass

    return Bench(loop, pool.clear, pool, _versions("eventlet"))


def _build_eventlet_getput() -> Bench:
    pool = _eventlet_pool()

    def loop(n: int) -> None:
        for _ in range(n):
            c = pool.get()
            pool.put(c)

    return Bench(loop, pool.clear, pool, _versions("eventlet"))


def _psycopg_pool() -> Any:
    import psycopg_pool

    conninfo = os.environ.get(CONNINFO_ENV)
    if not conninfo:
        raise RuntimeError(f"no PostgreSQL ({CONNINFO_ENV} is not set)")
    pool = psycopg_pool.ConnectionPool(
        conninfo, min_size=POOL_SIZE, max_size=POOL_SIZE, max_idle=MAX_IDLE, max_lifetime=MAX_LIFETIME,
        open=True,
    )
    pool.wait(30)
    return pool


def _build_psycopg_getconn() -> Bench:
    pool = _psycopg_pool()

    def loop(n: int) -> None:
        for _ in range(n):
            c = pool.getconn()
            pool.putconn(c)

    return Bench(loop, pool.close, pool, _versions("psycopg-pool", "psycopg", "gevent"))


def _build_psycopg_connection() -> Bench:
    pool = _psycopg_pool()

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.connection() as _conn:
                pass

    return Bench(loop, pool.close, pool, _versions("psycopg-pool", "psycopg", "gevent"))


def _build_sqlalchemy() -> Bench:
    from sqlalchemy.pool import QueuePool as SAQueuePool

    pool = SAQueuePool(TrivialConnection, pool_size=POOL_SIZE, max_overflow=0)
    held = [pool.connect() for _ in range(POOL_SIZE)]  # open them all before timing
    for conn in held:
        conn.close()

    def loop(n: int) -> None:
        for _ in range(n):
            with pool.connect() as _conn:
                pass

    return Bench(loop, pool.dispose, pool, _versions("SQLAlchemy", "gevent"))


@dataclass(frozen=True)
class Impl:
    """One row of the table: how to build it and where it can run."""

    key: str
    label: str
    build: Callable[[], Bench]
    runtime: str = "gevent"  # or "eventlet"
    peer: bool = False  # needs benchmarks/.peers
    postgres: bool = False
    pythonpath: tuple[Path, ...] = ()


#: Every row, in table order.  The ratio column divides by the "floor" row.
IMPLEMENTATIONS: list[Impl] = [
    Impl("floor", "floor: gevent Queue + thinnest `with`", _build_floor),
    Impl("floor-bare", "floor, bare: `c = q.get(); q.put(c)`", _build_floor_bare),
    Impl("geventpool", "geventpool `with pool.get()`", _build_geventpool),
    Impl("geventpool-python", "geventpool `with pool.get()`, pure Python [4]", _build_geventpool_python),
    Impl("geventpool-acquire", "geventpool acquire()/release()", _build_geventpool_acquire),
    Impl("geventpool-options", "geventpool `with`, options on [1]", _build_geventpool_options),
    Impl("geventconnpool", "geventconnpool 0.2.1 (patched) `with`", _build_geventconnpool, peer=True,
         pythonpath=(GEVENTCONNPOOL_PATH,)),
    Impl("gsocketpool", "gsocketpool `with pool.connection()`", _build_gsocketpool, peer=True),
    Impl("eventlet", "eventlet db_pool (raw) `with pool.item()` [2]", _build_eventlet,
         runtime="eventlet", peer=True),
    Impl("eventlet-getput", "eventlet db_pool (raw) get()/put() [2]", _build_eventlet_getput,
         runtime="eventlet", peer=True),
    Impl("psycopg-getconn", "psycopg_pool getconn()/putconn() [3]", _build_psycopg_getconn, peer=True,
         postgres=True),
    Impl("psycopg-connection", "psycopg_pool `with pool.connection()` [3]", _build_psycopg_connection,
         peer=True, postgres=True),
    Impl("sqlalchemy", "SQLAlchemy QueuePool `with pool.connect()` [2]", _build_sqlalchemy, peer=True),
]
BY_KEY = {impl.key: impl for impl in IMPLEMENTATIONS}


def build(key: str) -> Bench:
    """Build one implementation's pool in this process (the runtime must already be set up)."""
    return BY_KEY[key].build()


def time_loop(loop: Callable[[int], None], n: int) -> tuple[float, float]:
    """Run ``loop(n)`` with the garbage collector off; return (CPU seconds, wall seconds).

    The CPU time is this thread's: time the machine spent running other
    processes does not count, which keeps figures comparable on a shared
    machine (the loop never sleeps or waits, so it loses nothing real).
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        wall = time.perf_counter()
        cpu = time.thread_time()
        loop(n)
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall
        return cpu, wall
    finally:
        if was_enabled:
            gc.enable()


def measure(key: str, iterations: int, rounds: int, warmup: int | None = None) -> list[float]:
    """Build ``key`` in this process and return its CPU µs per cycle for each round (no interleaving)."""
    bench = build(key)
    try:
        time_loop(bench.loop, warmup if warmup is not None else max(iterations // 10, 1))
        return [time_loop(bench.loop, iterations)[0] / iterations * 1e6 for _ in range(rounds)]
    finally:
        bench.close()


# -- the worker (one per implementation, in its own process) ------------------------------------------


def _worker(key: str, impls: dict[str, Impl] | None = None) -> int:
    """Serve ``run N`` requests on stdin with one JSON line each on the real stdout."""
    impl = (BY_KEY if impls is None else impls)[key]
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    if impl.runtime == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    else:
        from gevent import monkey

        monkey.patch_all()
    try:
        bench = impl.build()
    except Exception as error:
        protocol.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        return 1
    protocol.write(json.dumps({"ready": True, "versions": bench.versions}) + "\n")
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["run"]:
            cpu, wall = time_loop(bench.loop, int(command[1]))
            answer: dict[str, Any] = {"cpu": cpu, "wall": wall}
            if bench.stats is not None:
                answer["stats"] = bench.stats()
            protocol.write(json.dumps(answer) + "\n")
        else:
            break
    bench.close()
    return 0


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, impl: Impl, python: Path, env: dict[str, str], timeout: float,
                 script: Path | None = None) -> None:
        self.impl = impl
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - open for the worker's life
        self.stderr_tail = ""
        self.proc = subprocess.Popen(
            [str(python), str(script or Path(__file__).resolve()), "--worker", impl.key],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True,
            cwd=str(REPO),
        )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError("worker died or hung: " + (self.stderr_tail or "no output"))
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            self.stop()
            raise RuntimeError(answer["error"])
        return answer

    def run(self, n: int) -> tuple[float, float]:
        """Time n cycles in the worker: (CPU seconds, wall seconds)."""
        answer = self.request(n)
        return float(answer["cpu"]), float(answer["wall"])

    def request(self, n: int) -> dict[str, Any]:
        """Time n cycles in the worker: its whole answer (``cpu``, ``wall``, and ``stats`` if any)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"run {n}\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.stop()
            raise RuntimeError("worker died: " + (self.stderr_tail or "no output")) from None
        return self._read()

    def stop(self) -> None:
        """Ask the worker to close its pool and exit; kill it (by PID) if it does not."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if not self._stderr.closed:
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            self.stderr_tail = " | ".join(lines[-3:])
            self._stderr.close()


# -- the parent ------------------------------------------------------------------------------------


def _start_postgres() -> Any:
    """Start a private PostgreSQL with geventpool's test helper (imports gevent, never eventlet)."""
    sys.path.insert(0, str(REPO))
    from geventpool.testing.postgres import PostgresServer

    server = PostgresServer()
    try:
        return server.start()
    except BaseException:
        server.cleanup()
        raise


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _geventpool_revision() -> str:
    """The commit geventpool was measured at, and whether geventpool/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "geventpool"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{head} + uncommitted changes in geventpool/" if dirty else head


def machine_notes(versions: dict[str, str], python: str) -> list[str]:
    """Describe the machine and the software the rows ran on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return [
        f"CPU: {_cpu_model()} ({os.cpu_count()} logical CPUs); load average at the end: "
        + ", ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in load),
        f"Python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}; "
        f"gevent rows run {python}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"geventpool measured at commit {_geventpool_revision()}",
    ]


FOOTNOTES = [
    f"[1] keepalive=30, ping_after=60, leak_threshold=60 (holder's frame recorded), max_waiting=100, "
    f"timeout=10; the other rows use each library's defaults except sizes ({POOL_SIZE} connections, "
    "all open before timing) and lifetimes long enough that nothing expires during the run.",
    "[2] connections come from a trivial DB-API-like connect() whose close/commit/rollback do nothing "
    "(no sqlite3, no I/O); eventlet db_pool's default cleanup (rollback) and SQLAlchemy's "
    "reset-on-return (rollback) call them.  eventlet rows use db_pool.RawConnectionPool: db_pool's "
    "default ConnectionPool is TpooledConnectionPool, which sends every connection method call "
    "(the rollback on put, too) to an OS thread and costs ~100 µs per cycle here.",
    "[3] psycopg 3 connections to a private PostgreSQL on 127.0.0.1 (idle, so no I/O in the cycle).",
    "[4] GEVENTPOOL_PURE_PYTHON=1: the same code without the optional C speedups (geventpool/_speedups.c, "
    "built at install when a C compiler is there); the other geventpool rows use them if they were built "
    "(see the versions line).",
    "Every gevent worker calls gevent.monkey.patch_all() first, the eventlet worker eventlet.monkey_patch(); "
    "one worker process per row, rounds interleaved (the floor runs again right before every row), gc "
    "disabled while timing. µs/cycle is the worker thread's CPU time (preemption by other processes does "
    "not count), median of the rounds; the ratio is the median over rounds of row / the floor run just "
    "before it.",
]


def _gevent_python(no_peers: bool) -> Path:
    if not no_peers and PEERS_PYTHON.exists():
        return PEERS_PYTHON
    return Path(sys.executable)


@dataclass(frozen=True)
class Round:
    """One timed run of one implementation: µs per cycle, and the floor's run just before it."""

    cpu_us: float
    wall_us: float
    floor_cpu_us: float
    stats: dict[str, Any] = field(default_factory=dict)  # the worker's Bench.stats(), if any
    floor_wall_us: float = 0.0


Figures = dict[str, list[Round]]


def run_all(keys: list[str], iterations: int, rounds: int, no_peers: bool, timeout: float,
            log: Callable[[str], None], impls: dict[str, Impl] | None = None,
            script: Path | None = None) -> tuple[Figures, dict[str, str], dict[str, str], Path]:
    """Run the interleaved rounds; return per-key rounds, skip reasons, versions and the gevent python.

    ``impls`` and ``script`` (default: this file's rows and this file) let another benchmark
    run its own rows in workers started from its own script.
    """
    by_key = BY_KEY if impls is None else impls
    python = _gevent_python(no_peers)
    results: Figures = {}
    skipped: dict[str, str] = {}
    versions: dict[str, str] = {}
    workers: dict[str, WorkerProcess] = {}
    pg: Any = None
    base_env = dict(os.environ)
    base_env.pop("PYTHONPATH", None)
    try:
        if any(by_key[k].postgres for k in keys) and not no_peers and PEERS_PYTHON.exists():
            try:
                pg = _start_postgres()
                base_env[CONNINFO_ENV] = pg.dsn + " connect_timeout=10"
            except Exception as error:
                pg = None
                for key in keys:
                    if by_key[key].postgres:
                        skipped[key] = f"not run: no PostgreSQL here ({type(error).__name__}: {error})"
        for key in keys:
            impl = by_key[key]
            if key in skipped:
                continue
            if impl.peer and (no_peers or not PEERS_PYTHON.exists()):
                skipped[key] = ("not run (--no-peers)" if no_peers else
                                "not run: no peers venv (run benchmarks/peers/setup_peers.py)")
                continue
            env = dict(base_env)
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (REPO, *impl.pythonpath))
            log(f"starting {key}")
            try:
                worker = WorkerProcess(impl, PEERS_PYTHON if impl.peer else python, env, timeout, script)
                worker.run(max(iterations // 5, 1000))  # warm-up, not recorded
            except RuntimeError as error:
                skipped[key] = f"failed: {error}"
                continue
            workers[key] = worker
            versions.update(worker.hello.get("versions", {}))
            results[key] = []
        if "floor" not in workers:
            return results, skipped, versions, python
        order = [key for key in workers if key != "floor"] or ["floor"]
        to_us = 1e6 / iterations
        for r in range(rounds):
            log(f"round {r + 1}/{rounds}")
            for key in order[r % len(order):] + order[: r % len(order)]:
                # the floor runs right before each row: the pair sees the same machine
                floor = workers["floor"].request(iterations)
                floor_cpu, floor_wall = float(floor["cpu"]), float(floor["wall"])
                results["floor"].append(Round(floor_cpu * to_us, floor_wall * to_us, floor_cpu * to_us,
                                              floor.get("stats", {}), floor_wall * to_us))
                if key == "floor":
                    continue
                try:
                    answer = workers[key].request(iterations)
                except RuntimeError as error:
                    skipped[key] = f"failed: {error}"
                    order.remove(key)
                    results.pop(key, None)
                    if not order:
                        order = ["floor"]
                    continue
                results[key].append(Round(float(answer["cpu"]) * to_us, float(answer["wall"]) * to_us,
                                          floor_cpu * to_us, answer.get("stats", {}), floor_wall * to_us))
    finally:
        for worker in workers.values():
            worker.stop()
        if pg is not None:
            pg.cleanup()
    return results, skipped, versions, python


def ratio_to_floor(results: Figures, key: str) -> float | None:
    """Median over rounds of (this row's CPU µs / the floor's CPU µs in the run just before it)."""
    ratios = [r.cpu_us / r.floor_cpu_us for r in results.get(key, [])]
    return statistics.median(ratios) if ratios else None


def format_table(keys: list[str], results: Figures, skipped: dict[str, str]) -> list[str]:
    """Return the Markdown table: implementation, CPU µs/cycle (median, min), wall median, ratio."""
    rows = [
        "| implementation | µs/cycle (CPU, median) | min | wall µs (median) | ratio to floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in keys:
        label = BY_KEY[key].label
        rounds = results.get(key)
        if rounds:
            cpu = [r.cpu_us for r in rounds]
            wall = statistics.median(r.wall_us for r in rounds)
            ratio = ratio_to_floor(results, key)
            shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
            rows.append(f"| {label} | {statistics.median(cpu):.3f} | {min(cpu):.3f} | {wall:.3f} | {shown} |")
        else:
            rows.append(f"| {label} | {skipped.get(key, 'not run')} | | | |")
    return rows


def benchmark_parser(
    description: str, keys: list[str], quick: str, iterations: str
) -> argparse.ArgumentParser:
    """The options every interleaved benchmark here takes (this one and ``contention.py``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"fast smoke run ({quick})")
    parser.add_argument("--iterations", type=int, help=iterations)
    parser.add_argument("--rounds", type=int, help="rounds (default 7)")
    parser.add_argument("--only", help="comma-separated keys: " + ",".join(keys))
    parser.add_argument("--no-peers", action="store_true", help="floor and geventpool rows only")
    parser.add_argument("--output", type=Path, help="also write the table as Markdown to this file")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file (for plots)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a worker may take per answer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser("Checkout overhead of geventpool against its peers.", list(BY_KEY),
                              "20k cycles x 3 rounds", "cycles per round (default 200000)")
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    iterations = args.iterations or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (3 if args.quick else 7)
    keys = list(BY_KEY)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in keys if k not in BY_KEY]
        if unknown:
            parser.error(f"unknown keys {unknown}; choose from {list(BY_KEY)}")
    if "floor" not in keys:
        keys.insert(0, "floor")

    def log(message: str) -> None:
        print(f"# {message}", file=sys.stderr, flush=True)

    results, skipped, versions, python = run_all(keys, iterations, rounds, args.no_peers, args.timeout, log)
    table = format_table(keys, results, skipped)
    notes = [
        f"{iterations} cycles x {rounds} rounds per row (one greenlet, no I/O, connection already open).",
        *machine_notes(versions, str(python)),
    ]
    print("\n".join(table))
    print()
    labels = " ".join(BY_KEY[k].label for k in keys)
    notes += [n for n in FOOTNOTES if not n.startswith("[") or n[: n.index("]") + 1] in labels]
    print("\n".join(notes))
    if args.output:
        command = "python benchmarks/overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            "# Checkout overhead: geventpool against its peers\n\n"
            f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M %Z')}.\n\n"
            + "\n".join(table) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures_as_json(keys, results, skipped, iterations, rounds, notes),
                                        indent=1, ensure_ascii=False) + "\n")
    return 0 if "floor" in results else 1


def figures_as_json(keys: list[str], results: Figures, skipped: dict[str, str], iterations: int,
                    rounds: int, notes: list[str]) -> dict[str, Any]:
    """The table as plain data: one entry per row (µs are CPU µs per cycle; None when not run)."""
    rows = []
    for key in keys:
        measured = results.get(key) or []
        cpu = [r.cpu_us for r in measured]
        rows.append({
            "key": key,
            "label": BY_KEY[key].label,
            "peer": BY_KEY[key].peer,
            "cpu_us_median": statistics.median(cpu) if cpu else None,
            "cpu_us_min": min(cpu) if cpu else None,
            "wall_us_median": statistics.median(r.wall_us for r in measured) if measured else None,
            "ratio_to_floor": ratio_to_floor(results, key),
            "not_run": None if measured else skipped.get(key, "not run"),
        })
    return {"benchmark": "overhead", "iterations": iterations, "rounds": rounds, "rows": rows,
            "notes": notes}


if __name__ == "__main__":
    sys.exit(main())

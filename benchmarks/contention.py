"""Hand-off under contention: geventpool's ConnectionPool against its peers.

50 greenlets share a pool of 10 connections that are already open (trivial
objects, no I/O).  Each greenlet loops: check a connection out (the library's
own idiom), ``sleep(0)`` while holding it, so that the others must wait and the
pool must hand connections over to them, and give it back.  A round is a fixed
number of checkouts between all 50 greenlets, started together; every checkout
records how long it waited (from calling get to holding the connection).

Reported per row: hand-offs per second (wall clock, and per CPU second of the
worker thread), the throughput ratio to the floor (higher is better), the wait's
p50, p99 and maximum, max/p99 (FIFO fairness: the target is at most 2) and
fairness (the least-served greenlet's checkouts / the mean).  The worker
processes, the interleaved rounds and the floor are overhead.py's::

    .venv/bin/python benchmarks/peers/setup_peers.py     # once: the peers' venv
    .venv/bin/python benchmarks/contention.py            # full run
    .venv/bin/python benchmarks/contention.py --quick    # smoke run (seconds)

See benchmarks/README.rst.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead
from overhead import PEERS_PYTHON, POOL_SIZE, Bench, Impl, Round, machine_notes, run_all

__all__ = ["GREENLETS", "IMPLEMENTATIONS", "Arena", "main"]

#: Greenlets contending for the POOL_SIZE connections.
GREENLETS = 50
#: The FIFO fairness target of the issue: the longest wait at most this many times the p99.
FIFO_TARGET = 2.0


def with_loop(arena: Arena, me: int, checkout: Callable[[], Any]) -> None:
    """One greenlet's loop for a pool checked out with ``with checkout() as conn:``."""
    clock, sleep, waits = time.perf_counter, arena.sleep, arena.waits
    done = 0
    try:
        while arena.left > 0:
            arena.left -= 1
            start = clock()
            with checkout() as _conn:
                waits.append(clock() - start)
                sleep(0)
            done += 1
    finally:
        arena.finish(me, done)


def pair_loop(arena: Arena, me: int, acquire: Callable[[], Any], release: Callable[[Any], Any]) -> None:
    """One greenlet's loop for a pool checked out with ``conn = acquire(); ...; release(conn)``."""
    clock, sleep, waits = time.perf_counter, arena.sleep, arena.waits
    done = 0
    try:
        while arena.left > 0:
            arena.left -= 1
            start = clock()
            conn = acquire()
            waits.append(clock() - start)
            sleep(0)
            release(conn)
            done += 1
    finally:
        arena.finish(me, done)


class Arena:
    """GREENLETS greenlets sharing one pool: ``run(n)`` has them make n checkouts between them."""

    def __init__(self, runtime: str, loop: Callable[..., None], methods: list[Callable[..., Any]]) -> None:
        self.runtime = runtime
        self.loop = loop
        self.methods = methods
        self.spawn: Callable[..., Any]
        self.sleep: Callable[[float], None]
        self.event: Callable[[], Any]
        if runtime == "eventlet":
            import eventlet
            from eventlet.event import Event

            self.spawn, self.sleep, self.event = eventlet.spawn, eventlet.sleep, Event
        else:
            import gevent
            from gevent.event import Event

            self.spawn, self.sleep, self.event = gevent.spawn, gevent.sleep, Event
        self.left = self.finished = 0
        self.waits: list[float] = []
        self.counts: list[int] = []
        self.finish_line: Any = None

    def finish(self, me: int, done: int) -> None:
        """Park a greenlet that found no checkouts left (or failed) until all have: no greenlet
        exits (which costs the hub time) while others still wait for a connection."""
        self.counts[me] = done
        self.finished += 1
        if self.finished == GREENLETS:
            (self.finish_line.send if self.runtime == "eventlet" else self.finish_line.set)()
        else:
            self.finish_line.wait()

    def run(self, n: int) -> None:
        self.left, self.finished, self.waits, self.counts = n, 0, [], [0] * GREENLETS
        self.finish_line = self.event()
        tasks = [self.spawn(self.loop, self, me, *self.methods) for me in range(GREENLETS)]
        if self.runtime == "eventlet":
            for task in tasks:
                task.wait()
        else:
            import gevent

            gevent.joinall(tasks, raise_error=True)
        if sum(self.counts) != n:
            raise RuntimeError(f"{sum(self.counts)} checkouts made, {n} expected")

    def stats(self) -> dict[str, Any]:
        """The last round's waits (µs) and fairness, for the parent."""
        cuts = statistics.quantiles(self.waits, n=100)
        return {"p50_us": cuts[49] * 1e6, "p99_us": cuts[98] * 1e6, "max_us": max(self.waits) * 1e6,
                "fairness": min(self.counts) / statistics.fmean(self.counts)}


def contended(build: Callable[[], Bench], loop: Callable[..., None], *methods: str,
              runtime: str = "gevent") -> Callable[[], Bench]:
    """Build overhead.py's pool for a row, and run ``methods`` of it from GREENLETS greenlets."""

    def make() -> Bench:
        base = build()
        arena = Arena(runtime, loop, [getattr(base.pool, name) for name in methods])
        return Bench(arena.run, base.close, base.pool, base.versions, arena.stats)

    return make


class FifoFloor:
    """The fair floor: the least a FIFO pool with a bounded wait can do (no other feature).

    A returned connection goes to the oldest waiter (woken through the hub), and every wait
    runs under a timer, as a pool that honours ``timeout`` must.  What the barging floor skips.
    """

    def __init__(self, size: int) -> None:
        import gevent

        self._hub = gevent.get_hub()
        self._idle: deque[Any] = deque(overhead.TrivialConnection() for _ in range(size))
        self._waiters: deque[Any] = deque()

    def get(self, timeout: float = 30.0) -> Any:
        if self._idle:
            return overhead._QueueLease(self, self._idle.pop())
        from gevent.hub import Waiter

        waiter = Waiter(self._hub)
        self._waiters.append(waiter)
        timer = self._hub.loop.timer(timeout)
        timer.start(waiter.switch, None)
        try:
            conn = waiter.get()
        finally:
            timer.close()
        if conn is None:
            self._waiters.remove(waiter)
            raise TimeoutError("no connection")
        return overhead._QueueLease(self, conn)

    def put(self, conn: Any) -> None:
        if self._waiters:
            self._hub.loop.run_callback(self._waiters.popleft().switch, conn)
        else:
            self._idle.append(conn)


def _build_fifo_floor() -> Bench:
    pool = FifoFloor(overhead.POOL_SIZE)
    return Bench(lambda n: None, lambda: None, pool, overhead._versions("gevent"))


def _row(key: str, label: str, loop: Callable[..., None], *methods: str) -> Impl:
    base = overhead.BY_KEY[key]
    build = contended(base.build, loop, *methods, runtime=base.runtime)
    return Impl(key, label, build, base.runtime, base.peer, base.postgres, base.pythonpath)


#: Every row, in table order.  The ratio column divides by the "floor" row.
IMPLEMENTATIONS: list[Impl] = [
    _row("floor", "floor: gevent Queue + thinnest `with` [1]", with_loop, "get"),
    Impl("fifo-floor", "fair floor: FIFO hand-off + a timer per wait [5]",
         contended(_build_fifo_floor, with_loop, "get")),
    _row("geventpool", "geventpool `with pool.get()`", with_loop, "get"),
    _row("geventpool-python", "geventpool `with pool.get()`, pure Python [6]", with_loop, "get"),
    _row("geventpool-acquire", "geventpool acquire()/release()", pair_loop, "acquire", "release"),
    _row("geventconnpool", "geventconnpool 0.2.1 (patched) `with`", with_loop, "get"),
    _row("gsocketpool", "gsocketpool `with pool.connection()` [2]", with_loop, "connection"),
    _row("eventlet", "eventlet db_pool (raw) `with pool.item()` [3]", with_loop, "item"),
    _row("eventlet-getput", "eventlet db_pool (raw) get()/put() [3]", pair_loop, "get", "put"),
    _row("psycopg-getconn", "psycopg_pool getconn()/putconn() [4]", pair_loop, "getconn", "putconn"),
    _row("psycopg-connection", "psycopg_pool `with pool.connection()` [4]", with_loop, "connection"),
    _row("sqlalchemy", "SQLAlchemy QueuePool `with pool.connect()` [3]", with_loop, "connect"),
]
BY_KEY = {impl.key: impl for impl in IMPLEMENTATIONS}

FOOTNOTES = [
    "[1] gevent's Queue.get() takes a queued item without looking at waiting getters: a greenlet that "
    "returns a connection and asks again at once gets it back (barging), so the floor makes few real "
    "hand-offs; a fair pool pays a greenlet switch per hand-off that the floor does not.",
    "[2] gsocketpool does not queue waiters: an exhausted pool sleeps 0.1 s and retries (10 times, then "
    "PoolExhaustedError), so its waits are multiples of 100 ms.",
    "[3] trivial DB-API-like connections, eventlet db_pool.RawConnectionPool under eventlet (eventlet.spawn, "
    "eventlet.sleep(0)); SQLAlchemy QueuePool(pool_size=10, max_overflow=0) with its default timeout (30 s).",
    "[4] psycopg 3 connections to a private PostgreSQL on 127.0.0.1 (idle: no I/O in the cycle).",
    "[5] the fair floor: a deque of connections and a deque of hub Waiters, a returned connection "
    "handed to the oldest waiter through the hub, a libev timer around every wait (what a pool that "
    "honours timeout= must pay) and nothing else: what strict FIFO costs at least.",
    "[6] GEVENTPOOL_PURE_PYTHON=1: without the optional C speedups (geventpool/_speedups.c).",
    f"{GREENLETS} greenlets started together per round, each looping checkout / sleep(0) while holding / "
    "return until the round's checkouts are used up (then it parks until all are done: no greenlet exits "
    "while others wait); one worker process per row, rounds interleaved, the floor run right before every "
    "row, gc off while timing. Hand-offs/s: checkouts / the round's wall time, and / the worker thread's "
    "CPU time (which leaves out sleeps such as gsocketpool's). Ratios: median over rounds of (row's "
    "throughput / the floor's just before), higher is better. Waits are wall-clock (time.perf_counter "
    "around the checkout), so a preempted worker can inflate a max; p50, p99, max and max/p99 are per "
    "round, shown as the median over rounds and (worst round). Fairness: the least-served greenlet's "
    "checkouts / the mean (1.00 = even).",
]


def _median(rounds: list[Round], name: str) -> float:
    return statistics.median(float(r.stats[name]) for r in rounds)


def summarize(rounds: list[Round], iterations: int) -> dict[str, float]:
    """The row's figures: medians over rounds, and the worst round for max, max/p99 and fairness."""
    spread = [float(r.stats["max_us"]) / max(float(r.stats["p99_us"]), 1e-9) for r in rounds]
    worst = rounds[spread.index(max(spread))]
    return {
        "handoffs_per_s_wall": statistics.median(1e6 / r.wall_us for r in rounds),
        "handoffs_per_s_cpu": statistics.median(1e6 / r.cpu_us for r in rounds),
        "ratio_to_floor": statistics.median(r.floor_wall_us / r.wall_us for r in rounds),
        "ratio_to_floor_cpu": statistics.median(r.floor_cpu_us / r.cpu_us for r in rounds),
        "wait_p50_us": _median(rounds, "p50_us"),
        "wait_p99_us": _median(rounds, "p99_us"),
        "wait_max_us": _median(rounds, "max_us"),
        "wait_max_us_worst": max(float(r.stats["max_us"]) for r in rounds),
        "max_over_p99": statistics.median(spread),
        "max_over_p99_worst": max(spread),
        # wall minus CPU time of that round: time the worker was not running (preempted), or slept
        "worst_round_off_cpu_us": (worst.wall_us - worst.cpu_us) * iterations,
        "fairness": _median(rounds, "fairness"),
        "fairness_worst": min(float(r.stats["fairness"]) for r in rounds),
    }


def format_table(keys: list[str], figures: dict[str, dict[str, float]], skipped: dict[str, str]) -> list[str]:
    rows = [
        "| implementation | hand-offs/s (wall) | ratio to floor | hand-offs/s (CPU) | ratio (CPU) | "
        "wait p50 µs | p99 µs | max µs (worst) | max/p99 (worst) | fairness (worst) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        f = figures.get(key)
        if f is None:
            rows.append(f"| {BY_KEY[key].label} | {skipped.get(key, 'not run')} | | | | | | | | |")
            continue
        rows.append(
            f"| {BY_KEY[key].label} | {f['handoffs_per_s_wall']:,.0f} | {f['ratio_to_floor']:.2f}x | "
            f"{f['handoffs_per_s_cpu']:,.0f} | {f['ratio_to_floor_cpu']:.2f}x | "
            f"{f['wait_p50_us']:,.1f} | {f['wait_p99_us']:,.1f} | "
            f"{f['wait_max_us']:,.0f} ({f['wait_max_us_worst']:,.0f}) | "
            f"{f['max_over_p99']:.2f} ({f['max_over_p99_worst']:.2f}) | "
            f"{f['fairness']:.2f} ({f['fairness_worst']:.2f}) |"
        )
    return rows


def target_notes(figures: dict[str, dict[str, float]]) -> list[str]:
    """The issue's FIFO target for geventpool's rows: the longest wait at most 2x the p99; and their
    throughput against the fair floor (like for like: both hand every connection to the oldest waiter)."""
    notes = []
    fair = figures.get("fifo-floor")
    for key in ("geventpool", "geventpool-acquire"):
        f = figures.get(key)
        if f is not None and fair is not None:
            notes.append(f"{BY_KEY[key].label} / fair floor (hand-offs/s, wall): "
                         f"{f['handoffs_per_s_wall'] / fair['handoffs_per_s_wall']:.2f}x")
        if f is not None:
            if f["max_over_p99_worst"] <= FIFO_TARGET:
                verdict = "met"
            elif f["max_over_p99"] <= FIFO_TARGET:
                verdict = "met in the median round, NOT in the worst"
            else:
                verdict = "NOT met"
            notes.append(f"target, {BY_KEY[key].label}: max wait <= {FIFO_TARGET:g}x p99: {verdict} "
                         f"(median round {f['max_over_p99']:.2f}, worst {f['max_over_p99_worst']:.2f}; "
                         f"the worker was off CPU for {f['worst_round_off_cpu_us']:,.0f} µs of that round)")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = overhead.benchmark_parser(
        "Hand-off under contention: geventpool against its peers.", list(BY_KEY),
        "5k checkouts x 3 rounds", "checkouts per round (default 20000)",
    )
    args = parser.parse_args(argv)
    if args.worker:
        return overhead._worker(args.worker, BY_KEY)
    iterations = args.iterations or (5_000 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 7)
    keys = list(BY_KEY)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in keys if k not in BY_KEY]
        if unknown:
            parser.error(f"unknown keys {unknown}; choose from {list(BY_KEY)}")
    if "floor" not in keys:
        keys.insert(0, "floor")
    if "fifo-floor" not in keys:
        keys.insert(1, "fifo-floor")

    def log(message: str) -> None:
        print(f"# {message}", file=sys.stderr, flush=True)

    results, skipped, versions, python = run_all(keys, iterations, rounds, args.no_peers, args.timeout, log,
                                                 BY_KEY, Path(__file__).resolve())
    figures = {key: summarize(rounds_, iterations) for key, rounds_ in results.items() if rounds_}
    table = format_table(keys, figures, skipped)
    command = "python benchmarks/contention.py " + " ".join(argv if argv is not None else sys.argv[1:])
    notes = [
        f"{iterations} checkouts x {rounds} rounds per row: {GREENLETS} greenlets, {POOL_SIZE} connections "
        "open before timing, sleep(0) while holding, no I/O.",
        *target_notes(figures),
        *machine_notes(versions, str(python)),
    ]
    if any(BY_KEY[k].peer for k in keys) and (args.no_peers or not PEERS_PYTHON.exists()):
        notes.append("peer rows not run: " + ("--no-peers was given" if args.no_peers else
                     f"no peers venv at {PEERS_PYTHON} (build it with benchmarks/peers/setup_peers.py)"))
    labels = " ".join(BY_KEY[k].label for k in keys)
    notes += [n for n in FOOTNOTES if not n.startswith("[") or n[: n.index("]") + 1] in labels]
    notes.append(f"command: `{command.strip()}`")
    print("\n".join(table) + "\n\n" + "\n".join(notes))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            "# Hand-off under contention: geventpool against its peers\n\n"
            f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M %Z')}.\n\n"
            + "\n".join(table) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        )
    if args.json:
        rows = [{"key": k, "label": BY_KEY[k].label, "peer": BY_KEY[k].peer, **figures.get(k, {}),
                 "rounds": [r.stats for r in results.get(k, [])],
                 "not_run": None if k in figures else skipped.get(k, "not run")} for k in keys]
        data = {"benchmark": "contention", "iterations": iterations, "rounds": rounds, "greenlets": GREENLETS,
                "pool_size": POOL_SIZE, "rows": rows, "notes": notes}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return 0 if "floor" in figures else 1


if __name__ == "__main__":
    sys.exit(main())

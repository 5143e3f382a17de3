"""geventpool.dbapi against its peers: ops/s on a private PostgreSQL and MariaDB, the cost of one
get()/put() with no I/O, ratios, the hub's longest stall.

Run with the project's interpreter::

    .venv/bin/python benchmarks/dbapi.py [--seconds 2] [--rounds 3] [--sections pg mariadb noio]

Peers run in ``benchmarks/.peers/venv`` (made by ``benchmarks/peers/setup_peers.py``;
this script adds psycopg2-binary, psycogreen, mysqlclient and PyMySQL to it when
missing).  Every contender runs in its own subprocess (eventlet, monkey-patching
and psycopg2's process-wide wait callback must not meet), the contenders are
interleaved round by round, and the median of the rounds is reported.  Every
contender uses autocommit, so ``SELECT 1`` is one round trip for all of them.

With two CPUs or more (and unless ``--no-pin``), every contender runs on CPU 0
and the database server on CPU 1: on a small machine the client and the
server otherwise share both CPUs as the scheduler pleases, which moves the
ratios by more than the differences measured (+-15% between runs on the
2-CPU machine of CI); pinned, the client is what is measured.

Sections: ``pg`` (``SELECT 1`` at 10 and 50 greenlets, ``pg_sleep(0.005)`` at
50, pool of 10), ``mariadb`` (``SELECT 1`` at 10 and 50 greenlets against
eventlet's pools: mysqlclient in threads, PyMySQL green), ``noio`` (one
``get()``/``put()`` of a DB-API module that does no I/O, with and without a
cursor: the pools' own cost in microseconds, against eventlet's
``RawConnectionPool`` and a gevent ``Queue``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PY = HERE / ".peers" / "venv" / "bin" / "python"

__all__ = ["main", "CONTENDERS", "SCENARIOS"]

#: name -> (interpreter: "main" or "peers", description)
CONTENDERS = {
    "geventpool": ("main", "geventpool.dbapi.ConnectionPool, psycopg2 + its wait callback"),
    "naive-queue": ("main", "a gevent Queue of psycopg2 connections, psycogreen-style callback"),
    "raw": ("main", "psycopg2 + wait callback, one connection per greenlet (the limit)"),
    "blocking": ("main", "a gevent Queue of psycopg2 connections, no wait callback"),
    "eventlet-raw": ("peers", "eventlet db_pool.RawConnectionPool + psycogreen (under eventlet)"),
    "eventlet-tpool": ("peers", "eventlet db_pool.TpooledConnectionPool (under eventlet)"),
    "psycopg-pool-threads": ("peers", "psycopg_pool.ConnectionPool, psycopg 3, OS threads"),
    "psycopg-pool-gevent": ("peers", "psycopg_pool.ConnectionPool, psycopg 3, gevent monkey-patched"),
    "sqlalchemy": ("peers", "SQLAlchemy QueuePool + psycopg2 + psycogreen (gevent)"),
}

#: MariaDB contenders: name -> (interpreter, description)
MARIADB_CONTENDERS = {
    "geventpool-mysqldb": ("main", "geventpool.dbapi.ConnectionPool(MySQLdb): thread-pool mode"),
    "geventpool-pymysql": ("main", "geventpool.dbapi.ConnectionPool(pymysql): green (gevent sockets)"),
    "naive-queue-pymysql": ("main", "a gevent Queue of PyMySQL connections, monkey-patched"),
    "eventlet-tpool-mysqldb": ("peers", "eventlet db_pool.TpooledConnectionPool(MySQLdb)"),
    "eventlet-raw-pymysql": ("peers", "eventlet db_pool.RawConnectionPool(pymysql), monkey-patched"),
}
MARIADB_SCENARIOS = {
    "mariadb-select1-10": ("SELECT 1", 10),
    "mariadb-select1-50": ("SELECT 1", 50),
}

#: no-I/O contenders: name -> (interpreter, description)
NOIO_CONTENDERS = {
    "geventpool": ("main", "geventpool.dbapi.RawConnectionPool"),
    "eventlet-raw": ("peers", "eventlet db_pool.RawConnectionPool"),
    "gevent-queue": ("main", "a gevent Queue (the floor: no pool at all)"),
}
NOIO_MODES = ("bare", "cursor")

#: name -> (query, concurrent workers)
SCENARIOS = {
    "select1-10": ("SELECT 1", 10),
    "select1-50": ("SELECT 1", 50),
    "sleep5ms-50": ("SELECT pg_sleep(0.005)", 50),
}
POOL_SIZE = 10

_WORKER = r'''
import json, sys, time
name, dsn, query, workers, seconds, pool_size = sys.argv[1:7]
workers, seconds, pool_size = int(workers), float(seconds), int(pool_size)
stall = [0.0]

def heartbeat(sleep, now=time.perf_counter):
    while True:
        t = now(); sleep(0.005); late = now() - t - 0.005
        if late > stall[0]: stall[0] = late

def green_callback(conn):
    from gevent.socket import wait_read, wait_write
    import psycopg2.extensions as ext
    while True:
        state = conn.poll()
        if state == ext.POLL_OK: break
        elif state == ext.POLL_READ: wait_read(conn.fileno())
        else: wait_write(conn.fileno())

counts = [0] * workers  # operations per worker: how fairly the pool serves them

def window(sleep):
    """Warm up, then measure for `seconds`: (operations per second, per-worker counts in the window)."""
    sleep(0.3); stall[0] = 0.0; base = list(counts); t = time.perf_counter()
    sleep(seconds); done = [c - b for c, b in zip(counts, base)]; el = time.perf_counter() - t
    return sum(done) / el, done

def run_gevent(op_factory, setup=None):
    import gevent
    stop = [False]
    op = op_factory()
    def loop(i):
        while not stop[0]:
            op(); counts[i] += 1
    hb = gevent.spawn(heartbeat, gevent.sleep)
    gs = [gevent.spawn(loop, i) for i in range(workers)]
    result = window(gevent.sleep)
    stop[0] = True; gevent.joinall(gs, timeout=5); hb.kill()
    return result

if name == "geventpool":
    import psycopg2
    from geventpool.dbapi import ConnectionPool
    pool = ConnectionPool(psycopg2, dsn, min_size=pool_size, max_size=pool_size, max_age=3600,
                          configure=lambda c: setattr(c, "autocommit", True))
    def factory():
        get, put = pool.get, pool.put
        def op():
            conn = get()
            cur = conn.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            put(conn)
        return op
    result = run_gevent(factory)
elif name in ("naive-queue", "blocking", "raw"):
    import psycopg2, psycopg2.extensions, gevent.queue
    if name != "blocking":
        psycopg2.extensions.set_wait_callback(green_callback)
    def connect():
        c = psycopg2.connect(dsn); c.autocommit = True; return c
    if name == "raw":
        import gevent.local
        local = gevent.local.local()
        def factory():
            def op():
                c = getattr(local, "c", None)
                if c is None: c = local.c = connect()
                cur = c.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            return op
    else:
        import gevent
        blocking = name == "blocking"
        q = gevent.queue.Queue()
        for _ in range(pool_size): q.put(connect())
        def factory():
            def op():
                c = q.get()
                try:
                    cur = c.cursor(); cur.execute(query); cur.fetchall(); cur.close()
                finally:
                    q.put(c)
                if blocking:
                    gevent.sleep(0)  # nothing else yields: let the others (and the clock) run
            return op
    result = run_gevent(factory)
elif name in ("eventlet-raw", "eventlet-tpool"):
    import warnings; warnings.simplefilter("ignore")
    import eventlet
    eventlet.monkey_patch()
    import psycopg2
    from eventlet import db_pool
    if name == "eventlet-raw":
        from psycogreen.eventlet import patch_psycopg; patch_psycopg()
        cls = db_pool.RawConnectionPool
    else:
        cls = db_pool.TpooledConnectionPool
    pool = cls(psycopg2, min_size=pool_size, max_size=pool_size, max_age=3600, max_idle=3600, dsn=dsn)
    conns = [pool.get() for _ in range(pool_size)]
    for c in conns: c._base.autocommit = True  # eventlet's wrapper does not proxy autocommit
    for c in conns: pool.put(c)
    stop = [False]
    def loop(i):
        while not stop[0]:
            c = pool.get()
            try:
                cur = c.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            finally:
                pool.put(c)
            counts[i] += 1
    hb = eventlet.spawn(heartbeat, eventlet.sleep)
    gs = [eventlet.spawn(loop, i) for i in range(workers)]
    result = window(eventlet.sleep)
    stop[0] = True
    for g in gs: g.wait()
    hb.kill()
elif name in ("geventpool-mysqldb", "geventpool-pymysql"):
    kw = json.loads(dsn)
    module = __import__("MySQLdb" if name.endswith("mysqldb") else "pymysql")
    from geventpool.dbapi import ConnectionPool
    pool = ConnectionPool(module, min_size=pool_size, max_size=pool_size, max_age=3600, autocommit=True, **kw)
    def factory():
        get, put = pool.get, pool.put
        def op():
            conn = get()
            cur = conn.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            put(conn)
        return op
    result = run_gevent(factory)
elif name == "naive-queue-pymysql":
    from gevent import monkey; monkey.patch_all()
    import gevent.queue, pymysql
    kw = json.loads(dsn)
    q = gevent.queue.Queue()
    for _ in range(pool_size): q.put(pymysql.connect(autocommit=True, **kw))
    def factory():
        def op():
            c = q.get()
            try:
                cur = c.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            finally:
                q.put(c)
        return op
    result = run_gevent(factory)
elif name in ("eventlet-tpool-mysqldb", "eventlet-raw-pymysql"):
    import warnings; warnings.simplefilter("ignore")
    import eventlet
    eventlet.monkey_patch()
    from eventlet import db_pool
    kw = json.loads(dsn)
    if name == "eventlet-raw-pymysql":
        import pymysql as module
        cls = db_pool.RawConnectionPool
    else:
        import MySQLdb as module
        cls = db_pool.TpooledConnectionPool
    pool = cls(module, min_size=pool_size, max_size=pool_size, max_age=3600, max_idle=3600, autocommit=True,
               **kw)
    stop = [False]
    def loop(i):
        while not stop[0]:
            c = pool.get()
            try:
                cur = c.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            finally:
                pool.put(c)
            counts[i] += 1
    hb = eventlet.spawn(heartbeat, eventlet.sleep)
    gs = [eventlet.spawn(loop, i) for i in range(workers)]
    result = window(eventlet.sleep)
    stop[0] = True
    for g in gs: g.wait()
    hb.kill()
elif name == "psycopg-pool-threads":
    import threading
    from psycopg_pool import ConnectionPool
    pool = ConnectionPool(dsn, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}, open=True)
    pool.wait()
    stop = [False]
    def loop(i):
        while not stop[0]:
            with pool.connection() as c:
                c.execute(query).fetchall()
            counts[i] += 1
    ts = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    for t_ in ts: t_.start()
    result = window(time.sleep)
    stop[0] = True
    for t_ in ts: t_.join()
    stall[0] = float("nan")
elif name == "psycopg-pool-gevent":
    from gevent import monkey; monkey.patch_all()
    from psycopg_pool import ConnectionPool
    pool = ConnectionPool(dsn, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}, open=True)
    pool.wait()
    def factory():
        def op():
            with pool.connection() as c:
                c.execute(query).fetchall()
        return op
    result = run_gevent(factory)
elif name == "sqlalchemy":
    from gevent import monkey; monkey.patch_all()
    from psycogreen.gevent import patch_psycopg; patch_psycopg()
    import psycopg2
    from sqlalchemy.pool import QueuePool
    pool = QueuePool(lambda: psycopg2.connect(dsn), pool_size=pool_size, max_overflow=0, timeout=30,
                     reset_on_return="rollback")
    def factory():
        def op():
            c = pool.connect()
            try:
                c.driver_connection.autocommit = True
                cur = c.cursor(); cur.execute(query); cur.fetchall(); cur.close()
            finally:
                c.close()
        return op
    result = run_gevent(factory)
else:
    raise SystemExit("unknown contender " + name)
rate, done = result
mean = sum(done) / len(done)
# fairness: the least-served worker's share of the mean (1.0: all equal; 0: some never got a connection)
print(json.dumps({"rate": rate, "stall_ms": stall[0] * 1000, "fairness": min(done) / mean if mean else 0.0,
                  "starved": sum(1 for d in done if d == 0)}))
'''

_NOIO_WORKER = r'''
import json, sys, time, types
name, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Cursor:
    def execute(self, query, args=None): pass
    def fetchall(self): return [(1,)]
    def close(self): pass
class Connection:
    def cursor(self): return Cursor()
    def commit(self): pass
    def rollback(self): pass
    def close(self): pass
class Error(Exception): pass
class OperationalError(Error): pass
class InterfaceError(Error): pass
module = types.ModuleType("noiodb")
module.apilevel, module.threadsafety, module.paramstyle = "2.0", 1, "qmark"
module.Error, module.OperationalError, module.InterfaceError = Error, OperationalError, InterfaceError
module.connect = lambda *args, **kwargs: Connection()
sys.modules["noiodb"] = module
if name == "geventpool":
    from geventpool.dbapi import RawConnectionPool
    pool = RawConnectionPool(module, min_size=1, max_size=1, max_age=3600, max_idle=3600)
    get, put = pool.get, pool.put
elif name == "eventlet-raw":
    import warnings; warnings.simplefilter("ignore")
    from eventlet import db_pool
    pool = db_pool.RawConnectionPool(module, min_size=1, max_size=1, max_age=3600, max_idle=3600)
    get, put = pool.get, pool.put
else:
    import gevent.queue
    queue = gevent.queue.Queue(); queue.put(Connection()); get, put = queue.get, queue.put
put(get())
def bare():
    for _ in range(n):
        put(get())
def cursor():
    for _ in range(n):
        c = get(); cur = c.cursor(); cur.execute("SELECT 1"); cur.fetchall(); cur.close(); put(c)
run = bare if mode == "bare" else cursor
best = float("inf")
for _ in range(5):  # the best of five: the least disturbed by the other processes
    t = time.perf_counter(); run(); best = min(best, (time.perf_counter() - t) / n)
print(json.dumps({"us": best * 1e6}))
'''


def _ensure_peers() -> bool:
    if not PEERS_PY.exists():
        setup = HERE / "peers" / "setup_peers.py"
        if setup.exists():
            subprocess.run([sys.executable, str(setup)], check=False)
    if not PEERS_PY.exists():
        return False
    probe = subprocess.run([str(PEERS_PY), "-c", "import psycopg2, psycogreen, MySQLdb, pymysql"],
                           capture_output=True, check=False)
    if probe.returncode != 0:  # the versions of the project's venv (mysqlclient builds from source)
        subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q", "psycopg2-binary==2.9.13",
                        "psycogreen==1.0.2", "mysqlclient==2.3.2", "PyMySQL==1.2.4"], check=False)
    return True


#: CPUs of the contenders and of the database server, or None (not pinned); set by main()
PINNING: tuple[set[int], set[int]] | None = None


def _pin_server(pid: int | None) -> None:
    """Put every thread of server process ``pid`` on the server's CPU (its children, forked from
    now on, inherit it)."""
    if PINNING is None or pid is None:
        return
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), PINNING[1])


def _pin_contender() -> None:
    """In a contender's process, before it runs: the contenders' CPU."""
    if PINNING is not None:
        os.sched_setaffinity(0, PINNING[0])


def _run_one(name: str, dsn: str, query: str, workers: int, seconds: float) -> dict[str, float]:
    where = CONTENDERS[name][0] if name in CONTENDERS else MARIADB_CONTENDERS[name][0]
    interpreter = sys.executable if where == "main" else str(PEERS_PY)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [interpreter, "-c", _WORKER, name, dsn, query, str(workers), str(seconds), str(POOL_SIZE)],
        capture_output=True, text=True, timeout=seconds * 10 + 60, env=env, check=False,
        preexec_fn=_pin_contender,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-1500:]}")
    out: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> None:
    """Run every section and scenario, contenders interleaved, and print tables with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sections", nargs="*", choices=("pg", "mariadb", "noio"),
                        default=["pg", "mariadb", "noio"])
    parser.add_argument("--scenarios", nargs="*", help="scenarios to run (default: all of the sections)")
    parser.add_argument("--only", nargs="*", help="contenders to run (default: all)")
    parser.add_argument("--no-peers", action="store_true",
                        help="only the contenders run by this interpreter (no peers venv needed)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not put the contenders on CPU 0 and the server on CPU 1")
    parser.add_argument("--output", type=Path, help="also write the tables as Markdown to this file")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file (for plots)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    global PINNING
    cpus = sorted(os.sched_getaffinity(0))
    PINNING = ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 and not args.no_pin else None
    have_peers = not args.no_peers and _ensure_peers()
    results: list[dict[str, Any]] = []
    described: dict[str, str] = {}
    if "pg" in args.sections:
        from geventpool.testing.postgres import PostgresServer

        names = _names(args, CONTENDERS, have_peers)
        described.update({n: CONTENDERS[n][1] for n in names})
        with PostgresServer(settings={"max_connections": "300"}) as pg:
            _pin_server(pg.pid)
            results += _section(args, SCENARIOS, names, pg.dsn, "geventpool")
    if "mariadb" in args.sections:
        from geventpool.testing.mariadb import MariaDBServer

        names = _names(args, MARIADB_CONTENDERS, have_peers)
        described.update({n: MARIADB_CONTENDERS[n][1] for n in names})
        with MariaDBServer(settings={"max_connections": "300"}) as db:
            _pin_server(int(Path(db.pid_file).read_text().split()[0]))
            target = json.dumps({k: v for k, v in db.connect_kwargs().items()})
            results += _section(args, MARIADB_SCENARIOS, names, target, "geventpool-pymysql")
    noio = _noio(args, have_peers) if "noio" in args.sections else None
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(_markdown(results, args, argv, described, noio))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {"benchmark": "dbapi", "seconds": args.seconds, "rounds": args.rounds, "pool_size": POOL_SIZE,
                "contenders": described, "scenarios": results, "noio": noio}
        args.json.write_text(json.dumps(data, indent=1) + "\n")


def _names(args: argparse.Namespace, contenders: dict[str, tuple[str, str]], have_peers: bool) -> list[str]:
    wanted = [n for n in contenders if not args.only or n in args.only]
    return [n for n in wanted if have_peers or contenders[n][0] == "main"]


def _section(args: argparse.Namespace, scenarios: dict[str, tuple[str, int]], names: list[str], target: str,
             ours: str) -> list[dict[str, Any]]:
    """Run ``scenarios`` against ``target`` (a DSN, or connect keywords as JSON), rounds interleaved."""
    chosen = {k: v for k, v in scenarios.items() if not args.scenarios or k in args.scenarios}
    results = []
    runs, total = 0, len(chosen) * args.rounds * len(names)
    for scenario, (query, workers) in chosen.items():
        rates: dict[str, list[float]] = {n: [] for n in names}
        stalls: dict[str, list[float]] = {n: [] for n in names}
        fairness: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names:
                runs += 1
                print(f"# run {runs}/{total}: {scenario} round {r + 1} {name}", file=sys.stderr, flush=True)
                # for pg_sleep the limit is 10 connections kept busy: raw with 10 greenlets
                n = POOL_SIZE if name == "raw" and "sleep" in query else workers
                out = _run_one(name, target, query, n, args.seconds)
                rates[name].append(out["rate"])
                stalls[name].append(out["stall_ms"])
                fairness[name].append(out["fairness"])
        results.append(_scenario_result(scenario, query, workers, names, rates, stalls, fairness, ours))
        print("\n" + "\n".join(_text_table(results[-1], args.rounds, args.seconds)), flush=True)
    return results


#: checkouts per timed run of the no-I/O section (each run takes the best of five)
NOIO_CHECKOUTS = 50_000


def _noio(args: argparse.Namespace, have_peers: bool) -> dict[str, Any]:
    """One get()/put() with no I/O: microseconds per checkout, median over rounds, interleaved."""
    names = [n for n in NOIO_CONTENDERS if have_peers or NOIO_CONTENDERS[n][0] == "main"]
    figures: dict[str, dict[str, list[float]]] = {mode: {n: [] for n in names} for mode in NOIO_MODES}
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    for r in range(args.rounds):
        for mode in NOIO_MODES:
            for name in names:
                print(f"# no-I/O round {r + 1}: {mode} {name}", file=sys.stderr, flush=True)
                interpreter = sys.executable if NOIO_CONTENDERS[name][0] == "main" else str(PEERS_PY)
                result = subprocess.run([interpreter, "-c", _NOIO_WORKER, name, mode, str(NOIO_CHECKOUTS)],
                                        capture_output=True, text=True, timeout=600, env=env, check=False,
                                        preexec_fn=_pin_contender)
                if result.returncode != 0:
                    raise RuntimeError(f"no-I/O {name} failed:\n{result.stderr[-1500:]}")
                figures[mode][name].append(json.loads(result.stdout.strip().splitlines()[-1])["us"])
    table = {mode: {n: statistics.median(v) for n, v in by_name.items()} for mode, by_name in figures.items()}
    print("\n" + "\n".join(_noio_lines(table, args.rounds)), flush=True)
    return {"checkouts": NOIO_CHECKOUTS, "rounds": args.rounds, "us_per_checkout": table,
            "contenders": {n: NOIO_CONTENDERS[n][1] for n in names}}


def _noio_lines(table: dict[str, dict[str, float]], rounds: int) -> list[str]:
    lines = [f"== no I/O: one get()/put(), microseconds (best of 5 x {NOIO_CHECKOUTS} per run, median of "
             f"{rounds} interleaved runs) ==",
             f"{'contender':16} " + " ".join(f"{mode:>9}" for mode in NOIO_MODES)
             + " " + " ".join(f"{'geventpool/x ' + mode:>20}" for mode in NOIO_MODES)]
    for name in table[NOIO_MODES[0]]:
        ratios = []
        for mode in NOIO_MODES:
            ours, theirs = table[mode].get("geventpool"), table[mode][name]
            ratios.append(f"{ours / theirs:.2f}x" if ours else "-")
        lines.append(f"{name:16} " + " ".join(f"{table[mode][name]:9.2f}" for mode in NOIO_MODES)
                     + " " + " ".join(f"{ratio:>20}" for ratio in ratios))
    lines.append("(geventpool/x below 1.00: geventpool costs less)")
    return lines


def _scenario_result(scenario: str, query: str, workers: int, names: list[str], rates: dict[str, list[float]],
                     stalls: dict[str, list[float]], fairness: dict[str, list[float]],
                     reference: str = "geventpool") -> dict[str, Any]:
    ours = statistics.median(rates[reference]) if reference in rates else None
    rows = []
    for name in names:
        rate = statistics.median(rates[name])
        stall = max(stalls[name])
        rows.append({"name": name, "ops_per_s": rate, "geventpool_over": ours / rate if ours else None,
                     "max_stall_ms": None if math.isnan(stall) else stall, "fairness": min(fairness[name])})
    return {"scenario": scenario, "query": query, "workers": workers, "reference": reference, "rows": rows,
            "pairs": _pairs(rows)}


#: (ours, theirs) compared on their own line where both ran: like against like
PAIRS = (("geventpool", "eventlet-raw"), ("geventpool", "eventlet-tpool"), ("geventpool", "naive-queue"),
         ("geventpool-mysqldb", "eventlet-tpool-mysqldb"), ("geventpool-pymysql", "eventlet-raw-pymysql"),
         ("geventpool-pymysql", "naive-queue-pymysql"), ("geventpool-mysqldb", "eventlet-raw-pymysql"))


def _pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rate = {row["name"]: row["ops_per_s"] for row in rows}
    return [{"ours": a, "theirs": b, "ratio": rate[a] / rate[b]} for a, b in PAIRS if a in rate and b in rate]


def _text_table(result: dict[str, Any], rounds: int, seconds: float) -> list[str]:
    lines = [f"== {result['scenario']}: {result['query']!r}, {result['workers']} workers, "
             f"pool of {POOL_SIZE}, median of {rounds} x {seconds:g} s ==",
             f"{'contender':24} {'ops/s':>9} {result['reference'] + '/x':>13} {'max hub stall':>14} "
             f"{'fairness':>9}"]
    by_name = {row["name"]: row for row in result["rows"]}
    for row in result["rows"]:
        ratio = f"{row['geventpool_over']:.2f}x" if row["geventpool_over"] else "-"
        stall = "n/a (threads)" if row["max_stall_ms"] is None else f"{row['max_stall_ms']:.1f} ms"
        lines.append(f"{row['name']:24} {row['ops_per_s']:9.0f} {ratio:>13} {stall:>14} "
                     f"{row['fairness']:9.2f}")
    lines += [f"{pair['ours']} / {pair['theirs']}: {pair['ratio']:.2f}x" for pair in result["pairs"]]
    if "sleep" in result["query"] and "geventpool" in by_name and "raw" in by_name:
        lines.append(f"the 10-connection limit is raw's row here (10 greenlets, 10 connections); "
                     f"geventpool reaches {by_name['raw']['geventpool_over']:.3f}x of it")
    return lines


def _markdown(results: list[dict[str, Any]], args: argparse.Namespace, argv: list[str] | None,
              described: dict[str, str], noio: dict[str, Any] | None) -> str:
    command = "python benchmarks/dbapi.py " + " ".join(argv if argv is not None else sys.argv[1:])
    pinned = (f" on CPU {min(PINNING[0])}, the servers on CPU {min(PINNING[1])}" if PINNING is not None
              else " (not pinned to CPUs)")
    out = ["# DB-API pools: geventpool.dbapi against its peers", "",
           f"Produced by `{command.strip()}` on {time.strftime('%Y-%m-%d %H:%M %Z')} "
           f"(load average before: {os.getloadavg()[0]:.1f}): a private PostgreSQL and MariaDB on "
           f"127.0.0.1, pool of {POOL_SIZE}, autocommit, every contender in its own "
           f"process{pinned}, rounds interleaved, median of {args.rounds} x {args.seconds:g} s.  "
           f"*Fairness* is the operations of the least-served greenlet over the mean, worst round "
           f"(1.00: every greenlet served alike; 0.00: some greenlet never got a connection in the "
           f"whole window).", ""]
    for result in results:
        out += [f"## {result['scenario']}: `{result['query']}`, {result['workers']} greenlets", "",
                f"| contender | ops/s | {result['reference']} / this | max hub stall | fairness |",
                "|---|---:|---:|---:|---:|"]
        for row in result["rows"]:
            ratio = f"{row['geventpool_over']:.2f}x" if row["geventpool_over"] else "-"
            stall = "n/a (threads)" if row["max_stall_ms"] is None else f"{row['max_stall_ms']:.1f} ms"
            out.append(f"| {row['name']} | {row['ops_per_s']:.0f} | {ratio} | {stall} "
                       f"| {row['fairness']:.2f} |")
        out.append("")
        out += [f"- `{p['ours']}` / `{p['theirs']}`: **{p['ratio']:.2f}x**" for p in result["pairs"]]
        out.append("")
    if noio is not None:
        out += ["## No I/O: one `get()`/`put()`, microseconds per checkout", "",
                "```", *_noio_lines(noio["us_per_checkout"], noio["rounds"]), "```", ""]
        described = {**described, **{f"{n} (no I/O)": d for n, d in noio["contenders"].items()}}
    out += ["Contenders:", ""]
    out += [f"- `{name}`: {text}" for name, text in described.items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()

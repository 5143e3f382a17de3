"""A connection budget across gunicorn workers: its ledger and shares, then real gunicorn and PostgreSQL.

The first tests check the ledger (records of live and dead processes, a private directory)
and one process's shares as the worker count changes, against real echo-server pools.
The last one runs real gunicorn:

``gunicorn -k gevent -w 4`` runs a small app whose pool is registered with ``budget=12``
(``max_size=10``, so each worker would open up to 10 without it).  CLIENTS client greenlets
keep every worker's pool busy (each request holds a connection for ``pg_sleep(0.02)``)
while the test, in turn: kills a worker with SIGKILL (the arbiter starts a new one), sends
TTIN (5 workers: shares of 2), TTOU (4 workers: shares of 3 again) and HUP (gunicorn's
reload: 4 new workers overlap the 4 old ones until these drain).  A sampler counts the
server's client sessions in ``pg_stat_activity`` (all of them but its own) every few
milliseconds from start to end: the count never exceeds the budget.  After each step the
workers answering report the share expected from the worker count, and the budget is
used (the session count reaches the sum of the shares).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import psycopg2
import pytest
from gevent import socket as gsocket
from gevent import subprocess

from geventpool import ConfigurationError, ConnectionPool
from geventpool.contrib import _budget, gunicorn
from geventpool.contrib._budget import Ledger, directory_of
from geventpool.contrib.gunicorn import PoolRegistry
from geventpool.dbapi.psycopg2 import install as green_psycopg2
from geventpool.testing import EchoServer, wait_until
from geventpool.testing.postgres import PostgresServer, free_port

from ._gunicorn import Gunicorn, Reply, fetch

BUDGET = 12
WORKERS = 4
CLIENTS = 48

APP = '''
import json
import os

import psycopg2

from geventpool.contrib import gunicorn as pools
from geventpool.dbapi import ConnectionPool

db = pools.register(
    "db",
    lambda: ConnectionPool(psycopg2, os.environ["PG_DSN"], min_size=1, max_size=10, timeout=20.0,
                           connect_timeout=5, application_name="budget_app", name="db"),
    budget=int(os.environ["BUDGET"]),
)


def application(environ, start_response):
    pool = db.get()
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
        backend = cur.fetchone()[0]
    body = json.dumps({"worker": os.getpid(), "share": db.share, "max_size": pool.max_size,
                       "backend": backend}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''

CONF = '''
from geventpool.contrib.gunicorn import nworkers_changed, on_exit, post_worker_init, when_ready, worker_exit

worker_class = "gevent"
'''


class Sampler:
    """Counts PostgreSQL's client sessions (but its own) as often as it can, on one connection."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg2.connect(dsn, application_name="budget_sampler")
        self.conn.autocommit = True
        self.peak = 0
        self.last = 0
        self.samples = 0
        self.over: list[tuple[float, int]] = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        cur = self.conn.cursor()
        while True:
            cur.execute("SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            self.last = cur.fetchone()[0]
            self.peak = max(self.peak, self.last)
            if self.last > BUDGET:
                self.over.append((time.monotonic(), self.last))
            self.samples += 1
            gevent.sleep(0.002)

    def stop(self) -> None:
        self._greenlet.kill()
        self.conn.close()


class Load:
    """CLIENTS greenlets sending requests back to back; keeps the replies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.replies: list[Reply] = []
        self._running = True
        self._greenlets = [gevent.spawn(self._client, i) for i in range(CLIENTS)]

    def _client(self, i: int) -> None:
        number = i
        while self._running:
            self.replies.append(fetch(self.port, number, "u", "p", timeout=30))
            number += CLIENTS

    def since(self, moment: float) -> list[Reply]:
        return [r for r in self.replies if r.started > moment]

    def stop(self) -> None:
        self._running = False
        gevent.joinall(self._greenlets, timeout=40, raise_error=True)


def _settled(load: Load, server: Gunicorn, share: int, workers: int, moment: float) -> bool:
    """Every live worker answered since ``moment``, each with ``share``, and only live ones."""
    live = set(server.live_workers())
    if len(live) != workers:
        return False
    answers = [r.body for r in load.since(moment) if r.status == 200]
    seen: dict[int, set[int]] = {}
    for body in answers[-CLIENTS * 4:]:
        seen.setdefault(body["worker"], set()).add(body["share"])
    return set(seen) == live and all(shares == {share} for shares in seen.values())


def _step(load: Load, server: Gunicorn, sampler: Sampler, share: int, workers: int, what: str) -> float:
    """Wait until the workers settled on ``share`` and the sessions use the budget; return seconds."""
    moment = time.monotonic()
    wait_until(lambda: _settled(load, server, share, workers, moment) and time.monotonic() > moment,
               30, 0.05, f"{what}: {workers} workers answering with shares of {share}")
    wait_until(lambda: _settled(load, server, share, workers, time.monotonic() - 1.0)
               and sampler.last == share * workers, 30, 0.01,
               f"{what}: {share * workers} sessions in use")
    return time.monotonic() - moment


ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
from geventpool.contrib._budget import Ledger
Ledger(sys.argv[2]).exchange(lambda others: {"echo": int(sys.argv[3])})
print("ready", flush=True)
sys.stdin.read()
"""


class EchoPool(ConnectionPool[Any]):
    def __init__(self, address: tuple[str, int], **kwargs: Any) -> None:
        self.address = address
        super().__init__(**kwargs)

    def _new_connection(self) -> Any:
        return gsocket.create_connection(self.address, timeout=2)


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    book = Ledger(str(tmp_path / "ledger"))
    book.create()
    return book


class Holder:
    """Another process holding a record of ``held`` connections of pool "echo" until killed."""

    def __init__(self, ledger: Ledger, held: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ROOT), ledger.path, str(held)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"ready\n"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def test_ledger_counts_live_records_and_reclaims_a_dead_one_after_a_grace(ledger: Ledger) -> None:
    now = [100.0]
    mine = Ledger(ledger.path, clock=lambda: now[0])
    holder = Holder(ledger, 5)
    try:
        seen: list[dict[str, int]] = []
        mine.exchange(lambda others: seen.append(others) or {"echo": 2})
        assert seen[-1] == {"echo": 5}
        holder.kill()  # SIGKILL: the kernel drops its lock, the record stays
        mine.exchange(lambda others: seen.append(others) or {"echo": 2})
        assert seen[-1] == {"echo": 5}, "a dead worker's share counts for RECLAIM_AFTER"
        now[0] += _budget.RECLAIM_AFTER
        mine.exchange(lambda others: seen.append(others) or {"echo": 2})
        assert seen[-1] == {}
        assert sorted(os.listdir(ledger.path)) == ["lock", f"pid-{os.getpid()}"]
    finally:
        holder.kill()


def test_ledger_refuses_a_directory_that_is_not_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(PermissionError, match="not a private directory"):
        Ledger(str(shared)).create()
    (tmp_path / "link").symlink_to(shared)
    with pytest.raises(PermissionError, match="not a private directory"):
        Ledger(str(tmp_path / "link")).write_workers(2)


def test_budget_arguments_and_outside_gunicorn(echo_server: EchoServer) -> None:
    reg = PoolRegistry()
    for bad in (0, -1, 2.5, "4", True):
        with pytest.raises(ConfigurationError, match="budget"):
            reg.register("bad", lambda: EchoPool(echo_server.address, size=1), budget=bad)  # type: ignore[arg-type]
    ref = reg.register("echo", lambda: EchoPool(echo_server.address, min_size=5, max_size=10), budget=3)
    pool = ref.get()  # not in a gunicorn worker: the process alone, capped at the budget
    assert (pool.min_size, pool.max_size) == (3, 3) and ref.share is None
    reg.register("sock", object, budget=3)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="'sock': a budget needs a pool with resize"):
        reg.get("sock")
    reg.close_all(1)


def test_shares_follow_the_worker_count_and_grow_only_into_free_room(
    ledger: Ledger, echo_server: EchoServer
) -> None:
    reg = PoolRegistry()
    ref = reg.register("echo", lambda: EchoPool(echo_server.address, min_size=2, max_size=8), budget=12)
    ledger.write_workers(2)
    holder = Holder(ledger, 6)  # the other worker, at its share

    def record() -> dict[str, int]:
        with open(os.path.join(ledger.path, f"pid-{os.getpid()}"), encoding="utf-8") as f:
            held: dict[str, int] = json.load(f)["held"]
        return held

    try:
        shares = reg._start_shares(ledger, 1)
        pool = ref.get()
        assert ref.share == 6 and (pool.min_size, pool.max_size) == (2, 6)
        with pool.get(), pool.get(), pool.get():
            ledger.write_workers(4)  # TTIN twice: shares of 3, shrunk at once
            shares.step()
            assert ref.share == 3 and pool.max_size == 3 and pool.size == 3
            assert record() == {"echo": 6}, "the room is given back RELEASE_GRACE after the shrink"
            shrunk = time.monotonic()
            wait_until(lambda: shares.step() or record() == {"echo": 3}, 5, 0.02, "the record lowered")
            assert time.monotonic() - shrunk >= gunicorn.RELEASE_GRACE * 0.9
        ledger.write_workers(1)  # the other worker still holds 6: only 6 of 8 are free
        shares.step()
        assert ref.share == 6 and pool.max_size == 6
        holder.kill()
        now = time.monotonic()
        wait_until(lambda: shares.step() or ref.share == 8, 5, 0.05, "the dead worker's share reclaimed")
        assert time.monotonic() - now >= _budget.RECLAIM_AFTER * 0.9
        assert pool.max_size == 8  # never above the factory's max_size
    finally:
        holder.kill()
        reg.close_all(1)


@pytest.mark.postgres
@pytest.mark.guard(150)
def test_budget_holds_across_kill_ttin_ttou_and_reload(tmp_path: Path) -> None:
    green_psycopg2()
    (tmp_path / "budget_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent(CONF))
    with PostgresServer() as pg:
        env = {"PG_DSN": pg.dsn, "BUDGET": str(BUDGET), "PYTHONPATH": str(tmp_path)}
        server = Gunicorn(tmp_path / "gunicorn.log", free_port(), env, preload=False, workers=WORKERS,
                          app_dir=tmp_path, app="budget_app:application")
        sampler = Sampler(pg.dsn)
        load: Load | None = None
        try:
            server.start()
            load = Load(server.port)
            timings = {"start": _step(load, server, sampler, 3, 4, "start")}

            victim = server.live_workers()[0]
            server.kill_worker(victim)
            wait_until(lambda: victim not in server.live_workers() and len(server.live_workers()) == 4,
                       30, 0.05, "the arbiter replaced the killed worker")
            timings["kill"] = _step(load, server, sampler, 3, 4, "after SIGKILL of a worker")

            server.signal(signal.SIGTTIN)
            timings["ttin"] = _step(load, server, sampler, 2, 5, "after TTIN")

            server.signal(signal.SIGTTOU)
            timings["ttou"] = _step(load, server, sampler, 3, 4, "after TTOU")

            old = set(server.live_workers())
            server.signal(signal.SIGHUP)
            wait_until(lambda: not old & set(server.live_workers()), 30, 0.05, "the old workers left")
            timings["reload"] = _step(load, server, sampler, 3, 4, "after HUP")

            load.stop()
            errors = [r for r in load.replies if r.status != 200]
            assert sampler.samples > 500
            assert not sampler.over, f"sessions above the budget of {BUDGET}: {sampler.over[:10]}"
            assert sampler.peak == BUDGET
            # only requests in flight on the killed worker may fail (no answer); none with a 5xx
            assert all(r.status == 0 for r in errors), [(r.status, r.body) for r in errors[:5]]
            assert len(errors) <= CLIENTS, [r.error for r in errors[:5]]
            assert max(r.body["max_size"] for r in load.replies if r.status == 200) == 3
            ledger = directory_of(server.pid)
            assert os.path.isdir(ledger)
            server.terminate()
            assert not os.path.exists(ledger), "on_exit removes the budget's ledger"
            print(f"budget {BUDGET}: peak {sampler.peak} sessions over {sampler.samples} samples, "
                  f"{len(load.replies)} requests, settled after (s): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
        finally:
            if load is not None:
                load._running = False
            sampler.stop()
            server.kill()

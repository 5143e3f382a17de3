"""A connection budget across gunicorn workers, under real gunicorn and a private PostgreSQL.

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

import os
import signal
import textwrap
import time
from pathlib import Path

import gevent
import psycopg2
import pytest

from geventpool.contrib._budget import directory_of
from geventpool.dbapi.psycopg2 import install as green_psycopg2
from geventpool.testing import wait_until
from geventpool.testing.postgres import PostgresServer, free_port

from ._gunicorn import Gunicorn, Reply, fetch

pytestmark = pytest.mark.postgres

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

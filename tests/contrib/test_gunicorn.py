"""Real gunicorn (``-k gevent -w 2``, with and without ``--preload``) running examples/gunicorn_app.

Per mode: a private slapd and PostgreSQL; REQUESTS requests from CONCURRENCY client greenlets
over loopback; slapd is killed (SIGKILL) and restarted after a quarter of them, PostgreSQL
restarted (``pg_ctl -m fast``) after half.  Every response must be right:

- 200 with ``double == 2 * n`` for the right user (a wrong password: 401);
- or 503 (``Retry-After``) for a request that was in flight while a server was down, plus the
  app's retry deadline (the app retries the idempotent reads, so these should be few);
- nothing else: no 500, no connection error, no timeout.

Server-side sessions are sampled all along: PostgreSQL's ``pg_stat_activity`` (the app's
``application_name``) never above workers x PG pool size; ESTABLISHED connections to slapd's
port (``/proc/net/tcp``) never above workers x (LDAP pool size + its auth sub-pool).  Each
worker's PostgreSQL sessions are its own (no backend pid answers for both workers), and with
``--preload`` the session the master opened at import time serves no request.  Then SIGTERM:
gunicorn stops within its graceful timeout, each worker logs that it closed its pools, slapd
logged an UNBIND for each LDAP connection open at that moment (graceful close, not a dropped
socket), and no session is left on either server.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
import gevent.pool
import pytest

from geventpool.dbapi.psycopg2 import install as green_psycopg2
from geventpool.testing import wait_until
from geventpool.testing.postgres import PostgresServer, free_port
from geventpool.testing.slapd import USER_PW, Slapd

from ._gunicorn import Gunicorn, Reply, established, fetch

pytestmark = [pytest.mark.ldap, pytest.mark.postgres]

LDAP_SIZE = 5
PG_SIZE = 5
REQUESTS = 3000
CONCURRENCY = 100
USERS = 50
RETRY_DEADLINE = 8.0
APP_NAME = "gunicorn_app_test"
#: a 503 is acceptable for a request that overlapped a restart window widened by this much
GRACE = RETRY_DEADLINE + 4.0


def _expected_status(number: int) -> int:
    return 401 if number % 10 == 7 else 200


def _credentials(number: int) -> tuple[str, str]:
    return f"user{number % USERS:04d}", ("wrong" if number % 10 == 7 else USER_PW)


class Sessions:
    """Samples the server-side session counts every 50 ms while the load runs."""

    def __init__(self, slapd: Slapd, pg: PostgresServer) -> None:
        self.slapd, self.pg = slapd, pg
        self.max_ldap = 0
        self.max_pg = 0
        self.samples = 0
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            self.max_ldap = max(self.max_ldap, established(self.slapd.port))
            try:
                self.max_pg = max(self.max_pg, len(self.pg.sessions(APP_NAME)))
            except Exception:  # PostgreSQL restarting: nothing to count
                pass
            self.samples += 1
            gevent.sleep(0.05)

    def stop(self) -> None:
        self._greenlet.kill()


Windows = dict[str, tuple[float, float]]


def _drive(server: Gunicorn, slapd: Slapd, pg: PostgresServer) -> tuple[list[Reply], Windows]:
    """Run the load and the two restarts; return every reply and the restart windows."""
    replies: list[Reply] = []
    windows: Windows = {}
    numbers = iter(range(REQUESTS))

    def client() -> None:
        for number in numbers:
            replies.append(fetch(server.port, number, *_credentials(number)))

    def chaos() -> None:
        wait_until(lambda: len(replies) >= REQUESTS // 4, 60, 0.01, "a quarter of the requests done")
        started = time.monotonic()
        slapd.restart(graceful=False)
        windows["ldap"] = (started, time.monotonic())
        wait_until(lambda: len(replies) >= REQUESTS // 2, 60, 0.01, "half of the requests done")
        started = time.monotonic()
        gevent.get_hub().threadpool.apply(pg.restart, ("fast",))  # pg_ctl blocks: run it in a thread
        windows["postgres"] = (started, time.monotonic())

    restarts = gevent.spawn(chaos)
    clients = [gevent.spawn(client) for _ in range(CONCURRENCY)]
    gevent.joinall([*clients, restarts], raise_error=True)
    return replies, windows


def _in_window(reply: Reply, windows: dict[str, tuple[float, float]]) -> bool:
    return any(reply.started <= end + GRACE and reply.ended >= start for start, end in windows.values())


def _check_replies(replies: list[Reply], windows: dict[str, tuple[float, float]],
                   workers: list[int]) -> dict[str, Any]:
    assert sorted(r.number for r in replies) == list(range(REQUESTS))
    problems = []
    backends: dict[int, set[int]] = {}
    statuses: Counter[int] = Counter()
    for reply in replies:
        statuses[reply.status] += 1
        expected = _expected_status(reply.number)
        if reply.status == expected == 200:
            body = reply.body
            uid = _credentials(reply.number)[0]
            if body.get("double") != 2 * reply.number or body.get("user") != uid or body.get(
                    "worker") not in workers:
                problems.append(f"wrong answer to {reply.number}: {body}")
            backends.setdefault(body["worker"], set()).add(body["backend"])
        elif reply.status == 503 and _in_window(reply, windows):
            continue
        elif reply.status != expected:
            problems.append(f"request {reply.number}: status {reply.status} {reply.body} {reply.error}")
    assert not problems, f"{len(problems)} bad replies, first ones: {problems[:10]}"
    # every worker served requests, each from PostgreSQL sessions of its own
    assert set(backends) == set(workers), f"workers that answered: {sorted(backends)} of {workers}"
    seen: set[int] = set()
    for worker, pids in backends.items():
        assert not seen & pids, f"backend pids of worker {worker} also served another: {sorted(seen & pids)}"
        seen |= pids
    # PostgreSQL's restart replaced the sessions: none answering after it answered before it
    pg_start, pg_end = windows["postgres"]
    before = {r.body["backend"] for r in replies if r.status == 200 and r.ended < pg_start}
    after = {r.body["backend"] for r in replies if r.status == 200 and r.started > pg_end}
    assert before and after and not before & after, (sorted(before), sorted(after))
    return {"statuses": dict(statuses), "backends": backends}


@pytest.mark.guard(150)
@pytest.mark.parametrize(
    ("preload", "workers_wanted"), [(False, 2), (True, 4)], ids=["no-preload-2-workers", "preload-4-workers"]
)
def test_gunicorn_app_across_restarts(preload: bool, workers_wanted: int, tmp_path: Path) -> None:
    green_psycopg2()  # the session counts query PostgreSQL from this process's hub
    with Slapd(users=USERS, tls=False, stats_log=True) as slapd, PostgresServer() as pg:
        env = {
            "LDAP_URI": slapd.uri, "LDAP_POOL_SIZE": str(LDAP_SIZE),
            "PG_DSN": pg.dsn, "PG_POOL_SIZE": str(PG_SIZE), "PG_APPLICATION_NAME": APP_NAME,
            "APP_RETRY_DEADLINE": str(RETRY_DEADLINE),
            "APP_CHECK_AT_IMPORT": "1" if preload else "0",
        }
        server = Gunicorn(tmp_path / "gunicorn.log", free_port(), env, preload, workers_wanted)
        try:
            server.start()
            sessions = Sessions(slapd, pg)
            started = time.monotonic()
            replies, windows = _drive(server, slapd, pg)
            load_seconds = time.monotonic() - started
            sessions.stop()
            workers = server.worker_pids()
            assert len(workers) == workers_wanted, f"workers booted: {workers} (one crashed?)\n{server.log()}"
            outcome = _check_replies(replies, windows, workers)
            overlapping = sum(
                r.started <= end and r.ended >= start for r in replies for start, end in windows.values()
            )
            assert overlapping >= CONCURRENCY, "the restarts happened while requests were in flight"

            # session bounds, sampled while the load ran
            assert sessions.samples > 10
            assert 1 <= sessions.max_pg <= workers_wanted * PG_SIZE, sessions.max_pg
            assert 1 <= sessions.max_ldap <= workers_wanted * 2 * LDAP_SIZE, sessions.max_ldap
            if preload:
                log = server.log()
                assert "master closed 1 pools it built: postgres" in log, log
                master_backend = int(re.findall(r"used backend (\d+)", log)[0])
                assert all(master_backend not in b for b in outcome["backends"].values())

            # graceful stop: pools closed in worker_exit, sessions gone
            ldap_open = established(slapd.port)
            pg_open = len(pg.sessions(APP_NAME))
            with open(slapd.log_file, "rb") as f:
                log_offset = len(f.read())
            stop_seconds = server.terminate()
            log = server.log()
            closed = re.findall(r"geventpool: worker (\d+) closed (\d+) pools", log)
            assert sorted(int(pid) for pid, _ in closed) == sorted(workers), log
            assert all(count == "2" for _, count in closed), closed
            assert "Traceback" not in log, log
            wait_until(lambda: not pg.sessions(APP_NAME), 5, 0.05, "no PostgreSQL session left")
            wait_until(lambda: established(slapd.port) == 0, 5, 0.05, "no LDAP connection left")
            with open(slapd.log_file, "rb") as f:
                tail = f.read()[log_offset:].decode(errors="replace")
            unbinds = tail.count(" UNBIND")
            lost = tail.count("connection lost")
            assert unbinds >= ldap_open and lost == 0, (ldap_open, unbinds, lost)
        finally:
            server.kill()
    print(
        f"\n[{'preload' if preload else 'no-preload'}] {REQUESTS} requests ({CONCURRENCY} concurrent) in "
        f"{load_seconds:.1f} s, {overlapping} of them in flight during a restart; "
        f"statuses {outcome['statuses']}; restarts (s): "
        + ", ".join(f"{k} {e - s:.2f}" for k, (s, e) in windows.items())
        + f"; max sessions: PostgreSQL {sessions.max_pg} (bound {workers_wanted * PG_SIZE}), LDAP "
        f"{sessions.max_ldap} (bound {workers_wanted * 2 * LDAP_SIZE}); at SIGTERM: PostgreSQL {pg_open}, "
        f"LDAP {ldap_open}, {unbinds} unbinds, stop took {stop_seconds:.2f} s; "
        f"{sum(map(len, outcome['backends'].values()))} PostgreSQL sessions served requests"
    )

"""Every script behind the docs runs and checks its claims against real servers.

The migration guides show code cut from ``docs/migration/*.py`` (and the
testing page from ``docs/snippets/*.py``); each script starts what it needs
(an in-process TCP server, a private slapd or PostgreSQL, a sqlite3 file),
prints one ``ok: <claim>`` line per claim it checks, and exits non-zero
when one fails.  A new script is picked up here by its file name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from gevent import subprocess

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [*sorted((ROOT / "docs" / "migration").glob("*.py")),
           *sorted((ROOT / "docs" / "snippets").glob("*.py"))]
TIMEOUT = 180

#: script -> claims its output must contain (beyond "all checks passed")
EXPECTED: dict[str, list[str]] = {
    "geventconnpool_new.py": [
        "ok: 100 greenlets shared the 5 connections",
        "ok: every call succeeded across the server restart",
        "ok: a gevent.Timeout discarded the connection",
        "ok: the server sees no connection left",
    ],
    "ldappool_new.py": [
        "ok: a wrong password raises ldap.INVALID_CREDENTIALS, as with ldappool",
        "ok: the password is in no error message",
        "ok: 200 concurrent searches through 10 connections",
        "ok: MaxConnectionReachedError when no connection frees up in time",
        "Bind DN",  # the status table
    ],
    "eventlet_db_pool_new.py": [
        "ok: 50 greenlets inserted through get()/put()",
        "ok: connection() committed one block and rolled back the other",
        "ok: after a PostgreSQL restart the next query just works",
        "ok: DatabaseConnector: one pool per (host, database)",
        "ok: sqlite3: 50 greenlets wrote, waiting for the lock green",
    ],
    "ldap3_serverpool_new.py": [
        "ok: with the first server stopped, 50 retried searches succeed",
        "ok: primary stopped: 50 retried calls succeed",
        "ok: primary back: connections failed back to it, one at a time",
    ],
    "ldap3_connection_new.py": [
        "ok: the long-lived connection is bound over verified StartTLS, on the first server",
        "ok: read_only refuses a write before sending it",
        "ok: an empty password is never sent",
        "ok: 100 greenlets checked passwords concurrently",
        "ok: primary stopped: the next search reconnected to the replica, TLS first",
    ],
    "ldap3_servers_snippets.py": [
        "ok: a Connection and a pool accept it, (host, allow_auth) tuples included",
        "ok: a referral to server2, listed as (server2, True), is chased there",
        "ok: allowed_referral_hosts='*': accepted, the referral chased (anonymously)",
        "ok: port defaults to 389, or 636 with use_ssl",
        "ok: ROUND_ROBIN: each open() takes the next server of the pool",
        "ok: the list is used round robin, as ldap3's default strategy",
        "ok: at its next open() the Connection uses server4 (server2:636) and no longer server2",
        "ok: FIRST, active=True: a server not listening is passed over for the next",
    ],
    "ldappool_snippets.py": [
        "ok: with cm.connection(dn, password) as conn: bound as dn",
        "ok: print(cm): the README's table",
        "ok: uri with two URIs: retry_max=3 attempts on the first, then the second serves",
        "ok: every URI down: BackendError after exactly retry_max=5 attempts",
        "ok: no connect in the background after the BackendError",
        "ok: uri='': libldap's default URI, as in ldappool",
        "ok: size=1, in use: MaxConnectionReachedError after retry_max x retry_delay",
        "ok: use_pool=False: one connection, one bind per use, none kept",
    ],
    "ldap_core_shared_snippets.py": [
        "ok: manager.connect(): connected, details",
        "ok: preload_connections=True opened min_connections=25",
        "ok: get_metrics(): every figure printed, memory_peak_mb and cpu_usage_percent included",
        "ok: High-Availability Setup: create_ha_cluster(...).connect() connected",
        "ok: Connection Errors: a wrong password and a dead server are reported by connect(), not raised",
        "ok: Automatic Error Recovery keywords: accepted, connect() works",
    ],
    "geventconnpool_snippets.py": [
        "ok: MyPool(20): nothing is opened before first use",
        "ok: with pool.get() as c: PING answered PONG",
        "ok: MyPool(20): 20 connections open once the pool is used",
        "ok: socket.error in the block: the connection is discarded (and closed)",
        "ok: any other exception: the connection goes back to the pool and is lent again",
        "ok: exc_classes=(socket.error, imaplib.IMAP4.error): an IMAP4.error discards the connection",
        "ok: @retry: the connection dropped by the server is discarded, the retry uses another one",
        "ok: bare @retry gives up after 3 retries, 4 attempts",
        "ok: an IMAP4.error (SELECT answered BAD) is retried after interval=2 on another connection",
        "ok: functools.partial(retry, ...): max_failures=5 gives up after 5 logged retries",
        "ok: STARTTLS answered OK: TLS, then LOGIN/PASS accepted",
        "ok: STARTTLS answered NO: the login goes over the plain connection",
        "ok: an invalid STARTTLS reply raises socket.error: the pool retries and connects",
        "ok: a refused login raises socket.error: get() ends in BackendUnavailable at its timeout",
        "ok: boto example: any error becomes socket.error and is retried",
        "ok: s._sock.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1): TCP keepalive on",
        "ok: MyPool(20, keepalive=30): 20 connections",
        "ok: keepalive=0.5: every idle connection is pinged, again and again",
        "ok: _keepalive raising socket.error: the connection is discarded and replaced",
    ],
    "eventlet_db_pool_snippets.py": [
        "ok: ConnectionPool(MySQLdb, host='localhost', user='root', passwd=''): eventlet's defaults",
        "ok: cp.get(): a connection as root@localhost, over the Unix socket",
        "ok: conn.cursor().execute('SELECT NOW()') in try/finally cp.put(conn): MySQLdb's row count, 1",
        "ok: the page's first get(), never put back: the connection is discarded, its slot freed",
        "ok: a connection put back is useless: any method raises",
        "ok: max_size=2: 6 greenlets, at most 2 connections open at the server",
        "ok: min_size=2: two connections kept open",
        "ok: max_idle=1: an idle connection is closed by the pool's timer",
        "ok: max_idle=0: every connection is closed upon its return",
        "ok: max_age=1: a connection held past max_age is not closed while out",
        "ok: max_age=1: it is closed when put back",
        "ok: max_age=1: an idle connection older than max_age is closed by the timer",
        "ok: max_age=0: every connection is closed when put back",
        "ok: connect_timeout=1: get() raises ConnectTimeout",
        "ok: DatabaseConnector: dc.get('localhost', db) is a pool with the 'localhost' credentials",
        "ok: conn_pool=: the pool class used",
        "ok: credentials['default'] serves a host without an entry",
        "ok: the other arguments of DatabaseConnector go to each ConnectionPool",
        "ok: psycopg2, ConnectionPool: get(), execute('SELECT NOW()'), put() (no threads)",
        "ok: psycopg2, TpooledConnectionPool: get(), execute('SELECT NOW()'), put() (OS threads)",
        "ok: MySQLdb, TpooledConnectionPool: the page's snippet (OS threads)",
        "ok: MySQLdb, RawConnectionPool: the page's snippet",
    ],
    "testing_faults.py": ["1 passed"],
    "prometheus_scrape.py": [
        "ok: idle connections by pool",
        "ok: the listener timed 10 checkouts",
        "prometheus_scrape: all checks passed",
    ],
}


def run(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def test_every_script_is_checked_and_shown() -> None:
    names = {script.name for script in SCRIPTS}
    assert names == set(EXPECTED), f"scripts without expectations: {sorted(names - set(EXPECTED))}"
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.rst"))
    for script in SCRIPTS:
        assert f"{script.name}\n" in pages or f"{script.name}``" in pages, f"{script.name} is shown nowhere"


@pytest.mark.guard(TIMEOUT + 30)
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script(script: Path) -> None:
    result = run(script)
    report = f"exit status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    assert "FAILED" not in result.stdout, report
    assert "Traceback" not in result.stdout + result.stderr, report
    if script.parent.name == "migration":
        assert f"{script.stem}: all checks passed" in result.stdout, report
    for line in EXPECTED[script.name]:
        assert line in result.stdout, f"missing {line!r}\n{report}"

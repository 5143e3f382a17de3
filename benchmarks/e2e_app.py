"""The WSGI app that benchmarks/e2e.py runs under gunicorn (``-k gevent``, one worker), in three variants.

Per request, the shape of examples/gunicorn_app: ``GET /`` with HTTP Basic
credentials (``user0042:userpw``) checks the user's password with one LDAP
bind, then reads the user's row from PostgreSQL
(``SELECT uid, cn, mail FROM e2e_users WHERE uid = %s``).  Answers ``200``
with the row as JSON, ``401`` for refused credentials, ``404`` for no row,
``503`` for any failure (counted, the first few logged with their traceback).
LDAP and SQL pools hold 10 connections each (``E2E_POOL_SIZE``).

Variants (``E2E_VARIANT``):

- ``geventpool-auth``: ``LDAPPool(uri, size=10).authenticate(dn, password)``
  and ``geventpool.dbapi.ConnectionPool(psycopg2, dsn, min_size=2, max_size=10)``;
- ``geventpool-conn``: ldappool's own idiom on geventpool,
  ``with geventpool.ldap.ConnectionManager(uri, size=10).connection(dn, password): pass``,
  and the same SQL pool;
- ``ldappool``: ldappool 3.0.0's ``ConnectionManager(uri, size=10)`` with the
  same idiom, and SQLAlchemy's ``QueuePool(pool_size=10, max_overflow=0)``
  over psycopg2 made green by ``psycogreen.gevent.patch_psycopg()``.

Everything else is each library's default.  ``GET /_e2e/stall`` answers the
worst lateness of a heartbeat greenlet (:class:`geventpool.testing.HubMonitor`,
every 5 ms) since the last ``GET /_e2e/stall?reset=1``, the requests served and
the failures.  Environment: ``E2E_VARIANT``, ``E2E_LDAP_URI``, ``E2E_PG_DSN``
(all required), ``E2E_POOL_SIZE``.  Pools are built on the first request, in
the worker.  Standalone: never imported by the package.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

__all__ = ["VARIANTS", "USER_BASE", "SQL", "App", "application", "build"]

logger = logging.getLogger("e2e_app")

VARIANTS = ("geventpool-auth", "geventpool-conn", "ldappool")
USER_BASE = "ou=people,dc=example,dc=com"
SQL = "SELECT uid, cn, mail FROM e2e_users WHERE uid = %s"
_LOGGED_FAILURES = 5

Check = Callable[[str, str], bool]
Read = Callable[[str], Any]


def _geventpool_sql(dsn: str, size: int) -> tuple[Read, Callable[[], None]]:
    import psycopg2

    from geventpool.dbapi import ConnectionPool

    pool = ConnectionPool(psycopg2, dsn, min_size=2, max_size=size, name="e2e-postgres",
                          application_name="e2e")

    def read(uid: str) -> Any:
        with pool.item() as conn:
            cur = conn.cursor()
            cur.execute(SQL, (uid,))
            return cur.fetchone()

    return read, pool.close


def _queuepool_sql(dsn: str, size: int) -> tuple[Read, Callable[[], None]]:
    import psycogreen.gevent
    import psycopg2
    from sqlalchemy.pool import QueuePool

    psycogreen.gevent.patch_psycopg()
    pool = QueuePool(lambda: psycopg2.connect(dsn, application_name="e2e"), pool_size=size, max_overflow=0)

    def read(uid: str) -> Any:
        conn = pool.connect()
        try:
            cur = conn.cursor()
            cur.execute(SQL, (uid,))
            return cur.fetchone()
        finally:
            conn.close()  # back to the pool (rolled back)

    return read, pool.dispose


def _connection_idiom(cm: Any) -> Check:
    """ldappool README's first example: the bind happens when the block is entered."""
    import ldap

    def check(dn: str, password: str) -> bool:
        try:
            with cm.connection(dn, password):
                pass
        except ldap.INVALID_CREDENTIALS:
            return False
        return True

    return check


def _ldap(variant: str, uri: str, size: int) -> tuple[Check, Callable[[], None]]:
    if variant == "geventpool-auth":
        from geventpool.ldap import LDAPPool

        pool = LDAPPool(uri, size=size, name="e2e-ldap")
        return pool.authenticate, pool.close
    if variant == "geventpool-conn":
        from geventpool.ldap import ConnectionManager

        cm = ConnectionManager(uri, size=size)  # as in ldappool: only the import differs
        return _connection_idiom(cm), cm.close
    from ldappool import ConnectionManager as LdappoolManager

    return _connection_idiom(LdappoolManager(uri, size=size)), lambda: None


class App:
    """One variant's WSGI callable; build it with :func:`build`.  Runs in one gevent hub."""

    def __init__(self, variant: str, check: Check, read: Read, closers: list[Callable[[], None]]) -> None:
        from geventpool.testing import HubMonitor

        self.variant = variant
        self.check = check
        self.read = read
        self.closers = closers
        self.monitor = HubMonitor(interval=0.005)
        self.served = 0
        self.failures = 0

    def close(self) -> None:
        """Stop the heartbeat and close the pools."""
        self.monitor.stop()
        for close in self.closers:
            close()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if not self.monitor.running:
            self.monitor.start()
        if environ.get("PATH_INFO") == "/_e2e/stall":
            return self._stall(environ, start_response)
        credentials = _credentials(environ)
        if credentials is None:
            return _reply(start_response, "401 Unauthorized", {"error": "no credentials"})
        uid, password = credentials
        dn = f"uid={_escape(uid)},{USER_BASE}"
        try:
            if not self.check(dn, password):
                return _reply(start_response, "401 Unauthorized", {"error": "bad credentials"})
            row = self.read(uid)
        except Exception as error:
            self.failures += 1
            if self.failures <= _LOGGED_FAILURES:
                logger.exception("%s: request for %s failed", self.variant, uid)
            return _reply(start_response, "503 Service Unavailable", {"error": type(error).__name__})
        if row is None:
            return _reply(start_response, "404 Not Found", {"error": "no row"})
        self.served += 1
        return _reply(start_response, "200 OK", {"uid": row[0], "cn": row[1], "mail": row[2]})

    def _stall(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = {"variant": self.variant, "max_stall_ms": self.monitor.max_stall * 1000.0,
                "beats": self.monitor.beats, "served": self.served, "failures": self.failures,
                "cpu_s": time.process_time(), "pid": os.getpid()}
        if parse_qs(environ.get("QUERY_STRING", "")).get("reset") == ["1"]:
            self.monitor.reset()
        return _reply(start_response, "200 OK", body)


def _escape(value: str) -> str:
    import ldap.dn

    escaped: str = ldap.dn.escape_dn_chars(value)
    return escaped


def _credentials(environ: dict[str, Any]) -> tuple[str, str] | None:
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        uid, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (uid, password) if sep and uid else None


def _reply(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def build(variant: str, ldap_uri: str, pg_dsn: str, pool_size: int = 10) -> App:
    """Build the app of ``variant`` (one of :data:`VARIANTS`); its pools open lazily.

    :raises ValueError: an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"e2e_app: unknown variant {variant!r}; choose from {VARIANTS}")
    check, close_ldap = _ldap(variant, ldap_uri, pool_size)
    read, close_sql = (_queuepool_sql if variant == "ldappool" else _geventpool_sql)(pg_dsn, pool_size)
    return App(variant, check, read, [close_ldap, close_sql])


_app: App | None = None


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """gunicorn's entry point: the variant the environment names, built on the first request."""
    global _app
    if _app is None:
        _app = build(os.environ["E2E_VARIANT"], os.environ["E2E_LDAP_URI"], os.environ["E2E_PG_DSN"],
                     int(os.environ.get("E2E_POOL_SIZE", "10")))
    return _app(environ, start_response)

"""A WSGI app for gunicorn's gevent workers: one LDAP authentication and one PostgreSQL query per request.

Run (from this directory)::

    LDAP_URI=ldap://127.0.0.1:389 PG_DSN="host=127.0.0.1 user=app dbname=app" \\
        gunicorn -c gunicorn.conf.py app:application

``GET /?n=21`` with HTTP Basic credentials (``user0042:userpw``): the user's
password is checked with a bind (``LDAPPool.authenticate``) and PostgreSQL
computes ``n * 2``.  Answers:

- ``200`` ``{"user", "n", "double", "backend", "worker"}`` (``backend``: the
  PostgreSQL session's pid, ``worker``: the gunicorn worker's pid);
- ``401`` the credentials are missing or wrong;
- ``400`` ``n`` is not an integer;
- ``503`` with ``Retry-After: 1``: LDAP or PostgreSQL could not be reached
  even after retrying for ``APP_RETRY_DEADLINE`` seconds (a server restart
  longer than that); the body names the backend.  Any other failure is a bug
  (gunicorn answers 500).

Both operations are idempotent reads, so they are retried (``@retry``) when a
connection breaks or no connection can be had: the pool discards the broken
connection and the next attempt gets a fresh one.

Environment: ``LDAP_URI`` (required), ``LDAP_USER_BASE`` (default
``ou=people,dc=example,dc=com``), ``LDAP_POOL_SIZE`` (10), ``PG_DSN``
(required), ``PG_POOL_SIZE`` (10), ``PG_APPLICATION_NAME`` (``gunicorn_app``),
``APP_RETRY_DEADLINE`` (8 seconds), ``APP_CHECK_AT_IMPORT`` (``1``: run one
query at import time, e.g. in the master with ``--preload``; that pool is
closed by the ``when_ready`` hook and never used by the workers).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs

import ldap
import psycopg2

from geventpool import PoolError, retry
from geventpool.contrib import gunicorn as pools
from geventpool.dbapi import ConnectionPool
from geventpool.ldap import LDAPPool

logger = logging.getLogger("gunicorn_app")

USER_BASE = os.environ.get("LDAP_USER_BASE", "ou=people,dc=example,dc=com")
RETRY_DEADLINE = float(os.environ.get("APP_RETRY_DEADLINE", "8"))

#: Errors worth another attempt with a fresh connection (the reads below are idempotent).
LDAP_RETRY = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.TIMEOUT, PoolError)
PG_RETRY = (psycopg2.OperationalError, psycopg2.InterfaceError, PoolError)


def _make_ldap_pool() -> LDAPPool:
    return LDAPPool(
        os.environ["LDAP_URI"],
        size=int(os.environ.get("LDAP_POOL_SIZE", "10")),
        retry_max=1,
        connect_timeout=1.0,
        checkout_timeout=2.0,
        timeout=5.0,
        name="ldap",
    )


def _make_pg_pool() -> ConnectionPool:
    return ConnectionPool(
        psycopg2,
        os.environ["PG_DSN"],
        min_size=2,
        max_size=int(os.environ.get("PG_POOL_SIZE", "10")),
        connect_timeout=2,
        timeout=2.0,
        name="postgres",
        application_name=os.environ.get("PG_APPLICATION_NAME", "gunicorn_app"),
    )


ldap_pool = pools.register("ldap", _make_ldap_pool)
pg_pool = pools.register("postgres", _make_pg_pool, wait=5)

F = TypeVar("F", bound=Callable[..., Any])


def _retrying(exc_classes: tuple[type[BaseException], ...]) -> Callable[[F], F]:
    """Retry with a fresh connection, backing off, for up to RETRY_DEADLINE seconds."""
    return retry(
        exc_classes=exc_classes, max_failures=None, interval=0.05, backoff=2.0, max_interval=0.5,
        jitter=0.5, deadline=RETRY_DEADLINE, logger=logger, retry_log_level=logging.DEBUG,
    )


@_retrying(LDAP_RETRY)
def authenticate(uid: str, password: str) -> bool:
    """Check ``uid``'s password with a bind on this worker's LDAP pool."""
    dn = f"uid={ldap.dn.escape_dn_chars(uid)},{USER_BASE}"
    return ldap_pool.get().authenticate(dn, password)


@_retrying(PG_RETRY)
def double(n: int) -> tuple[int, int]:
    """Return ``(n * 2, the PostgreSQL session's pid)``."""
    with pg_pool.get().item() as conn:
        cur = conn.cursor()
        cur.execute("SELECT %s::bigint * 2, pg_backend_pid()", (n,))
        value, backend = cur.fetchone()
    return int(value), int(backend)


def _credentials(environ: dict[str, Any]) -> tuple[str, str] | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        uid, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (uid, password) if sep and uid else None


def _reply(start_response: Callable[..., Any], status: str, body: dict[str, Any],
           headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                            *headers])
    return [data]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI entry point (see the module docstring for the answers)."""
    try:
        n = int(parse_qs(environ.get("QUERY_STRING", "")).get("n", ["0"])[0])
    except ValueError:
        return _reply(start_response, "400 Bad Request", {"error": "n must be an integer"})
    credentials = _credentials(environ)
    unavailable = [("Retry-After", "1")]
    try:
        ok = credentials is not None and authenticate(*credentials)
    except LDAP_RETRY as error:
        logger.warning("LDAP unavailable: %r", error)
        return _reply(start_response, "503 Service Unavailable", {"error": "unavailable", "backend": "ldap"},
                      unavailable)
    if not ok:
        return _reply(start_response, "401 Unauthorized", {"error": "bad credentials"},
                      [("WWW-Authenticate", 'Basic realm="gunicorn_app"')])
    try:
        value, backend = double(n)
    except PG_RETRY as error:
        logger.warning("PostgreSQL unavailable: %r", error)
        return _reply(start_response, "503 Service Unavailable",
                      {"error": "unavailable", "backend": "postgres"}, unavailable)
    assert credentials is not None
    return _reply(start_response, "200 OK", {
        "user": credentials[0], "n": n, "double": value, "backend": backend, "worker": os.getpid(),
    })


if os.environ.get("APP_CHECK_AT_IMPORT") == "1":
    # A start-up check at import time: with --preload this runs in the master, whose
    # pool the when_ready hook closes; the workers build pools of their own.
    _value, _backend = double(0)
    print(f"gunicorn_app: import-time check in process {os.getpid()} used backend {_backend}",
          file=sys.stderr, flush=True)

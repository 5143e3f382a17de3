"""Fixtures of the failover tests: two or three private slapd instances, LDAP pools over them, a load.

Every slapd here is private to its test (it may be killed, paused or
restarted); each has 20 users and no TLS, so it starts in about half a
second.  Pools are invariant-checked and closed at the end of each test.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import ldap
import pytest

from geventpool import retry
from geventpool.ldap import LOST_CONNECTION_ERRORS, LDAPPool
from geventpool.testing.invariants import check_invariants
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd, user_dn

__all__ = ["Load", "fast_health", "uri_of", "USERS"]

USERS = 20



def _start(count: int) -> list[Slapd]:
    servers: list[Slapd] = []
    try:
        for _ in range(count):
            servers.append(Slapd(users=USERS, tls=False).start())
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


@pytest.fixture
def replicas() -> Iterator[list[Slapd]]:
    """Two private slapd instances (same data): a primary and a replica."""
    servers = _start(2)
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def trio() -> Iterator[list[Slapd]]:
    """Three private slapd instances (same data)."""
    servers = _start(3)
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def make_pool() -> Iterator[Callable[..., LDAPPool]]:
    """Build LDAP pools (short timeouts, one attempt per server) checked and closed after the test."""
    pools: list[LDAPPool] = []

    def make(
        uri: Any, bind: str | None = SERVICE_DN, passwd: str | None = SERVICE_PW, **kwargs: Any
    ) -> LDAPPool:
        kwargs.setdefault("checkout_timeout", 10)
        kwargs.setdefault("connect_timeout", 1.0)
        kwargs.setdefault("timeout", 1.0)
        kwargs.setdefault("retry_max", 1)
        kwargs.setdefault("retry_delay", 0.01)
        kwargs.setdefault("keepalive_timeout", 1.0)
        pool = LDAPPool(uri, bind, passwd, **kwargs)
        pools.append(pool)
        return pool

    yield make
    gevent.sleep(0)
    for pool in pools:
        for member in pool._all_pools():
            check_invariants(member)
        pool.close(timeout=2)
        check_invariants(pool)


def fast_health(pool: LDAPPool, cooldown: float = 0.2, housekeeping: float | None = 0.1) -> None:
    """Short circuit cool-downs for ``pool``'s servers, and frequent housekeeping (failback passes)."""
    assert pool.server_pool is not None
    for server in pool.server_pool:
        server.health.cooldown = cooldown
        server.health.probe_timeout = 2.0
    if housekeeping is not None:
        pool.housekeeping_interval = housekeeping


def uri_of(conn: Any) -> str:
    """The URI a pooled connection was opened to."""
    return str(conn.__dict__["_uri"])


class Load:
    """``greenlets`` callers reading one entry each, in a loop, until :meth:`stop`.

    With ``retried`` the read is wrapped in ``@retry`` (idempotent work); each
    success is recorded as ``(time, uri)``, each failure as ``(time, error)``.
    """

    def __init__(self, pool: LDAPPool, greenlets: int = 50, retried: bool = True, pause: float = 0.0) -> None:
        self.pool = pool
        self.successes: list[tuple[float, str]] = []
        self.failures: list[tuple[float, BaseException]] = []
        self.by_uri: collections.Counter[str] = collections.Counter()
        self._stop = gevent.event.Event()
        self._pause = pause
        read = self._read
        if retried:
            read = retry(exc_classes=LOST_CONNECTION_ERRORS, max_failures=8, interval=0.02)(read)
        self._call = read
        self._jobs = [gevent.spawn(self._loop, n) for n in range(greenlets)]

    def _read(self, n: int) -> str:
        with self.pool.connection() as conn:
            dn = user_dn(n % USERS)
            found = conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["uid"])
            assert found[0][0] == dn
            return uri_of(conn)

    def _loop(self, n: int) -> None:
        while not self._stop.is_set():
            try:
                uri = self._call(n)
            except Exception as error:
                self.failures.append((time.monotonic(), error))
            else:
                self.successes.append((time.monotonic(), uri))
                self.by_uri[uri] += 1
            if self._pause:
                gevent.sleep(self._pause)
            else:
                gevent.sleep(0)

    def first_success_on(self, uri: str, after: float) -> float | None:
        """The time of the first success served by ``uri`` at or after ``after``."""
        return next((t for t, u in self.successes if u == uri and t >= after), None)

    def wait_successes_on(self, uri: str, count: int = 1, after: float = 0.0, timeout: float = 15.0) -> None:
        """Wait until ``count`` calls after ``after`` were served by ``uri``."""
        deadline = time.monotonic() + timeout
        while sum(1 for t, u in self.successes if u == uri and t >= after) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} successes on {uri} within {timeout} s: {self.by_uri}")
            gevent.sleep(0.01)

    def stop(self) -> None:
        """Stop the callers and wait for them (each finishes its current call)."""
        self._stop.set()
        gevent.joinall(self._jobs, timeout=30, raise_error=True)
        assert all(job.dead for job in self._jobs)

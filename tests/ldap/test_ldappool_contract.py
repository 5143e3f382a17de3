"""ldappool's retry semantics for a pool built from its URI string (issue 14, item 4).

Servers "down" here accept a TCP connection and close it at once: each LDAP
connect attempt is one accepted connection, which the test counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import gevent.server
import pytest

from geventpool.ldap import BackendError, LDAPPool, MaxConnectionReachedError, Server
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd


class Slammer:
    """A TCP server on 127.0.0.1 that closes every connection at once, and counts them."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self._server.start()
        self.uri = f"ldap://127.0.0.1:{self._server.server_port}"

    def _handle(self, sock: object, _address: object) -> None:
        self.accepted += 1
        sock.close()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def dead() -> Iterator[list[Slammer]]:
    servers = [Slammer(), Slammer()]
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize("retry_max", [1, 3, 5])
def test_exactly_retry_max_attempts_per_uri_then_backend_error(dead: list[Slammer], retry_max: int) -> None:
    uris = " ".join(s.uri for s in dead)
    pool = LDAPPool(uris, SERVICE_DN, SERVICE_PW, retry_max=retry_max, retry_delay=0.01)
    try:
        with pytest.raises(BackendError):
            with pool.connection():
                pass
        assert [s.accepted for s in dead] == [retry_max, retry_max]
        gevent.sleep(1.0)  # nobody asks: nothing may connect meanwhile (a fixed wait, counting zero)
        assert [s.accepted for s in dead] == [retry_max, retry_max]
        with pytest.raises(BackendError):  # the next caller: one more round, and only that
            with pool.connection():
                pass
        assert [s.accepted for s in dead] == [2 * retry_max, 2 * retry_max]
    finally:
        pool.close()


def test_a_live_second_uri_serves_after_the_first_ones_attempts(
    dead: list[Slammer], private_slapd: Slapd
) -> None:
    uris = f"{dead[0].uri} {private_slapd.uri}"
    pool = LDAPPool(uris, SERVICE_DN, SERVICE_PW, retry_max=2, retry_delay=0.01)
    try:
        for _ in range(3):
            with pool.connection() as conn:
                assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        assert dead[0].accepted == 2  # once: the connection opened on the second is reused
    finally:
        pool.close()


def test_a_full_pool_refuses_after_retry_max_times_retry_delay(private_slapd: Slapd) -> None:
    pool = LDAPPool(private_slapd.uri, SERVICE_DN, SERVICE_PW, size=1, retry_max=3, retry_delay=0.1)
    try:
        with pool.connection():
            started = time.monotonic()
            with pytest.raises(MaxConnectionReachedError):
                with pool.connection():
                    pass
            waited = time.monotonic() - started
        assert 0.3 <= waited < 5.0  # retry_max x retry_delay, not the 30 s checkout default
    finally:
        pool.close()


def test_checkout_timeout_given_is_what_a_full_pool_waits(private_slapd: Slapd) -> None:
    pool = LDAPPool(private_slapd.uri, SERVICE_DN, SERVICE_PW, size=1, retry_max=3, retry_delay=0.01,
                    checkout_timeout=0.5)
    try:
        with pool.connection():
            started = time.monotonic()
            with pytest.raises(MaxConnectionReachedError):
                with pool.connection():
                    pass
            assert time.monotonic() - started >= 0.5
    finally:
        pool.close()


def test_server_objects_keep_geventpools_failover(dead: list[Slammer]) -> None:
    """Built from Server objects, a pool retries in the background and probes; the ldappool contract
    is for its URI string (or retry_in_background=False)."""
    pool = LDAPPool([Server(dead[0].uri)], SERVICE_DN, SERVICE_PW, retry_max=1, checkout_timeout=0.5)
    assert pool.retry_in_background
    pool.close()
    strict = LDAPPool([Server(dead[0].uri)], SERVICE_DN, SERVICE_PW, retry_max=2, retry_in_background=False)
    try:
        with pytest.raises(BackendError):
            with strict.connection():
                pass
        assert dead[0].accepted == 1 + 2  # the ACTIVE strategy's TCP check, then retry_max attempts
    finally:
        strict.close()

"""No server holds another's handshake threads (issue 12, item 5).

libldap performs TLS handshakes in C, so the pool runs them in worker
threads.  A frozen server (SIGSTOP: the kernel still accepts the TCP
connection, nothing answers the handshake) must not starve the handshakes
of healthy servers: each server gets at most ``PER_SERVER`` threads, and a
StartTLS handshake whose caller gave up is cut (its socket shut down) so
that its thread is free at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import gevent
import pytest

from geventpool import PoolError
from geventpool.ldap import LDAPPool, _threads
from geventpool.testing.slapd import SERVICE_DN, USER_PW, Slapd, user_dn
from geventpool.testing.waiting import wait_until

MakePool = Callable[..., LDAPPool]


@pytest.fixture
def frozen() -> Iterator[Slapd]:
    server = Slapd(users=20).start()
    server.pause()
    try:
        yield server
    finally:
        server.resume()
        server.close()


def _budget_free(uri: str) -> bool:
    budget = _threads._budgets.get(uri)
    return budget is None or budget.counter == _threads.PER_SERVER


@pytest.mark.parametrize("mode", ["starttls", "ldaps"])
def test_a_frozen_server_does_not_starve_healthy_handshakes(
    frozen: Slapd, slapd: Slapd, make_pool: MakePool, mode: str
) -> None:
    uri = frozen.uri if mode == "starttls" else frozen.ldaps_uri
    stuck = make_pool(uri, use_tls=mode == "starttls", tls_ca_file=frozen.ca_file, connect_timeout=0.3,
                      retry_max=1, checkout_timeout=1, min_size=0, per_user="subpools", identity_size=1,
                      max_identities=12)

    def identity(n: int) -> None:
        with pytest.raises((PoolError, OSError)):
            with stuck.connection(user_dn(n), USER_PW):
                pass

    gevent.joinall([gevent.spawn(identity, n) for n in range(12)], raise_error=True)
    if mode == "starttls":  # the handshakes were cut: their threads are free again
        wait_until(lambda: _budget_free(uri), timeout=2)
    for healthy_mode in ("starttls", "ldaps"):
        healthy_uri = slapd.uri if healthy_mode == "starttls" else slapd.ldaps_uri
        healthy = make_pool(healthy_uri, use_tls=healthy_mode == "starttls", tls_ca_file=slapd.ca_file,
                            connect_timeout=5, checkout_timeout=10, min_size=0)
        started = time.monotonic()
        with healthy.connection() as conn:
            assert conn.whoami_s() == f"dn:{SERVICE_DN}"
        # not 30 s: a thread was there for it (the frozen server holds at most its own share)
        assert time.monotonic() - started < 5

"""ServerPool.add()/remove() while an LDAP pool serves 200 greenlets: no call fails (issue 5)."""

from __future__ import annotations

import collections
import time
from typing import Callable

import gevent

from geventpool.ldap import LDAPPool
from geventpool.servers import POOLING_STRATEGY_ROUND_ROBIN_ACTIVE, Server, ServerPool
from geventpool.testing import wait_until
from geventpool.testing.slapd import Slapd

from .conftest import Load, uri_of

MakePool = Callable[..., LDAPPool]


def _uris(pool: LDAPPool) -> collections.Counter[str]:
    return collections.Counter(uri_of(slot.conn) for slot in pool._slots())


def test_add_and_remove_under_load(trio: list[Slapd], make_pool: MakePool) -> None:
    """add() sends new connections to the new server; remove() retires the removed server's
    connections as they come back idle; 200 greenlets without @retry see no failure."""
    a, b, c = trio
    servers = ServerPool([a.uri, b.uri], POOLING_STRATEGY_ROUND_ROBIN_ACTIVE)
    pool = make_pool(servers, size=10, min_size=10)
    pool.housekeeping_interval = 0.05
    identity = pool.connection  # the sub-pools share the ServerPool too: use one
    pool.wait(10)
    load = Load(pool, greenlets=200, retried=False)
    try:
        load.wait_successes_on(a.uri, count=100)
        load.wait_successes_on(b.uri, count=100)
        added = servers.add(Server(c.uri))
        assert added in servers and f"127.0.0.1:{c.port}" in pool.server_stats()
        servers.remove(f"127.0.0.1:{a.port}")
        removed_at = time.monotonic()
        assert f"127.0.0.1:{a.port}" not in pool.server_stats()
        wait_until(lambda: _uris(pool)[a.uri] == 0, timeout=20)
        load.wait_successes_on(c.uri, count=100, after=removed_at, timeout=20)
        with identity("uid=svc2,ou=services,dc=example,dc=com", "svcpw") as conn:
            assert uri_of(conn) in (b.uri, c.uri)
    finally:
        load.stop()
    assert load.failures == []
    assert set(_uris(pool)) <= {b.uri, c.uri}
    assert [address.uri for address in pool.ldap_servers] == [b.uri, c.uri]
    gevent.sleep(0)

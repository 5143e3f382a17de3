"""Each strategy's server order over many LDAP connections, three private slapd instances (issue 5)."""

from __future__ import annotations

import collections
import random
from typing import Any, Callable

import pytest

from geventpool.ldap import LDAPPool
from geventpool.servers import (
    POOLING_STRATEGY_FIRST_ACTIVE,
    POOLING_STRATEGY_NONE,
    POOLING_STRATEGY_RANDOM_ACTIVE,
    POOLING_STRATEGY_RANDOM_PASSIVE,
    POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
    POOLING_STRATEGY_ROUND_ROBIN_PASSIVE,
    Server,
    ServerPool,
)
from geventpool.testing.slapd import Slapd

from .conftest import fast_health, uri_of

MakePool = Callable[..., LDAPPool]
CONNECTIONS = 60


def _open_order(pool: LDAPPool, count: int) -> list[str]:
    """Fill the pool (one connector: connections open one after the other); their servers, in order."""
    order: list[str] = []
    pool.on("connect", lambda _pool, conn: order.append(uri_of(conn)))
    pool.wait(timeout=30)
    assert len(order) == count
    return order


def _pool(make_pool: MakePool, servers: list[Any], strategy: str, **kwargs: Any) -> LDAPPool:
    server_pool = ServerPool(servers, strategy, rng=random.Random(5).random)
    return make_pool(server_pool, size=CONNECTIONS, min_size=CONNECTIONS, num_workers=1, **kwargs)


def test_uri_string_is_first_active_in_order(trio: list[Slapd], make_pool: MakePool) -> None:
    """ldappool's URI list: every connection on the first URI; the pool's ServerPool says FIRST_ACTIVE."""
    pool = make_pool(" ".join(s.uri for s in trio), size=20, min_size=20, num_workers=1)
    assert pool.server_pool is not None and pool.server_pool.strategy == POOLING_STRATEGY_FIRST_ACTIVE
    assert [a.uri for a in pool.ldap_servers] == [s.uri for s in trio]
    assert set(_open_order(pool, 20)) == {trio[0].uri}


@pytest.mark.parametrize("strategy", [POOLING_STRATEGY_NONE, POOLING_STRATEGY_FIRST_ACTIVE])
def test_ordered_strategies_stick_to_the_first(trio: list[Slapd], make_pool: MakePool, strategy: str) -> None:
    pool = _pool(make_pool, [s.uri for s in trio], strategy)
    assert set(_open_order(pool, CONNECTIONS)) == {trio[0].uri}


@pytest.mark.parametrize(
    "strategy", [POOLING_STRATEGY_ROUND_ROBIN_ACTIVE, POOLING_STRATEGY_ROUND_ROBIN_PASSIVE]
)
def test_round_robin_really_alternates(trio: list[Slapd], make_pool: MakePool, strategy: str) -> None:
    pool = _pool(make_pool, [s.uri for s in trio], strategy)
    order = _open_order(pool, CONNECTIONS)
    uris = [s.uri for s in trio]
    assert order == [uris[i % 3] for i in range(CONNECTIONS)]
    stats = pool.server_stats()
    assert [stats[f"127.0.0.1:{s.port}"]["connections"] for s in trio] == [CONNECTIONS // 3] * 3


@pytest.mark.parametrize("strategy", [POOLING_STRATEGY_RANDOM_ACTIVE, POOLING_STRATEGY_RANDOM_PASSIVE])
def test_random_spreads_within_bounds(trio: list[Slapd], make_pool: MakePool, strategy: str) -> None:
    """60 connections over 3 servers: each count within 4 standard deviations of 20 (binomial)."""
    pool = _pool(make_pool, [s.uri for s in trio], strategy)
    counts = collections.Counter(_open_order(pool, CONNECTIONS))
    assert set(counts) == {s.uri for s in trio}
    sd = (CONNECTIONS * (1 / 3) * (2 / 3)) ** 0.5
    for count in counts.values():
        assert abs(count - CONNECTIONS / 3) <= 4 * sd, counts


def test_first_active_skips_a_down_server(trio: list[Slapd], make_pool: MakePool) -> None:
    """FIRST_ACTIVE sticks to the first healthy server; ROUND_ROBIN_ACTIVE alternates among the healthy."""
    trio[0].kill()
    first = _pool(make_pool, [s.uri for s in trio], POOLING_STRATEGY_FIRST_ACTIVE)
    fast_health(first, cooldown=30.0, housekeeping=None)
    assert set(_open_order(first, CONNECTIONS)) == {trio[1].uri}
    down = first.server_pool.preferred()[0]  # type: ignore[union-attr]
    assert down.health.state == "open"
    # the open circuit is shared: a round robin pool over the same servers skips it from the start
    rr = _pool(make_pool, [s.uri for s in trio], POOLING_STRATEGY_ROUND_ROBIN_ACTIVE)
    order = _open_order(rr, CONNECTIONS)
    assert trio[0].uri not in order
    # the turn still counts the skipped server (as ldap3's does): its share goes to the next one
    counts = collections.Counter(order)
    assert counts == {trio[1].uri: 2 * CONNECTIONS // 3, trio[2].uri: CONNECTIONS // 3}


def test_priority_orders_round_robin_groups(trio: list[Slapd], make_pool: MakePool) -> None:
    """Lower priority first: round robin stays within the best priority while it is healthy."""
    servers = [Server(trio[0].uri, priority=1), Server(trio[1].uri), Server(trio[2].uri)]
    pool = _pool(make_pool, servers, POOLING_STRATEGY_ROUND_ROBIN_ACTIVE)
    counts = collections.Counter(_open_order(pool, CONNECTIONS))
    assert counts == {trio[1].uri: CONNECTIONS // 2, trio[2].uri: CONNECTIONS // 2}

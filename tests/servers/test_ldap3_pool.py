"""ldap3's ``ServerPool`` keywords (issue 14): ``pool_strategy``, ``active`` and ``exhaust``, and the
ACTIVE strategies' reachability check, against private slapds and closed ports on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Callable

import pytest

from geventpool import ConfigurationError
from geventpool.ldap import BackendError, LDAPPool, Server
from geventpool.ldap.servers import FIRST, RANDOM, ROUND_ROBIN, ServerPool
from geventpool.servers import (
    POOLING_STRATEGY_FIRST_ACTIVE,
    POOLING_STRATEGY_NONE,
    POOLING_STRATEGY_RANDOM_PASSIVE,
    POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
)
from geventpool.testing.slapd import SERVICE_DN, Slapd

from .conftest import uri_of

MakePool = Callable[..., LDAPPool]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens (bound, never listening: nobody else takes it)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("strategy", "active", "expected"),
    [
        (FIRST, True, POOLING_STRATEGY_FIRST_ACTIVE),
        (FIRST, False, POOLING_STRATEGY_NONE),
        (ROUND_ROBIN, True, POOLING_STRATEGY_ROUND_ROBIN_ACTIVE),
        (RANDOM, False, POOLING_STRATEGY_RANDOM_PASSIVE),
        (ROUND_ROBIN, 3, POOLING_STRATEGY_ROUND_ROBIN_ACTIVE),
    ],
)
def test_ldap3_keywords_map_onto_the_strategies(strategy: str, active: bool | int, expected: str) -> None:
    pool = ServerPool(["ldap://127.0.0.1:1"], pool_strategy=strategy, active=active)
    assert pool.strategy == expected
    assert pool.cycles == (active if not isinstance(active, bool) else 1)
    default = ServerPool(["ldap://127.0.0.1:1"]).strategy
    assert default == POOLING_STRATEGY_ROUND_ROBIN_ACTIVE  # ldap3's default


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"pool_strategy": "FASTEST"}, "pool_strategy must be FIRST, ROUND_ROBIN or RANDOM"),
        ({"active": 0}, "active must be True, False or a number of cycles"),
        ({"active": "yes"}, "active must be"),
        ({"exhaust": -1}, "exhaust must be False, True or seconds"),
        ({"exhaust": "soon"}, "exhaust must be"),
        ({"single_state": False}, "single_state=False is not supported"),
    ],
)
def test_bad_ldap3_keywords_are_refused(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        ServerPool(["ldap://127.0.0.1:1"], **kwargs)  # type: ignore[arg-type]


def test_active_checks_a_server_before_choosing_it(
    replicas: list[Slapd], closed_port: int, make_pool: MakePool
) -> None:
    """FIRST + active: the dead first server costs one refused TCP connect, no LDAP attempt, and its
    circuit opens at once (ldap3's ACTIVE strategies check before choosing)."""
    dead = Server("127.0.0.1", closed_port)
    live = Server(replicas[0].uri)
    pool = make_pool(ServerPool([dead, live], pool_strategy=FIRST, active=True), retry_max=3, min_size=0)
    with pool.connection() as conn:
        assert uri_of(conn) == replicas[0].uri
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"
    assert dead.health.state == "open"
    assert dead.health.total_failures == 1  # one check, not retry_max LDAP attempts
    assert live.health.state == "closed"


def test_a_fresh_healthy_server_is_not_checked_again(replicas: list[Slapd], make_pool: MakePool) -> None:
    live = Server(replicas[0].uri)
    spool = ServerPool([live], pool_strategy=FIRST)
    assert spool.needs_check(live) or live.health.last_success_at is not None
    pool = make_pool(spool, min_size=0)
    with pool.connection():
        pass
    assert not spool.needs_check(live)  # it just served
    assert not ServerPool([live], pool_strategy=FIRST, active=False).needs_check(live)


def test_exhaust_keeps_a_failed_server_out_for_that_long(
    replicas: list[Slapd], make_pool: MakePool
) -> None:
    first, second = Server(replicas[0].uri), Server(replicas[1].uri)
    spool = ServerPool([first, second], pool_strategy=FIRST, exhaust=60)
    pool = make_pool(spool, min_size=0, retry_max=1, connect_timeout=1)
    replicas[0].kill()
    with pool.connection() as conn:  # the first fails, the second serves
        assert uri_of(conn) == replicas[1].uri
    replicas[0].start()
    first.health.record_success()  # as the circuit's probe does when it answers
    assert spool.candidates() == [second]  # back, but exhausted for 60 s
    clock = first.health._clock
    first.health._clock = lambda: clock() + 61  # 61 s later
    try:
        assert spool.candidates()[0] is first
    finally:
        first.health._clock = clock


def test_exhaust_true_keeps_it_out_until_it_answers_again(replicas: list[Slapd]) -> None:
    first = Server(replicas[0].uri)
    spool = ServerPool([first, Server(replicas[1].uri)], pool_strategy=FIRST, exhaust=True)
    assert spool.exhaust == float("inf")
    first.health.record_failure(OSError("refused"))
    assert first not in spool.candidates()
    first.health.record_success()  # the circuit's probe saw it answer
    assert spool.candidates()[0] is first


def test_the_check_is_bounded_by_one_connect_attempt(closed_port: int, make_pool: MakePool) -> None:
    """A caller waits at most the servers' checks, each within connect_timeout, then BackendError."""
    spool = ServerPool([Server("127.0.0.1", closed_port)], pool_strategy=FIRST)
    pool = make_pool(spool, min_size=0, retry_max=3, connect_timeout=0.5, checkout_timeout=5)
    started = time.monotonic()
    with pytest.raises(BackendError):
        with pool.connection():
            pass
    assert time.monotonic() - started < 5  # refused at once: far below retry_max x connect_timeout

"""LDAP failover under load with private slapd replicas: faults, all down, failback, a herd (issue 5).

Rows D4, D5 and D11 of ../shared/research/reliability.md for the LDAP pool
with several servers.  Timings are asserted only as "well within" the
configured timeouts, never as speed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Callable

import gevent
import ldap
import pytest

from geventpool.ldap import BackendError, LDAPPool
from geventpool.testing import FaultProxy, wait_until
from geventpool.testing.slapd import SERVICE_DN, Slapd

from .conftest import Load, fast_health, uri_of

MakePool = Callable[..., LDAPPool]
CONNECT_TIMEOUT = 1.0
OP_TIMEOUT = 1.0


def _on(pool: LDAPPool, port: int) -> int:
    return int(pool.server_stats()[f"127.0.0.1:{port}"]["connections"])


@pytest.fixture
def primary_proxy(replicas: list[Slapd]) -> Iterator[FaultProxy]:
    """A fault proxy in front of the primary (replicas[0])."""
    with FaultProxy(upstream=("127.0.0.1", replicas[0].port)) as proxy:
        yield proxy


@pytest.mark.parametrize("fault", ["refuse", "deaf", "pause", "kill"])
def test_traffic_moves_when_the_primary_fails(
    replicas: list[Slapd], primary_proxy: FaultProxy, make_pool: MakePool, fault: str
) -> None:
    """D11: refused, deaf, paused (SIGSTOP) or killed mid-load: the replica serves within one connect
    timeout (after the operation timeout, for a pause); zero failed calls for reads under @retry."""
    primary, replica = replicas
    primary_uri = f"ldap://127.0.0.1:{primary_proxy.port}"
    pool = make_pool(f"{primary_uri} {replica.uri}", size=10, min_size=10,
                     connect_timeout=CONNECT_TIMEOUT, timeout=OP_TIMEOUT)
    pool.wait(10)
    load = Load(pool, greenlets=50)
    try:
        load.wait_successes_on(primary_uri, count=200)
        assert load.by_uri[replica.uri] == 0
        detection = 0.0
        failed_at = time.monotonic()
        if fault in ("refuse", "deaf"):
            primary_proxy.set_mode(fault)
            primary_proxy.reset_all()  # the server went away: its connections break too
        elif fault == "pause":
            primary.pause()
            detection = OP_TIMEOUT  # the calls in flight learn it at their operation timeout
        else:
            primary.kill()
        load.wait_successes_on(replica.uri, count=200, after=failed_at, timeout=20)
        first = load.first_success_on(replica.uri, failed_at)
        assert first is not None
        assert first - failed_at < detection + CONNECT_TIMEOUT + 1.0
        assert pool.server_stats()[f"127.0.0.1:{primary_proxy.port}"]["state"] != "closed"
        load.stop()
        assert load.failures == []
        # still failed: every connection ends up on the replica (a refill may first spend its trial
        # connect on the primary once the circuit's cool-down ends, so wait for the refills to settle)
        wait_until(lambda: _on(pool, replica.port) == 10, timeout=10)
    finally:
        load.stop()
        primary.resume()


def test_all_down_is_fast_and_reconnect_failed_fires(replicas: list[Slapd], make_pool: MakePool) -> None:
    """D4: every server down: once the circuits open, callers get BackendError (a BackendUnavailable
    and an ldap.SERVER_DOWN) well under the checkout timeout; the pool recovers when one returns."""
    pool = make_pool(" ".join(s.uri for s in replicas), size=4, checkout_timeout=10, retry_in_background=True)
    fast_health(pool, cooldown=30.0)
    with pool.connection() as conn:
        conn.whoami_s()
    for server in replicas:
        server.kill()
    assert pool.server_pool is not None
    for _ in range(10):  # the first calls fail on connects and open the circuits
        if pool.server_pool.all_down():
            break
        with pytest.raises(ldap.SERVER_DOWN):
            with pool.connection() as conn:
                conn.whoami_s()
    assert pool.server_pool.all_down()
    for _ in range(20):
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            with pool.connection():
                pass
        assert time.monotonic() - started < 1.0  # the checkout timeout is 10 s
        assert "every server is down" in str(info.value)
    assert all(entry["state"] == "open" for entry in pool.server_stats().values())
    # one comes back; its probe closes the circuit and callers get through again
    replicas[1].start()
    for server in pool.server_pool:
        server.health.open_until = 0.0  # end the 30 s cool-down now: the probe runs at once
        server.health._start_prober()
    wait_until(lambda: not pool.server_pool.all_down(), timeout=10)  # type: ignore[union-attr]
    with pool.connection() as conn:
        assert uri_of(conn) == replicas[1].uri
        assert conn.whoami_s() == f"dn:{SERVICE_DN}"


def test_reconnect_failed_fires_while_all_circuits_are_open(
    replicas: list[Slapd], make_pool: MakePool
) -> None:
    """D4: down longer than reconnect_timeout: the hook fires (once per window) while callers fail fast."""
    calls: list[float] = []
    pool = make_pool(" ".join(s.uri for s in replicas), size=2, min_size=2, reconnect_timeout=0.5,
                     retry_in_background=True,
                     reconnect_failed=lambda _pool: calls.append(time.monotonic()))
    fast_health(pool, cooldown=0.2)
    for server in replicas:
        server.kill()
    with pytest.raises(ldap.SERVER_DOWN):
        with pool.connection():
            pass
    wait_until(lambda: len(calls) >= 2, timeout=2.5)


def test_failback_is_gradual(replicas: list[Slapd], make_pool: MakePool) -> None:
    """The preferred server back: its circuit closes (probe), and each housekeeping pass retires one
    connection to the fallback, never all at once, while calls keep succeeding."""
    primary, replica = replicas
    pool = make_pool(f"{primary.uri} {replica.uri}", size=6, min_size=6, retry_in_background=True)
    fast_health(pool, cooldown=0.2, housekeeping=3600.0)  # passes run by hand below
    pool.wait(10)
    load = Load(pool, greenlets=12, pause=0.002)
    try:
        load.wait_successes_on(primary.uri, count=50)
        primary.kill()
        wait_until(lambda: _on(pool, replica.port) == 6, timeout=20)
        primary.start()  # same port
        wait_until(lambda: pool.server_stats()[f"127.0.0.1:{primary.port}"]["state"] == "closed", timeout=10)
        on_replica = [_on(pool, replica.port)]
        passes = 0
        while on_replica[-1] > 0:
            passes += 1
            assert passes <= 40, on_replica
            pool.run_housekeeping()
            wait_until(lambda: pool.size == 6 and not pool.snapshot().opening, timeout=10)
            gevent.sleep(0.02)  # let the callers return what they hold: the next pass sees it idle
            on_replica.append(_on(pool, replica.port))
        # one connection at a time, never a jump
        assert all(a - b <= 1 for a, b in itertools.pairwise(on_replica)), on_replica
        assert passes >= 6
        load.wait_successes_on(primary.uri, count=50, after=time.monotonic())
    finally:
        load.stop()
    assert load.failures == []
    assert _on(pool, primary.port) == 6


def test_failover_herd_stays_within_max_size(replicas: list[Slapd], make_pool: MakePool) -> None:
    """D5: 200 greenlets busy when the primary dies: the replica never sees more than max_size
    sessions from the pool (sampled every 10 ms), and nobody fails under @retry."""
    primary, replica = replicas
    with FaultProxy(upstream=("127.0.0.1", replica.port)) as proxy:
        replica_uri = f"ldap://127.0.0.1:{proxy.port}"
        pool = make_pool(f"{primary.uri} {replica_uri}", size=10, min_size=10)
        pool.wait(10)
        peak = [0]

        def sample() -> None:
            while True:
                peak[0] = max(peak[0], proxy.connections)
                gevent.sleep(0.01)

        sampler = gevent.spawn(sample)
        load = Load(pool, greenlets=200)
        try:
            load.wait_successes_on(primary.uri, count=200)
            killed_at = time.monotonic()
            primary.kill()
            load.wait_successes_on(replica_uri, count=500, after=killed_at, timeout=20)
        finally:
            load.stop()
            sampler.kill()
        assert load.failures == []
        assert 0 < peak[0] <= pool.max_size


@pytest.mark.parametrize("strategy", ["uri", "round_robin"])
def test_invalid_credentials_never_fail_over(trio: list[Slapd], make_pool: MakePool, strategy: str) -> None:
    """D11: a refused bind is one BIND on one server: no retry, no failover, no circuit opened; and
    (issue 12) the callers after it get the refusal at once, with no bind, until the credentials change."""
    from geventpool.servers import POOLING_STRATEGY_ROUND_ROBIN_ACTIVE, ServerPool

    uris = [s.uri for s in trio]
    given = " ".join(uris) if strategy == "uri" else ServerPool(uris, POOLING_STRATEGY_ROUND_ROBIN_ACTIVE)
    before = [s.operation_count("Bind") for s in trio]
    pool = make_pool(given, passwd="wrong", retry_max=3)
    for _ in range(3):
        with pytest.raises(ldap.INVALID_CREDENTIALS):
            with pool.connection():
                pass
    # each operation_count() call binds once itself: subtract those
    binds = [s.operation_count("Bind") - b - 1 for s, b in zip(trio, before, strict=False)]
    assert sum(binds) == 1, binds
    if strategy == "uri":
        assert binds == [1, 0, 0]
    assert all(entry["state"] == "closed" and entry["failures"] == 0
               for entry in pool.server_stats().values())


def test_probe_never_uses_a_checked_out_connection(replicas: list[Slapd], make_pool: MakePool) -> None:
    """The probe opens its own anonymous connection: a lent one is only ever used by its holder."""
    from geventpool.ldap import LDAPConnection

    calls: list[tuple[int, object]] = []

    class Recording(LDAPConnection):
        def _ldap_call(self, func, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append((id(self), gevent.getcurrent()))
            return super()._ldap_call(func, *args, **kwargs)

    primary, _replica = replicas
    pool = make_pool(" ".join(s.uri for s in replicas), size=2, connector_cls=Recording,
                     retry_in_background=True)
    fast_health(pool, cooldown=0.05)
    pool.wait(10)
    wait_until(lambda: pool.stats()["pool_opening"] == 0, timeout=10)  # no connect in flight:
    # one finishing after the circuit opens would close it without the probe
    binds = primary.operation_count("Bind")
    with pool.connection() as held:
        wait_until(lambda: pool.stats()["pool_opening"] == 0, timeout=10)
        del calls[:]  # from here on, what was done to a lent connection (the bind ran in a connector)
        held.whoami_s()
        server = pool.server_pool.preferred()[0]  # type: ignore[union-attr]
        for _ in range(2):  # two failures open the circuit; only its probe can close it now
            server.health.record_failure(OSError("test"))
        assert server.health.state == "open"
        wait_until(lambda: server.health.state == "closed", timeout=5)
        held.whoami_s()
    mine = {greenlet for conn_id, greenlet in calls if conn_id == id(held)}
    assert mine == {gevent.getcurrent()}
    others = {conn_id for conn_id, _ in calls if conn_id != id(held)}
    assert others, "the probe used a connection of its own"
    # the probe never binds (an account lockout must not count probes): only the monitor query's own
    # bind (the held connection bound before ``binds`` was read)
    assert primary.operation_count("Bind") == binds + 1

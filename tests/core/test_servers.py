"""Servers and failover (issue 5, core part): strategies, circuit breaker, probe, failback, add/remove."""

from __future__ import annotations

import collections
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
import pytest

from geventpool import (
    POOLING_STRATEGY_FIRST_ACTIVE,
    POOLING_STRATEGY_NONE,
    POOLING_STRATEGY_RANDOM_ACTIVE,
    POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
    POOLING_STRATEGY_ROUND_ROBIN_PASSIVE,
    BackendUnavailable,
    ConfigurationError,
    ConnectionPool,
    Server,
    ServerPool,
    retry,
)
from geventpool.testing import FaultProxy, check_invariants, wait_until

from .helpers import LineServer, echo, read_line


@pytest.fixture
def servers() -> Iterator[list[LineServer]]:
    started = [LineServer().start() for _ in range(3)]
    yield started
    for srv in started:
        srv.stop()


class MultiPool(ConnectionPool[socket.socket]):
    def _new_connection(self, server: Server) -> socket.socket:
        return gevent.socket.create_connection(server.address)

    def _keepalive(self, conn: socket.socket) -> None:
        conn.sendall(b"PING\n")
        if read_line(conn) != b"PONG\n":
            raise OSError("bad answer")


def fast_health(*targets: Server) -> None:
    for server in targets:
        server.health.cooldown = 0.05
        server.health.probe_timeout = 1.0


def make(srvs: list[LineServer], **kwargs: Any) -> list[Server]:
    made = [Server("127.0.0.1", s.port, **kwargs) for s in srvs]
    fast_health(*made)
    return made


def server_counts(pool: MultiPool) -> collections.Counter[str]:
    return collections.Counter(str(s.server) for s in pool.snapshot().slots)


def test_round_robin_really_alternates(servers: list[LineServer]) -> None:
    pool = MultiPool(6, servers=ServerPool(make(servers), POOLING_STRATEGY_ROUND_ROBIN_ACTIVE))
    pool.wait(5)
    assert sorted(server_counts(pool).values()) == [2, 2, 2]
    check_invariants(pool)
    pool.close()


def test_random_spreads_within_bounds(servers: list[LineServer]) -> None:
    rng = random.Random(7)
    spool = ServerPool(make(servers), POOLING_STRATEGY_RANDOM_ACTIVE, rng=rng.random)
    firsts = collections.Counter(spool.candidates()[0].port for _ in range(3000))
    assert len(firsts) == 3 and all(800 <= n <= 1200 for n in firsts.values())


def test_first_active_sticks_to_the_first_healthy_and_none_to_the_first(servers: list[LineServer]) -> None:
    targets = make(servers)
    first = ServerPool(targets, POOLING_STRATEGY_FIRST_ACTIVE)
    assert [first.candidates()[0] for _ in range(5)] == [targets[0]] * 5
    targets[0].health.record_failure(OSError("x"))
    targets[0].health.record_failure(OSError("x"))
    assert first.candidates()[0] is targets[1]
    assert ServerPool(targets, POOLING_STRATEGY_NONE).candidates() == [targets[0]]
    targets[0].health.record_success()


def test_a_plain_list_gets_the_default_strategy(servers: list[LineServer]) -> None:
    pool = MultiPool(3, servers=[Server("127.0.0.1", s.port) for s in servers])
    assert pool.server_pool is not None
    assert pool.server_pool.strategy == POOLING_STRATEGY_ROUND_ROBIN_ACTIVE
    pool.close()


@pytest.mark.parametrize("fault", ["refuse", "deaf", "stopped"])
def test_failover_when_the_first_server_fails(servers: list[LineServer], fault: str) -> None:
    with FaultProxy(servers[0].address) as proxy:
        primary = Server("127.0.0.1", proxy.port, priority=0)
        backup = Server("127.0.0.1", servers[1].port, priority=1)
        fast_health(primary, backup)
        pool = MultiPool(4, servers=[primary, backup], connect_timeout=0.3, timeout=5)
        pool.wait(5)
        assert server_counts(pool) == {primary.name: 4}

        @retry(exc_classes=(OSError, BackendUnavailable), max_failures=5, interval=0.01)
        def call() -> bytes:
            with pool.get() as conn:
                return echo(conn)

        if fault == "stopped":
            servers[0].stop()
        else:
            proxy.set_mode(fault)
            proxy.reset_all()
        started = time.monotonic()
        results = [gevent.spawn(call) for _ in range(50)]
        gevent.joinall(results, raise_error=True)  # zero failed calls under @retry
        assert time.monotonic() - started < 5
        wait_until(lambda: server_counts(pool).get(backup.name, 0) >= 1)
        check_invariants(pool)
        pool.close()


def test_all_down_raises_backend_unavailable_fast(servers: list[LineServer]) -> None:
    targets = make(servers[:2])
    for srv in servers[:2]:
        srv.stop()
    pool = MultiPool(2, servers=targets, connect_timeout=0.3, timeout=30)
    with pytest.raises(BackendUnavailable):
        pool.wait(2)
    assert all(t.health.state != "closed" for t in targets)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        pool.get()  # a 30 s timeout, but every circuit is open: no waiting
    assert time.monotonic() - started < 5
    assert "every server is down" in str(info.value)
    check_invariants(pool)
    pool.close()


def test_failback_to_the_preferred_server(servers: list[LineServer]) -> None:
    primary = Server("127.0.0.1", servers[0].port, priority=0)
    backup = Server("127.0.0.1", servers[1].port, priority=1)
    fast_health(primary, backup)
    spool = ServerPool([primary, backup], POOLING_STRATEGY_FIRST_ACTIVE)
    pool = MultiPool(4, servers=spool, connect_timeout=0.3)
    pool.wait(5)
    servers[0].stop()
    for _ in range(8):
        try:
            with pool.get(timeout=5) as conn:
                echo(conn)
        except OSError:
            pass
    wait_until(lambda: server_counts(pool) == {backup.name: 4}, timeout=10)
    servers[0].start()
    wait_until(lambda: primary.health.state == "closed", timeout=10)  # the probe saw it come back
    retired = []
    for _ in range(20):
        before = server_counts(pool).get(backup.name, 0)
        pool.run_housekeeping()
        retired.append(before - server_counts(pool).get(backup.name, 0))
        wait_until(lambda: pool.size == 4 and pool.snapshot().opening == 0)
        if server_counts(pool) == {primary.name: 4}:
            break
    assert server_counts(pool) == {primary.name: 4}
    assert max(retired) == 1  # gradually: one connection per pass
    check_invariants(pool)
    pool.close()


def test_add_and_remove_under_load(servers: list[LineServer]) -> None:
    first, second, third = make(servers)
    spool = ServerPool([first, second], POOLING_STRATEGY_ROUND_ROBIN_PASSIVE)
    pool = MultiPool(min_size=4, max_size=10, servers=spool, max_lifetime=0.3)
    pool.wait(5)
    done = [0]
    stop = [False]

    def worker() -> None:
        while not stop[0]:
            with pool.get(timeout=10) as conn:
                echo(conn)
            done[0] += 1
            gevent.sleep(0.001)

    workers = [gevent.spawn(worker) for _ in range(200)]
    gevent.sleep(0.2)
    spool.add(third)
    spool.remove(first)
    deadline = time.monotonic() + 5
    while first.name in server_counts(pool) and time.monotonic() < deadline:
        pool.run_housekeeping()
        gevent.sleep(0.05)
    stop[0] = True
    gevent.joinall(workers, raise_error=True)  # no failed call
    assert first.name not in server_counts(pool)
    assert server_counts(pool).get(third.name, 0) >= 1
    assert done[0] > 200
    check_invariants(pool, max_size=10)
    pool.close()


def test_probe_never_uses_a_checked_out_connection(servers: list[LineServer]) -> None:
    checked: list[socket.socket] = []

    class Recording(MultiPool):
        def _keepalive(self, conn: socket.socket) -> None:
            checked.append(conn)
            super()._keepalive(conn)

    target = make(servers[:1])[0]
    pool = Recording(2, servers=[target], connect_timeout=0.3)
    pool.wait(5)
    held = [pool.acquire(), pool.acquire()]
    target.health.record_failure(OSError("simulated"))
    target.health.record_failure(OSError("simulated"))
    wait_until(lambda: target.health.state == "closed", timeout=5)  # the probe closed it again
    assert checked and not any(c in held for c in checked)
    for conn in held:
        pool.release(conn)
    pool.close()


def test_server_health_in_stats_and_status_table(servers: list[LineServer]) -> None:
    targets = make(servers[:2])
    pool = MultiPool(2, servers=targets)
    pool.wait(5)
    stats = pool.server_stats()
    assert set(stats) == {t.name for t in targets}
    assert all(entry["state"] == "closed" for entry in stats.values())
    assert sum(entry["connections"] for entry in stats.values()) == 2
    table = str(pool)
    assert "circuit=closed" in table and targets[0].name in table
    pool.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        (("",), {}, "host"),
        (("h",), {"port": 0}, "port"),
        (("h",), {"port": 65536}, "port"),
        (("h",), {"port": "abc"}, "port"),
        (("ldap://[::1",), {}, "bad URI"),
        (("ldap://user:S3cret@h",), {}, "credentials"),
        (("h",), {"priority": "high"}, "priority"),
    ],
)
def test_bad_servers(args: tuple[Any, ...], kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Server(*args, **kwargs)
    assert named in str(info.value)
    assert "S3cret" not in str(info.value)


def test_bad_server_pools(servers: list[LineServer]) -> None:
    with pytest.raises(ConfigurationError, match="strategy"):
        ServerPool([], "FASTEST")
    one = Server("127.0.0.1", servers[0].port)
    spool = ServerPool([one])
    with pytest.raises(ConfigurationError, match="already"):
        spool.add(Server("127.0.0.1", servers[0].port))
    with pytest.raises(ConfigurationError, match="not in the pool"):
        spool.remove("nowhere:1")
    with pytest.raises(ConfigurationError, match="at least one"):
        MultiPool(1, servers=[])

    class OldStyle(ConnectionPool[object]):
        def _new_connection(self) -> object:
            return object()

    with pytest.raises(ConfigurationError, match="_new_connection"):
        OldStyle(1, servers=[one])


def test_uris_parse_and_the_core_server_knows_no_protocol() -> None:
    v6 = Server("redis://[::1]:6379")
    assert (v6.host, v6.port, v6.uri) == ("::1", 6379, "redis://[::1]:6379")
    assert Server("ldaps://127.0.0.1").port is None  # no default ports: geventpool.ldap.Server has them
    assert Server("127.0.0.1", 5432).uri == "127.0.0.1:5432"


def test_failback_also_happens_when_the_pool_is_saturated(servers: list[LineServer]) -> None:
    primary = Server("127.0.0.1", servers[0].port, priority=0)
    backup = Server("127.0.0.1", servers[1].port, priority=1)
    fast_health(primary, backup)
    spool = ServerPool([primary, backup], POOLING_STRATEGY_FIRST_ACTIVE)
    pool = MultiPool(2, servers=spool, connect_timeout=0.3)
    servers[0].stop()
    pool.wait(5)  # the primary refuses: both connections go to the backup
    assert server_counts(pool) == {backup.name: 2}
    servers[0].start()
    wait_until(lambda: primary.health.state == "closed", timeout=10)
    held = [pool.acquire(), pool.acquire()]  # saturated: no idle connection to retire
    pool.run_housekeeping()
    pool.run_housekeeping()
    for conn in held:
        echo(conn)
        pool.release(conn)
    wait_until(lambda: pool.size == 2 and pool.snapshot().opening == 0)
    assert server_counts(pool)[primary.name] >= 1  # one retired per pass, on return
    check_invariants(pool)
    pool.close()


def test_a_server_back_is_used_again_within_the_probe_interval_whatever_the_cool_down(
    servers: list[LineServer],
) -> None:
    """Many failed trials grew the cool-down to its 30 s maximum; the server comes back: the probe
    (about once a second) closes the circuit long before the cool-down would end."""
    (target,) = make(servers[:1])
    target.health.cooldown = 1.0
    pool = MultiPool(2, servers=[target], connect_timeout=0.3, timeout=30)
    pool.wait(5)
    servers[0].stop()
    health = target.health
    for _ in range(2):
        health.record_failure(OSError("down"))
    for _ in range(8):  # failed trials: 1 s doubling to 30 s
        health.open_until = 0.0
        assert health.begin_attempt()
        health.record_failure(OSError("still down"))
    assert health.state == "open" and health._cooldown == health.max_cooldown
    pool.drop_idle()  # their connections were reset by the stop
    with pytest.raises(BackendUnavailable):
        pool.get()  # failing fast meanwhile
    servers[0].start()
    wait_until(lambda: health.state == "closed", timeout=10)
    assert health.open_until - time.monotonic() > 15  # the cool-down had far to go
    with pool.get(timeout=5) as conn:
        echo(conn)
    check_invariants(pool)
    pool.close()


def test_a_closed_pool_is_never_probed(servers: list[LineServer]) -> None:
    """close() stops every background greenlet, the circuit breaker's probe included: the
    probe belongs to the server's shared health, so the pool unregisters itself."""
    (target,) = make(servers[:1])
    target.health.probe_interval = 0.05
    connects: list[float] = []

    class Counting(MultiPool):
        def _new_connection(self, server: Server) -> socket.socket:  # type: ignore[override]
            connects.append(time.monotonic())
            return super()._new_connection(server)

    pool = Counting(1, servers=[target], connect_timeout=0.3, timeout=5)
    pool.wait(5)
    servers[0].stop()
    for _ in range(2):
        target.health.record_failure(OSError("down"))
    wait_until(lambda: len(connects) >= 2, timeout=5)  # the probe runs while the pool is open
    pool.close()
    prober = target.health._prober
    assert prober is not None
    prober.join(timeout=5)
    assert prober.dead
    after_close = len(connects)
    gevent.sleep(0.3)  # six probe intervals
    assert len(connects) == after_close


def test_the_probe_passes_to_another_open_pool_when_one_closes(servers: list[LineServer]) -> None:
    (target,) = make(servers[:1])
    target.health.probe_interval = 0.05
    first = MultiPool(1, servers=[target], connect_timeout=0.3, timeout=5)
    second = MultiPool(1, servers=[target], connect_timeout=0.3, timeout=5)
    first.wait(5)
    second.wait(5)
    first.close()
    servers[0].stop()
    for _ in range(2):
        target.health.record_failure(OSError("down"))
    assert target.health.state == "open"
    servers[0].start()
    wait_until(lambda: target.health.state == "closed", timeout=5)  # second's probe closed it
    second.drop_idle()  # reset by the restart
    with second.get(timeout=5) as conn:
        echo(conn)
    second.close()


def test_remove_takes_what_add_takes() -> None:
    pool = ServerPool(["ldap://127.0.0.1:3890", "127.0.0.1:5"])
    pool.remove("ldap://127.0.0.1:3890")
    pool.remove("127.0.0.1:5")
    assert len(pool) == 0
    with pytest.raises(ConfigurationError, match="not in the pool"):
        pool.remove("127.0.0.1:5")

"""geventpool.contrib.prometheus: scrapes (generate_latest) checked against real pools' activity."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from gevent import socket as gsocket
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from geventpool import ConfigurationError, ConnectionPool, PoolTimeout, Server, ServerPool, TooManyWaiters
from geventpool.contrib.prometheus import register_pool, unregister_pool
from geventpool.servers import POOLING_STRATEGY_FIRST_ACTIVE
from geventpool.testing import EchoServer, check_invariants, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class EchoPool(ConnectionPool[Any]):
    """Sockets to an EchoServer (or to each of ``servers``)."""

    def __init__(self, address: tuple[str, int] | None = None, **kwargs: Any) -> None:
        self.address = address
        super().__init__(**kwargs)

    def _new_connection(self) -> Any:
        assert self.address is not None
        return gsocket.create_connection(self.address, timeout=2)

    def _keepalive(self, conn: Any) -> None:
        echo(conn, b"k")


class MultiEchoPool(ConnectionPool[Any]):
    def _new_connection(self, server: Server) -> Any:
        return gsocket.create_connection(server.address, timeout=2)


def echo(conn: Any, data: bytes = b"ping") -> None:
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        got += conn.recv(64)
    assert got == data


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_scrape_follows_the_pool(echo_server: EchoServer, registry: CollectorRegistry) -> None:
    pool = EchoPool(echo_server.address, min_size=2, max_size=3, name="echo", timeout=5)
    register_pool(pool, registry)
    pool.wait(5)
    for _ in range(10):
        with pool.get() as conn:
            echo(conn)
    with pytest.raises(OSError), pool.get() as conn:
        raise OSError("connection reset (simulated by the caller)")  # discards: socket.error
    wait_until(lambda: pool.size >= 2 and not pool.snapshot().opening, 5)
    # three holders and one waiter: the gauges show them while they wait
    hold = gevent.event.Event()
    holders_in = []

    def holder() -> None:
        with pool.get() as conn:
            holders_in.append(conn)
            hold.wait()

    holders = [gevent.spawn(holder) for _ in range(3)]
    wait_until(lambda: len(holders_in) == 3, 5)
    waiter = gevent.spawn(holder)
    wait_until(lambda: pool.stats()["requests_waiting"] == 1, 5)
    busy = scrape(registry)
    stats = pool.stats()
    assert value(busy, "geventpool_connections", pool="echo", state="in_use") == 3
    assert value(busy, "geventpool_connections", pool="echo", state="idle") == 0
    assert value(busy, "geventpool_requests_waiting", pool="echo") == 1
    assert value(busy, "geventpool_pool_size", pool="echo") == 3
    assert value(busy, "geventpool_pool_max_size", pool="echo") == 3
    assert value(busy, "geventpool_pool_min_size", pool="echo") == 2
    hold.set()
    gevent.joinall([*holders, waiter], raise_error=True, timeout=5)

    samples = scrape(registry)
    stats = pool.stats()
    assert value(samples, "geventpool_requests_total", pool="echo") == stats["requests_num"] == 15
    assert value(samples, "geventpool_connections_discarded_total", pool="echo") == 1
    assert value(samples, "geventpool_connections_lost_total", pool="echo") == 1
    opened = value(samples, "geventpool_connections_opened_total", pool="echo")
    assert opened == stats["connections_num"] == echo_server.accepted == 4
    assert value(samples, "geventpool_requests_queued_total", pool="echo") == stats["requests_queued"] >= 1
    waited = value(samples, "geventpool_requests_wait_seconds_total", pool="echo")
    assert waited == pytest.approx(stats["requests_wait_ms"] / 1000) and waited > 0
    assert value(samples, "geventpool_usage_seconds_total", pool="echo") == pytest.approx(
        stats["usage_ms"] / 1000
    )
    assert value(samples, "geventpool_connections", pool="echo", state="idle") == stats["pool_available"]
    check_invariants(pool)
    pool.close()


def test_pool_timeouts_are_counted(echo_server: EchoServer, registry: CollectorRegistry) -> None:
    pool = EchoPool(echo_server.address, size=1, name="tiny", max_waiting=1)
    register_pool(pool, registry)
    conn = pool.acquire(timeout=5)
    waiting = gevent.spawn(pool.acquire, 5)
    wait_until(lambda: pool.stats()["requests_waiting"] == 1, 5)
    with pytest.raises(TooManyWaiters):
        pool.acquire(timeout=5)
    pool.release(conn)
    pool.release(waiting.get(timeout=5))
    with pytest.raises(PoolTimeout), pool.get():
        pool.acquire(timeout=0.01)
    samples = scrape(registry)
    assert value(samples, "geventpool_requests_too_many_total", pool="tiny") == 1
    assert value(samples, "geventpool_requests_errors_total", pool="tiny") == 1
    pool.close()


def test_server_health(echo_server: EchoServer, registry: CollectorRegistry) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connects are refused
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = Server("127.0.0.1", dead_port, priority=0)
    live = Server("127.0.0.1", echo_server.port, priority=1)
    pool = MultiEchoPool(
        2, servers=ServerPool([dead, live], POOLING_STRATEGY_FIRST_ACTIVE), name="failover", timeout=10
    )
    register_pool(pool, registry)
    pool.wait(10)
    samples = scrape(registry)
    labels = {"pool": "failover", "server": dead.name}
    assert value(samples, "geventpool_server_up", **labels) == 0
    assert value(samples, "geventpool_server_circuit", **labels, state="open") == 1
    assert value(samples, "geventpool_server_circuit", **labels, state="closed") == 0
    assert value(samples, "geventpool_server_failures_total", **labels) == dead.health.total_failures >= 2
    assert value(samples, "geventpool_server_consecutive_failures", **labels) >= 2
    assert value(samples, "geventpool_server_connections", **labels) == 0
    assert value(samples, "geventpool_server_open_seconds", **labels) >= 0
    up = {"pool": "failover", "server": live.name}
    assert value(samples, "geventpool_server_up", **up) == 1
    assert value(samples, "geventpool_server_circuit", **up, state="closed") == 1
    assert value(samples, "geventpool_server_connections", **up) == 2
    pool.close()


def test_closed_and_collected_pools_leave_the_scrape(
    echo_server: EchoServer, registry: CollectorRegistry
) -> None:
    first = EchoPool(echo_server.address, size=1, name="first")
    second = EchoPool(echo_server.address, size=1, name="second")
    register_pool(first, registry)
    register_pool(second, registry)
    register_pool(second, registry)  # idempotent
    names = {dict(labels).get("pool") for _, labels in scrape(registry)}
    assert {"first", "second"} <= names
    with pytest.raises(ConfigurationError, match="'first' is already exported"):
        register_pool(EchoPool(echo_server.address, size=1, name="first"), registry)
    first.close()
    names = {dict(labels).get("pool") for _, labels in scrape(registry)}
    assert "first" not in names and "second" in names
    del second
    gc.collect()
    assert not {dict(labels).get("pool") for _, labels in scrape(registry)} - {None}
    third = EchoPool(echo_server.address, size=1, name="first")  # the name is free again
    register_pool(third, registry)
    unregister_pool(third, registry)
    assert not {dict(labels).get("pool") for _, labels in scrape(registry)} - {None}
    with pytest.raises(ConfigurationError, match="not a pool"):
        register_pool(object(), registry)


def test_default_registry(echo_server: EchoServer) -> None:
    pool = EchoPool(echo_server.address, size=1, name="in-the-default-registry")
    register_pool(pool)
    with pool.get() as conn:
        echo(conn)
    assert b'geventpool_requests_total{pool="in-the-default-registry"} 1.0' in generate_latest()
    pool.close()
    assert b"in-the-default-registry" not in generate_latest()


def test_listeners_trace_and_time_checkouts(
    echo_server: EchoServer, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener hooks as a tracer would use them: spans per checkout, plus a hold-time histogram."""
    pool = EchoPool(echo_server.address, size=2, name="traced")
    held = Histogram("app_connection_held_seconds", "Time a connection is checked out", registry=registry)
    events: list[tuple[str, int, str]] = []
    started: dict[int, float] = {}

    def on_checkout(pool: ConnectionPool[Any], conn: Any) -> None:
        started[id(conn)] = time.monotonic()
        events.append(("checkout", id(conn), getattr(gevent.getcurrent(), "name", "main")))

    def on_checkin(pool: ConnectionPool[Any], conn: Any, error: BaseException | None) -> None:
        held.observe(time.monotonic() - started.pop(id(conn)))
        events.append(("checkin", id(conn), type(error).__name__ if error else "-"))

    pool.on("connect", lambda pool, conn: events.append(("connect", id(conn), "-")))
    pool.on("checkout", on_checkout)
    pool.on("checkin", on_checkin)
    pool.on("discard", lambda pool, conn, error: events.append(("discard", id(conn), repr(error))))
    pool.wait(5)  # both connections open before the work: the count below does not race the connects

    def work(n: int) -> None:
        with pool.get() as conn:
            echo(conn, b"%d" % n)

    gevent.joinall([gevent.spawn(work, n) for n in range(6)], raise_error=True, timeout=10)
    with pytest.raises(ConnectionResetError), pool.get():
        raise ConnectionResetError("peer went away")
    kinds = [kind for kind, _, _ in events]
    assert kinds.count("connect") >= 2
    assert kinds.count("checkout") == kinds.count("checkin") == 7
    assert ("checkin", events[-2][1], "ConnectionResetError") == events[-2]
    assert events[-1][0] == "discard" and "peer went away" in events[-1][2]
    assert not started  # every span was closed
    assert value(scrape(registry), "app_connection_held_seconds_count") == 7
    assert "listener" not in caplog.text  # no callback raised
    pool.close()


def test_import_geventpool_without_prometheus_client() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import geventpool, geventpool.contrib, geventpool.contrib.gunicorn\n"
        "assert 'geventpool.contrib.prometheus' not in sys.modules\n"
        "try:\n    import geventpool.contrib.prometheus\nexcept ImportError:\n    print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.ldap
def test_ldap_pool_and_its_auth_subpool(registry: CollectorRegistry) -> None:
    from geventpool.ldap import LDAPPool
    from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, USER_PW, Slapd, user_dn

    with Slapd(users=5, tls=False) as slapd:
        pool = LDAPPool(slapd.uri, SERVICE_DN, SERVICE_PW, size=2, name="directory")
        register_pool(pool, registry)
        with pool.connection() as conn:
            conn.whoami_s()
        assert pool.authenticate(user_dn(1), USER_PW)
        assert not pool.authenticate(user_dn(2), "wrong")
        samples = scrape(registry)
        assert value(samples, "geventpool_requests_total", pool="directory") == 1
        assert value(samples, "geventpool_requests_total", pool="directory[auth]") == 2
        assert value(samples, "geventpool_auth_pool_size", pool="directory") >= 1
        pool.close()
        assert not {dict(labels).get("pool") for _, labels in scrape(registry)} - {None}

"""geventpool.contrib.gunicorn without gunicorn: the registry, fork, and each hook on real TCP pools.

The worker and arbiter passed to the hooks are plain stand-ins with the attributes gunicorn's
objects have (pid, alive, cfg.graceful_timeout, log); the pools talk to a real EchoServer.
The end-to-end run under real gunicorn is tests/contrib/test_gunicorn.py.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.event
import gevent.os
import pytest
from gevent import socket as gsocket

from geventpool import ConfigurationError, ConnectionPool, PoolClosed
from geventpool.contrib import gunicorn as contrib
from geventpool.contrib.gunicorn import PoolRegistry
from geventpool.testing import EchoServer, wait_until


class EchoPool(ConnectionPool[Any]):
    def __init__(self, address: tuple[str, int], **kwargs: Any) -> None:
        self.address = address
        super().__init__(**kwargs)

    def _new_connection(self) -> Any:
        return gsocket.create_connection(self.address, timeout=2)


def echo(conn: Any, data: bytes = b"ping") -> int:
    """Echo ``data`` on ``conn``; return the connection's local port."""
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        got += conn.recv(64)
    assert got == data
    return int(conn.getsockname()[1])


class GLog:
    """Records what the hooks log through gunicorn's logger (``worker.log`` / ``arbiter.log``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, message: str, *args: Any) -> None:
        self.lines.append(message % args)


def make_worker(graceful_timeout: float = 5.0, pid: int | None = None) -> Any:
    return SimpleNamespace(pid=os.getpid() if pid is None else pid, alive=True,
                           cfg=SimpleNamespace(graceful_timeout=graceful_timeout), log=GLog())


@pytest.fixture
def server() -> Iterator[EchoServer]:
    with EchoServer() as echo_server:
        yield echo_server


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_get_builds_once_per_process(server: EchoServer) -> None:
    reg = PoolRegistry()
    built: list[EchoPool] = []

    def factory() -> EchoPool:
        built.append(EchoPool(server.address, size=2, name="echo"))
        return built[-1]

    ref = reg.register("echo", factory)
    assert not ref.built and ref.peek() is None and "echo" in reg and len(reg) == 1
    pool = ref.get()
    assert ref.get() is pool and reg.get("echo") is pool and ref.peek() is pool and len(built) == 1
    with pool.get() as conn:
        echo(conn)
    assert "built" in repr(ref)
    reg.close_all(1)


def test_registration_errors(server: EchoServer) -> None:
    reg = PoolRegistry()
    reg.register("a", lambda: EchoPool(server.address, size=1))
    with pytest.raises(ConfigurationError, match="'a' is already registered"):
        reg.register("a", lambda: EchoPool(server.address, size=1))
    reg.register("a", lambda: EchoPool(server.address, size=1), replace=True)
    for bad in ("", 3, None):
        with pytest.raises(ConfigurationError, match="name must be a non-empty str"):
            reg.register(bad, lambda: EchoPool(server.address, size=1))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="factory of 'b' must be callable"):
        reg.register("b", EchoPool(server.address, size=1))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="wait"):
        reg.register("c", lambda: EchoPool(server.address, size=1), wait=-1)
    with pytest.raises(ConfigurationError, match="close_timeout"):
        reg.register("d", lambda: EchoPool(server.address, size=1), close_timeout=float("nan"))
    with pytest.raises(KeyError, match=r"no pool named 'zzz' is registered \(known: \['a'\]\)"):
        reg.get("zzz")


def test_concurrent_first_gets_share_one_pool(server: EchoServer) -> None:
    reg = PoolRegistry()
    built: list[EchoPool] = []

    def slow_factory() -> EchoPool:
        pool = EchoPool(server.address, size=1)
        built.append(pool)
        gevent.sleep(0.01)  # a factory that yields: others race to build meanwhile
        return pool

    ref = reg.register("slow", slow_factory)
    pools = [g.get() for g in gevent.joinall([gevent.spawn(ref.get) for _ in range(5)], raise_error=True)]
    assert all(p is pools[0] for p in pools)
    assert [p.closed for p in built].count(False) == 1  # the extra pools were closed
    reg.close_all(1)


def test_close_all_then_get_raises_until_reopened(server: EchoServer) -> None:
    reg = PoolRegistry()
    first = reg.register("first", lambda: EchoPool(server.address, size=1))
    second = reg.register("second", lambda: EchoPool(server.address, size=1), close_timeout=0.5)
    pools = [first.get(), second.get()]
    taken = reg.close_all(2)
    assert sorted(taken) == ["first", "second"] and all(p.closed for p in pools)
    with pytest.raises(PoolClosed, match="pools of process"):
        first.get()
    reg.open_all()
    assert first.get() is not pools[0] and not first.get().closed
    reg.close_all(1)


def test_a_forked_child_builds_its_own_pool(server: EchoServer) -> None:
    reg = PoolRegistry()
    ref = reg.register("echo", lambda: EchoPool(server.address, size=2))
    parent_pool = ref.get()
    parent_pool.wait(5)
    parent_ports = set()
    for _ in range(4):
        with parent_pool.get() as conn:
            parent_ports.add(echo(conn))
    pid = gevent.os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            assert not ref.built
            mine = ref.get()
            assert mine is not parent_pool
            with mine.get(timeout=5) as conn:
                port = echo(conn, b"child")
            assert port not in parent_ports
            reg.close_all(1)  # closes the child's pool only
            assert not parent_pool.closed and mine.closed
            code = 0
        finally:
            os._exit(code)
    _, status = gevent.os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # the parent's pool and sessions are untouched by the child
    assert ref.get() is parent_pool and not parent_pool.closed
    for _ in range(4):
        with parent_pool.get() as conn:
            assert echo(conn) in parent_ports
    reg.close_all(1)


def test_post_worker_init_builds_and_fills_without_failing_on_a_down_backend(
    server: EchoServer, closed_port: int
) -> None:
    reg = PoolRegistry()
    up = reg.register("up", lambda: EchoPool(server.address, min_size=2, max_size=4), wait=5)
    down = reg.register("down", lambda: EchoPool(("127.0.0.1", closed_port), size=1), wait=0.3)
    lazy = reg.register("lazy", lambda: EchoPool(server.address, size=3))
    worker = make_worker()
    reg.post_worker_init(worker)
    assert up.built and down.built and lazy.built
    assert up.get().size >= 2 and server.accepted >= 2  # filled at boot
    assert lazy.get().size == 0  # no wait: connects on first use
    assert "built 3 pools" in worker.log.lines[0] and "not ready: down" in worker.log.lines[0]
    worker.alive = False
    reg.worker_exit(None, worker)


def test_worker_exit_waits_for_a_checked_out_connection(server: EchoServer) -> None:
    reg = PoolRegistry()
    ref = reg.register("echo", lambda: EchoPool(server.address, size=2), wait=5)
    worker = make_worker(graceful_timeout=5)
    reg.post_worker_init(worker)
    pool = ref.get()
    release = gevent.event.Event()

    def request() -> None:  # a request still running when the worker is told to stop
        with pool.get() as conn:
            release.wait()
            echo(conn)

    busy = gevent.spawn(request)
    wait_until(lambda: pool.stats()["pool_in_use"] == 1, 5)
    worker.alive = False
    wait_until(lambda: reg._shutdown_at is not None, 5, 0.01, "the shutdown was noticed")
    gevent.spawn_later(0.1, release.set)
    reg.worker_exit(None, worker)
    busy.get(timeout=5)  # the request finished normally: close() waited for it
    assert pool.closed and pool.size == 0 and server.connections == 0
    assert "closed 1 pools" in worker.log.lines[-1]
    with pytest.raises(PoolClosed):
        ref.get()


def test_worker_exit_gives_up_before_the_graceful_deadline(server: EchoServer) -> None:
    reg = PoolRegistry()
    ref = reg.register("echo", lambda: EchoPool(server.address, size=1))
    worker = make_worker(graceful_timeout=1.0)
    reg.post_worker_init(worker)

    def stuck_request() -> None:
        with ref.get().get():
            gevent.sleep(60)

    stuck = gevent.spawn(stuck_request)
    wait_until(lambda: ref.get().stats()["pool_in_use"] == 1, 5)
    worker.alive = False
    wait_until(lambda: reg._shutdown_at is not None, 5, 0.01)
    started = time.monotonic()
    reg.worker_exit(None, worker)
    assert time.monotonic() - started < 1.0  # before the master's SIGKILL would come
    assert ref.peek() is None
    stuck.kill()


def test_worker_exit_called_by_the_master_does_nothing(server: EchoServer) -> None:
    reg = PoolRegistry()
    ref = reg.register("echo", lambda: EchoPool(server.address, size=1))
    pool = ref.get()
    reg.worker_exit(None, make_worker(pid=os.getpid() + 100000))  # a dead worker, reaped by the master
    assert not pool.closed and ref.get() is pool
    reg.close_all(1)


def test_exit_budget_counts_from_the_stop_signal() -> None:
    reg = PoolRegistry()
    assert reg.exit_budget(10) == pytest.approx(9.5)
    reg._shutdown_at = (os.getpid(), time.monotonic() - 2)
    assert reg.exit_budget(10) == pytest.approx(7.5, abs=0.1)
    assert reg.exit_budget(1) == 0.0
    reg._shutdown_at = (os.getpid() + 1, time.monotonic() - 2)  # noted in another process
    assert reg.exit_budget(10) == pytest.approx(9.5)


def test_when_ready_closes_the_masters_pools(server: EchoServer, caplog: pytest.LogCaptureFixture) -> None:
    reg = PoolRegistry()
    ref = reg.register("echo", lambda: EchoPool(server.address, size=1))
    reg.register("never-used", lambda: EchoPool(server.address, size=1))
    master_pool = ref.get()
    with master_pool.get() as conn:  # a check at import time, in the master (--preload)
        echo(conn)
    arbiter = SimpleNamespace(log=GLog())
    reg.when_ready(arbiter)
    assert master_pool.closed and not ref.built
    assert arbiter.log.lines == ["geventpool: master closed 1 pools it built: echo"]
    wait_until(lambda: server.connections == 0, 5)
    reg.on_exit(arbiter)  # nothing left to close: no second line
    assert len(arbiter.log.lines) == 1
    # without a gunicorn logger, the module's logger is used
    ref.get()
    with caplog.at_level(logging.INFO, logger="geventpool.contrib.gunicorn"):
        reg.on_exit(SimpleNamespace())
    assert "master closed 1 pools it built: echo" in caplog.text


def test_hooks_pass_gunicorn_config_validation() -> None:
    from gunicorn.config import Config

    cfg = Config()
    reg = PoolRegistry()
    for hooks in (contrib.hooks(reg), contrib.hooks()):
        assert set(hooks) == {"post_worker_init", "worker_exit", "when_ready", "on_exit", "nworkers_changed"}
        for name, hook in hooks.items():
            cfg.set(name, hook)  # raises TypeError on a wrong arity
    for name in ("post_worker_init", "worker_exit", "when_ready", "on_exit", "nworkers_changed"):
        cfg.set(name, getattr(contrib, name))
        assert getattr(cfg, name) is getattr(contrib, name)

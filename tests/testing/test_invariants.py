"""check_invariants: silent on a real pool through faults, loud on corrupted state."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from gevent import socket as gsocket

from geventpool import ConnectionPool, PoolError
from geventpool._state import Waiter
from geventpool.testing import EchoServer, FaultProxy, check_invariants, pool_problems, wait_until


class EchoPool(ConnectionPool[gsocket.socket]):
    """A TCP pool of real connections to an echo server (through a proxy)."""

    def __init__(self, address: tuple[str, int], **kwargs: Any) -> None:
        self.address = address
        super().__init__(**kwargs)

    def _new_connection(self) -> gsocket.socket:
        return gsocket.create_connection(self.address, timeout=2.0)

    def _keepalive(self, conn: gsocket.socket) -> None:
        conn.sendall(b"k")
        if conn.recv(1) != b"k":
            raise ConnectionError("keepalive got no echo")


def talk(conn: gsocket.socket, payload: bytes = b"ping") -> bytes:
    conn.sendall(payload)
    data = b""
    while len(data) < len(payload):
        chunk = conn.recv(len(payload) - len(data))
        if not chunk:
            raise ConnectionResetError("EOF")
        data += chunk
    return data


@pytest.fixture
def through(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.address) as proxy:
        yield proxy


@pytest.fixture
def pool(through: FaultProxy) -> Iterator[EchoPool]:
    pool = EchoPool(through.address, min_size=2, max_size=3, name="echo-pool")
    pool.wait(timeout=5)
    try:
        yield pool
    finally:
        pool.close(timeout=1)


def test_a_real_pool_keeps_its_invariants_through_faults(pool: EchoPool, through: FaultProxy) -> None:
    check_invariants(pool)
    with pool.get() as conn:
        check_invariants(pool)
        assert talk(conn) == b"ping"
    check_invariants(pool)

    # a reset mid-use: the block raises a socket error and the connection is discarded
    with pytest.raises(OSError), pool.get() as conn:
        through.reset_all()
        talk(conn)
    check_invariants(pool)
    wait_until(
        lambda: pool.size >= pool.min_size and not pool.snapshot().opening, message="the pool refilled"
    )
    check_invariants(pool)

    # waiters queued behind a full pool get the connections back in order
    held = [pool.acquire(timeout=2) for _ in range(pool.max_size)]
    got: list[object] = []
    waiters = [gevent.spawn(lambda: got.append(pool.acquire(timeout=2))) for _ in range(2)]
    wait_until(lambda: pool.snapshot().waiting == 2, message="two waiters queued")
    check_invariants(pool)
    pool.release(held.pop())
    pool.release(held.pop(), error=ConnectionResetError("broken"))
    gevent.joinall(waiters, raise_error=True)
    check_invariants(pool)
    for conn in held + got:
        pool.release(conn)
    check_invariants(pool)

    pool.close(timeout=1)
    check_invariants(pool)


def test_a_closed_pool_with_a_hung_connect_keeps_its_invariants(echo: EchoServer) -> None:
    with FaultProxy(echo.address) as proxy:
        proxy.set_mode("deaf")
        pool = EchoPool(proxy.address, min_size=1, max_size=2, connect_timeout=5)
        with pytest.raises(Exception, match="no connection"):
            pool.get(timeout=0.05)
        check_invariants(pool)
        pool.close(timeout=0.1)
        check_invariants(pool)


def test_shrunk_pool_may_exceed_its_new_bound_until_returns(pool: EchoPool) -> None:
    held = [pool.acquire(timeout=2) for _ in range(3)]
    pool.resize(min_size=0, max_size=1)
    with pytest.raises(AssertionError, match="exceeds max_size=1"):
        check_invariants(pool)
    check_invariants(pool, max_size=3)
    for conn in held:
        pool.release(conn)
    check_invariants(pool)


def corruptions() -> list[tuple[str, Callable[[EchoPool], Callable[[], None]], str]]:
    """(id, corrupt(pool) -> undo, expected message fragment).  The checker reads the slot table,
    so these corrupt the table itself (the only test code that touches it)."""

    def idle_state(pool: EchoPool) -> Callable[[], None]:
        slot = pool._table.idle[0]
        slot.state = slot.state.__class__.IN_USE
        return lambda: setattr(slot, "state", slot.state.__class__.IDLE)

    def busy_state(pool: EchoPool) -> Callable[[], None]:
        lease = pool.get(timeout=1)
        slot = lease._slot
        slot.state = slot.state.__class__.IDLE

        def undo() -> None:
            slot.state = slot.state.__class__.IN_USE
            lease.release()

        return undo

    def filed_twice(pool: EchoPool) -> Callable[[], None]:
        table = pool._table
        table.idle.append(table.idle[0])
        return table.idle.pop

    def idle_and_leased(pool: EchoPool) -> Callable[[], None]:
        lease = pool.get(timeout=1)
        slot = lease._slot
        pool._table.idle.append(slot)

        def undo() -> None:
            pool._table.idle.remove(slot)
            lease.release()

        return undo

    def oversize(pool: EchoPool) -> Callable[[], None]:
        pool._table.opening += 2

        def undo() -> None:
            pool._table.opening -= 2

        return undo

    def negative(pool: EchoPool) -> Callable[[], None]:
        old = pool._table.closing
        pool._table.closing = -1
        return lambda: setattr(pool._table, "closing", old)

    def sleeping_waiter(pool: EchoPool) -> Callable[[], None]:
        waiter = Waiter()
        pool._table.waiters.append(waiter)
        return lambda: pool._table.waiters.remove(waiter)

    def answered_waiter(pool: EchoPool) -> Callable[[], None]:
        table = pool._table
        idle = list(table.idle)
        table.idle.clear()
        waiter = Waiter()
        waiter.error = PoolError("answered")
        table.waiters.append(waiter)

        def undo() -> None:
            table.waiters.remove(waiter)
            table.idle.extend(idle)

        return undo

    def stale_key(pool: EchoPool) -> Callable[[], None]:
        slot = pool._table.idle[0]
        key, slot.key = slot.key, 0
        return lambda: setattr(slot, "key", key)

    def uncounted(pool: EchoPool) -> Callable[[], None]:
        table = pool._table
        slot = table.idle[0]
        del table.open[slot.key]
        return lambda: table.open.__setitem__(slot.key, slot)

    def closed_with_idle(pool: EchoPool) -> Callable[[], None]:
        pool._closed = True
        fast, pool._table.fast = pool._table.fast, False

        def undo() -> None:
            pool._closed = False
            pool._table.fast = fast

        return undo

    def fast_when_closed(pool: EchoPool) -> Callable[[], None]:
        table = pool._table
        idle = [slot for slot in list(table.idle) if table.take_out_idle(slot)]
        pool._closed = True
        pool._table.fast = True

        def undo() -> None:
            pool._closed = False
            for slot in idle:
                table.closing -= 1
                table.open[slot.key] = slot
                table.offer(slot, 0.0)
            pool._refresh_fast()

        return undo

    return [
        ("idle-state", idle_state, "is idle but its state is IN_USE"),
        ("busy-state", busy_state, "checked out but its state is IDLE"),
        ("filed-twice", filed_twice, "filed twice"),
        ("idle-and-leased", idle_and_leased, "is idle but still leased"),
        ("oversize", oversize, "exceeds max_size=3"),
        ("negative", negative, "negative closing count"),
        ("sleeping-waiter", sleeping_waiter, "wait while 2 connection(s) are idle"),
        ("answered-waiter", answered_waiter, "already have a result"),
        ("stale-key", stale_key, "stale key"),
        ("uncounted", uncounted, "is not counted as open"),
        ("closed-with-idle", closed_with_idle, "closed, yet 2 connection(s) are idle"),
        ("fast-when-closed", fast_when_closed, "fast path is enabled although the pool is closed"),
    ]


@pytest.mark.parametrize(
    ("corrupt", "fragment"), [c[1:] for c in corruptions()], ids=[c[0] for c in corruptions()]
)
def test_corrupted_state_is_caught(
    pool: EchoPool, corrupt: Callable[[EchoPool], Callable[[], None]], fragment: str
) -> None:
    check_invariants(pool)
    undo = corrupt(pool)
    try:
        with pytest.raises(AssertionError) as caught:
            check_invariants(pool)
        message = str(caught.value)
        assert fragment in message
        assert repr(pool) in message
        assert pool_problems(pool)
    finally:
        undo()
    check_invariants(pool)


def test_closed_pool_with_a_live_background_greenlet_is_caught(pool: EchoPool) -> None:
    pool.close(timeout=1)
    check_invariants(pool)
    assert pool._workers.group is not None
    straggler = pool._workers.group.spawn(gevent.sleep, 10)
    try:
        with pytest.raises(AssertionError, match="background greenlet"):
            check_invariants(pool)
    finally:
        straggler.kill()
    check_invariants(pool)


def test_not_a_pool_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="ConnectionPool"):
        check_invariants(socket.socket)  # type: ignore[arg-type]


def test_close_before_the_connectors_ran(echo: EchoServer) -> None:
    pool = EchoPool(echo.address, min_size=2, max_size=3)
    pool.run_housekeeping()  # starts background work: connectors spawned, not yet run
    pool.close(timeout=0)
    # their reservations in the opening count must be released all the same
    check_invariants(pool)

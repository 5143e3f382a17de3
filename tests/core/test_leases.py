"""Issue 11: the promises a hostile or careless caller broke, each tried on real sockets.

1. internal timeouts a hook cannot swallow; 2. a stale second return; 3. a borrower that died
or dropped its lease; 4. max_size bounds the server's sockets; 5. backoff against a server
that accepts and closes; 6. a BaseException from _new_connection; 7. fork inside a checkout;
8. close events, generations, max_connecting.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import struct

import gevent
import gevent.event
import gevent.os
import gevent.server
import gevent.socket
import pytest

from geventpool import BackendUnavailable, ConnectTimeout, PoolTimeout, retry
from geventpool.testing import check_invariants, wait_until

from .helpers import LinePool, LineServer, echo, read_line

# -- 1. internal timeouts ------------------------------------------------------------------------


class SwallowingConnect(LinePool):
    """Tries each of two addresses as gevent's create_connection does: ``except OSError: next``.

    Both addresses accept and then never answer the handshake (a paused server)."""

    def _new_connection(self) -> socket.socket:
        self.connects += 1
        last: BaseException | None = None
        for address in (self.address, self.address):
            sock = gevent.socket.create_connection(address)
            try:
                sock.sendall(b"PING\n")
                read_line(sock)  # the paused server never answers
                return sock
            except Exception as error:  # what a careless hook does with any error
                last = error
                sock.close()
        raise OSError(f"every address failed: {last!r}")


def test_1_connect_timeout_bounds_the_whole_connect_however_the_hook_catches(server: LineServer) -> None:
    server.pause()
    pool = SwallowingConnect(server.address, 1, connect_timeout=0.3, timeout=5)
    with gevent.Timeout(3, AssertionError("connect_timeout did not bound _new_connection")):
        with pytest.raises(PoolTimeout):
            pool.get(timeout=1.0)
        wait_until(lambda: pool.stats()["connections_errors"] >= 1, timeout=2)
    assert isinstance(pool._connector.last_error, ConnectTimeout)  # what callers are told, still
    assert pool.connects >= 2  # the first attempt was stopped, not left hanging on address two
    pool.close(timeout=1)
    check_invariants(pool)


class SwallowingCheck(LinePool):
    checks = 0

    def _keepalive(self, conn: socket.socket) -> None:
        while True:  # retries "any error": never gives up on its own
            self.checks += 1
            try:
                super()._keepalive(conn)
                return
            except Exception:
                continue


def test_1_keepalive_timeout_bounds_a_check_that_swallows_exceptions(server: LineServer) -> None:
    pool = SwallowingCheck(server.address, 1, ping_after=0, keepalive_timeout=0.3, timeout=5)
    pool.wait(5)
    server.pause()
    with gevent.Timeout(3, AssertionError("keepalive_timeout did not bound _keepalive")):
        try:
            pool.get(timeout=1.0).release()  # the idle connection is checked, hangs, is discarded
        except PoolTimeout:
            pass
    assert pool.stats()["connections_discarded"] >= 1
    server.resume()
    pool.close(timeout=1)


# -- 2. a stale second return ---------------------------------------------------------------------


def test_2_a_stale_second_return_raises_and_never_touches_the_new_borrower(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    for _ in range(200):
        first = pool.get()
        conn = first.conn
        first.release()
        second = pool.get()
        assert second.conn is conn  # one connection: the same one, lent again
        with pytest.raises(ValueError, match="returned"):
            first.release()  # stale: must not return the second borrower's checkout
        with pytest.raises(ValueError):
            with first:
                pass
        assert second.active
        echo(second.conn)
        second.release()
    assert pool.stats()["returns_bad"] >= 200
    check_invariants(pool)
    pool.close()


def test_2_early_release_inside_the_with_block_then_the_exit_is_refused(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    others: list[bytes] = []

    def other() -> None:
        with pool.get() as conn:
            others.append(echo(conn, b"other\n"))

    lease = pool.get()
    with pytest.raises(ValueError):
        with lease:
            lease.release()  # back early
            gevent.spawn(other).join()  # another greenlet borrows it meanwhile and is done
            taken = pool.get()  # and this one holds it now
    assert taken.active  # the refused exit did not return someone else's checkout
    taken.release()
    assert others == [b"other\n"]
    check_invariants(pool)
    pool.close()


def test_2_release_of_a_connection_lent_to_another_greenlet_is_refused(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    conn = pool.acquire()
    pool.release(conn)
    got = gevent.event.AsyncResult()
    done = gevent.event.Event()

    def other() -> None:
        got.set(pool.acquire())
        done.wait(5)
        pool.release(got.get())

    worker = gevent.spawn(other)
    assert got.get(timeout=5) is conn
    with pytest.raises(ValueError, match="another greenlet"):
        pool.release(conn)  # stale: the other greenlet holds it now
    done.set()
    worker.join(5)
    assert worker.successful()
    check_invariants(pool)
    pool.close()


# -- 3. a borrower that died, or dropped its lease ---------------------------------------------


@pytest.mark.parametrize("how", ["raised", "killed", "dropped"])
def test_3_a_checkout_whose_borrower_is_gone_is_reclaimed(
    server: LineServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.WARNING, logger="geventpool")
    pool = LinePool(server.address, 2, timeout=5)
    pool.wait(5)
    started = gevent.event.Event()
    keep: list[gevent.Greenlet] = []

    def borrower() -> None:
        lease = pool.get()  # never returned
        echo(lease.conn)
        started.set()
        if how == "raised":
            raise RuntimeError("the borrower failed")
        gevent.sleep(60)

    for _ in range(2):
        started.clear()
        if how == "dropped":
            pool.get()  # the lease is dropped at once
            continue
        greenlet = gevent.spawn(borrower)
        keep.append(greenlet)  # the application keeps its greenlets (and so their tracebacks)
        started.wait(5)
        if how == "killed":
            greenlet.kill()
    gc.collect()
    assert pool.snapshot().in_use == 2
    pool.run_housekeeping()  # the pass that finds them
    wait_until(lambda: pool.stats()["connections_reclaimed"] == 2, timeout=5)
    with pool.get(timeout=5) as conn:  # not a PoolTimeout for ever
        echo(conn)
    warnings = [r.getMessage() for r in caplog.records if "reclaimed" in r.getMessage()]
    assert len(warnings) == 2, warnings
    wait_until(lambda: server.connections <= 2, timeout=5)  # the reclaimed sockets were closed
    check_invariants(pool)
    pool.close()


def test_3_a_checkout_held_by_a_live_greenlet_is_never_reclaimed(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    lease = pool.get()
    for _ in range(3):
        pool.run_housekeeping()
    assert lease.active
    assert pool.stats()["connections_reclaimed"] == 0
    lease.release()
    acquired = pool.acquire()  # acquire(): the borrower holds the connection, not the lease
    pool.run_housekeeping()
    pool.release(acquired)
    assert pool.stats()["connections_reclaimed"] == 0
    pool.close()


# -- 4. max_size bounds the server's sockets --------------------------------------------------------


class PoliteClose(LinePool):
    """Closes by waiting for the server's goodbye (a slow close).  Its connects are proved by a
    PING at connect time, so breaking them on first use is not taken for a failing server."""

    def _new_connection(self) -> socket.socket:
        sock = super()._new_connection()
        self._keepalive(sock)
        return sock

    def _has_served(self, conn: socket.socket) -> bool:
        return True

    def _close_connection(self, conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_WR)
        try:
            conn.recv(1)  # the server closes its side
        except OSError:
            pass
        gevent.sleep(0.05)
        conn.close()


def test_4_max_size_bounds_the_sockets_the_server_sees(server: LineServer) -> None:
    pool = PoliteClose(server.address, min_size=4, max_size=4, timeout=10)
    pool.wait(5)

    def user(i: int) -> None:
        for _ in range(5):
            with pytest.raises(ConnectionResetError), pool.get() as conn:
                echo(conn)
                raise ConnectionResetError("broken")  # discarded: closed slowly, then refilled

    gevent.joinall([gevent.spawn(user, i) for i in range(8)], raise_error=True)
    wait_until(lambda: pool.snapshot().closing == 0 and pool.size == 4, timeout=10)
    assert server.max_open <= 4, f"the server saw {server.max_open} sockets from a pool of 4"
    check_invariants(pool)
    pool.close()


# -- 5. backoff against a server that accepts, then closes ----------------------------------------


def test_5_a_server_that_accepts_then_closes_is_backed_off(server: LineServer) -> None:
    accepted = [0]

    def slam(sock: socket.socket, _peer: object) -> None:
        accepted[0] += 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    slammer = gevent.server.StreamServer(("127.0.0.1", 0), slam)
    slammer.start()
    pool = LinePool(slammer.address, 2, timeout=0.5)

    @retry(exc_classes=(OSError, PoolTimeout), max_failures=None, deadline=1.0)
    def call() -> None:
        with pool.get() as conn:
            echo(conn)

    workers = [gevent.spawn(call) for _ in range(20)]
    gevent.joinall(workers)
    # unbounded, 20 greenlets under @retry made ~216 connects a second here
    assert pool.stats()["connections_errors"] >= 1
    assert accepted[0] <= 40, f"{accepted[0]} connects in about a second"
    pool.close(timeout=1)
    slammer.stop()


# -- 6. a BaseException from _new_connection -----------------------------------------------------------


def test_6_a_base_exception_from_the_hook_is_counted_handed_over_and_backed_off(server: LineServer) -> None:
    class OwnTimeout(LinePool):
        def _new_connection(self) -> socket.socket:
            self.connects += 1
            with gevent.Timeout(0.01):  # the hook's own timeout, not caught by the hook
                gevent.sleep(1)
            raise AssertionError("unreachable")

    pool = OwnTimeout(server.address, 1, timeout=10)
    with gevent.Timeout(3, AssertionError("the waiter waited out its timeout")):
        with pytest.raises(BackendUnavailable) as raised:
            pool.get()
    assert isinstance(raised.value.__cause__, gevent.Timeout)
    assert pool.stats()["connections_errors"] >= 1
    wait_until(lambda: pool.connects >= 2, timeout=5)  # the connector lives on, with backoff
    assert pool._connector.running <= 1
    pool.close(timeout=1)
    check_invariants(pool)


# -- 7. fork inside a checkout ------------------------------------------------------------------------


def test_7_a_child_leaving_the_parents_with_block_gets_no_error(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    with pool.get() as conn:
        echo(conn)
        pid = gevent.os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                server.pause()
            except BaseException:
                code = 3
    if pid == 0:  # pragma: no cover - the child left the block without an exception
        os._exit(code)
    _, status = gevent.os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    check_invariants(pool)
    pool.close()


# -- 8. close events, generations, max_connecting -----------------------------------------------------


def test_8_every_closed_connection_is_announced_with_its_reason(server: LineServer) -> None:
    closed: list[str] = []
    times = {"now": 1000.0}
    pool = LinePool(server.address, min_size=1, max_size=3, max_idle=5, max_lifetime=100,
                    clock=lambda: times["now"])
    pool.on("close", lambda p, conn, reason: closed.append(reason))
    leases = [pool.get() for _ in range(3)]
    for lease in leases:
        lease.release()
    times["now"] += 10  # two idle above min_size past max_idle
    pool.run_housekeeping()
    assert sorted(closed) == ["idle", "idle"]
    with pytest.raises(ConnectionResetError), pool.get():
        raise ConnectionResetError("broken")
    assert closed[-1] == "broken"
    wait_until(lambda: pool.size == 1 and pool.snapshot().opening == 0)
    assert pool.drop_idle() == 1
    assert closed[-1] == "drop_idle"
    wait_until(lambda: pool.snapshot().idle == 1)
    times["now"] += 200
    pool.run_housekeeping()
    assert closed[-1] == "lifetime"
    wait_until(lambda: pool.snapshot().idle == 1)
    pool.close()
    assert closed[-1] == "pool closed"
    assert len(closed) == 6


def test_8_connections_in_use_at_a_server_restart_are_checked_before_their_next_use(
    server: LineServer,
) -> None:
    pool = LinePool(server.address, 2, ping_after=600)
    pool.wait(5)
    first, second = pool.get(), pool.get()
    server.restart()  # both connections are dead now
    with pytest.raises(OSError):
        with first as conn:
            echo(conn)  # the first use finds it: a connection error
    second.release()  # returned clean: it was not used since the restart
    checks = pool.stats()["keepalives"]
    with pool.get(timeout=5) as conn:  # the one handed out is checked first (and replaced)
        echo(conn)
    assert pool.stats()["keepalives"] > checks
    assert pool.snapshot().generation >= 1
    pool.close()


def test_8_max_connecting_new_connections_open_in_parallel_for_waiters(server: LineServer) -> None:
    in_flight = [0, 0]  # now, most
    gate = gevent.event.Event()

    class SlowConnect(LinePool):
        def _new_connection(self) -> socket.socket:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            try:
                gate.wait(5)
                return super()._new_connection()
            finally:
                in_flight[0] -= 1

    pool = SlowConnect(server.address, min_size=0, max_size=10, max_connecting=2)
    callers = [gevent.spawn(lambda: pool.get(timeout=10).release()) for _ in range(5)]
    wait_until(lambda: in_flight[0] == 2)
    gevent.sleep(0)
    assert in_flight[0] == 2  # two connects for five waiters, not one, not five
    gate.set()
    gevent.joinall(callers, raise_error=True)
    assert in_flight[1] == 2
    check_invariants(pool)
    pool.close()


# -- found by review: interruptions in the middle of bookkeeping ----------------------------------


class SlowClose(LinePool):
    close_delay = 0.1

    def _close_connection(self, conn: socket.socket) -> None:
        gevent.sleep(self.close_delay)
        conn.close()


def test_an_interrupted_drop_idle_loses_no_slot(server: LineServer) -> None:
    pool = SlowClose(server.address, min_size=0, max_size=3)
    leases = [pool.get() for _ in range(3)]
    for lease in leases:
        lease.release()
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        pool.drop_idle()  # interrupted during the first close
    assert pool.snapshot().idle == 2  # the others are still idle and counted
    # the interrupted close is finished in the background: closed, then no longer counted
    wait_until(lambda: pool.snapshot().closing == 0, timeout=5)
    check_invariants(pool)
    pool.close()
    assert pool.snapshot().size == 0
    wait_until(lambda: server.connections == 0, timeout=5)


def test_close_killing_a_housekeeping_pass_leaves_nothing_open(server: LineServer) -> None:
    times = {"now": 0.0}
    pool = SlowClose(server.address, min_size=0, max_size=4, max_idle=1, clock=lambda: times["now"])
    leases = [pool.get() for _ in range(4)]
    for lease in leases:
        lease.release()
    times["now"] += 5  # all four idle past max_idle
    greenlet = gevent.spawn(pool.run_housekeeping)
    gevent.sleep(0.02)  # the pass is closing the first
    pool.close(timeout=1)
    greenlet.join(5)
    assert pool.snapshot().size == 0, pool.snapshot()[:6]
    wait_until(lambda: server.connections == 0, timeout=5)


def test_a_discard_listener_that_is_interrupted_loses_no_slot(server: LineServer) -> None:
    pool = LinePool(server.address, 1, timeout=5)
    pool.on("discard", lambda p, conn, error: gevent.sleep(0.1))
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        with pool.get():
            raise ConnectionResetError("broken")
    assert pool.snapshot().in_use == 0
    with pool.get(timeout=5) as conn:  # the slot came back: a new connection
        echo(conn)
    check_invariants(pool)
    pool.close()


def test_close_right_after_a_pass_that_spawned_checks(server: LineServer) -> None:
    pool = LinePool(server.address, 2, keepalive=0.05)
    pool.wait(5)
    for slot in pool.snapshot().idle_slots:
        slot.last_used -= 10  # due for a keepalive
        slot.checked_at -= 10
    pool.run_housekeeping()  # spawns two checks that have not run yet
    assert pool.snapshot().checking == 2
    pool.close(timeout=1)
    assert pool.snapshot().size == 0, pool.snapshot()[:6]
    wait_until(lambda: server.connections == 0, timeout=5)


def test_close_waits_for_a_check_and_the_checker_gets_pool_closed(server: LineServer) -> None:
    class SlowCheck(LinePool):
        def _keepalive(self, conn: socket.socket) -> None:
            gevent.sleep(0.2)
            super()._keepalive(conn)

    pool = SlowCheck(server.address, 1, ping_after=0)
    pool.wait(5)
    outcome: list[str] = []

    def caller() -> None:
        try:
            pool.get(timeout=5).release()
            outcome.append("lease")
        except Exception as error:
            outcome.append(type(error).__name__)

    greenlet = gevent.spawn(caller)
    gevent.sleep(0.05)  # the caller is checking the idle connection
    pool.close(timeout=2)
    greenlet.join(5)
    assert outcome == ["PoolClosed"]
    assert pool.snapshot().size == 0
    wait_until(lambda: server.connections == 0, timeout=5)


def test_a_short_get_timeout_does_not_condemn_the_server(server: LineServer) -> None:
    class SlowCheck(LinePool):
        def _keepalive(self, conn: socket.socket) -> None:
            gevent.sleep(0.1)
            super()._keepalive(conn)

    pool = SlowCheck(server.address, 3, ping_after=0)
    pool.wait(5)
    with pytest.raises(PoolTimeout) as raised:
        pool.get(timeout=0.02)  # shorter than the check takes
    assert not isinstance(raised.value, BackendUnavailable)
    stats = pool.stats()
    assert stats["connections_lost"] == 0 and stats["connections_errors"] == 0
    assert pool.snapshot().generation == 0  # no connection error: nothing marked suspect
    pool.close()


def test_a_removed_servers_connection_is_closed_on_a_clean_return(server: LineServer) -> None:
    from geventpool import Server, ServerPool

    class ServerLinePool(LinePool):
        def _new_connection(self, target: Server) -> socket.socket:  # type: ignore[override]
            return gevent.socket.create_connection(target.address)

    target = Server("127.0.0.1", server.port)
    servers = ServerPool([target])
    pool = ServerLinePool(server.address, 1, servers=servers)
    closed: list[str] = []
    pool.on("close", lambda p, conn, reason: closed.append(reason))
    lease = pool.get()
    servers.remove(target)
    lease.release()  # a clean return on the inlined path
    assert closed == ["server removed"]
    pool.close()

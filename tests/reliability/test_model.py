"""A stateful model test of the core pool against a real TCP server behind a fault proxy (issue 6, part 1).

Hypothesis drives a :class:`~geventpool.ConnectionPool` (a line-protocol
pool over real sockets) through random sequences of: checkouts, normal
returns, uses, discards, killed holders and waiters, timed-out waiters
(the pool's timeout and a foreign ``gevent.Timeout``), the server down/up
and restarted, stalled and black-holed connections, every connection
reset, resizes, housekeeping passes and close.  After every step:

- :func:`geventpool.testing.check_invariants` (counts within max_size, no
  waiter asleep while a connection is idle, state of every slot, and after
  close no background greenlet);
- every socket the pool ever opened is either filed in the pool or closed
  (no fd leaked, none closed behind the pool's back);
- the server's open connections fall to at most max_size;
- every user greenlet got what it was promised: a connection, or a typed
  error (PoolError, OSError) — nothing else.

CI runs a fixed, derandomized set of examples; ``make soak`` (``-m slow
--run-slow``) runs a long random profile.
"""

from __future__ import annotations

from typing import Any

import gevent
import gevent.queue
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from geventpool import PoolError
from geventpool.testing import FaultProxy, check_invariants, fd_count, wait_until

from .servers import LineServer, TcpPool, echo

MAX_USERS = 8
TYPED = (PoolError, OSError)


class User:
    """A greenlet that checks out a connection and then obeys commands until it gives it back."""

    def __init__(self, pool: TcpPool, timeout: float, foreign: float | None = None) -> None:
        self.pool = pool
        self.state = "waiting"
        self.outcome: BaseException | None = None
        self.unexpected: BaseException | None = None
        self.commands: gevent.queue.Queue[str] = gevent.queue.Queue()
        self.acks = 0
        self.greenlet = gevent.spawn(self._run, timeout, foreign)

    def _run(self, timeout: float, foreign: float | None) -> None:
        try:
            if foreign is not None:
                with gevent.Timeout(foreign):
                    lease = self.pool.get(timeout=timeout)
            else:
                lease = self.pool.get(timeout=timeout)
            with lease as conn:
                self.state = "holding"
                while True:
                    command = self.commands.get()
                    if command == "put":
                        break
                    if command == "discard":
                        self.acks += 1
                        raise ConnectionResetError("discarded by the model")
                    try:
                        echo(conn, b"model\n")
                    finally:
                        self.acks += 1
        except gevent.Timeout as error:
            self.outcome = error  # the foreign timeout: typed, and the caller's own
        except TYPED as error:
            self.outcome = error
        except gevent.GreenletExit:
            raise
        except BaseException as error:
            self.unexpected = error
        finally:
            self.state = "done"

    def tell(self, command: str) -> None:
        acks = self.acks
        self.commands.put(command)
        if command == "put":
            wait_until(lambda: self.state == "done", timeout=5, message="a put returned")
        else:
            wait_until(lambda: self.acks > acks or self.state == "done", timeout=5,
                       message=f"{command} finished")


class PoolModel(RuleBasedStateMachine):
    """The pool under random operations and faults; invariants checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.server = LineServer().start()
        self.proxy = FaultProxy(upstream=self.server.address).start()
        self.fds_before = fd_count()
        self.pool = TcpPool(
            self.proxy.address, min_size=1, max_size=3, timeout=0.5, connect_timeout=0.3,
            keepalive_timeout=0.2, ping_after=0.3, op_timeout=0.3, max_waiting=6, track=True,
            name="model",
        )
        self.users: list[User] = []
        self.bound = 3  # max_size, or the old one while a shrink waits for connections to come back

    # -- helpers ---------------------------------------------------------------------------------

    def _live(self, state: str) -> list[User]:
        return [u for u in self.users if u.state == state]

    def _settle(self) -> None:
        for _ in range(3):
            gevent.sleep(0)

    # -- rules -------------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.pool.wait(5)

    @precondition(lambda self: len([u for u in self.users if u.state != "done"]) < MAX_USERS)
    @rule(timeout=st.sampled_from([0.05, 0.3, 2.0]))
    def get(self, timeout: float) -> None:
        self.users.append(User(self.pool, timeout))
        self._settle()

    @precondition(lambda self: len([u for u in self.users if u.state != "done"]) < MAX_USERS)
    @rule()
    def foreign_timeout_waiter(self) -> None:
        user = User(self.pool, 5.0, foreign=0.05)
        self.users.append(user)
        wait_until(lambda: user.state != "waiting", timeout=5)

    @precondition(lambda self: any(u.state == "holding" for u in self.users))
    @rule(i=st.integers(0, 99), command=st.sampled_from(["put", "use", "discard"]))
    def command_holder(self, i: int, command: str) -> None:
        holders = self._live("holding")
        holders[i % len(holders)].tell(command)

    @precondition(lambda self: any(u.state == "holding" for u in self.users))
    @rule(i=st.integers(0, 99))
    def kill_holder(self, i: int) -> None:
        holders = self._live("holding")
        holders[i % len(holders)].greenlet.kill(block=True, timeout=5)

    @precondition(lambda self: any(u.state == "waiting" for u in self.users))
    @rule(i=st.integers(0, 99))
    def kill_waiter(self, i: int) -> None:
        waiters = self._live("waiting")
        waiters[i % len(waiters)].greenlet.kill(block=True, timeout=5)

    @precondition(lambda self: any(u.state == "waiting" for u in self.users))
    @rule()
    def let_waiters_time_out(self) -> None:
        wait_until(lambda: not self._live("waiting"), timeout=5, message="waiters served or timed out")

    @rule(mode=st.sampled_from(["pass", "refuse", "stall", "blackhole", "pass", "pass"]))
    def proxy_mode(self, mode: str) -> None:
        self.proxy.set_mode(mode)

    @rule()
    def reset_all(self) -> None:
        self.proxy.reset_all()
        self._settle()

    @rule()
    def restart_server(self) -> None:
        self.server.restart()
        self._settle()

    @rule(min_size=st.integers(0, 4), extra=st.integers(0, 2))
    def resize(self, min_size: int, extra: int) -> None:
        max_size = max(min_size + extra, 1)
        self.bound = max(self.bound, self.pool.size)
        self.pool.resize(min_size, max_size)

    @rule()
    def housekeeping(self) -> None:
        self.pool.run_housekeeping()

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.4]))
    def time_passes(self, seconds: float) -> None:
        gevent.sleep(seconds)

    @precondition(lambda self: not self.pool.closed)
    @rule()
    def close(self) -> None:
        self.pool.close(timeout=0.2)

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def pool_is_consistent(self) -> None:
        if self.pool.size <= self.pool.max_size:
            self.bound = self.pool.max_size
        check_invariants(self.pool, max_size=self.bound)

    @invariant()
    def no_socket_leaked(self) -> None:
        assert self.pool.open_sockets() == self.pool.pooled_sockets()

    @invariant()
    def server_sessions_within_bound(self) -> None:
        wait_until(lambda: self.server.connections <= self.bound, timeout=3,
                   message=f"server connections <= {self.bound}")

    @invariant()
    def users_got_what_was_promised(self) -> None:
        for user in self.users:
            assert user.unexpected is None, f"a user got {user.unexpected!r}"

    @invariant()
    def closed_pool_serves_nobody(self) -> None:
        if self.pool.closed:
            assert not self.pool.snapshot().idle and not self.pool.snapshot().waiting

    def teardown(self) -> None:
        try:
            for user in self._live("holding"):
                user.tell("put")
            self.pool.close(timeout=1)
            self.proxy.set_mode("pass")

            def everyone_finished() -> bool:
                # a waiter may have been handed a connection put back above: it holds it now
                for user in self._live("holding"):
                    user.tell("put")
                return all(u.state == "done" for u in self.users)

            wait_until(everyone_finished, timeout=5, message="every user finished")
            check_invariants(self.pool, max_size=self.bound)
            assert not self.pool.open_sockets(), "sockets left open after close"
            wait_until(lambda: self.server.connections == 0, timeout=5, message="server sessions ended")
            for user in self.users:
                assert user.unexpected is None, f"a user got {user.unexpected!r}"
        finally:
            gevent.killall([user.greenlet for user in self.users], timeout=5)
            self.proxy.stop()
            self.server.stop()
        wait_until(lambda: fd_count() <= self.fds_before, timeout=5, message="fd count back to baseline")
        assert all(user.greenlet.dead for user in self.users), "a user greenlet is still alive"


def _run(**options: Any) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    base = settings(
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    run_state_machine_as_test(PoolModel, settings=settings(base, **options))


@pytest.mark.guard(300)
def test_pool_model_ci_profile() -> None:
    """Fixed examples (derandomized): the same sequences on every run."""
    _run(derandomize=True, max_examples=40, stateful_step_count=25, database=None,
         phases=[Phase.explicit, Phase.generate])


@pytest.mark.slow
@pytest.mark.guard(3600)
def test_pool_model_long_profile() -> None:
    """The soak profile: many more, longer, random sequences (the seed is printed on failure)."""
    _run(max_examples=600, stateful_step_count=60, database=None)


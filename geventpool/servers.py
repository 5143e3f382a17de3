"""Servers, server pools and their shared health (a circuit breaker per server).

``Server`` names one server; ``ServerPool`` orders several by a strategy
(ldap3's names); ``ServerHealth`` is the one health record per server per
process, shared by every pool that uses the server.  All greenlet-safe; not
thread-safe.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Callable, ClassVar, Union
from urllib.parse import urlsplit

import gevent
import gevent.socket

from . import _deadline
from .backoff import backoff_delay
from .errors import ConfigurationError, ConnectTimeout

__all__ = [
    "Server",
    "ServerPool",
    "ServerHealth",
    "CircuitState",
    "POOLING_STRATEGY_NONE",
    "POOLING_STRATEGY_FIRST_ACTIVE",
    "POOLING_STRATEGY_ROUND_ROBIN_PASSIVE",
    "POOLING_STRATEGY_ROUND_ROBIN_ACTIVE",
    "POOLING_STRATEGY_RANDOM_PASSIVE",
    "POOLING_STRATEGY_RANDOM_ACTIVE",
    "STRATEGIES",
    "as_server_pool",
]

logger = logging.getLogger("geventpool.servers")

#: Always the first server (by priority, then order); no health check.
POOLING_STRATEGY_NONE = "NONE"
#: The first server whose circuit is closed (by priority, then order).
POOLING_STRATEGY_FIRST_ACTIVE = "FIRST_ACTIVE"
#: The next server in turn, healthy or not.
POOLING_STRATEGY_ROUND_ROBIN_PASSIVE = "ROUND_ROBIN_PASSIVE"
#: The next server in turn whose circuit is closed.
POOLING_STRATEGY_ROUND_ROBIN_ACTIVE = "ROUND_ROBIN_ACTIVE"
#: A random server, healthy or not.
POOLING_STRATEGY_RANDOM_PASSIVE = "RANDOM_PASSIVE"
#: A random server whose circuit is closed.
POOLING_STRATEGY_RANDOM_ACTIVE = "RANDOM_ACTIVE"
STRATEGIES = (
    POOLING_STRATEGY_NONE,
    POOLING_STRATEGY_FIRST_ACTIVE,
    POOLING_STRATEGY_ROUND_ROBIN_PASSIVE,
    POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
    POOLING_STRATEGY_RANDOM_PASSIVE,
    POOLING_STRATEGY_RANDOM_ACTIVE,
)
_ACTIVE = (POOLING_STRATEGY_FIRST_ACTIVE, POOLING_STRATEGY_ROUND_ROBIN_ACTIVE, POOLING_STRATEGY_RANDOM_ACTIVE)


class CircuitState:
    """The three states of a server's circuit breaker."""

    CLOSED = "closed"  # healthy: connect freely
    OPEN = "open"  # failing: no connects until the cool-down ends (a probe runs meanwhile)
    HALF_OPEN = "half-open"  # one trial connect decides


class ServerHealth:
    """The health of one server in this process: a circuit breaker plus an active probe.

    ``failure_threshold`` consecutive connect failures open the circuit for
    ``cooldown`` seconds (doubling on each failed trial, up to
    ``max_cooldown``); then one trial connect of a pool decides.  Meanwhile
    a background probe (one connection, never a pool's) tries the server
    about every ``probe_interval`` seconds and closes the circuit as soon as
    it answers, so a server that is back is used again within about
    ``probe_interval``, whatever the cool-down has grown to.  Shared by
    every pool using the server.  Greenlet-safe, not thread-safe.
    """

    #: Consecutive connect failures that open the circuit.
    failure_threshold = 2
    #: First cool-down of an open circuit, in seconds.
    cooldown = 1.0
    #: Longest cool-down, in seconds.
    max_cooldown = 30.0
    #: Bound on one probe, in seconds.
    probe_timeout = 5.0
    #: Seconds between two probes of an open circuit (jittered by +-20% so that the
    #: processes of a fleet do not probe in step).
    probe_interval = 1.0

    def __init__(self, key: tuple[Any, ...], clock: Callable[[], float] = time.monotonic) -> None:
        self.key = key
        self.state = CircuitState.CLOSED
        self.failures = 0  # consecutive
        self.total_failures = 0
        self.last_error: BaseException | None = None
        self.last_success_at: float | None = None  # of a connect or probe
        self.last_failure_at: float | None = None
        self.opened_at: float | None = None
        self.open_until = 0.0
        self._cooldown = self.cooldown
        self._trials = 0  # failed half-open trials since the circuit opened
        self._trial_in_flight = False
        self._clock = clock
        #: The open pools' probes (held weakly); the first live one is used.
        self._probes: list[weakref.WeakMethod[Callable[[Server], None]]] = []
        self._prober: gevent.Greenlet | None = None

    @property
    def is_available(self) -> bool:
        """Whether a connect may be tried now (closed, or open past its cool-down)."""
        if self.state == CircuitState.CLOSED:
            return True
        if self.state == CircuitState.OPEN and self._clock() >= self.open_until:
            return True
        return self.state == CircuitState.HALF_OPEN and not self._trial_in_flight

    def begin_attempt(self) -> bool:
        """Claim the right to connect now; False while the circuit forbids it."""
        if self.state == CircuitState.CLOSED:
            return True
        if self.state == CircuitState.OPEN and self._clock() >= self.open_until:
            self.state = CircuitState.HALF_OPEN
        if self.state == CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        """A connect (or probe) succeeded: close the circuit."""
        if self.state != CircuitState.CLOSED:
            logger.info("server %s is back: circuit closed", self._name())
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.last_success_at = self._clock()
        self.opened_at = None
        self._cooldown = self.cooldown
        self._trials = 0
        self._trial_in_flight = False

    def record_failure(self, error: BaseException) -> None:
        """A connect (or probe) failed: count it; open the circuit past the threshold."""
        self.failures += 1
        self.total_failures += 1
        self.last_error = error.with_traceback(None)
        now = self.last_failure_at = self._clock()
        if self.state == CircuitState.HALF_OPEN:
            self._trial_in_flight = False
            self._trials += 1
            self._cooldown = backoff_delay(self._trials + 1, self.cooldown, 2.0, self.max_cooldown)
            self._open(now)
        elif self.state == CircuitState.CLOSED and self.failures >= self.failure_threshold:
            self._open(now)

    def record_unreachable(self, error: BaseException) -> None:
        """A reachability check failed (nothing listens): open the circuit now, whatever the
        threshold; the probe closes it when the server answers again."""
        self.failures = max(self.failures, self.failure_threshold - 1)
        self.record_failure(error)

    def end_attempt(self) -> None:
        """An attempt ended with neither verdict (e.g. it was killed): free the trial."""
        self._trial_in_flight = False

    def _open(self, now: float) -> None:
        if self.state == CircuitState.CLOSED:
            self.opened_at = now
            self._cooldown = self.cooldown
            self._trials = 0
            logger.warning(
                "server %s is failing (%d failures, last: %r): circuit open for %.1f s",
                self._name(), self.failures, self.last_error, self._cooldown,
            )
        self.state = CircuitState.OPEN
        self.open_until = now + self._cooldown
        self._start_prober()

    def set_probe(self, probe: Callable[[Server], None]) -> None:
        """Register a pool's protocol-level probe (a bound method, held weakly; once per pool)."""
        owner = getattr(probe, "__self__", None)
        live = [p for p in self._probes if p() is not None]
        if not any(getattr(p(), "__self__", None) is owner for p in live):
            live.append(weakref.WeakMethod(probe))
        self._probes = live
        if self.state != CircuitState.CLOSED:
            self._start_prober()

    def drop_probe(self, owner: object) -> None:
        """Forget the probe of ``owner`` (a pool being closed): another open pool's probe takes
        over; with none left, the probe greenlet ends at its next turn."""
        self._probes = [p for p in self._probes if getattr(p(), "__self__", owner) is not owner]

    def _current_probe(self) -> Callable[[Server], None] | None:
        for ref in self._probes:
            probe = ref()
            if probe is not None:
                return probe
        return None

    def _start_prober(self) -> None:
        if not self._probes or (self._prober is not None and not self._prober.dead):
            return
        self._prober = gevent.spawn(self._probe_loop)

    def _probe_loop(self) -> None:
        """While the circuit is not closed, probe the server about every ``probe_interval`` seconds.

        The probe does not take the half-open trial (a pool's connect may run
        beside it) and a failed probe does not lengthen the cool-down: only
        failed trials do.
        """
        while self.state != CircuitState.CLOSED:
            interval = self.probe_interval * random.uniform(0.8, 1.2)
            until_trial = self.open_until - self._clock()
            gevent.sleep(max(min(interval, until_trial), 0.0) if until_trial > 0 else interval)
            probe = self._current_probe()
            if probe is None or self.state == CircuitState.CLOSED:
                return
            server = _server_of(self.key)
            try:
                what = f"probe of {self._name()} timed out"
                with _deadline.limit(self.probe_timeout, what, ConnectTimeout):
                    probe(server)
            except Exception as error:
                self.failures += 1
                self.total_failures += 1
                self.last_error = error.with_traceback(None)
            else:
                self.record_success()

    def snapshot(self) -> dict[str, Any]:
        """A plain dict of the health, for stats and status tables."""
        now = self._clock()
        return {
            "state": self.state,
            "failures": self.failures,
            "total_failures": self.total_failures,
            "last_error": repr(self.last_error) if self.last_error is not None else None,
            "open_for": round(now - self.opened_at, 3) if self.opened_at is not None else 0.0,
        }

    def _name(self) -> str:
        return f"{self.key[0]}:{self.key[1]}"


_health: weakref.WeakValueDictionary[tuple[Any, ...], ServerHealth] = weakref.WeakValueDictionary()
_servers_by_key: weakref.WeakValueDictionary[tuple[Any, ...], Server] = weakref.WeakValueDictionary()


def _server_of(key: tuple[Any, ...]) -> Server:
    server = _servers_by_key.get(key)
    if server is None:
        server = Server(key[0], key[1], use_ssl=key[2])
    return server


class Server:
    """One server of any protocol: ``Server("db1.example.com", 5432)`` or ``Server("redis://db1:6379")``.

    ``priority``: lower is preferred (failover goes to higher numbers, and
    back when the preferred server recovers).  The host is resolved again
    on every new connection.  A protocol's subclass (``geventpool.ldap.Server``)
    adds its own fields, default ports and TLS schemes.

    :raises ConfigurationError: bad host, port, URI or option (credentials in a
        URI are refused and never echoed).
    """

    #: The port a URI without one gets, by scheme (a protocol's subclass fills it in).
    default_ports: ClassVar[dict[str, int]] = {}
    #: URI schemes that mean TLS from the first byte (they set ``use_ssl``).
    tls_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        host: str,
        port: int | None = None,
        use_ssl: bool = False,
        *,
        priority: int = 0,
        connect_timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(host, str) or not host.strip() or host != host.strip():
            raise ConfigurationError(f"Server: host must be a non-empty str without spaces, got {host!r}")
        self.scheme: str | None = None
        if "://" in host:
            host, port, use_ssl = self._parse_uri(host, port, use_ssl)
        elif host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        bad_port = isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        if port is not None and bad_port:
            raise ConfigurationError(f"Server {host}: port must be an int in 1..65535, got {port!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(f"Server {host}: priority must be an int, got {priority!r}")
        self.host = host
        self.port = port
        self.use_ssl = bool(use_ssl)
        self.priority = priority
        self.connect_timeout = connect_timeout
        self.name = name or (f"{host}:{port}" if port is not None else host)
        key = (self.host, self.port, self.use_ssl)
        health = _health.get(key)
        if health is None:
            health = _health[key] = ServerHealth(key)
        #: This server's health record, shared by every Server object for the same address.
        self.health: ServerHealth = health
        _servers_by_key.setdefault(key, self)

    def _parse_uri(self, uri: str, port: int | None, use_ssl: bool) -> tuple[str, int | None, bool]:
        try:
            parts = urlsplit(uri)
            parsed_port = parts.port
        except ValueError:
            raise ConfigurationError(f"Server: bad URI {_redact(uri)!r}") from None
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                f"Server: credentials in URI {_redact(uri)!r} are refused; pass them as arguments"
            )
        if not parts.hostname:
            raise ConfigurationError(f"Server: no host in URI {_redact(uri)!r}")
        self.scheme = parts.scheme.lower()
        if self.scheme in self.tls_schemes:
            use_ssl = True
        if parsed_port is None:
            parsed_port = port if port is not None else self.default_ports.get(self.scheme)
        return parts.hostname, parsed_port, use_ssl

    def _default_scheme(self) -> str | None:
        """The scheme of a server given without a URI (None: shown as ``host:port``)."""
        return None

    @property
    def uri(self) -> str:
        """``scheme://host:port`` (or ``host:port`` when the server has no scheme)."""
        scheme = self.scheme or self._default_scheme()
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = host + (f":{self.port}" if self.port is not None else "")
        return f"{scheme}://{where}" if scheme else where

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` for a socket connect.

        :raises ConfigurationError: the server has no port.
        """
        if self.port is None:
            raise ConfigurationError(f"Server {self.name}: no port given")
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, priority={self.priority}, {self.health.state})"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> Any:
        return (type(self), (self.host, self.port, self.use_ssl))


def _redact(uri: str) -> str:
    if "@" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


ServerLike = Union[Server, str]


class ServerPool:
    """Several servers and the order in which to try them.

    Strategies (ldap3's 0.9 names): ``POOLING_STRATEGY_NONE`` (always the
    first), ``..._FIRST_ACTIVE`` (the first healthy one), ``..._ROUND_ROBIN_*``
    and ``..._RANDOM_*``; the ``ACTIVE`` ones skip servers whose circuit is
    open.  Servers with a lower ``priority`` come first.  ``add()`` and
    ``remove()`` may be called while pools use it: they are told, and
    connections to a removed server are retired as they come back idle.
    """

    #: What a host or URI string given to ``add()`` becomes.
    server_class: ClassVar[type[Server]] = Server

    #: With an ACTIVE strategy, a server with no successful connect in this many seconds (or never)
    #: is checked with a TCP connect-and-close before a connection is opened to it.
    check_after = 30.0

    def __init__(
        self,
        servers: Iterable[ServerLike] | ServerLike | None = None,
        strategy: str = POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
        *,
        rng: Callable[[], float] = random.random,
        cycles: int = 1,
        exhaust: float | bool = False,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"ServerPool: strategy must be one of {STRATEGIES}, got {strategy!r}")
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
            raise ConfigurationError(f"ServerPool: cycles must be an int >= 1, got {cycles!r}")
        if exhaust is True:
            exhaust = math.inf
        elif exhaust is False:
            exhaust = 0.0
        elif not isinstance(exhaust, (int, float)) or not exhaust >= 0 or math.isnan(exhaust):
            raise ConfigurationError(
                f"ServerPool: exhaust must be False, True or seconds >= 0, got {exhaust!r}"
            )
        self.strategy = strategy
        self.active = strategy in _ACTIVE
        #: How many times a new connection goes round the servers before it fails.
        self.cycles = cycles
        #: Whether an ACTIVE strategy checks a server of unknown or stale health before use.
        self.checks_reachability = self.active
        #: Whether an ACTIVE strategy leaves out servers whose circuit is open (False: every
        #: connect tries every server in order, ldappool's way, and the circuits only report).
        self.skips_open_circuits = self.active
        #: Seconds a server stays out of the candidates after a failed connect, even if it answers
        #: meanwhile (0: the circuit breaker alone decides; inf: until it answers the circuit's probe).
        self.exhaust = float(exhaust)
        self._servers: list[Server] = []
        self._watchers: weakref.WeakSet[Any] = weakref.WeakSet()  # pools using this ServerPool
        self._turn = itertools.count()
        self._rng = rng
        self.generation = 0  # bumped by add() and remove()
        if servers is not None:
            if isinstance(servers, (str, Server)):
                servers = [servers]
            for server in servers:
                self.add(server)

    def add(self, server: ServerLike) -> Server:
        """Add a server (a ``Server`` or a host/URI string); returns it."""
        if isinstance(server, str):
            server = self.server_class(server)
        if not isinstance(server, Server):
            raise ConfigurationError(f"ServerPool: expected a Server or a str, got {server!r}")
        if any(s is server or s.health is server.health for s in self._servers):
            raise ConfigurationError(f"ServerPool: {server.name} is already in the pool")
        self._servers.append(server)
        self.generation += 1
        return server

    def remove(self, server: Server | str) -> None:
        """Remove a server (or the one with that name).

        :raises ConfigurationError: no such server in the pool.
        """
        names = set()
        if isinstance(server, str):  # as add() accepts it: a name, a host or a URI
            names = {server, self.server_class(server).name}
        for candidate in self._servers:
            if candidate is server or candidate.name in names:
                self._servers.remove(candidate)
                self.generation += 1
                for pool in list(self._watchers):
                    pool._server_removed(candidate)  # no switch: its connections are marked
                return
        raise ConfigurationError(f"ServerPool: {server!s} is not in the pool")

    def watch(self, pool: Any) -> None:
        """Tell ``pool`` (held weakly) when a server is removed: ``pool._server_removed(server)``."""
        self._watchers.add(pool)

    def __iter__(self) -> Iterator[Server]:
        return iter(list(self._servers))

    def __len__(self) -> int:
        return len(self._servers)

    def __contains__(self, server: object) -> bool:
        return server in self._servers  # Server has no __eq__: identity, at C speed

    def preferred(self) -> list[Server]:
        """The servers in priority order (stable within one priority)."""
        return sorted(self._servers, key=lambda s: s.priority)

    def candidates(self) -> list[Server]:
        """The servers to try, in order, for one new connection.

        Active strategies leave out servers whose circuit forbids a connect
        now; the list may then be empty.
        """
        servers = self.preferred()
        if not servers:
            return []
        if self.strategy == POOLING_STRATEGY_NONE:
            return servers[:1]
        if self.strategy in (POOLING_STRATEGY_ROUND_ROBIN_ACTIVE, POOLING_STRATEGY_ROUND_ROBIN_PASSIVE):
            top = [s for s in servers if s.priority == servers[0].priority]
            start = next(self._turn) % len(top)
            servers = top[start:] + top[:start] + servers[len(top):]
        elif self.strategy in (POOLING_STRATEGY_RANDOM_ACTIVE, POOLING_STRATEGY_RANDOM_PASSIVE):
            servers = sorted(servers, key=lambda s: (s.priority, self._rng()))
        if self.skips_open_circuits:
            servers = [s for s in servers if s.health.is_available]
        if self.exhaust:
            servers = [s for s in servers if not self._exhausted(s)]
        return servers

    def _exhausted(self, server: Server) -> bool:
        health = server.health
        failed_at = health.last_failure_at
        if failed_at is None:
            return False
        if self.exhaust == math.inf:  # until it answered (the circuit's probe) since
            succeeded_at = health.last_success_at
            return succeeded_at is None or succeeded_at < failed_at
        return health._clock() - failed_at < self.exhaust  # that long, even if it answers meanwhile

    def needs_check(self, server: Server) -> bool:
        """Whether an ACTIVE strategy checks ``server`` before opening a connection to it: its
        health is unknown (never connected) or stale (no success in ``check_after`` seconds)."""
        if not self.checks_reachability:
            return False
        health = server.health
        last = health.last_success_at
        return last is None or health._clock() - last > self.check_after

    def check_reachable(self, server: Server, timeout: float) -> None:
        """Open and close a TCP connection to ``server`` within ``timeout`` seconds.

        :raises OSError: nothing accepted the connection in time (``ConnectTimeout`` included).
        """
        what = f"{server.name} did not accept a connection within {timeout:g} s"
        with _deadline.limit(timeout, what, ConnectTimeout):  # every address of the name included
            sock = gevent.socket.create_connection(server.address, timeout=timeout)
        sock.close()

    def rank(self, server: Server) -> tuple[int, ...]:
        """How preferred ``server`` is (lower is better): its priority, and its
        position too for the ordered strategies (NONE, FIRST_ACTIVE)."""
        if self.strategy in (POOLING_STRATEGY_NONE, POOLING_STRATEGY_FIRST_ACTIVE):
            position = next((i for i, s in enumerate(self._servers) if s is server), len(self._servers))
            return (server.priority, position)
        return (server.priority,)

    def all_down(self) -> bool:
        """Whether every server's circuit forbids a connect now (never, if circuits only report)."""
        return (
            self.skips_open_circuits and bool(self._servers)
            and not any(s.health.is_available for s in self._servers)
        )

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self._servers)
        return f"ServerPool([{names}], {self.strategy})"


def as_server_pool(
    servers: ServerPool | Iterable[ServerLike] | ServerLike,
    strategy: str = POOLING_STRATEGY_ROUND_ROBIN_ACTIVE,
) -> ServerPool:
    """Return ``servers`` as a ServerPool (a plain list gets ``strategy``).

    :raises ConfigurationError: empty, or not servers.
    """
    pool = servers if isinstance(servers, ServerPool) else ServerPool(servers, strategy)
    if not len(pool):
        raise ConfigurationError("servers: at least one server is needed")
    return pool

"""Prometheus metrics of geventpool pools: their stats and their servers' health, by pool name.

Needs ``prometheus_client`` (``pip install geventpool[prometheus]``); ``import
geventpool`` never imports this module.  Register each pool once; the collector
reads ``pool.stats()`` and ``pool.server_stats()`` at every scrape (nothing is
counted twice, nothing runs between scrapes)::

    from prometheus_client import generate_latest, start_http_server
    from geventpool.contrib.prometheus import register_pool

    pool = MyPool(10, name="backend")
    register_pool(pool)        # held weakly: a closed or garbage-collected pool disappears
    start_http_server(9100)    # or return generate_latest() from your own /metrics view

A scrape then shows, for instance::

    geventpool_connections{pool="backend",state="idle"} 8.0
    geventpool_connections{pool="backend",state="in_use"} 2.0
    geventpool_requests_waiting{pool="backend"} 0.0
    geventpool_requests_total{pool="backend"} 1234.0
    geventpool_requests_wait_seconds_total{pool="backend"} 0.42
    geventpool_connections_discarded_total{pool="backend"} 3.0
    geventpool_server_up{pool="backend",server="db1:5432"} 1.0
    geventpool_server_failures_total{pool="backend",server="db2:5432"} 7.0

Gauges: ``geventpool_connections{state=idle|in_use|checking|opening}``,
``geventpool_pool_size``, ``geventpool_pool_min_size``, ``geventpool_pool_max_size``,
``geventpool_requests_waiting``, and any other number a pool's ``stats()`` adds
(``geventpool_<key>``, e.g. the LDAP pool's ``identities``).  Counters (``_total``;
durations in seconds): requests, requests_queued, requests_wait_seconds,
requests_errors, requests_too_many, returns_bad, connections_opened,
connect_seconds, connect_errors, connections_lost, connections_discarded,
keepalives, leaks, usage_seconds.  Per server (labels ``pool``, ``server``):
``geventpool_server_up`` (1 while its circuit is closed),
``geventpool_server_circuit{state=closed|open|half-open}`` (1 for the current
state), ``geventpool_server_consecutive_failures``, ``geventpool_server_failures_total``,
``geventpool_server_open_seconds``, ``geventpool_server_connections``.  An LDAP
pool's sub-pools (authentication, other identities) appear under their own names.

Counters restart from zero in a new process (a forked gunicorn worker): each
worker is its own target, as with any per-process collector.

Tracing: the pools' listeners (``pool.on("connect" | "checkout" | "checkin" |
"discard", callback)``) feed your own metrics or spans, e.g. how long each
connection is held::

    from prometheus_client import Histogram
    held = Histogram("myapp_connection_held_seconds", "Time a connection is checked out")
    started = {}
    pool.on("checkout", lambda pool, conn: started.__setitem__(id(conn), time.monotonic()))
    pool.on("checkin", lambda pool, conn, error: held.observe(time.monotonic() - started.pop(id(conn))))

Greenlet-safe; a scrape does no I/O and does not yield.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from ..errors import ConfigurationError
from ..servers import CircuitState

__all__ = ["PoolCollector", "register_pool", "unregister_pool", "collector_for"]

#: stats() key -> (metric name, help text, factor to base units)
COUNTERS: dict[str, tuple[str, str, float]] = {
    "requests_num": ("geventpool_requests", "Checkouts asked for (served, failed or refused).", 1.0),
    "requests_queued": ("geventpool_requests_queued", "Checkouts that had to wait for a connection.", 1.0),
    "requests_wait_ms": ("geventpool_requests_wait_seconds", "Time spent waiting for a connection.", 1e-3),
    "requests_errors": ("geventpool_requests_errors", "Checkouts that failed (timeout, backend down).", 1.0),
    "requests_too_many": ("geventpool_requests_too_many", "Checkouts refused: max_waiting reached.", 1.0),
    "returns_bad": ("geventpool_returns_bad", "Returns of connections not checked out.", 1.0),
    "connections_num": ("geventpool_connections_opened", "Connections opened.", 1.0),
    "connections_ms": ("geventpool_connect_seconds", "Time spent opening connections.", 1e-3),
    "connections_errors": ("geventpool_connect_errors", "Failed attempts to open a connection.", 1.0),
    "connections_lost": ("geventpool_connections_lost", "Connections lost to a connection error.", 1.0),
    "connections_discarded": ("geventpool_connections_discarded", "Connections discarded.", 1.0),
    "keepalives": ("geventpool_keepalives", "Keepalive checks of idle connections.", 1.0),
    "leaks": ("geventpool_leaks", "Checkouts held past leak_threshold.", 1.0),
    "usage_ms": ("geventpool_usage_seconds", "Time connections spent checked out.", 1e-3),
}
#: stats() key -> (metric name, help text)
GAUGES: dict[str, tuple[str, str]] = {
    "pool_size": ("geventpool_pool_size", "Connections open or being opened."),
    "pool_min": ("geventpool_pool_min_size", "Connections the pool keeps open (min_size)."),
    "pool_max": ("geventpool_pool_max_size", "Most connections the pool may hold (max_size)."),
    "requests_waiting": ("geventpool_requests_waiting", "Greenlets waiting for a connection."),
}
#: stats() key -> value of the ``state`` label of geventpool_connections
STATES = {"pool_available": "idle", "pool_in_use": "in_use", "pool_checking": "checking",
          "pool_opening": "opening"}
_CIRCUIT_STATES = (CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN)
_METRIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_POOL = ["pool"]
_SERVER = ["pool", "server"]


class PoolCollector:
    """A Prometheus collector of the pools registered with it (held by weak reference).

    Register it with a ``CollectorRegistry`` once (:func:`register_pool` does
    that for you), then :meth:`add` pools.  Closed and garbage-collected pools
    are left out of scrapes and forgotten.
    """

    def __init__(self) -> None:
        self._pools: dict[int, weakref.ref[Any]] = {}

    def add(self, pool: Any) -> None:
        """Export ``pool`` (anything with ``name``, ``stats()`` and ``closed``), weakly held.

        :raises ConfigurationError: another live pool here has the same name
            (its series would collide), or ``pool`` has no ``stats()``.
        """
        if not callable(getattr(pool, "stats", None)) or not isinstance(getattr(pool, "name", None), str):
            raise ConfigurationError(f"register_pool: {pool!r} is not a pool (no name or stats())")
        for other in self.pools():
            if other is not pool and other.name == pool.name:
                raise ConfigurationError(
                    f"register_pool: a pool named {pool.name!r} is already exported; "
                    "give pools distinct names"
                )
        key = id(pool)
        pools = self._pools

        def forget(ref: weakref.ref[Any]) -> None:
            if pools.get(key) is ref:
                del pools[key]

        pools[key] = weakref.ref(pool, forget)

    def remove(self, pool: Any) -> None:
        """Stop exporting ``pool`` (no error if it was not exported)."""
        ref = self._pools.get(id(pool))
        if ref is not None and ref() is pool:
            del self._pools[id(pool)]

    def pools(self) -> list[Any]:
        """The exported pools that are alive and open, in registration order."""
        live = []
        for key, ref in list(self._pools.items()):
            pool = ref()
            if pool is None or getattr(pool, "closed", False):
                self._pools.pop(key, None)
            else:
                live.append(pool)
        return live

    def describe(self) -> Iterable[Metric]:
        """The fixed metric families (for the registry's duplicate check; no samples)."""
        return list(_Families().all())

    def collect(self) -> Iterable[Metric]:
        """Read every live pool's stats and server health (no I/O, no greenlet switch)."""
        families = _Families()
        for pool in self.pools():
            members = getattr(pool, "_all_pools", None)  # the LDAP pool and its sub-pools
            for member in members() if callable(members) else [pool]:
                if member is not pool and getattr(member, "closed", False):
                    continue
                families.add_pool(member)
        return list(families.all())


class _Families:
    """The metric families of one scrape."""

    def __init__(self) -> None:
        self.counters = {
            key: CounterMetricFamily(name, text, labels=_POOL) for key, (name, text, _) in COUNTERS.items()
        }
        self.gauges = {
            key: GaugeMetricFamily(name, text, labels=_POOL) for key, (name, text) in GAUGES.items()
        }
        self.extra: dict[str, GaugeMetricFamily] = {}
        self.connections = GaugeMetricFamily(
            "geventpool_connections", "Connections by state.", labels=["pool", "state"]
        )
        self.server_up = GaugeMetricFamily(
            "geventpool_server_up", "1 while the server's circuit is closed.", labels=_SERVER
        )
        self.circuit = GaugeMetricFamily(
            "geventpool_server_circuit", "1 for the current state of the server's circuit breaker.",
            labels=[*_SERVER, "state"],
        )
        self.consecutive = GaugeMetricFamily(
            "geventpool_server_consecutive_failures", "Connect failures in a row.", labels=_SERVER
        )
        self.failures = CounterMetricFamily(
            "geventpool_server_failures", "Connect and probe failures.", labels=_SERVER
        )
        self.open_seconds = GaugeMetricFamily(
            "geventpool_server_open_seconds", "How long the circuit has been open (0 when closed).",
            labels=_SERVER,
        )
        self.server_connections = GaugeMetricFamily(
            "geventpool_server_connections", "The pool's connections to the server.", labels=_SERVER
        )

    def add_pool(self, pool: Any) -> None:
        name = pool.name
        stats = pool.stats()
        for key, value in stats.items():
            if key in COUNTERS:
                self.counters[key].add_metric([name], float(value) * COUNTERS[key][2])
            elif key in GAUGES:
                self.gauges[key].add_metric([name], float(value))
            elif key in STATES:
                self.connections.add_metric([name, STATES[key]], float(value))
            elif _METRIC_NAME.match(key) and isinstance(value, (int, float)) and not _reserved(key):
                family = self.extra.get(key)
                if family is None:
                    family = self.extra[key] = GaugeMetricFamily(
                        f"geventpool_{key}", f"The pool's stats()[{key!r}].", labels=_POOL
                    )
                family.add_metric([name], float(value))
        server_stats = getattr(pool, "server_stats", None)
        if callable(server_stats):
            for server, health in server_stats().items():
                self.add_server([name, server], health)

    def add_server(self, labels: list[str], health: dict[str, Any]) -> None:
        state = health.get("state")
        self.server_up.add_metric(labels, 1.0 if state == CircuitState.CLOSED else 0.0)
        for each in _CIRCUIT_STATES:
            self.circuit.add_metric([*labels, each], 1.0 if state == each else 0.0)
        self.consecutive.add_metric(labels, float(health.get("failures", 0)))
        self.failures.add_metric(labels, float(health.get("total_failures", 0)))
        self.open_seconds.add_metric(labels, float(health.get("open_for", 0.0)))
        self.server_connections.add_metric(labels, float(health.get("connections", 0)))

    def all(self) -> Iterator[Metric]:
        yield self.connections
        yield from self.gauges.values()
        yield from self.counters.values()
        yield from self.extra.values()
        yield from (self.server_up, self.circuit, self.consecutive, self.failures, self.open_seconds,
                    self.server_connections)


def _reserved(key: str) -> bool:
    """Whether ``geventpool_<key>`` would collide with one of the fixed families."""
    name = f"geventpool_{key}"
    return any(name in (m.name, f"{m.name}_total") for m in _FIXED)


_FIXED = tuple(_Families().all())
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector] = weakref.WeakKeyDictionary()


def collector_for(registry: CollectorRegistry | None = None) -> PoolCollector:
    """Return the :class:`PoolCollector` of ``registry`` (default: prometheus_client's), registering one."""
    registry = REGISTRY if registry is None else registry
    collector = _collectors.get(registry)
    if collector is None:
        collector = PoolCollector()
        registry.register(collector)
        _collectors[registry] = collector
    return collector


def register_pool(pool: Any, registry: CollectorRegistry | None = None) -> PoolCollector:
    """Export ``pool``'s stats and server health to ``registry`` (default: prometheus_client's).

    Idempotent; the pool is held weakly and leaves the scrapes once closed.

    :raises ConfigurationError: another exported pool has the same name.
    """
    collector = collector_for(registry)
    collector.add(pool)
    return collector


def unregister_pool(pool: Any, registry: CollectorRegistry | None = None) -> None:
    """Stop exporting ``pool`` to ``registry`` (default: prometheus_client's)."""
    collector_for(registry).remove(pool)

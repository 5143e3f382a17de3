"""Public helpers for testing code that uses geventpool, under faults.

- :class:`FaultProxy` — a TCP relay that injects network faults on demand
  (delay, stall, reset, half-close, truncation, corruption, refused and
  hanging connects, flapping).
- :class:`EchoServer` — a real TCP echo server on 127.0.0.1, as an upstream.
- :class:`HubMonitor` — measures how long the gevent hub was blocked.
- :func:`check_invariants` — asserts a pool's bookkeeping is consistent.
- :func:`wait_until` — polls a condition with a deadline (no racing sleeps).
- :func:`fd_count`, :func:`greenlet_count` — leak checks against a baseline.

Everything here runs in the calling thread's gevent hub; the code under test
must be cooperative.  Importing this package needs gevent only.
"""

from __future__ import annotations

from .echo import EchoServer
from .invariants import check_invariants, pool_problems
from .monitor import HubMonitor, Stall
from .proxy import MODES, FaultProxy
from .resources import fd_count, greenlet_count
from .waiting import wait_until

__all__ = [
    "FaultProxy",
    "MODES",
    "EchoServer",
    "HubMonitor",
    "Stall",
    "check_invariants",
    "pool_problems",
    "wait_until",
    "fd_count",
    "greenlet_count",
]

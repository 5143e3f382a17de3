"""The worker threads that run libldap's unavoidably blocking calls (TLS handshakes, SASL).

One small gevent ThreadPool per process (rebuilt after fork), separate from
the hub's default pool.  Its threads run at a lower scheduling priority
(nice +10 on Linux): a burst of TLS handshakes competes for the CPU with
the greenlets of the hub thread, and the hub must win, or every greenlet
of the process sees the handshakes as latency.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import gevent
from gevent.threadpool import ThreadPool

__all__ = ["spawn_blocking", "MAX_THREADS", "NICENESS"]

#: Most blocking libldap calls running at once in one process.
MAX_THREADS = 10
#: How much nicer than the hub thread the worker threads run.
NICENESS = 10

_pool: ThreadPool | None = None
_pool_pid = 0
_niced: set[int] = set()


def _run(func: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run ``func`` in a worker thread; hand an exception back instead of letting gevent print it."""
    tid = threading.get_native_id()
    if tid not in _niced:
        _niced.add(tid)
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICENESS)
        except (AttributeError, OSError):
            pass
    try:
        return False, func(*args)
    except Exception as error:
        return True, error


def spawn_blocking(func: Callable[..., Any], *args: Any) -> gevent.event.AsyncResult:
    """Start ``func(*args)`` in a worker thread; the result is ``(failed, value_or_error)``."""
    global _pool, _pool_pid
    pid = os.getpid()
    if _pool is None or _pool_pid != pid:
        _pool = ThreadPool(MAX_THREADS)
        _pool_pid = pid
        _niced.clear()
    return _pool.spawn(_run, func, *args)

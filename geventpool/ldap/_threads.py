"""The worker threads that run libldap's unavoidably blocking calls (TLS handshakes, SASL).

One small gevent ThreadPool per process (rebuilt after fork), separate from
the hub's default pool.  Each server gets at most :data:`PER_SERVER` of its
threads at once: a frozen server can hold only its own share (a caller
waits for one of them cooperatively, within its own time limit), never the
threads that the other servers' handshakes need.  Its threads run at a lower scheduling priority
(nice +10 on Linux): a burst of TLS handshakes competes for the CPU with
the greenlets of the hub thread, and the hub must win, or every greenlet
of the process sees the handshakes as latency.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import gevent
import gevent.event
import gevent.lock
from gevent.threadpool import ThreadPool

__all__ = ["spawn_blocking", "MAX_THREADS", "PER_SERVER", "NICENESS"]

#: Most blocking libldap calls running at once in one process.
MAX_THREADS = 16
#: Most blocking libldap calls running at once for one server (``key``).
PER_SERVER = 3
#: How much nicer than the hub thread the worker threads run.
NICENESS = 10

_pool: ThreadPool | None = None
_pool_pid = 0
_niced: set[int] = set()
_budgets: dict[str, gevent.lock.BoundedSemaphore] = {}


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


def spawn_blocking(func: Callable[..., Any], *args: Any, key: str = "") -> gevent.event.AsyncResult:
    """Start ``func(*args)`` in a worker thread; the result is ``(failed, value_or_error)``.

    Waits cooperatively (an enclosing timeout interrupts it) while ``key``'s
    server already has :data:`PER_SERVER` calls running; its share is given
    back when the thread is done, whether or not anyone still waits for it.
    """
    global _pool, _pool_pid
    pid = os.getpid()
    if _pool is None or _pool_pid != pid:
        _pool = ThreadPool(MAX_THREADS)
        _pool_pid = pid
        _niced.clear()
        _budgets.clear()
    budget = _budgets.get(key)
    if budget is None:
        budget = _budgets[key] = gevent.lock.BoundedSemaphore(PER_SERVER)
    budget.acquire()
    try:
        pending = _pool.spawn(_run, func, *args)
    except BaseException:
        budget.release()
        raise
    pending.rawlink(lambda _result: budget.release())
    return pending

"""The exceptions geventpool raises.

Every error the pools raise on their own account derives from :class:`PoolError`.
Errors raised by drivers and by ``_new_connection()`` pass through unwrapped.
"""

from __future__ import annotations

__all__ = [
    "PoolError",
    "PoolTimeout",
    "PoolClosed",
    "TooManyWaiters",
    "ConfigurationError",
    "BackendUnavailable",
    "ConnectTimeout",
]


class PoolError(Exception):
    """Base class of every error raised by a pool itself."""


class PoolTimeout(PoolError):
    """No connection could be handed out within the checkout timeout.

    The message names the pool and its counts; ``__cause__`` is the last
    connect error, when there was one.
    """


class BackendUnavailable(PoolTimeout):
    """The server cannot be reached: connect attempts keep failing.

    A subclass of :class:`PoolTimeout`, so code that handles timeouts handles
    this too; ``__cause__`` is the last connect error.
    """


class ConnectTimeout(PoolError, TimeoutError):
    """Opening a connection took longer than ``connect_timeout``.

    Also a :class:`TimeoutError` (an ``OSError``), so it counts as a
    connection error wherever ``socket.error`` does.
    """


class PoolClosed(PoolError):
    """The pool was closed: it hands out no more connections."""


class TooManyWaiters(PoolError):
    """The queue of greenlets waiting for a connection is full (``max_waiting``)."""


class ConfigurationError(PoolError, ValueError):
    """An argument is invalid; the message names it.

    Also a :class:`ValueError`, so generic argument checks catch it.
    """

"""Listeners: the callbacks a pool calls on its events (``pool.on(event, callback)``)."""

from __future__ import annotations

import logging
from typing import Any, Callable

from .errors import ConfigurationError

__all__ = ["EVENTS", "Listeners"]

logger = logging.getLogger("geventpool")

#: Events a listener can subscribe to with :meth:`ConnectionPool.on`.
EVENTS = ("connect", "checkout", "checkin", "discard", "close")


class Listeners:
    """The callbacks of each event.  Greenlet-safe (a list per event, copied before a call)."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[..., None]]] = {event: [] for event in EVENTS}

    def add(self, owner: str, event: str, callback: Callable[..., None]) -> None:
        """:raises ConfigurationError: unknown event, or ``callback`` not callable."""
        if event not in EVENTS:
            raise ConfigurationError(f"{owner}: event must be one of {EVENTS}, got {event!r}")
        if not callable(callback):
            raise ConfigurationError(f"{owner}: callback must be callable, got {callback!r}")
        self._callbacks[event].append(callback)

    def __getitem__(self, event: str) -> list[Callable[..., None]]:
        """The callbacks of ``event`` (empty: falsy)."""
        return self._callbacks[event]

    def emit(self, pool: Any, event: str, *args: Any) -> None:
        """Call every callback of ``event`` as ``callback(pool, *args)``; log what they raise."""
        for callback in list(self._callbacks[event]):
            try:
                callback(pool, *args)
            except Exception:
                logger.exception("%s: %s listener %r raised", getattr(pool, "name", pool), event, callback)

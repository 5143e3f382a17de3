"""A pool's background greenlets: one group, started on first use, killed by ``close()``.

Connector greenlets, the housekeeping loop and idle checks all run in the
group of the pool's :class:`Workers`, on the hub of the thread that first
used the pool.  Nothing starts before that.  A forked child gets new workers
(a new epoch): a greenlet of an older epoch sees it and stops without
touching the pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import gevent
import gevent.pool
from gevent import getcurrent

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = ["Workers"]

class Workers:
    """A pool's greenlet group, its hub and its epoch.  Greenlet-safe; :meth:`stop` yields."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool
        self.group: gevent.pool.Group | None = None  # created on first use, never in __init__
        self.hub: Any = None  # set by start(): the hub of the thread that uses the pool
        self.epoch = object()  # greenlets spawned in an older epoch (before a fork) stop

    def start(self) -> None:
        """Take the current thread's hub (one pool per hub) and make the group."""
        self.hub = gevent.get_hub()
        self.group = gevent.pool.Group()

    def spawn(self, func: Callable[..., None], *args: Any) -> None:
        """Run ``func(*args)`` in a greenlet of the group (after :meth:`start`)."""
        assert self.group is not None
        self.group.spawn(func, *args)

    def alive(self) -> list[Any]:
        """The greenlets of the group still alive, but the caller's."""
        current = getcurrent()
        return [g for g in list(self.group or ()) if not g.dead and g is not current]

    def stop(self, deadline: float) -> bool:
        """Kill every greenlet of the group but the caller's and wait for them until ``deadline``
        (0.1 s at least); whether all ended (False if the group was never made)."""
        group = self.group
        if group is None:
            return False
        current = getcurrent()
        for greenlet in list(group):
            if greenlet is not current:
                greenlet.kill(block=False)
        group.join(timeout=max(deadline - self.pool._clock(), 0.1))
        return all(greenlet.dead or greenlet is current for greenlet in group)

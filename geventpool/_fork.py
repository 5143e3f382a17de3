"""Fork awareness: every live pool forgets its inherited state in a child.

The hook runs in the child right after ``fork()``, before any other code, and
does no I/O: inherited connections are set aside without touching their sockets.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["register"]


class _ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def register(obj: _ForkAware) -> None:
    """Have ``obj._after_fork_in_child()`` called in every forked child."""
    _live.add(obj)


def _reset_all_in_child() -> None:
    for obj in list(_live):
        obj._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_all_in_child)

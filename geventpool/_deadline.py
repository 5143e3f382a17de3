"""Internal time limits that user code cannot swallow.

The pool bounds ``_new_connection``, ``_keepalive``, ``_reset`` and
``_close_connection`` with timers whose exception is a ``BaseException``
(as ``gevent.Timeout`` is): an ``except Exception`` or ``except OSError`` in
a hook never catches it.  Callers only ever see the documented errors
(:class:`~geventpool.ConnectTimeout`, or a discarded connection).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import gevent

__all__ = ["Expired", "limit"]


class Expired(BaseException):
    """An internal time limit passed (never raised to a pool's callers)."""


@contextmanager
def limit(seconds: float, what: str, to: type[BaseException] | None = None) -> Iterator[None]:
    """Bound the block by ``seconds``; on expiry raise :class:`Expired` into it.

    Outside the block the expiry becomes ``to(what)`` when ``to`` is given
    (``from None``: the hook's frames say nothing a caller needs), else stays
    :class:`Expired`.  An ``Expired`` of another, outer limit passes through.
    """
    expired: Expired | None = Expired(what)
    try:
        with gevent.Timeout(seconds, expired):
            yield
        return
    except Expired as error:
        if error is not expired or to is None:
            raise
        # Keep no frame of the hook alive (it may hold a half-open socket).
        error.__traceback__ = None
        expired = None
    raise to(what)  # outside the handler: no __context__ either

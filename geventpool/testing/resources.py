"""Counters of process resources, for leak checks in tests.

Take a baseline, exercise the code, release it, then compare (poll with
:func:`~geventpool.testing.wait_until`: sockets and greenlets are released
a hub turn or two after the code that owned them returned).
"""

from __future__ import annotations

import gc
import os

from gevent.hub import RawGreenlet

__all__ = ["fd_count", "greenlet_count"]


def fd_count() -> int:
    """Return the number of file descriptors this process has open.

    Reads ``/proc/self/fd`` (Linux; ``/dev/fd`` elsewhere).  The count
    includes the descriptor used to list the directory, which is the same
    on every call, so differences between two calls are exact.

    :raises OSError: the platform has neither directory.
    """
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return len(os.listdir(path))
    raise OSError("fd_count() needs /proc/self/fd or /dev/fd")


def greenlet_count() -> int:
    """Return the number of greenlets in this process that have not finished.

    Counts every greenlet the garbage collector can see, the hub and the
    main greenlet included; compare it with a baseline taken earlier.
    """
    return sum(1 for obj in gc.get_objects() if isinstance(obj, RawGreenlet) and not obj.dead)

"""The ledger of a connection budget shared by the worker processes of one gunicorn master.

One directory per master (:func:`directory_of`), owned by this OS user, mode 0700:

- ``workers``: how many workers the master wants now (its hooks write it: start, TTIN,
  TTOU, reload);
- ``lock``: ``flock``-ed around every read-modify-write of the records;
- ``pid-<pid>``: one record per worker process, ``{"held": {pool name: n}}``, ``flock``-ed by
  its owner for as long as the process lives (the kernel drops the lock when the process
  dies, SIGKILL included: that is how the others learn it is gone).

``held[name]`` bounds the connections that worker may have open for pool ``name``: it is
raised before the pool may grow and lowered only after the pool shrank, so the records
always cover what the processes really hold.  A worker grows only into room it sees in the
others' records, so their sum never exceeds the budget.  A dead worker's record keeps
counting for :data:`RECLAIM_AFTER` seconds after it is found dead, the time the server
takes to notice its closed sockets.

Every method blocks only for a few file operations; the lock is taken with non-blocking
attempts and ``gevent.sleep`` between them.  Greenlet-safe within a process (one greenlet
per process writes its record); not thread-safe.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import Callable

import gevent

from ..errors import PoolTimeout

__all__ = ["Ledger", "directory_of", "RECLAIM_AFTER"]

logger = logging.getLogger("geventpool.contrib.gunicorn")

#: Seconds a dead worker's record still counts after it was found dead (the server drops its sessions).
RECLAIM_AFTER = 1.0
#: Seconds to wait for the ledger's lock before giving up (it is held for microseconds).
LOCK_TIMEOUT = 10.0


def directory_of(master_pid: int) -> str:
    """Return the ledger directory of the gunicorn master ``master_pid`` (for this OS user)."""
    return os.path.join(tempfile.gettempdir(), f"geventpool-budget-{os.getuid()}-{master_pid}")


def _check_private(path: str) -> None:
    """Refuse a ledger directory that is a symlink or not this user's own (another user's /tmp trap)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"budget ledger {path!r} is not a private directory of uid {os.getuid()}")


class Ledger:
    """The shared records of one master's workers (see the module docstring)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._record_fd: int | None = None
        self._pid = 0
        self._dead: dict[str, float] = {}  # record file -> when this process found its owner dead

    # -- the master's side ----------------------------------------------------------------------

    def create(self) -> None:
        """Create the directory (mode 0700) unless it exists; refuse one that is not ours.

        :raises PermissionError: it exists and is a symlink, another user's, or not private.
        """
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            pass
        _check_private(self.path)

    def write_workers(self, count: int) -> None:
        """Publish the worker count the master wants (creates the directory on first use)."""
        self.create()
        temporary = os.path.join(self.path, f".workers.{os.getpid()}")
        with open(temporary, "w", encoding="ascii") as f:
            f.write(str(int(count)))
        os.replace(temporary, os.path.join(self.path, "workers"))

    def remove(self) -> None:
        """Delete the directory (the master, at exit)."""
        shutil.rmtree(self.path, ignore_errors=True)

    # -- a worker's side ------------------------------------------------------------------------

    def read_workers(self) -> int | None:
        """Return the worker count the master published, or None (no master hooks installed)."""
        try:
            with open(os.path.join(self.path, "workers"), encoding="ascii") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def exists(self) -> bool:
        """Whether the master created this ledger (its hooks are installed)."""
        return os.path.isdir(self.path)

    def exchange(self, decide: Callable[[dict[str, int]], dict[str, int]]) -> dict[str, int]:
        """Under the lock: sum the others' records by pool, ``held = decide(others)``, write ours.

        ``decide`` must not yield.  Returns ``held``.

        :raises PoolTimeout: the lock was not had within :data:`LOCK_TIMEOUT` seconds.
        :raises OSError: the directory is gone or not ours.
        """
        with self._locked():
            self._join()
            others = self._others()
            held = decide(others)
            self._write(held)
        return held

    def _join(self) -> None:
        """Create and lock this process's record (first call in each process; caller holds the lock)."""
        pid = os.getpid()
        if self._record_fd is not None and self._pid == pid:
            return
        if self._record_fd is not None:  # inherited through fork: the parent's, not ours
            with contextlib.suppress(OSError):
                os.close(self._record_fd)
        fd = os.open(self._record_path(pid), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._record_fd, self._pid = fd, pid

    def _record_path(self, pid: int) -> str:
        return os.path.join(self.path, f"pid-{pid}")

    def _write(self, held: dict[str, int]) -> None:
        assert self._record_fd is not None
        data = json.dumps({"held": held}).encode()
        os.ftruncate(self._record_fd, 0)
        os.pwrite(self._record_fd, data, 0)

    def _others(self) -> dict[str, int]:
        """Sum the records of the other workers, alive or dead for less than RECLAIM_AFTER."""
        totals: dict[str, int] = {}
        mine = f"pid-{os.getpid()}"
        now = self._clock()
        for entry in os.listdir(self.path):
            if not (entry.startswith("pid-") and entry[4:].isdigit()) or entry == mine:
                continue
            path = os.path.join(self.path, entry)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                alive = not _try_lock(fd)
                held = _read_held(fd)
            finally:
                os.close(fd)  # drops the lock we may have taken on a dead worker's record
            if not alive:
                found = self._dead.setdefault(entry, now)
                if now - found >= RECLAIM_AFTER:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    del self._dead[entry]
                    logger.debug("budget: reclaimed the share of dead worker %s: %s", entry, held)
                    continue
            for name, count in held.items():
                totals[name] = totals.get(name, 0) + count
        return totals

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        _check_private(self.path)
        fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = self._clock() + LOCK_TIMEOUT
            while not _try_lock(fd):
                if self._clock() >= deadline:
                    raise PoolTimeout(f"budget ledger {self.path!r}: lock not had within {LOCK_TIMEOUT:g} s")
                gevent.sleep(0.001)
            yield
        finally:
            os.close(fd)  # releases the flock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _read_held(fd: int) -> dict[str, int]:
    raw = os.pread(fd, 65536, 0)
    if not raw:
        return {}
    try:
        held = json.loads(raw)["held"]
    except (ValueError, KeyError, TypeError):
        logger.warning("budget: unreadable record (%d bytes) ignored", len(raw))
        return {}
    return {str(name): int(count) for name, count in held.items()}

"""The life cycle of a server process a test helper started itself (MariaDB, PgBouncer).

A subclass sets ``self._process`` (a ``subprocess.Popen``) in ``start()``,
``self.log_file``, and provides ``start()`` and ``cleanup()``; this class
gives it ``pid``, ``running``, ``stop()``, ``kill()``, ``restart()`` and the
context manager.  Waits are green (``gevent.sleep``); signals go by PID to the
process this object started, never to anything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from types import TracebackType
from typing import Any, TypeVar

import gevent

__all__ = ["ChildServer"]

S = TypeVar("S", bound="ChildServer")


class ChildServer:
    """A server process started by this object (see the module docstring)."""

    _process: subprocess.Popen[Any] | None = None
    log_file: str = ""

    def start(self: S, timeout: float = 30.0) -> S:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the running process this object started (None when down)."""
        process = self._process
        if process is None or process.poll() is not None:
            return None
        return int(process.pid)

    @property
    def running(self) -> bool:
        """Whether the process this object started is alive."""
        return self.pid is not None

    def _wait_exit(self, timeout: float) -> bool:
        process = self._process
        if process is None:
            return True
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                return False
            gevent.sleep(0.005)
        return True

    def _log_tail(self) -> str:
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the process down (SIGTERM) and wait for it; SIGKILL after ``timeout``."""
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(timeout):
            self.kill()

    def kill(self) -> None:
        """Kill the process with SIGKILL (by PID): its clients see their connections reset."""
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGCONT)  # a stopped (paused) process must be able to die
        os.kill(pid, signal.SIGKILL)
        self._wait_exit(10)

    def restart(self) -> None:
        """Stop and start again on the same port (clients must reconnect)."""
        self.stop()
        self.start()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

"""Helpers of the gunicorn test: a gunicorn process of our own, an HTTP client, socket counts."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from gevent import socket, subprocess

from geventpool.testing import wait_until

__all__ = ["APP_DIR", "Gunicorn", "Reply", "fetch", "established"]

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "gunicorn_app"


@dataclass
class Reply:
    """One HTTP exchange as the client saw it."""

    number: int
    started: float
    ended: float
    status: int = 0  # 0: no HTTP answer (the error says why)
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def fetch(port: int, number: int, uid: str, password: str, timeout: float = 30.0) -> Reply:
    """``GET /?n=<number>`` with Basic credentials over a new loopback connection (HTTP/1.0)."""
    started = time.monotonic()
    reply = Reply(number, started, started)
    token = base64.b64encode(f"{uid}:{password}".encode()).decode()
    request = (f"GET /?n={number} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Basic {token}\r\n\r\n").encode()
    try:
        with gevent.Timeout(timeout, TimeoutError(f"no answer within {timeout} s")):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(request)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        reply.status = int(head.split(b" ", 2)[1])
        reply.body = json.loads(body) if body else {}
    except (OSError, ValueError, IndexError) as error:
        reply.error = repr(error)
    reply.ended = time.monotonic()
    return reply


def established(port: int) -> int:
    """Count ESTABLISHED TCP connections whose local port is ``port`` (server side), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            continue
    return count


class Gunicorn:
    """``gunicorn -k gevent -w N`` running the example app (or ``app`` from ``app_dir``), started
    and stopped by PID."""

    def __init__(
        self, log_file: Path, port: int, env: dict[str, str], preload: bool, workers: int = 2,
        app_dir: Path = APP_DIR, app: str = "app:application",
    ) -> None:
        self.log_file = log_file
        self.port = port
        self.workers = workers
        args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-k", "gevent",
                "-w", str(workers), "--bind", f"127.0.0.1:{port}", "--log-level", "info",
                "--graceful-timeout", "10"]
        if _knows_setting("control_socket_disable"):  # newer gunicorn: no shared ~/.gunicorn socket
            args.append("--no-control-socket")
        if preload:
            args.append("--preload")
        args.append(app)
        self._args = args
        self._app_dir = app_dir
        self._env = {**os.environ, **env}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return int(self._proc.pid)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of the workers booted so far (from gunicorn's log)."""
        return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.log())]

    def live_workers(self) -> list[int]:
        """PIDs of the workers running now (booted, and still children of the master)."""
        return [pid for pid in self.worker_pids() if _parent_of(pid) == self.pid]

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker of this gunicorn (checked to be the master's child)."""
        assert _parent_of(pid) == self.pid, f"{pid} is not a worker of {self.pid}"
        os.kill(pid, signal.SIGKILL)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the master (TTIN, TTOU, HUP...)."""
        os.kill(self.pid, sig)

    def start(self, timeout: float = 30.0) -> Gunicorn:
        with open(self.log_file, "wb") as log:
            self._proc = subprocess.Popen(self._args, cwd=self._app_dir, env=self._env, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def ready() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self._proc.returncode}:\n{self.log()}")
            return len(re.findall(r"geventpool: worker \d+ built", self.log())) >= self.workers

        wait_until(ready, timeout, interval=0.05, message="both workers built their pools")
        return self

    def terminate(self, timeout: float = 20.0) -> float:
        """SIGTERM the master (a graceful stop) and wait for it; return the seconds it took."""
        proc = self._proc
        assert proc is not None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the master and its workers (by PID) if still running: the test's cleanup."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        workers = [pid for pid in self.worker_pids() if _parent_of(pid) == proc.pid]
        for pid in [*workers, proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _knows_setting(name: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS

    return any(setting.name == name for setting in KNOWN_SETTINGS)

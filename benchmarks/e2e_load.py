"""The load client of benchmarks/e2e.py: HTTP/1.1 keep-alive clients on gevent sockets.

:func:`run_load` starts ``clients`` greenlets, each with one keep-alive
connection of its own, sending the next request as soon as the previous
answer is read (a closed loop), until ``seconds`` have passed; requests in
flight then are finished and counted.  Every request is timed from the
first byte sent to the last byte of the answer read.  An answer other than
``200``, a reset or closed connection, or a request that takes longer than
``timeout`` counts as an error (the client then reconnects).

It uses ``gevent.socket`` directly and needs no monkey patching; it runs in
the calling thread's hub and is not thread-safe.  Standalone: never imported
by the package.
"""

from __future__ import annotations

import math
import socket as _socket
import time
from dataclasses import dataclass, field
from typing import Callable

import gevent
from gevent import socket

__all__ = ["LoadResult", "basic_get", "percentile", "run_load"]

_HEADER_END = b"\r\n\r\n"


@dataclass
class LoadResult:
    """What one load run measured (latencies of the successful requests, in seconds)."""

    clients: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Successful requests (answered ``200``)."""
        return len(self.latencies)

    @property
    def rps(self) -> float:
        """Successful requests per second of the run's wall time."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def quantile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latencies, in milliseconds (NaN if none succeeded)."""
        return percentile(self.latencies, q) * 1000.0

    def _error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def basic_get(path: str, authorization: str | None = None, host: str = "127.0.0.1") -> bytes:
    """The bytes of a keep-alive ``GET path`` (with an ``Authorization`` header when given)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Closed(Exception):
    """The server closed the connection."""


class _Connection:
    """One keep-alive connection: send a request, read one answer (Content-Length framed)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``; return (status code, whether the server keeps the connection open)."""
        self.sock.sendall(request)
        while _HEADER_END not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(_HEADER_END, 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        keep = lines[0].startswith("HTTP/1.1")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                keep = value.strip().lower() != "close"
        while len(self.buffer) < length:
            self._fill()
        self.buffer = self.buffer[length:]
        return status, keep

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed("connection closed by the server")
        self.buffer += data

    def close(self) -> None:
        self.sock.close()


def run_load(
    address: tuple[str, int],
    clients: int,
    seconds: float,
    request_for: Callable[[int], bytes],
    *,
    timeout: float = 30.0,
) -> LoadResult:
    """Load ``address`` from ``clients`` keep-alive connections for ``seconds``; return the figures.

    ``request_for(n)`` gives the bytes of the n-th request of the run (n counts
    across all clients, from 0).  Blocks the calling greenlet until every
    client has finished its last request.

    :raises ValueError: ``clients`` < 1 or ``seconds`` <= 0.
    """
    if clients < 1:
        raise ValueError(f"run_load: clients must be >= 1, got {clients!r}")
    if not seconds > 0:
        raise ValueError(f"run_load: seconds must be > 0, got {seconds!r}")
    result = LoadResult(clients=clients, elapsed=0.0)
    counter = [0]
    started = time.perf_counter()
    deadline = started + seconds
    finished: list[float] = []

    def client() -> None:
        conn: _Connection | None = None
        try:
            while time.perf_counter() < deadline:
                number = counter[0]
                counter[0] += 1
                request = request_for(number)
                begun = time.perf_counter()
                timer = gevent.Timeout(timeout)
                timer.start()
                kind = ""
                try:
                    if conn is None:
                        conn = _Connection(address)
                    status, keep = conn.exchange(request)
                except gevent.Timeout as error:
                    if error is not timer:
                        raise  # not ours: the caller's
                    kind = "timeout"
                except (OSError, _Closed, ValueError, IndexError) as error:
                    kind = type(error).__name__
                finally:
                    timer.close()
                if kind:
                    result._error(kind)
                    if conn is not None:
                        conn.close()
                    conn = None
                    gevent.sleep(0.005)  # a refused connect would otherwise spin until the deadline
                    continue
                if status == 200:
                    result.latencies.append(time.perf_counter() - begun)
                else:
                    result._error(f"HTTP {status}")
                if not keep:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()
            finished.append(time.perf_counter())

    jobs = [gevent.spawn(client) for _ in range(clients)]
    gevent.joinall(jobs, raise_error=True)
    result.elapsed = max(finished) - started
    return result

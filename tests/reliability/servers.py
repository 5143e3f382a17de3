"""The TCP pool the reliability tests and the soak runner use, and its line server.

:class:`LineServer` (shared with the core tests) is a real gevent server on
127.0.0.1 that can be stopped (every open connection reset), restarted on the
same port and paused (it stops accepting and answering, like a SIGSTOPped
process).  :class:`TcpPool` is a pool of plain sockets to it, as a user would
write one.
"""

from __future__ import annotations

import socket
from typing import Any

import gevent
import gevent.socket

import geventpool

from ..core.helpers import LineServer, read_line, reset  # one line-protocol server for both suites

__all__ = ["LineServer", "TcpPool", "echo", "read_line", "reset"]


def echo(conn: socket.socket, text: bytes = b"hello\n") -> bytes:
    """Send a line and read it back; a wrong answer is a ``ConnectionError`` (the stream is off)."""
    conn.sendall(text)
    answer = read_line(conn)
    if answer != text:
        raise ConnectionError(f"sent {text!r}, got {answer!r}")
    return answer


class TcpPool(geventpool.ConnectionPool[socket.socket]):
    """A pool of line-protocol sockets; ``op_timeout`` bounds every recv (``socket.timeout``).

    With ``track=True`` it keeps every socket it opened, so a test can check
    that each one is either in the pool or closed (:meth:`leaked`).
    """

    def __init__(
        self, address: tuple[str, int], *args: Any, op_timeout: float = 1.0, track: bool = False,
        **kwargs: Any,
    ) -> None:
        self.address = address
        self.op_timeout = op_timeout
        self.connects = 0
        self.track = track
        self.opened: list[socket.socket] = []
        super().__init__(*args, **kwargs)

    def _new_connection(self) -> socket.socket:
        self.connects += 1
        sock = gevent.socket.create_connection(self.address)
        sock.settimeout(self.op_timeout)
        if self.track:
            self.opened.append(sock)
        return sock

    def _keepalive(self, conn: socket.socket) -> None:
        conn.sendall(b"PING\n")
        if read_line(conn) != b"PONG\n":
            raise ConnectionError("bad keepalive answer")

    def open_sockets(self) -> set[int]:
        """ids of the tracked sockets still open (and forget the closed ones)."""
        self.opened = [s for s in self.opened if s.fileno() != -1]
        return {id(s) for s in self.opened}

    def pooled_sockets(self) -> set[int]:
        return {id(slot.conn) for slot in self.snapshot().slots}

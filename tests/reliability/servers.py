"""A line-protocol TCP server and the TCP pool the reliability tests and the soak runner use.

:class:`LineServer` is a real gevent server on 127.0.0.1 that can be stopped
(every open connection reset), restarted on the same port and paused (it
stops accepting and answering, like a SIGSTOPped process).  :class:`TcpPool`
is a pool of plain sockets to it, as a user would write one.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket

import geventpool

from ..core.helpers import read_line, reset  # the same line-protocol primitives

__all__ = ["LineServer", "TcpPool", "echo", "read_line", "reset"]


class LineServer:
    """Echo lines; ``PING`` -> ``PONG``; ``STAT <port>`` -> bytes received from that client port.

    ``stop()`` closes the listener and resets every connection (a crash);
    ``start()`` listens again on the same port; ``pause()``/``resume()``
    freeze and thaw it (accepted connections wait in the backlog, requests
    are not answered).  Greenlet-safe, not thread-safe.
    """

    def __init__(self) -> None:
        self.port = 0
        self._server: gevent.server.StreamServer | None = None
        self._listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.accepted = 0
        self.max_open = 0
        self.received: dict[int, int] = {}
        self.generation = 0
        self._awake = gevent.event.Event()
        self._awake.set()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def connections(self) -> int:
        """Client connections open now (server side)."""
        return len(self.open)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LineServer:
        if self._server is not None:
            return self
        listener = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.port:
            listener.bind(("127.0.0.1", self.port))
        else:
            # below the kernel's ephemeral range: while the server is down, no client socket
            # can take its port as a local port (which would make the restart fail)
            for _ in range(100):
                try:
                    listener.bind(("127.0.0.1", random.randint(20000, 32000)))
                    break
                except OSError:
                    continue
            else:
                listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        self.port = listener.getsockname()[1]
        self._listener = listener
        generation = self.generation
        self._server = gevent.server.StreamServer(listener, lambda s, a: self._handle(generation, s, a))
        self._server.start()
        if not self._awake.is_set():
            self._server.stop_accepting()
        return self

    def stop(self) -> None:
        self.generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for sock in list(self.open):
            reset(sock)
        self.open.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LineServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def pause(self) -> None:
        self._awake.clear()
        if self._server is not None:
            self._server.stop_accepting()

    def resume(self) -> None:
        self._awake.set()
        if self._server is not None:
            self._server.start_accepting()

    def _answer(self, sock: socket.socket, port: int, line: bytes) -> None:
        self.received[port] = self.received.get(port, 0) + len(line)
        if line == b"PING\n":
            sock.sendall(b"PONG\n")
        elif line.startswith(b"STAT "):
            sock.sendall(b"%d\n" % self.received.get(int(line.split()[1]), 0))
        else:
            sock.sendall(line)

    def _handle(self, generation: int, sock: socket.socket, peer: tuple[str, int]) -> None:
        if generation != self.generation:
            reset(sock)
            return
        self.accepted += 1
        self.open.add(sock)
        self.max_open = max(self.max_open, len(self.open))
        try:
            buffered = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                self._awake.wait()
                if generation != self.generation:
                    break
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    self._answer(sock, peer[1], line + b"\n")
        except OSError:
            pass
        finally:
            self.open.discard(sock)
            sock.close()


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
        return {id(slot.conn) for slot in self._idle} | {id(slot.conn) for slot in self._busy.values()}

"""A real TCP server and pool for the core tests: a line protocol on 127.0.0.1."""

from __future__ import annotations

import functools
import socket
import struct
from typing import Any

import gevent
import gevent.server
import gevent.socket

import geventpool


class LineServer:
    """Echo lines; answer PING with PONG; SLOW <s> sleeps then answers; stoppable on one port.

    ``stop()`` closes the listener and resets every open connection (a crash);
    ``start()`` listens again on the same port.  Counts connections per peer.
    """

    def __init__(self) -> None:
        self.port = 0
        self._server: gevent.server.StreamServer | None = None
        self.open: set[socket.socket] = set()
        self.accepted = 0
        self.max_open = 0
        self.received: dict[int, int] = {}  # client port -> bytes received
        self.generation = 0  # bumped by stop(): handlers of an older server reset their socket

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> LineServer:
        listener = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(512)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._server = gevent.server.StreamServer(listener, functools.partial(self._handle, self.generation))
        self._server.start()
        return self

    def stop(self) -> None:
        self.generation += 1
        if self._server is not None:
            self._server.close()
            self._listener.close()  # resets connections still in the backlog
            self._server = None
        for sock in list(self.open):
            reset(sock)
        self.open.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _answer(self, sock: socket.socket, peer: tuple[str, int], line: bytes) -> None:
        self.received[peer[1]] = self.received.get(peer[1], 0) + len(line)
        if line == b"PING\n":
            sock.sendall(b"PONG\n")
        elif line.startswith(b"SLOW "):
            gevent.sleep(float(line.split()[1]))
            sock.sendall(b"DONE\n")
        else:
            sock.sendall(line)

    def _handle(self, generation: int, sock: socket.socket, peer: tuple[str, int]) -> None:
        if generation != self.generation:  # accepted just before stop(): it dies with the server
            reset(sock)
            return
        self.accepted += 1
        self.open.add(sock)
        self.max_open = max(self.max_open, len(self.open))
        try:
            # no makefile(): it would keep the fd open after close(), hiding a crash
            buffered = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    self._answer(sock, peer, line + b"\n")
        except OSError:
            pass
        finally:
            self.open.discard(sock)
            sock.close()


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class LinePool(geventpool.ConnectionPool[socket.socket]):
    """A pool of line-protocol connections, as a user would write one."""

    def __init__(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> None:
        self.address = address
        self.connects = 0
        super().__init__(*args, **kwargs)

    def _new_connection(self) -> socket.socket:
        self.connects += 1
        return gevent.socket.create_connection(self.address)

    def _keepalive(self, conn: socket.socket) -> None:
        conn.sendall(b"PING\n")
        if read_line(conn) != b"PONG\n":
            raise OSError("bad keepalive answer")


def read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionResetError("connection closed by server")
        data += chunk
    return data


def echo(conn: socket.socket, text: bytes = b"hello\n") -> bytes:
    conn.sendall(text)
    answer = read_line(conn)
    if answer != text:
        raise AssertionError(f"sent {text!r}, got {answer!r}")
    return answer

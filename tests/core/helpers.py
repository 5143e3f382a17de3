"""A real TCP server and pool for the core tests: a line protocol on 127.0.0.1."""

from __future__ import annotations

import random
import socket
import struct
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket

import geventpool


class LineServer:
    """Echo lines; ``PING`` -> ``PONG``; ``STAT <port>`` -> bytes received from that client port;
    ``SLOW <s>`` sleeps ``s`` seconds, then answers ``DONE``.

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
        elif line.startswith(b"SLOW "):
            gevent.sleep(float(line.split()[1]))
            sock.sendall(b"DONE\n")
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

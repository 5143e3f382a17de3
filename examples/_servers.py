"""Small in-process servers (and check helpers) shared by the example scripts.

Everything here listens on 127.0.0.1 only and runs as greenlets of the
example's own process, so an example needs no network and no other program
(except ``openssl`` for :func:`make_certificate`).

:class:`LineServer` speaks a tiny line protocol, one request per line:

==========================  ===========================================================
request                     reply
==========================  ===========================================================
``PING``                    ``PONG\\n``
``STARTTLS``                ``OK\\n`` then a TLS handshake (``NO\\n`` if it has no TLS)
``LOGIN: <name>``           nothing; remembered for ``PASS``
``PASS: <password>``        ``OK`` if the pair is in ``users``, else ``NO`` (2 bytes)
anything else (data)        ``OK`` (2 bytes); ``ERR\\n`` before a required login
==========================  ===========================================================

Faults are queued with :meth:`LineServer.inject` and consumed one per request:
``"reset"`` (read the request, then reset the connection), ``"error"`` (reply
``ERR\\n``), ``"garbage"`` (reply ``???\\n``).  :meth:`LineServer.reset_all`
resets every open connection; :meth:`LineServer.kill` also closes the listener,
and :meth:`LineServer.restart` listens again on the same port.
"""

from __future__ import annotations

import collections
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import Callable

import gevent
import gevent.pool
from gevent import socket, ssl

__all__ = ["LineServer", "make_certificate", "wait_until", "expect"]

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class LineServer:
    """A line-protocol TCP server on 127.0.0.1, run by greenlets of this process.

    ``port=0`` picks a free port; :meth:`restart` reuses it.  ``tls`` is a
    server-side :class:`ssl.SSLContext` for ``STARTTLS``; ``users`` maps login
    names to passwords (when given, data requests need a login first);
    ``delay`` is the seconds of "work" before each reply.  Greenlet-safe;
    not thread-safe.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.port = port
        self.tls = tls
        self.users = users
        self.delay = delay
        #: Connections accepted since creation (all runs).
        self.accepted = 0
        #: Requests seen, by first word (``PING``, ``STARTTLS``, ``DATA``...).
        self.requests: collections.Counter[str] = collections.Counter()
        self._faults: collections.deque[str] = collections.deque()
        self._listener: socket.socket | None = None
        self._acceptor: gevent.Greenlet | None = None
        self._handlers = gevent.pool.Group()
        self._clients: set[socket.socket] = set()

    # -- lifecycle -----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)``."""
        return ("127.0.0.1", self.port)

    @property
    def running(self) -> bool:
        """Whether the listener is open."""
        return self._listener is not None

    @property
    def connections(self) -> int:
        """Client connections open right now."""
        return len(self._clients)

    def start(self) -> LineServer:
        """Listen (on the same port as before, after a :meth:`kill`); return self."""
        if self._listener is not None:
            raise RuntimeError("server already running")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(512)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = gevent.spawn(self._accept_loop, listener)
        return self

    restart = start

    def reset_all(self) -> int:
        """Reset (RST) every open client connection; return how many there were."""
        clients = list(self._clients)
        for sock in clients:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        # each handler closes its socket on the way out: with linger 0, a reset
        self._handlers.kill(block=True)
        return len(clients)

    def kill(self) -> int:
        """Close the listener and reset every connection, as a crashed server would.

        Returns the number of connections reset.
        """
        listener, self._listener = self._listener, None
        if self._acceptor is not None:
            self._acceptor.kill(block=True)
            self._acceptor = None
        if listener is not None:
            listener.close()
        return self.reset_all()

    stop = kill

    def __enter__(self) -> LineServer:
        if self._listener is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    # -- faults ----------------------------------------------------------------

    def inject(self, fault: str, count: int = 1) -> None:
        """Queue ``count`` faults (``"reset"``, ``"error"`` or ``"garbage"``) for the next requests."""
        if fault not in ("reset", "error", "garbage"):
            raise ValueError(f"unknown fault {fault!r}")
        self._faults.extend([fault] * count)

    # -- serving -----------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # listener closed
            self.accepted += 1
            self._handlers.spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        self._clients.add(sock)
        session = _Session(self, sock)
        try:
            session.run()
        except OSError:
            pass
        finally:
            self._clients.discard(session.sock)
            self._clients.discard(sock)
            session.sock.close()


class _Session:
    """One client connection of a :class:`LineServer`."""

    def __init__(self, server: LineServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.buffer = b""
        self.login: str | None = None
        self.logged_in = False

    def readline(self) -> bytes | None:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    def run(self) -> None:
        server = self.server
        while True:
            line = self.readline()
            if line is None:
                return
            word = line.split(b" ", 1)[0].rstrip(b":").decode("ascii", "replace").upper()
            if word not in ("PING", "STARTTLS", "LOGIN", "PASS"):
                word = "DATA"
            server.requests[word] += 1
            if server.delay:
                gevent.sleep(server.delay)
            fault = server._faults.popleft() if server._faults else None
            if fault == "reset":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                return
            if fault is not None:
                self.sock.sendall(b"ERR\n" if fault == "error" else b"???\n")
                continue
            self.answer(word, line)

    def answer(self, word: str, line: bytes) -> None:
        server = self.server
        if word == "PING":
            self.sock.sendall(b"PONG\n")
        elif word == "STARTTLS":
            if server.tls is None:
                self.sock.sendall(b"NO\n")
                return
            self.sock.sendall(b"OK\n")
            server._clients.discard(self.sock)
            self.sock = server.tls.wrap_socket(self.sock, server_side=True)
            server._clients.add(self.sock)
        elif word == "LOGIN":
            self.login = line.split(b":", 1)[-1].strip().decode("utf-8", "replace")
        elif word == "PASS":
            password = line.split(b":", 1)[-1].strip().decode("utf-8", "replace")
            users = server.users or {}
            self.logged_in = self.login is not None and users.get(self.login) == password
            self.sock.sendall(b"OK" if self.logged_in else b"NO")
        elif server.users is not None and not self.logged_in:
            self.sock.sendall(b"ERR\n")
        else:
            self.sock.sendall(b"OK")


def make_certificate(directory: str | None = None) -> tuple[str, str]:
    """Create a self-signed certificate for ``localhost``/127.0.0.1 with the ``openssl`` CLI.

    Returns ``(certfile, keyfile)`` in ``directory`` (a new temporary directory
    by default).  Raises ``SystemExit`` with a clear message if ``openssl``
    is missing or fails.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("this example needs the openssl command (apt-get install openssl)")
    if directory is None:
        directory = tempfile.mkdtemp(prefix="geventpool-example-")
    certfile = os.path.join(directory, "cert.pem")
    keyfile = os.path.join(directory, "key.pem")
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", keyfile, "-out", certfile,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"openssl failed ({result.returncode}): {result.stderr.strip()}")
    return certfile, keyfile


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` (yielding to other greenlets) until it is true; exit if ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise SystemExit(f"FAILED: timed out after {timeout:g} s waiting until {what}")
        gevent.sleep(0.01)


def expect(condition: object, message: str) -> None:
    """Print ``ok: message`` if ``condition`` holds, else exit with ``FAILED: message``."""
    if not condition:
        raise SystemExit(f"FAILED: {message}")
    print(f"ok: {message}")
    sys.stdout.flush()

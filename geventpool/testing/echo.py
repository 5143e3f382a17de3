"""EchoServer: a real TCP server on 127.0.0.1 that sends back what it receives.

The simplest upstream for a :class:`~geventpool.testing.FaultProxy` or a
TCP pool under test: every byte is echoed, so a client knows exactly what
it should read.
"""

from __future__ import annotations

import socket
from types import TracebackType

import gevent
import gevent.pool
from gevent import socket as gsocket

__all__ = ["EchoServer"]


class EchoServer:
    """A gevent TCP echo server on ``host`` (127.0.0.1) at a free port.

    ``with EchoServer() as server: connect to server.address``.  It echoes
    each connection until the client sends EOF, then closes it.  Runs in
    the hub of the thread that starts it; greenlet-safe, not thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._port = 0
        self._listener: gsocket.socket | None = None
        self._group: gevent.pool.Group | None = None
        self._clients: set[gsocket.socket] = set()
        #: Connections accepted since the server was created.
        self.accepted = 0

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to."""
        return (self.host, self._port)

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._clients)

    def start(self) -> EchoServer:
        """Listen and serve; return ``self``.  No-op if running; a restart reuses the port.

        :raises OSError: the port cannot be bound.
        """
        if self._listener is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = gsocket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._port))
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._group = gevent.pool.Group()
        self._group.spawn(self._accept_loop, listener)
        return self

    def stop(self) -> None:
        """Stop listening and close every connection; idempotent."""
        listener, self._listener = self._listener, None
        group, self._group = self._group, None
        if listener is not None:
            listener.close()
        if group is not None:
            group.kill(block=True)
        for client in list(self._clients):
            client.close()
        self._clients.clear()

    def _accept_loop(self, listener: gsocket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                if listener is not self._listener:
                    return
                gevent.sleep(0.05)
                continue
            self.accepted += 1
            self._clients.add(client)
            assert self._group is not None
            self._group.spawn(self._echo, client)

    def _echo(self, client: gsocket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass  # the client reset: nothing to echo to
        finally:
            self._clients.discard(client)
            client.close()

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EchoServer {self.host}:{self._port} connections={len(self._clients)}>"

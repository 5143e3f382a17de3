"""FaultProxy: a TCP relay on gevent that injects network faults on demand.

Put it between the code under test and a real server, then switch its mode
at any moment of the test — the new mode applies to the connections that
are open and to those that come later:

==============  ==============================================================
``pass``        relay both ways
``delay``       relay each chunk ``ms`` milliseconds after it arrived, each way
                (network latency: chunks in flight overlap, order is kept)
``drip``        relay at most ``bytes_per_sec`` bytes per second, each way
``stall``       keep reading, relay nothing: data is held until the mode changes
``blackhole``   keep the sockets open, drop everything both ways (data is lost)
``reset``       reset (RST) every connection; reset new ones right after accept
``half_close``  send EOF (``shutdown(SHUT_WR)``) to the client; keep relaying
                the client's bytes to the server and drop the server's
``truncate``    close the connection once ``n`` response bytes were relayed
``corrupt``     flip (XOR 0xFF) response byte ``n``
``refuse``      stop listening: new connects fail with ECONNREFUSED
``deaf``        listen but never accept, backlog full: connects hang until
                the client's own timeout (Linux)
``flap``        alternate ``refuse`` and ``pass`` every ``period`` seconds,
                starting with ``refuse``
==============  ==============================================================

Response bytes (``truncate``, ``corrupt``) are those from the server to the
client, counted per connection from the moment the mode was set.  In
``refuse``, ``deaf`` and ``flap`` the connections already open are relayed
as in ``pass``.
"""

from __future__ import annotations

import collections
import logging
import socket
import time
from types import TracebackType
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool
from gevent import getcurrent
from gevent import socket as gsocket

from ..errors import ConfigurationError
from ._modes import MODES, check_mode, is_number, is_port
from ._sockets import reset, resolve, shutdown_write

__all__ = ["FaultProxy", "MODES"]

logger = logging.getLogger("geventpool.testing")


_BUFSIZE = 65536


class _Link:
    """One client connection and its upstream connection."""

    __slots__ = (
        "client",
        "upstream",
        "number",
        "closed",
        "to_upstream_open",
        "to_client_open",
        "pumps_done",
        "upstream_dropped",
        "greenlets",
        "generation",
        "mode_bytes",
        "delayed",
        "senders",
    )

    def __init__(self, client: gsocket.socket, number: int, generation: int) -> None:
        self.client = client
        self.upstream: gsocket.socket | None = None
        self.number = number
        self.closed = False
        self.to_upstream_open = True  # whether we may still send to the server
        self.to_client_open = True  # whether we may still send to the client
        self.pumps_done = 0
        self.upstream_dropped = False  # closed by truncate: its relay ends quietly
        self.greenlets: list[gevent.Greenlet] = []
        self.generation = generation  # mode generation that mode_bytes counts in
        self.mode_bytes = 0  # response bytes relayed since that mode was set
        # chunks waiting for their time (delay mode), per direction: [to upstream, to client]
        self.delayed: tuple[collections.deque[tuple[float, bytes]], ...] = (
            collections.deque(), collections.deque()
        )
        self.senders: list[gevent.Greenlet | None] = [None, None]


class FaultProxy:
    """A fault-injecting TCP proxy listening on ``host`` (127.0.0.1) at a free port.

    ``with FaultProxy(("127.0.0.1", server_port)) as proxy:`` — point the
    code under test at :attr:`address`, then call :meth:`set_mode`.  The
    port stays the same for the proxy's life, across every mode and a
    :meth:`stop`/:meth:`start` cycle: a bound, never-listening socket holds
    it while nothing listens.  If the server refuses the proxy's connect,
    the client's connection is reset.

    The proxy runs in greenlets of the hub of the thread that starts it, so
    the code under test must be cooperative (gevent sockets or monkey
    patching).  Greenlet-safe; not thread-safe.  :meth:`start`,
    :meth:`stop`, :meth:`set_mode` and :meth:`reset_all` may yield.

    :param upstream: the server, ``(host, port)``.
    :param host: address to listen on (keep it on loopback).
    :param port: port to listen on; 0 picks a free one.
    :param connect_timeout: seconds the proxy waits to connect upstream.
    :raises ConfigurationError: an argument is invalid (the message names it).
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        if (
            not isinstance(upstream, tuple)
            or len(upstream) != 2
            or not isinstance(upstream[0], str)
            or not is_port(upstream[1], allow_zero=False)
        ):
            raise ConfigurationError(
                f"FaultProxy: upstream must be (host, port) with 1 <= port <= 65535, got {upstream!r}"
            )
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"FaultProxy: host must be a non-empty str, got {host!r}")
        if not is_port(port, allow_zero=True):
            raise ConfigurationError(f"FaultProxy: port must be an int in 0..65535, got {port!r}")
        if not is_number(connect_timeout) or connect_timeout <= 0:
            raise ConfigurationError(
                f"FaultProxy: connect_timeout must be a finite number > 0, got {connect_timeout!r}"
            )
        self.upstream = upstream
        self.host = host
        self.connect_timeout = float(connect_timeout)
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._port = port
        self._mode = "pass"
        self._params: dict[str, float] = {}
        self._generation = 0
        self._mode_changed = gevent.event.Event()
        self._lock = gevent.lock.Semaphore()
        self._group: gevent.pool.Group | None = None
        self._reservation: gsocket.socket | None = None
        self._listening = "closed"  # "accept", "deaf" or "closed"
        self._listener: gsocket.socket | None = None
        self._acceptor: gevent.Greenlet | None = None
        self._deaf: gsocket.socket | None = None
        self._fillers: list[gsocket.socket] = []
        self._flapper: gevent.Greenlet | None = None
        self._links: set[_Link] = set()
        #: Connections accepted since the proxy was created.
        self.accepted = 0
        #: Bytes relayed from clients to the server.
        self.bytes_upstream = 0
        #: Bytes relayed from the server to clients.
        self.bytes_downstream = 0

    # -- public face ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to point the code under test at."""
        return (self.host, self._port)

    @property
    def mode(self) -> str:
        """The current mode's name."""
        return self._mode

    @property
    def params(self) -> dict[str, float]:
        """The current mode's parameters (a copy)."""
        return dict(self._params)

    @property
    def connections(self) -> int:
        """Client connections open now (including those whose upstream is being connected)."""
        return len(self._links)

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not since."""
        return self._group is not None

    def start(self) -> FaultProxy:
        """Take the port and listen as the current mode says; return ``self``.  No-op if running.

        :raises OSError: the port cannot be bound (e.g. taken by another
            process between a :meth:`stop` and this call).
        """
        with self._lock:
            if self._group is not None:
                return self
            reservation = self._bind(listen=None)
            self._reservation = reservation
            self._port = reservation.getsockname()[1]
            self._group = gevent.pool.Group()
            try:
                self._apply_listening()
            except BaseException:
                self._shutdown()
                raise
            logger.debug("%r started", self)
            return self

    def stop(self) -> None:
        """Stop listening, reset every connection, end every greenlet; idempotent.

        Every socket the proxy opened is closed when this returns.
        """
        with self._lock:
            self._shutdown()

    def set_mode(self, mode: str, **params: float) -> None:
        """Switch to ``mode`` (see the module docstring); it applies to open connections too.

        ``set_mode("delay", ms=50)``.  Returns once the listening socket is
        in its new state (for ``deaf``, once its backlog is full).

        :raises ConfigurationError: unknown mode, or a missing, unexpected or
            invalid parameter (the message names it).
        """
        check_mode(mode, params)
        with self._lock:
            self._stop_flapper()
            self._mode = mode
            self._params = dict(params)
            self._generation += 1
            changed, self._mode_changed = self._mode_changed, gevent.event.Event()
            changed.set()  # wakes relays holding data in "stall"
            logger.debug("%r: mode %s %r", self, mode, params)
            if self._group is None:
                return
            self._apply_listening()
            for link in list(self._links):
                self._apply_to_link(link)

    def reset_all(self) -> None:
        """Reset (RST) every open connection now; the mode does not change."""
        for link in list(self._links):
            self._abort(link)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        host, port = self.upstream
        params = "".join(f" {name}={value:g}" for name, value in self._params.items())
        return (
            f"<FaultProxy {self.host}:{self._port} -> {host}:{port} mode={self._mode}{params} "
            f"connections={len(self._links)} accepted={self.accepted}>"
        )

    # -- listening ------------------------------------------------------------------------

    def _bind(self, listen: int | None) -> gsocket.socket:
        sock = gsocket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
            if listen is not None:
                sock.listen(listen)
        except BaseException:
            sock.close()
            raise
        return sock

    def _apply_listening(self) -> None:
        if self._mode == "refuse":
            self._listen("closed")
        elif self._mode == "deaf":
            self._listen("deaf")
        elif self._mode == "flap":
            self._listen("closed")
            self._flapper = self._spawn(self._flap, self._params["period"])
        else:
            self._listen("accept")

    def _listen(self, state: str) -> None:
        """Put the port in ``state`` (the caller holds the lock)."""
        if state == self._listening:
            return
        self._close_listeners()
        if state == "accept":
            listener = self._bind(listen=128)
            self._listener = listener
            self._acceptor = self._spawn(self._accept_loop, listener)
        elif state == "deaf":
            self._deaf = self._bind(listen=0)
            self._fill_backlog()
        self._listening = state

    def _fill_backlog(self) -> None:
        # listen(0) queues one connection on Linux; once it is queued, the
        # kernel drops further SYNs, and a second pending connect covers
        # kernels that queue two.  Nobody ever accepts them.
        first = gsocket.socket(self._family, socket.SOCK_STREAM)
        self._fillers.append(first)
        first.settimeout(self.connect_timeout)
        first.connect(self.address)
        second = gsocket.socket(self._family, socket.SOCK_STREAM)
        self._fillers.append(second)
        second.setblocking(False)
        second.connect_ex(self.address)

    def _close_listeners(self) -> None:
        # gevent defers closing a socket a greenlet waits on, which would
        # keep the port listening: end the acceptor first.
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None and acceptor is not getcurrent():
            acceptor.kill(block=True)
        for sock in (self._listener, self._deaf, *self._fillers):
            if sock is not None:
                sock.close()
        self._listener = self._deaf = None
        self._fillers = []
        self._listening = "closed"

    def _flap(self, period: float) -> None:
        while True:
            for state in ("accept", "closed"):
                gevent.sleep(period)
                with self._lock:
                    self._listen(state)

    def _stop_flapper(self) -> None:
        flapper, self._flapper = self._flapper, None
        if flapper is not None:
            flapper.kill(block=True)

    def _accept_loop(self, listener: gsocket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError as error:
                if listener is not self._listener:
                    return
                # EMFILE and the like: do not spin
                logger.warning("%r: accept failed: %r", self, error)
                gevent.sleep(0.05)
                continue
            self.accepted += 1
            self._spawn(self._serve, client, self.accepted)

    def _spawn(self, func: Any, *args: Any) -> gevent.Greenlet:
        assert self._group is not None
        greenlet: gevent.Greenlet = self._group.spawn(func, *args)
        return greenlet

    def _shutdown(self) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        self._stop_flapper()
        self._close_listeners()
        for link in list(self._links):
            self._abort(link)
        current = getcurrent()
        for greenlet in list(group):
            if greenlet is not current:
                greenlet.kill(block=False)
        group.join()
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None
        logger.debug("%r stopped", self)

    # -- relaying -------------------------------------------------------------------------

    def _serve(self, client: gsocket.socket, number: int) -> None:
        link = _Link(client, number, self._generation)
        self._links.add(link)
        if self._mode == "reset":
            self._abort(link)
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            family, address = resolve(*self.upstream)
            upstream = gsocket.socket(family, socket.SOCK_STREAM)
            link.upstream = upstream
            upstream.settimeout(self.connect_timeout)
            upstream.connect(address)
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            logger.debug("%r: connection %d: upstream connect failed: %r", self, number, error)
            self._abort(link)
            return
        if link.closed:
            return
        link.generation = self._generation
        self._apply_to_link(link)
        if link not in self._links:
            return  # the mode reset it
        link.greenlets.append(getcurrent())
        link.greenlets.append(self._spawn(self._pump, link, False))
        self._pump(link, True)

    def _apply_to_link(self, link: _Link) -> None:
        """Do what the current mode does to a connection at once (no yield)."""
        if link.closed or link.upstream is None:
            return  # a link still connecting gets the mode when it is connected
        mode = self._mode
        if mode == "reset":
            self._abort(link)
        elif mode == "half_close":
            self._close_to_client(link)
        elif mode == "truncate" and self._params["n"] <= 0:
            self._truncate(link)

    def _pump(self, link: _Link, to_upstream: bool) -> None:
        source = link.client if to_upstream else link.upstream
        assert source is not None
        try:
            while True:
                try:
                    data = source.recv(_BUFSIZE)
                except OSError:
                    if not link.closed and (to_upstream or not link.upstream_dropped):
                        self._abort(link)  # pass the reset on
                    return
                if link.closed:
                    return
                if not data:
                    sender = link.senders[0 if to_upstream else 1]
                    if sender is not None:
                        sender.join()  # the delayed chunks go first, then the EOF
                    if not link.closed:
                        self._pass_eof(link, to_upstream)
                    return
                self._forward(link, to_upstream, data)
                if link.closed or (not to_upstream and link.upstream_dropped):
                    return
        finally:
            link.pumps_done += 1
            if link.pumps_done == 2 and not link.closed:
                self._close(link)

    def _pass_eof(self, link: _Link, to_upstream: bool) -> None:
        if to_upstream and link.to_upstream_open:
            link.to_upstream_open = False
            shutdown_write(link.upstream)
        elif not to_upstream:
            self._close_to_client(link)

    def _forward(self, link: _Link, to_upstream: bool, data: bytes) -> None:
        while True:
            changed = self._mode_changed
            if self._mode != "stall":
                break
            changed.wait()  # hold the data until the mode changes
            if link.closed:
                return
        mode = self._mode
        if mode == "blackhole":
            return
        if to_upstream:
            target = link.upstream if link.to_upstream_open else None
        else:
            target = link.client if link.to_client_open else None
        if target is None:
            return
        if not to_upstream:
            data = self._edit_response(link, mode, data)
        direction = 0 if to_upstream else 1
        if mode == "delay" or link.delayed[direction]:  # behind delayed chunks: keep the order
            delay = self._params["ms"] / 1000.0 if mode == "delay" else 0.0
            self._send_later(link, direction, target, data, delay)
        else:
            self._send_now(link, to_upstream, target, data, mode)

    def _send_later(self, link: _Link, direction: int, target: gsocket.socket, data: bytes,
                    delay: float) -> None:
        """Queue ``data`` to go ``delay`` seconds from now, after the chunks queued before it."""
        link.delayed[direction].append((time.monotonic() + delay, data))
        sender = link.senders[direction]
        if sender is None or sender.dead:
            sender = link.senders[direction] = self._spawn(self._send_delayed, link, direction, target)
            link.greenlets.append(sender)

    def _send_delayed(self, link: _Link, direction: int, target: gsocket.socket) -> None:
        queue = link.delayed[direction]
        while queue and not link.closed:
            due, data = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
                continue
            queue.popleft()
            self._send_now(link, direction == 0, target, data, "delay")
        queue.clear()

    def _send_now(self, link: _Link, to_upstream: bool, target: gsocket.socket, data: bytes,
                  mode: str) -> None:
        try:
            if mode == "drip":
                self._drip(target, data, self._params["bytes_per_sec"])
            else:
                target.sendall(data)
        except OSError:
            if not link.closed:
                self._abort(link)
            return
        if to_upstream:
            self.bytes_upstream += len(data)
        else:
            self.bytes_downstream += len(data)
            if mode == "truncate" and link.mode_bytes >= self._params["n"]:
                self._truncate(link)

    def _edit_response(self, link: _Link, mode: str, data: bytes) -> bytes:
        """Apply truncate/corrupt to response bytes; count them for the current mode."""
        if link.generation != self._generation:
            link.generation = self._generation
            link.mode_bytes = 0
        start = link.mode_bytes
        if mode == "truncate":
            data = data[: max(int(self._params["n"]) - start, 0)]
        elif mode == "corrupt":
            index = int(self._params["n"]) - start
            if 0 <= index < len(data):
                data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        link.mode_bytes = start + len(data)
        return data

    @staticmethod
    def _drip(target: gsocket.socket, data: bytes, bytes_per_sec: float) -> None:
        step = max(1, int(bytes_per_sec / 50))  # about 50 sends a second
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            target.sendall(piece)
            gevent.sleep(len(piece) / bytes_per_sec)

    # -- closing ----------------------------------------------------------------------------

    def _close_to_client(self, link: _Link) -> None:
        if link.to_client_open:
            link.to_client_open = False
            shutdown_write(link.client)

    def _truncate(self, link: _Link) -> None:
        """End the response: EOF to the client, drop the server; the client may still close."""
        self._close_to_client(link)
        link.to_upstream_open = False
        link.upstream_dropped = True
        if link.upstream is not None:
            link.upstream.close()  # wakes the relay reading it, which then ends

    def _close(self, link: _Link) -> None:
        """Close a link whose both directions ended."""
        link.closed = True
        self._links.discard(link)
        link.client.close()
        if link.upstream is not None:
            link.upstream.close()

    def _abort(self, link: _Link) -> None:
        """Reset both sides of a link and end its relays."""
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        for sock in (link.client, link.upstream):
            if sock is not None:
                reset(sock)
        current = getcurrent()
        for greenlet in link.greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)

"""Every snippet of geventconnpool's README, run with geventpool.

The README is ``README.rst`` of geventconnpool 0.2.1 (its sdist on PyPI, by
Giovanni Bajo, MIT licence); the lines marked ``[readme: ...]`` below are its
snippets, quoted so that they run.

``python docs/migration/geventconnpool_snippets.py`` starts, on 127.0.0.1,
a server speaking the README's line protocol (``PING`` -> ``PONG``,
``STARTTLS``, ``LOGIN:``/``PASS:``, any other line -> ``OK``) and a server
speaking just enough IMAP for imaplib, and makes the README's
``('test.example.org', 2485)`` reach the first: a resolver on the gevent hub
answers that name and port with 127.0.0.1 and the server's port (the name is
never looked up).  Each snippet runs as the README shows it with the import
changed to geventpool; Python 3 needs bytes where the README (Python 2)
sends and compares ``str``: each such line says so.  One ``ok:`` line per
claim, exit status 1 if one fails.
"""
# ruff: noqa: I001, UP031 (each snippet's import sits beside it; the README formats with %)

from __future__ import annotations

import contextlib
import functools
import logging
import socket as std_socket
import tempfile
import time
from collections import Counter
from typing import Any

import gevent
from gevent import ssl as gssl
from gevent.server import StreamServer

from geventpool import BackendUnavailable, PoolTimeout
from geventpool.testing import wait_until
from geventpool.testing.slapd import TestCA

README_ADDRESS = ("test.example.org", 2485)


def check(condition: object, claim: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {claim}")
    print(f"ok: {claim}", flush=True)


def eventually(predicate: Any, timeout: float = 10.0) -> bool:
    """Whether ``predicate()`` comes true within ``timeout`` seconds (polled, green)."""
    try:
        wait_until(predicate, timeout=timeout, interval=0.01)
    except AssertionError:
        return False
    return True


class ReadmeName:
    """``('test.example.org', 2485)`` on the hub's resolver -> 127.0.0.1 and our port; never looked up."""

    def __init__(self, resolver: Any, port: int) -> None:
        self._resolver = resolver
        self.port = port

    def getaddrinfo(self, host: Any, port: Any, *args: Any) -> Any:
        if host == README_ADDRESS[0]:
            if int(port or 0) != README_ADDRESS[1]:
                raise std_socket.gaierror(std_socket.EAI_NONAME, f"{host}:{port} is not served here")
            return self._resolver.getaddrinfo("127.0.0.1", self.port, *args)
        return self._resolver.getaddrinfo(host, port, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolver, name)


class Records(logging.Handler):
    """Keeps (level, message) of every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))


class Lines:
    """Reads ``\\n``-terminated lines from a socket (None at EOF)."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")


class ReadmeServer:
    """The README's protocol: ``PING`` -> ``PONG\\n``; ``STARTTLS`` -> ``OK\\n`` and TLS (or
    ``NO\\n``, or garbage); ``LOGIN: <name>``, ``PASS: <password>`` -> ``OK`` or ``NO``; any
    other line -> ``OK``.  Counts connections, pings (per connection) and logins."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.context = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.starttls_reply = b"OK\n"  # b"OK\n": TLS follows; b"NO\n": the connection stays plain
        self.bad_starttls = 0  # the next N STARTTLS get an invalid reply
        self.drop_next = 0  # the next N data lines close their connection, unanswered
        self.bad_pong = 0  # the next N PINGs get a wrong reply
        self.login, self.password = "readme-user", "readme-password"
        self.accepted = 0
        self.open: set[int] = set()
        self.pings: Counter[int] = Counter()
        self.logins: list[tuple[str, bool, bool]] = []  # (name, accepted, over TLS)
        self.answered: list[int] = []  # connections that answered a data line with OK
        self.dropped: list[int] = []  # connections closed on a data line
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, address: Any) -> None:
        self.accepted += 1
        number = self.accepted
        self.open.add(number)
        lines, tls, name = Lines(sock), False, ""
        try:
            while (line := lines.line()) is not None:
                if line == b"PING":
                    if self.bad_pong:
                        self.bad_pong -= 1
                        sock.sendall(b"PANG\n")
                    else:
                        self.pings[number] += 1
                        sock.sendall(b"PONG\n")
                elif line == b"STARTTLS":
                    if self.bad_starttls:
                        self.bad_starttls -= 1
                        sock.sendall(b"??\n")
                        continue
                    sock.sendall(self.starttls_reply)
                    if self.starttls_reply == b"OK\n":
                        sock = self.context.wrap_socket(sock, server_side=True)
                        lines, tls = Lines(sock), True
                elif line.startswith(b"LOGIN: "):
                    name = line[7:].decode()
                elif line.startswith(b"PASS: "):
                    accepted = (name, line[6:].decode()) == (self.login, self.password)
                    self.logins.append((name, accepted, tls))
                    sock.sendall(b"OK" if accepted else b"NO")
                elif self.drop_next:
                    self.drop_next -= 1
                    self.dropped.append(number)
                    break
                else:
                    self.answered.append(number)
                    sock.sendall(b"OK")
        except OSError:
            pass
        finally:
            self.open.discard(number)
            sock.close()

    def stop(self) -> None:
        self.server.stop()


class MiniIMAP:
    """Just enough IMAP4rev1 for imaplib: a PREAUTH greeting, CAPABILITY, SELECT, LOGOUT."""

    def __init__(self) -> None:
        self.bad_select = 0  # the next N SELECTs are answered BAD (imaplib raises IMAP4.error)
        self.selects: list[tuple[int, bool]] = []  # (connection number, answered OK)
        self.accepted = 0
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.address = ("127.0.0.1", self.server.server_port)

    def _handle(self, sock: Any, address: Any) -> None:
        self.accepted += 1
        number = self.accepted
        lines = Lines(sock)
        sock.sendall(b"* PREAUTH IMAP4rev1 ready\r\n")
        while (line := lines.line()) is not None:
            tag, _, rest = line.partition(b" ")
            command = rest.split(b" ")[0].upper()
            if command == b"CAPABILITY":
                sock.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK CAPABILITY completed\r\n")
            elif command == b"SELECT" and self.bad_select:
                self.bad_select -= 1
                self.selects.append((number, False))
                sock.sendall(tag + b" BAD mailbox unavailable\r\n")
            elif command == b"SELECT":
                self.selects.append((number, True))
                sock.sendall(b"* 1 EXISTS\r\n* 0 RECENT\r\n" + tag + b" OK [READ-WRITE] SELECT completed\r\n")
            elif command == b"LOGOUT":
                sock.sendall(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
                break
            else:
                sock.sendall(tag + b" BAD unknown command\r\n")
        sock.close()

    def stop(self) -> None:
        self.server.stop()


def quickstart(server: ReadmeServer) -> None:
    # [readme: Quickstart] ($ pip install geventconnpool / easy_install: shell, not run here)
    from geventpool import ConnectionPool  # was: from geventconnpool import ConnectionPool
    from gevent import socket

    class MyPool(ConnectionPool):
        def _new_connection(self):
            return socket.create_connection(('test.example.org', 2485))
    # [/readme]

    # [readme]
    pool = MyPool(20)  # always keep 20 connections open
    # [/readme]
    gevent.sleep(0.3)
    check(server.accepted == 0, "MyPool(20): nothing is opened before first use "
                                "(geventconnpool: from the constructor, 0.1 s apart)")

    # [readme]
    with pool.get() as c:
        c.send(b"PING\n")  # Python 3: bytes (the README sends str)
        if c.recv(5) != b"PONG\n":  # Python 3: bytes
            raise socket.error("something awful happened")
    # [/readme]
    check(sum(server.pings.values()) == 1, "with pool.get() as c: PING answered PONG")
    check(eventually(lambda: len(server.open) == 20), "MyPool(20): 20 connections open once the pool is used")

    # "If the context is quit through a socket.error exception, the connection is discarded and
    # a new one is opened in background"
    accepted, discarded = server.accepted, pool.stats()["connections_discarded"]
    with contextlib.suppress(socket.error), pool.get() as c:
        raise socket.error("something awful happened")
    check(pool.stats()["connections_discarded"] == discarded + 1 and c.fileno() == -1,
          "socket.error in the block: the connection is discarded (and closed)")
    check(eventually(lambda: server.accepted == accepted + 1 and len(server.open) == 20),
          "... and a new one is opened in background: 20 open again")

    # "Any other exception ... the connection will be reinserted into the pool"
    with contextlib.suppress(ValueError), pool.get() as c:
        kept = c
        raise ValueError("not a connection error")
    with pool.get() as c:
        again = c
    check(again is kept and pool.stats()["connections_discarded"] == discarded + 1,
          "any other exception: the connection goes back to the pool and is lent again")
    pool.close()

    import imaplib  # (the README leaves this import out)

    # [readme]
    pool = MyPool(20, exc_classes=(socket.error, imaplib.IMAP4.error))
    # [/readme]
    with contextlib.suppress(imaplib.IMAP4.error), pool.get() as c:
        raise imaplib.IMAP4.error("an IMAP error")
    check(pool.stats()["connections_discarded"] == 1,
          "exc_classes=(socket.error, imaplib.IMAP4.error): an IMAP4.error discards the connection")
    with contextlib.suppress(socket.error), pool.get() as c:
        raise socket.error("something awful happened")
    check(pool.stats()["connections_discarded"] == 2, "... and so does a socket.error")

    # [readme: Automatic retrying]
    from geventpool import retry  # was: from geventconnpool import retry

    @retry
    def senddata(data):
        with pool.get() as c:
            c.send(data)
            if c.recv(2) != b"OK":  # Python 3: bytes
                raise socket.error("something awful happened")
    # [/readme]
    server.drop_next = 1  # the server closes the connection that carries the next line
    senddata(b"some data\n")
    check(len(server.dropped) == 1 and server.answered[-1] != server.dropped[0],
          "@retry: the connection dropped by the server is discarded, the retry uses another one")
    server.drop_next = 10
    try:
        senddata(b"some data\n")
    except OSError:
        gave_up = len(server.dropped) - 1
    else:
        gave_up = 0
    server.drop_next = 0
    check(gave_up == 4, "bare @retry gives up after 3 retries, 4 attempts "
                        "(geventconnpool's default: retry for ever)")
    pool.close()


def retry_options(imap: MiniIMAP) -> None:
    import imaplib
    from gevent import socket

    from geventpool import ConnectionPool

    class GreenIMAP4(imaplib.IMAP4):
        """imaplib on a gevent socket (imaplib connects with the standard library's socket)."""

        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout)

    class IMAPPool(ConnectionPool):
        # not in the README, which shows only the function: our pool of imaplib connections
        def _new_connection(self):
            return GreenIMAP4(*imap.address)

        def _close_connection(self, conn):
            conn.shutdown()  # imaplib's close() is the IMAP CLOSE command, not a disconnect

    pool = IMAPPool(2, exc_classes=(socket.error, imaplib.IMAP4.error))

    # [readme: retry with options]
    import logging
    logging.basicConfig()
    log = logging.getLogger()

    from geventpool import retry  # was: from geventconnpool import retry

    @retry(exc_classes=(socket.error, imaplib.IMAP4.error), logger=log,
           max_failures=5, interval=2)
    def senddata(data):
        with pool.get() as c:
            typ, data = c.select('INBOX')  # noqa: RUF059 (as the README has it)
    # [/readme]
    check(callable(senddata), "@retry(exc_classes=..., logger=log, max_failures=5, interval=2) decorates "
                              "(geventconnpool 0.2.1: TypeError, its retry needs the function first)")
    imap.bad_select = 1
    started = time.monotonic()
    senddata(None)
    took = time.monotonic() - started
    (first, refused), (second, selected) = imap.selects
    check(not refused and selected and first != second and 2 <= took < 5,
          f"an IMAP4.error (SELECT answered BAD) is retried after interval=2 on another connection "
          f"({took:.1f} s)")
    check(not log.isEnabledFor(logging.INFO),
          "logger=log: retries are logged at INFO, which basicConfig()'s WARNING level hides "
          "(so with geventconnpool too)")

    # "consider using functools.partial": the same options, codified once (a shorter interval)
    catcher = Records()
    log.addHandler(catcher)
    log.setLevel(logging.INFO)
    imap_retry = functools.partial(retry, exc_classes=(socket.error, imaplib.IMAP4.error), logger=log,
                                   max_failures=5, interval=0.05)

    @imap_retry
    def select_inbox():
        with pool.get() as c:
            return c.select('INBOX')

    imap.bad_select = 100
    try:
        select_inbox()
    except imaplib.IMAP4.error:
        failed = True
    else:
        failed = False
    imap.bad_select = 0
    retried = [m for level, m in catcher.records if level == logging.INFO and "retrying with new" in m]
    gave_up = [m for level, m in catcher.records if level == logging.ERROR and "Max retries reached" in m]
    check(failed and len(retried) == 5 and len(gave_up) == 1,
          "functools.partial(retry, ...): max_failures=5 gives up after 5 logged retries, "
          "one ERROR 'Max retries reached'")
    check(select_inbox() == ("OK", [b"1"]), "... and the pool serves again once the server does")
    log.removeHandler(catcher)
    log.setLevel(logging.WARNING)
    pool.close()


def advanced(server: ReadmeServer) -> None:
    MY_LOGIN_NAME, MY_PASS = server.login, server.password  # the README's placeholders

    # [readme: Advanced connection examples]
    from geventpool import ConnectionPool  # was: from geventconnpool import ConnectionPool
    from gevent import socket, ssl

    class MyPool(ConnectionPool):
        def _new_connection(self):
            s = socket.create_connection(('test.example.org', 2485))
            s.send(b"STARTTLS\n")  # Python 3: bytes, here and in every send and comparison below
            res = s.recv(3)
            if res == b"OK\n":
                s = ssl.wrap_socket(s)
            elif res == b"NO\n":
                pass
            else:
                raise socket.error("invalid response to STARTTLS")

            s.send(("LOGIN: %s\n" % MY_LOGIN_NAME).encode());  # noqa: E703
            s.send(("PASS: %s\n" % MY_PASS).encode());  # noqa: E703
            res = s.recv(2)
            if res != b"OK":
                raise socket.error("authentication failed")
            return s
    # [/readme]
    # ssl.wrap_socket is gevent's (the standard library's is gone from Python 3.12); as in the
    # README, the server's certificate is not verified.
    pool = MyPool(2)
    with pool.get() as c:
        c.send(b"PING\n")
        pong = c.recv(5)
    tls = isinstance(c, ssl.SSLSocket)
    check(tls and pong == b"PONG\n" and server.logins[-1] == (MY_LOGIN_NAME, True, True),
          "STARTTLS answered OK: TLS, then LOGIN/PASS accepted, then the connection is lent")
    pool.close()

    server.starttls_reply = b"NO\n"
    pool = MyPool(2)
    with pool.get() as c:
        plain = not isinstance(c, ssl.SSLSocket)
    check(plain and server.logins[-1] == (MY_LOGIN_NAME, True, False),
          "STARTTLS answered NO: the login goes over the plain connection")
    pool.close()
    server.starttls_reply = b"OK\n"

    # "The pool is resistant to temporary connection errors and will retry automatically"
    server.bad_starttls = 3
    accepted = server.accepted
    pool = MyPool(1)
    with pool.get(timeout=10) as c:
        pass
    check(server.bad_starttls == 0 and server.accepted >= accepted + 4 and isinstance(c, ssl.SSLSocket),
          "an invalid STARTTLS reply raises socket.error: the pool retries and connects")
    pool.close()

    server.password = "changed"  # MY_PASS is now wrong
    pool = MyPool(1)
    try:
        with pool.get(timeout=1):
            pass
    except (BackendUnavailable, PoolTimeout) as error:
        outcome = type(error).__name__
    else:
        outcome = "lent"
    check(outcome == "BackendUnavailable" and not server.logins[-1][1],
          "a refused login raises socket.error: get() ends in BackendUnavailable at its timeout "
          "(geventconnpool: the slot is lost for good and get() waits for ever)")
    pool.close()
    server.password = MY_PASS

    # The boto example cannot run as written: boto talks to Amazon AWS (this script sends nothing
    # beyond 127.0.0.1), and `from boto.exception import NoAuthHanlder` names a class boto does not
    # have (NoAuthHandlerFound), so that import fails.  Its pool class runs with a stand-in for boto
    # whose connect_dynamodb() connects to our server, failing the first two times.
    class Table:
        def __init__(self, name: str, sock: Any) -> None:
            self.name, self.sock = name, sock

        def close(self) -> None:
            self.sock.close()

    class StandInBoto:
        failures = 2

        def connect_dynamodb(self, key_id: str, secret: str) -> Any:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("AWS unreachable")
            sock = socket.create_connection(('test.example.org', 2485))
            return type("Connection", (), {"get_table": lambda _, name: Table(name, sock)})()

    boto = StandInBoto()
    MY_AWS_KEY_ID, MY_AWS_SECRET_KEY = "key id", "secret key"

    # [readme: boto, without its two imports]
    class UsersPool(ConnectionPool):
        def _new_connection(self):
            try:
                c = boto.connect_dynamodb(MY_AWS_KEY_ID, MY_AWS_SECRET_KEY)
                return c.get_table("users")
            except:  # noqa: E722
                raise socket.error("error connecting to AWS")  # noqa: B904
    # [/readme]
    pool = UsersPool(1)
    with pool.get(timeout=10) as table:
        pass
    check(isinstance(table, Table) and table.name == "users" and boto.failures == 0,
          "boto example: any error becomes socket.error and is retried; get() lends the table object "
          "_new_connection() returned, as is")
    pool.close()


def keepalive(server: ReadmeServer) -> None:
    # [readme: Keepalive, TCP]
    from geventpool import ConnectionPool  # was: from geventconnpool import ConnectionPool
    from gevent import socket

    class MyPool(ConnectionPool):
        def _new_connection(self):
            s = socket.create_connection(('test.example.org', 2485))
            s._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return s
    # [/readme]
    # (s._sock is gevent's private attribute, still there on Python 3; s.setsockopt(...) is the same)
    pool = MyPool(2)
    with pool.get() as c:
        enabled = c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    check(enabled == 1, "s._sock.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1): TCP keepalive on")
    pool.close()

    # [readme: Keepalive, application level]
    from geventpool import ConnectionPool  # was: from geventconnpool import ConnectionPool
    from gevent import socket

    class MyPool(ConnectionPool):
        def _new_connection(self):
            return socket.create_connection(('test.example.org', 2485))

        def _keepalive(self, c):
            c.send(b"PING\n")  # Python 3: bytes
            if c.recv(5) != b"PONG\n":  # Python 3: bytes
                raise socket.error

    pool = MyPool(20, keepalive=30)
    # [/readme]
    with pool.get():
        pass
    check(pool.keepalive == 30 and eventually(lambda: len(server.open) == 20),
          "MyPool(20, keepalive=30): 20 connections, kept alive every 30 s")
    pool.close()
    eventually(lambda: not server.open)

    # the same pool with keepalive=0.5, so that the script need not wait 30 s
    pool = MyPool(3, keepalive=0.5)
    first = server.accepted + 1
    pool.wait(timeout=10)
    mine = range(first, first + 3)
    check(eventually(lambda: all(server.pings[n] >= 3 for n in mine), timeout=5),
          "keepalive=0.5: every idle connection is pinged, again and again")
    lost = pool.stats()["connections_lost"] + pool.stats()["connections_discarded"]
    accepted = server.accepted
    server.bad_pong = 1
    check(eventually(lambda: server.accepted == accepted + 1 and len(server.open) == 3, timeout=5)
          and pool.stats()["connections_lost"] + pool.stats()["connections_discarded"] > lost,
          "_keepalive raising socket.error: the connection is discarded and replaced")
    pool.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = TestCA(tmp)
        cert, key = ca.issue("readme", hosts=("127.0.0.1",))
        server = ReadmeServer(cert, key)
        imap = MiniIMAP()
        hub = gevent.get_hub()
        hub.resolver = ReadmeName(hub.resolver, server.port)
        with gevent.Timeout(120):
            quickstart(server)
            retry_options(imap)
            advanced(server)
            keepalive(server)
        server.stop()
        imap.stop()
    print("geventconnpool_snippets: all checks passed")


if __name__ == "__main__":
    main()

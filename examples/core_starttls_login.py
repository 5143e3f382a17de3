"""Do the whole protocol set-up in ``_new_connection``: STARTTLS, then log in.

geventconnpool's "advanced connection" example with only the import changed,
run against an in-process server whose certificate is made at run time with
the ``openssl`` command (in a temporary directory).  Two changes for Python 3
and for safety: bytes on the wire, and an ``SSLContext`` that verifies the
server's certificate instead of the removed, unverified ``ssl.wrap_socket``.

What it shows:

- every pooled connection is already upgraded to TLS and logged in;
- a server without TLS answers ``NO`` and the same code logs in in clear;
- a wrong password is just a ``socket.error`` raised in ``_new_connection``:
  the pool keeps retrying in the background (with backoff), and
  ``pool.wait()`` fails fast with ``BackendUnavailable`` whose cause is that
  error, and no message contains the password.

Run: ``python examples/core_starttls_login.py``
"""

from __future__ import annotations

import logging
import shutil
import tempfile

from _servers import LineServer, expect, make_certificate
from gevent import socket, ssl

from geventpool import BackendUnavailable, ConnectionPool

MY_LOGIN_NAME = "app"
MY_PASS = "example-secret-1"


class MyPool(ConnectionPool):
    def __init__(self, size, *, address, tls, login, password, **options):
        self.address = address
        self.tls = tls  # a client SSLContext that trusts the server's certificate
        self.login = login
        self.password = password
        super().__init__(size, **options)

    def _new_connection(self):
        s = socket.create_connection(self.address)
        s.send(b"STARTTLS\n")
        res = s.recv(3)
        if res == b"OK\n":
            s = self.tls.wrap_socket(s, server_hostname="localhost")
        elif res == b"NO\n":
            pass
        else:
            s.close()
            raise socket.error("invalid response to STARTTLS")

        s.send(b"LOGIN: %s\n" % self.login.encode())
        s.send(b"PASS: %s\n" % self.password.encode())
        res = s.recv(2)
        if res != b"OK":
            s.close()
            raise socket.error("authentication failed")
        return s


def send(pool, data):
    with pool.get() as c:
        c.send(data + b"\n")
        if c.recv(2) != b"OK":
            raise socket.error("something awful happened")
        return c


def main():
    # the failed logins of part 3 are logged at WARNING by the pool
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    directory = tempfile.mkdtemp(prefix="geventpool-example-")
    try:
        run(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("core_starttls_login: all checks passed")


def run(directory):
    certfile, keyfile = make_certificate(directory)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certfile, keyfile)
    # gevent.ssl.SSLContext, not ssl.create_default_context(): without
    # monkey-patching, the latter builds a stdlib context whose handshake
    # would block the whole process
    client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and host name
    client_tls.load_verify_locations(certfile)
    users = {MY_LOGIN_NAME: MY_PASS}

    # 1. TLS, then login
    with LineServer(tls=server_tls, users=users) as server:
        pool = MyPool(4, address=server.address, tls=client_tls, login=MY_LOGIN_NAME, password=MY_PASS)
        pool.wait(timeout=10)
        conn = send(pool, b"hello")
        print(f"pooled connection speaks {conn.version()} with {conn.getpeercert()['subject']}")
        expect(conn.version() is not None and conn.version().startswith("TLS"),
               "the pooled connection is encrypted")
        expect(server.requests["STARTTLS"] == 4 and server.requests["PASS"] == 4,
               "each of the 4 connections did STARTTLS and logged in once")
        for _ in range(20):
            send(pool, b"more data")
        expect(server.requests["STARTTLS"] == 4, "20 more requests reused the pooled connections")
        pool.close()

    # 2. the server has no TLS: it answers NO and the login goes in clear
    with LineServer(tls=None, users=users) as server:
        pool = MyPool(2, address=server.address, tls=client_tls, login=MY_LOGIN_NAME, password=MY_PASS)
        conn = send(pool, b"hello")
        expect(not isinstance(conn, ssl.SSLSocket),
               "without TLS on the server, the same code logs in in clear")
        pool.close()

    # 3. a wrong password: fail fast, name the cause, never the password
    wrong = "not-the-password-42"
    with LineServer(tls=server_tls, users=users) as server:
        pool = MyPool(2, address=server.address, tls=client_tls, login=MY_LOGIN_NAME, password=wrong,
                      name="bad-login")
        try:
            pool.wait(timeout=1)
        except BackendUnavailable as error:
            print(f"pool.wait() raised {type(error).__name__}: {error}")
            print(f"  caused by {error.__cause__!r}")
            expect(isinstance(error.__cause__, OSError) and "authentication failed" in str(error.__cause__),
                   "the cause is the error raised by _new_connection")
            expect(wrong not in str(error) and wrong not in repr(pool) and wrong not in str(pool),
                   "the password appears in no message")
        else:
            raise SystemExit("FAILED: wait() should have raised BackendUnavailable")
        attempts = server.requests["PASS"]
        expect(attempts >= 2, f"the pool kept retrying the login in the background ({attempts} attempts)")
        pool.close()


if __name__ == "__main__":
    main()

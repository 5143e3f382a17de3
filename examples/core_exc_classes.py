"""Custom ``exc_classes``: which errors mean "this connection is broken".

geventconnpool's ``MyPool(20, exc_classes=(socket.error, imaplib.IMAP4.error))``
with only the import changed.  Here the protocol library's error class is our
own ``ProtocolError`` (raised when the in-process server answers ``ERR``),
standing in for ``imaplib.IMAP4.error``.

The discard rule, shown one case at a time:

- an error in ``exc_classes`` discards (and closes) the connection; the pool
  opens a new one in the background;
- any other ``Exception`` (an application bug, a bad value) returns the
  connection: it is still good;
- with the default ``exc_classes=(socket.error,)`` the same ``ProtocolError``
  would return the connection, so list the errors that leave a session unusable.

Run: ``python examples/core_exc_classes.py``
"""

from __future__ import annotations

from _servers import LineServer, expect, wait_until
from gevent import socket

from geventpool import ConnectionPool

SERVER = LineServer()
ADDRESS = ("127.0.0.1", 0)  # set by main() once the server listens


class ProtocolError(Exception):
    """The server rejected a command: this session's state is unknown."""


class MyPool(ConnectionPool):
    def _new_connection(self):
        return socket.create_connection(ADDRESS)


def ping(c):
    c.send(b"PING\n")
    res = c.recv(5)
    if res == b"ERR\n":
        raise ProtocolError("the server answered ERR")
    if res != b"PONG\n":
        raise socket.error("something awful happened")


def try_block(pool, fault=None, app_error=False):
    """Run one ``with pool.get()`` block; return (connection used, error raised).

    ``fault`` makes the server misbehave on this request; ``app_error``
    raises an application error inside the block.
    """
    if fault:
        SERVER.inject(fault)
    try:
        with pool.get() as c:
            ping(c)
            if app_error:
                raise ValueError("a bug in the application, not in the connection")
    except (ProtocolError, ValueError, OSError) as error:
        return c, error
    return c, None


def main():
    global ADDRESS
    server = SERVER.start()
    ADDRESS = server.address

    pool = MyPool(1, exc_classes=(socket.error, ProtocolError))
    first, _ = try_block(pool)

    c, error = try_block(pool, app_error=True)
    print(f"the block raised {error!r}")
    expect(c is first and pool.stats()["connections_discarded"] == 0,
           "an ordinary exception returns the connection to the pool")
    c, _ = try_block(pool)
    expect(c is first, "the next caller gets that same connection")

    c, error = try_block(pool, fault="error")
    print(f"the block raised {error!r}")
    expect(c is first and pool.stats()["connections_discarded"] == 1,
           "ProtocolError is in exc_classes: the connection is discarded")
    expect(first.fileno() == -1, "and closed")
    c, error = try_block(pool)
    expect(c is not first and error is None, "the next caller gets a new connection")
    wait_until(lambda: server.accepted == 2, 10, "the server accepted the new connection")
    pool.close()

    default_pool = MyPool(1)  # exc_classes=(socket.error,)
    first, _ = try_block(default_pool)
    c, error = try_block(default_pool, fault="error")
    print(f"the block raised {error!r}")
    expect(c is first and default_pool.stats()["connections_discarded"] == 0,
           "with the default exc_classes the same ProtocolError keeps the connection")
    default_pool.close()
    server.stop()
    print("core_exc_classes: all checks passed")


if __name__ == "__main__":
    main()

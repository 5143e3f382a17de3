"""Socket helpers of the fault proxy: resolve without the resolver, reset, half-close."""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from gevent import socket as gsocket

__all__ = ["resolve", "reset", "shutdown_write"]

_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def resolve(host: str, port: int) -> tuple[int, Any]:
    """Return (family, address) for a connect; IP literals skip the resolver."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family, (host, port)
    info = gsocket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    return info[0], info[4]


def reset(sock: gsocket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    except OSError:
        pass  # already closed, or never connected
    sock.close()


def shutdown_write(sock: gsocket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as error:
        if error.errno not in (errno.ENOTCONN, errno.EBADF):
            raise

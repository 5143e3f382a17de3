"""Free ports for private servers, chosen outside the kernel's ephemeral range.

A port taken from the ephemeral range (what binding to port 0 gives) can be
picked up by any client socket as its source port while the server is down
or not yet started, and the server's bind then fails.  Ports below the range
are never handed out that way.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

_LOW, _HIGH = 20000, 32000  # below Linux's default ephemeral range (32768-60999)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host``, below the ephemeral range, that was free a moment ago.

    :raises OSError: no free port found after many tries.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(_LOW, _HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {_LOW}-{_HIGH} on {host}")

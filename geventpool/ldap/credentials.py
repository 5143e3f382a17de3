"""Bind credentials, kept in one private object that never shows its password."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, NoReturn

from ..errors import ConfigurationError

__all__ = ["Credentials", "decode_password"]

# A per-process key: identity keys are HMACs of the password, never the password itself.
_KEY = os.urandom(32)


def decode_password(password: bytes, dn: str | None) -> str:
    """Decode a bytes password as UTF-8.

    :raises ConfigurationError: it is not UTF-8; the message names the DN and
        the offset, never the bytes (a ``UnicodeDecodeError`` would carry them).
    """
    try:
        return password.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
    # raised outside the handler: no __context__ holding the bytes
    raise ConfigurationError(
        f"the password for {dn or ''!r} is not valid UTF-8 (bad byte at offset {offset}; not shown)"
    )


class Credentials:
    """A bind DN and its password (or anonymous: both empty).

    ``repr``/``str`` show the DN only; pickling raises TypeError.  ``key`` is
    ``(dn, HMAC(password))`` with a per-process random key, so that two
    credentials can be compared (and pools keyed) without keeping copies of
    the password around.
    """

    __slots__ = ("_password", "dn", "key")

    def __init__(self, dn: str | None, password: str | bytes | None) -> None:
        self.dn = dn or ""
        if isinstance(password, bytes):
            password = decode_password(password, dn)
        self._password = password or ""
        digest = hmac.new(_KEY, self._password.encode("utf-8"), hashlib.sha256).digest()
        self.key = (self.dn, digest)

    @property
    def anonymous(self) -> bool:
        """True when there is neither a DN nor a password (no bind is sent)."""
        return not self.dn and not self._password

    @property
    def unauthenticated(self) -> bool:
        """True for a DN with an empty password (RFC 4513 "unauthenticated bind")."""
        return bool(self.dn) and not self._password

    def reveal(self) -> str:
        """Return the password, for the bind request only."""
        return self._password

    def matches(self, other: Credentials) -> bool:
        """Tell whether ``other`` names the same DN with the same password (constant time)."""
        return self.dn == other.dn and hmac.compare_digest(self.key[1], other.key[1])

    def __repr__(self) -> str:
        return f"<Credentials dn={self.dn!r} password={'***' if self._password else '(none)'}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("Credentials cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Credentials cannot be pickled")

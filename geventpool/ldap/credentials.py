"""Bind credentials, kept in one private object that never shows its password."""

from __future__ import annotations

import hmac
import os
import re
from hashlib import blake2b
from typing import Any, NoReturn

import ldap.dn

from ..errors import ConfigurationError

__all__ = ["Credentials", "decode_password", "check_dn", "MAX_PASSWORD_BYTES"]

# A per-process key: identity keys are MACs of the password under it (keyed BLAKE2b), never the
# password itself.  Not HMAC-SHA256: OpenSSL 3's one-shot HMAC looks its digest up on every call,
# ~20 us in a gunicorn worker between requests (1.5 us in a tight loop), once per
# connection(dn, password); keyed BLAKE2b is a MAC by design (RFC 7693), built into Python,
# ~1-4 us there.  authenticate() never needs a key: it makes none (keyed=False).
_KEY = os.urandom(32)

#: The longest password sent in a bind, in bytes of UTF-8; a longer one is refused client-side
#: (a directory drops a connection that sends hundreds of kilobytes, which would otherwise count
#: as the server failing, for every pool).  Set it on the class: ``Credentials.max_password_bytes``.
MAX_PASSWORD_BYTES = 1024

# Active Directory also takes a user principal name (user@example.com) or a down-level
# logon name (EXAMPLE\user) as the "DN" of a simple bind.
_AD_NAME = re.compile(r"^[^\x00-\x1f@\\=,]+@[^\x00-\x1f@\\=,]+$|^[^\x00-\x1f@\\=,]+\\[^\x00-\x1f@\\=,]+$")


# DNs checked lately (a bounded cache: a service checking thousands of users' passwords pays the
# parse once per user, not once per call).  Only valid DNs are kept; no password is.
_CHECKED_DNS: dict[str, None] = {}
_CHECKED_DNS_MAX = 4096


def check_dn(owner: str, argument: str, dn: str) -> None:
    """Refuse a bind DN with a NUL character or that is not a DN (nor an AD logon name).

    :raises ConfigurationError: naming the argument, never showing its value.
    """
    if dn in _CHECKED_DNS:
        return
    if "\x00" in dn:
        raise ConfigurationError(f"{owner}: {argument} contains a NUL character (not shown)")
    if dn and not _AD_NAME.match(dn) and not ldap.dn.is_dn(dn):
        raise ConfigurationError(f"{owner}: {argument} is not a valid DN (not shown)")
    if len(_CHECKED_DNS) >= _CHECKED_DNS_MAX:
        _CHECKED_DNS.clear()
    _CHECKED_DNS[dn] = None


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
    ``(dn, MAC(password))`` (keyed BLAKE2b) with a per-process random key, so that two
    credentials can be compared (and pools keyed) without keeping copies of
    the password around.
    """

    __slots__ = ("_password", "dn", "key")

    key: tuple[str, bytes]

    #: The longest password accepted, in bytes (see :data:`MAX_PASSWORD_BYTES`).
    max_password_bytes = MAX_PASSWORD_BYTES

    def __init__(
        self, dn: str | None, password: str | bytes | None, *,
        owner: str = "Credentials", dn_argument: str = "bind", password_argument: str = "passwd",
        keyed: bool = True,
    ) -> None:
        """``keyed=False``: ``key`` is made on first use only (``authenticate()`` needs none).

        :raises ConfigurationError: a DN with NUL or bad syntax, a password over the limit, a
            bytes password that is not UTF-8 (each message names the argument, never its value).
        :raises TypeError: a DN that is not a str, a password that is not str or bytes."""
        if dn is not None and not isinstance(dn, str):
            raise TypeError(f"{owner}: {dn_argument} must be a DN (str) or None, got {type(dn).__name__}")
        if password is not None and not isinstance(password, (str, bytes)):
            raise TypeError(
                f"{owner}: {password_argument} must be str, bytes or None, got {type(password).__name__}"
            )
        dn = self.dn = dn or ""
        if dn not in _CHECKED_DNS:
            check_dn(owner, dn_argument, dn)
        if isinstance(password, bytes):
            password = decode_password(password, dn)
        password = self._password = password or ""
        limit = self.max_password_bytes
        # (at most 4 bytes of UTF-8 per character: a short password needs no encoding to check)
        if len(password) * 4 > limit and (
            len(password) > limit or len(password.encode("utf-8", "surrogatepass")) > limit
        ):
            raise ConfigurationError(
                f"{owner}: {password_argument} is longer than {limit} bytes "
                "(Credentials.max_password_bytes); refused client-side, not shown"
            )
        if keyed:
            self.key = (dn, blake2b(password.encode("utf-8"), key=_KEY, digest_size=32).digest())
        elif not password.isascii():
            password.encode("utf-8")  # refused now, as the bind would (a lone surrogate)

    def __getattr__(self, name: str) -> Any:
        if name != "key":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        key = (self.dn, blake2b(self._password.encode("utf-8"), key=_KEY, digest_size=32).digest())
        self.key = key  # (keyed=False: made on first use)
        return key

    #: Whether the password is fixed (a callback's may change each time it is asked).
    fixed = True

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

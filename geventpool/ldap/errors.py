"""The errors of the LDAP pool, each also a member of the hierarchy its callers already catch.

``ldappool`` users catch :class:`MaxConnectionReachedError` and
:class:`BackendError`; python-ldap users catch ``ldap.INVALID_CREDENTIALS``
and ``ldap.SERVER_DOWN``.  Each class below is both a
:class:`~geventpool.PoolError` and the matching older class, so either
``except`` clause works.  Messages never contain a password.
"""

from __future__ import annotations

import ldap

from ..errors import BackendUnavailable, PoolError, PoolTimeout

__all__ = [
    "BindDropped",
    "AuthenticationFailed",
    "TLSVerificationError",
    "MaxConnectionReachedError",
    "BackendError",
]


class AuthenticationFailed(PoolError, ldap.INVALID_CREDENTIALS):  # type: ignore[misc]
    """A bind was refused: by the server (wrong DN or password), or client-side.

    Client-side refusals: a DN with an empty password, which RFC 4513 calls an
    "unauthenticated bind" and which a server may accept without checking
    anything.  Never retried, never failed over (account lockout).
    """


class TLSVerificationError(PoolError):
    """StartTLS or the ``ldaps://`` handshake failed: the server was not verified.

    Raised before any credentials are sent; the pool never falls back to
    plaintext.  The message carries libldap's reason (unknown CA, hostname
    mismatch, expired certificate...).  Deliberately not an ``ldap.CONNECT_ERROR``:
    it is not a connection error to retry, and the pool hands it to the
    waiting caller at once instead of backing off and retrying.
    """


class MaxConnectionReachedError(PoolTimeout):
    """No connection became free within the checkout timeout (ldappool's name)."""


class BindDropped(ldap.SERVER_DOWN):  # type: ignore[misc]
    """The server dropped the connection during a bind (``ldap.SERVER_DOWN`` too).

    With a caller's credentials this counts against them, not the server: a
    request the directory refuses to read (an oversized one, say) must not
    open every pool's circuit.
    """


class BackendError(BackendUnavailable, ldap.SERVER_DOWN):  # type: ignore[misc]
    """No LDAP server could be reached within the checkout timeout.

    Also an ``ldap.SERVER_DOWN`` (what ldappool raised) and a
    :class:`~geventpool.BackendUnavailable`; ``__cause__`` is the last connect error.
    """

    def __init__(self, message: str, backend: object = None) -> None:
        super().__init__(message)
        #: ldappool's attribute: the connector involved, if any (always None here).
        self.backend = backend

"""``valid_names``: certificates that name another host than the server's, or any host.

ldap3's ``Tls(valid_names=[...])`` accepts a server whose certificate chains
to the trusted CAs (always) and names the server's host *or* one of
``valid_names``; ``'*'`` accepts any name.  libldap has no such option: it
checks the certificate against the host of the connection's URI, and
``require_cert`` cannot keep the chain check while dropping the name check
(``allow`` drops both).  Two mechanisms, chosen per case:

**Switch the URI's host (StartTLS opened by the pool).**  The pool connects
the TCP socket itself and gives libldap its descriptor with
``ldap.initialize(uri, fileno=fd)``; libldap then never resolves nor
connects to the URI's host (``ldap_init_fd`` only parses the URI: checked
with strace, no lookup and no connect after the pool's own), and StartTLS
checks the certificate against that host.  So the handshake is tried with
the server's host, then on a fresh TCP connection to the same address with
each valid name as the URI's host; libldap verifies chain *and* name itself
(``demand``) every time.  The name that worked is remembered per (policy,
server) and tried first: one handshake per connect from then on.  libldap
2.5 built with GnuTLS reports every verification failure alike ("Connect
error", the diagnostic lost), so a failure is classified once by checking
the chain alone with Python's ``ssl`` module (below): a chain that does not
verify ends the attempt with that reason (no name is tried), a chain that
does means the name was the problem.

**Verify with Python's ssl, pin in libldap (``ldaps://``, ``'*'``, and
``Connection.start_tls()`` on an open connection).**  ``ldaps://`` cannot
switch names: libldap starts TLS on ``ldaps://`` only on connections it
opens itself (``ldap_init_fd`` never does), and it would resolve and connect
to the valid name.  A ``start_tls()`` on an open connection keeps the host
it was opened with.  And ``'*'`` needs the chain checked without any name.
In these cases the certificate is verified by Python's ``ssl`` module on a
separate connection to the same address (``CERT_REQUIRED``, the policy's CA
file, CA directory or libldap's default CAs, its client certificate; the
host name checked by OpenSSL against the server's host, then each valid
name on a fresh connection, or not at all for ``'*'``; for ``ldap://`` the
StartTLS extended request is sent in BER first).  libldap then runs its own
handshake with ``require_cert=allow``, and the certificate it was shown
(``OPT_X_TLS_PEERCERT``, DER) must be byte for byte the one verified, else
the connection is closed before any credentials are sent (on ``ldaps://``
libldap has sent its anonymous WhoAmI, nothing else).  This is as strong as
libldap's own check: the handshake proves that the server holds that
certificate's private key, and that certificate was verified.  Verified
certificates are kept per (policy, server host) until their ``notAfter``,
so the steady state is one handshake; concurrent connects verify once.
``ldaps://`` tries libldap's ``demand`` with the server's host first and
only falls back (and remembers to, per server) when that fails.  The
policy's minimum TLS version is enforced on libldap's session, as without
``valid_names`` (the Python check asks for TLS 1.2 at most).

Costs, counted in slapd's log (``tests/ldap/test_tls_valid_names.py``),
for a certificate naming the one valid name: StartTLS 3 handshakes the
first time, then 1; ``ldaps://`` 4 (plus libldap's TCP probe after its
failed handshake), then 1; ``'*'``: 2, then 1; a certificate that names the
server's host: 1, as without ``valid_names``.  A chain that does not verify
costs 2 (no name is tried).

Limits of the Python check: it does not use the policy's ``ciphers`` (a
GnuTLS priority string means nothing to OpenSSL); a server that picks its
certificate by SNI may show libldap (no SNI, or the server's host) another
certificate than the check (the valid name) and is then refused, not
accepted.  Every handshake runs in the worker threads of :mod:`._threads`
within the server's thread budget, bounded by ``connect_timeout``; TCP
connects and the StartTLS exchange run on the hub, as the pool's own.
"""

from __future__ import annotations

import logging
import os
import socket as _stdsocket
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.lock
import gevent.socket
import ldap
from gevent.monkey import get_original

from ._threads import spawn_blocking
from .errors import TLSVerificationError
from .tls import TLSPolicy
from .uris import LDAPServer

__all__ = [
    "STARTTLS_OID", "Verified", "check_certificate", "forget", "is_pinned", "pin", "remember_name",
    "remembered_name", "starttls_request",
]

logger = logging.getLogger("geventpool.ldap")

#: RFC 4511 StartTLS extended operation.
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"

# Keys kept at most (policies x servers), and certificates kept per key (a server may have several).
_MAX_KEYS = 256
_MAX_PINS = 8
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the name, not the chain.
_NAME_MISMATCH = (62, 64)
# The largest StartTLS response accepted (a result code, a DN, a message).
_MAX_RESPONSE = 65536

_PySocket = get_original("socket", "socket")
_PySSLContext = get_original("ssl", "SSLContext")

# The lowest version the Python check accepts, per policy: never above 1.2, because the policy's
# version is enforced once, on libldap's own session (``_connect.check_negotiated``, with its message).
_SSL_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_2,
}


@dataclass(frozen=True)
class Verified:
    """A certificate Python's ssl verified: its DER, its ``notAfter`` (epoch), the name it matched
    (None: no name was checked)."""

    der: bytes
    not_after: float
    name: str | None


class _Memory:
    """What worked, per process (rebuilt after fork): names per (policy, server), certificates per
    (policy, host), and one lock per (policy, host) so that concurrent connects verify once."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.names: OrderedDict[tuple[TLSPolicy, LDAPServer], str] = OrderedDict()
        self.pins: OrderedDict[tuple[TLSPolicy, str], dict[bytes, float]] = OrderedDict()
        self.locks: dict[tuple[TLSPolicy, str], gevent.lock.Semaphore] = {}


_memory = _Memory()


def _mem() -> _Memory:
    global _memory
    if _memory.pid != os.getpid():
        _memory = _Memory()
    return _memory


def forget() -> None:
    """Forget every remembered name and verified certificate (tests; a CA file replaced)."""
    global _memory
    _memory = _Memory()


def _bounded(table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _MAX_KEYS:
        table.popitem(last=False)


def remembered_name(policy: TLSPolicy, server: LDAPServer) -> str | None:
    """The name that last verified ``server`` under ``policy`` (None: its own host, or unknown)."""
    return _mem().names.get((policy, server))


def remember_name(policy: TLSPolicy, server: LDAPServer, name: str | None) -> None:
    """Remember the name that verified ``server`` (None or its own host: forget it)."""
    names = _mem().names
    if name is None or name == server.host:
        names.pop((policy, server), None)
    else:
        _bounded(names, (policy, server), name)


def is_pinned(policy: TLSPolicy, host: str, der: bytes) -> bool:
    """Whether ``der`` was verified for ``host`` under ``policy`` and has not expired since."""
    pins = _mem().pins.get((policy, host))
    if not pins:
        return False
    not_after = pins.get(der)
    if not_after is None:
        return False
    if not_after <= time.time():
        del pins[der]
        return False
    return True


def pin(policy: TLSPolicy, host: str, verified: Verified) -> None:
    """Keep ``verified`` for ``host`` under ``policy`` until its ``notAfter``."""
    memory = _mem()
    pins = memory.pins.get((policy, host))
    if pins is None:
        pins = {}
    pins[verified.der] = verified.not_after
    while len(pins) > _MAX_PINS:
        del pins[next(iter(pins))]
    _bounded(memory.pins, (policy, host), pins)


def lock_for(policy: TLSPolicy, host: str) -> gevent.lock.Semaphore:
    """The lock that makes concurrent connects to ``host`` under ``policy`` verify one at a time."""
    locks = _mem().locks
    lock = locks.get((policy, host))
    if lock is None:
        if len(locks) > _MAX_KEYS:
            for key in [key for key, held in locks.items() if not held.locked()]:
                del locks[key]
        lock = locks[(policy, host)] = gevent.lock.Semaphore()
    return lock


# -- StartTLS in BER -----------------------------------------------------------------------------


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _ber_length(len(value)) + value


def starttls_request(message_id: int = 1) -> bytes:
    """The LDAPMessage of a StartTLS extended request (RFC 4511 4.12, 4.14), BER-encoded."""
    request_name = _tlv(0x80, STARTTLS_OID.encode("ascii"))  # [0] LDAPOID
    extended = _tlv(0x77, request_name)  # [APPLICATION 23] ExtendedRequest
    return _tlv(0x30, _tlv(0x02, message_id.to_bytes(1, "big")) + extended)


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one BER element of ``data`` at ``pos``: (tag, value, next position)."""
    if pos + 2 > len(data):
        raise ValueError("truncated element")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        size = first & 0x7F
        if not 1 <= size <= 4 or pos + size > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    else:
        length = first
    if pos + length > len(data):
        raise ValueError("truncated value")
    return tag, data[pos:pos + length], pos + length


def _recv_exactly(sock: Any, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionResetError("the server closed the connection during StartTLS")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(sock: Any) -> bytes:
    """Read exactly one LDAPMessage from ``sock`` (nothing after it: TLS follows)."""
    head = _recv_exactly(sock, 2)
    if head[0] != 0x30:
        raise ValueError(f"not an LDAPMessage (tag {head[0]:#x})")
    length = head[1]
    raw = head
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("bad LDAPMessage length")
        more = _recv_exactly(sock, size)
        raw += more
        length = int.from_bytes(more, "big")
    if length > _MAX_RESPONSE:
        raise ValueError(f"StartTLS response of {length} bytes")
    return raw + _recv_exactly(sock, length)


def starttls_result(message: bytes, message_id: int = 1) -> tuple[int, str]:
    """Return (resultCode, diagnosticMessage) of a StartTLS ExtendedResponse.

    :raises ValueError: not the ExtendedResponse to ``message_id`` (a Notice of Disconnection,
        message ID 0, included).
    """
    tag, body, _ = _read_tlv(message, 0)
    if tag != 0x30:
        raise ValueError("not an LDAPMessage")
    tag, raw_id, pos = _read_tlv(body, 0)
    if tag != 0x02:
        raise ValueError("no message ID")
    got_id = int.from_bytes(raw_id, "big", signed=True)
    tag, response, _ = _read_tlv(body, pos)
    if tag != 0x78:  # [APPLICATION 24] ExtendedResponse
        raise ValueError(f"not an ExtendedResponse (tag {tag:#x})")
    tag, code, pos = _read_tlv(response, 0)
    if tag != 0x0A or not code:
        raise ValueError("no resultCode")
    result = int.from_bytes(code, "big", signed=True)
    diagnostic = ""
    try:
        _tag, _matched, pos = _read_tlv(response, pos)
        _tag, text, pos = _read_tlv(response, pos)
        diagnostic = text.decode("utf-8", "replace")
    except ValueError:
        pass
    if got_id != message_id:
        raise ValueError(f"unsolicited notice (message ID {got_id}, result {result}: {diagnostic!r})")
    return result, diagnostic


# -- Python's ssl, in a worker thread --------------------------------------------------------------


def _context(policy: TLSPolicy, check_name: bool) -> ssl.SSLContext:
    """An OpenSSL client context verifying as ``policy`` says (the name only if ``check_name``)."""
    ctx: ssl.SSLContext = _PySSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = check_name
    ctx.hostname_checks_common_name = not policy.require_san
    ctx.minimum_version = _SSL_VERSIONS[policy.min_version]
    ca_file, ca_dir = policy.ca_file, policy.ca_dir
    if ca_file is None and ca_dir is None:  # libldap's defaults (ldap.conf's TLS_CACERT...)
        ca_file = ldap.get_option(ldap.OPT_X_TLS_CACERTFILE) or None
        ca_dir = ldap.get_option(ldap.OPT_X_TLS_CACERTDIR) or None
        if ca_file is None and ca_dir is None:
            ctx.load_default_certs()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    if ca_dir is not None:  # libldap (GnuTLS) reads every file there, hashed names or not
        for entry in sorted(os.listdir(ca_dir)):
            path = os.path.join(ca_dir, entry)
            if os.path.isfile(path):
                try:
                    ctx.load_verify_locations(cafile=path)
                except (ssl.SSLError, ValueError, OSError):
                    pass
    if policy.cert_file is not None:
        ctx.load_cert_chain(policy.cert_file, policy.key_file)
    return ctx


def _handshake(fd: int, policy: TLSPolicy, server_hostname: str, check_name: bool,
               timeout: float) -> tuple[bytes, float]:
    """Run in a worker thread: the TLS handshake on descriptor ``fd`` (owned, closed here);
    return the peer certificate's DER and ``notAfter``."""
    sock = _PySocket(fileno=fd)
    try:
        sock.settimeout(max(timeout, 0.001))
        ctx = _context(policy, check_name)
        with ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            info = tls.getpeercert()
        if not der or not info:
            raise ssl.SSLError("the server sent no certificate")
        return der, float(ssl.cert_time_to_seconds(str(info["notAfter"])))
    finally:
        sock.close()


class _NameMismatch(Exception):
    """The chain verified, the name did not."""


def _failure(server: LDAPServer, reason: str) -> TLSVerificationError:
    return TLSVerificationError(f"TLS with {server.uri} failed (no credentials were sent): {reason}")


def _check_once(server: LDAPServer, policy: TLSPolicy, name: str | None, deadline: float) -> Verified:
    """One TCP connection and one handshake by Python's ssl, checking ``name`` (None: the chain only).

    :raises _NameMismatch: the chain verified, ``name`` is not the certificate's.
    :raises TLSVerificationError: the server was not verified (chain, expiry, protocol) or refused
        StartTLS.
    :raises OSError: the network failed.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"{server.uri}: no time left to verify the certificate")
    sock = gevent.socket.create_connection((server.host, server.port), timeout=remaining)
    try:
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        if server.scheme == "ldap":
            sock.sendall(starttls_request())
            try:
                code, diagnostic = starttls_result(read_message(sock))
            except ValueError as error:
                raise _failure(server, f"StartTLS answered with {error}") from None
            if code != 0:
                raise _failure(server, f"the server refused StartTLS (result {code}: {diagnostic!r})")
        fd = os.dup(sock.fileno())
        try:
            pending = spawn_blocking(
                _handshake, fd, policy, name or server.host, name is not None,
                deadline - time.monotonic(), key=server.uri,
            )
        except BaseException:
            os.close(fd)
            raise
        try:
            failed, value = pending.get()
        except BaseException:
            try:  # cut the thread's handshake short: it reads the same socket
                sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            raise
    finally:
        sock.close()
    if not failed:
        der, not_after = value
        return Verified(der, not_after, name)
    if isinstance(value, ssl.SSLCertVerificationError):
        if name is not None and value.verify_code in _NAME_MISMATCH:
            raise _NameMismatch(value.verify_message)
        raise _failure(server, f"certificate verify failed: {value.verify_message}")
    if isinstance(value, ssl.SSLError):
        raise _failure(server, f"TLS handshake failed: {value.reason or value}")
    raise value


def check_certificate(server: LDAPServer, policy: TLSPolicy, names: tuple[str, ...] | None,
                      timeout: float) -> Verified:
    """Verify ``server``'s certificate with Python's ssl on connections of its own: the chain
    always; the name against ``server.host``, then each of ``names`` in turn, each on a fresh
    connection (``names=None``: no name checked).  Within ``timeout`` seconds in all.

    :raises TLSVerificationError: the chain did not verify, or no name matched.
    :raises OSError: the network failed.
    """
    deadline = time.monotonic() + timeout
    if names is None:
        return _check_once(server, policy, None, deadline)
    candidates = [server.host, *(n for n in names if n != server.host)]
    for name in candidates:
        try:
            return _check_once(server, policy, name, deadline)
        except _NameMismatch as mismatch:
            logger.debug("TLS with %s: the certificate does not name %r: %s", server.uri, name, mismatch)
    raise _failure(server, _no_name(server, names))


def _no_name(server: LDAPServer, names: tuple[str, ...]) -> str:
    return (f"the certificate names neither the server's host {server.host!r} nor any of valid_names "
            f"{list(names)!r}")


def no_name_failure(server: LDAPServer, names: tuple[str, ...]) -> TLSVerificationError:
    """The error of a certificate that verified but named none of the accepted names."""
    return _failure(server, _no_name(server, names))

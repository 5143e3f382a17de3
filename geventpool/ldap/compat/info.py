"""ConnectionInfo: one validated description of an LDAP server and how to use it.

The configuration object of ldap_core_shared's documented API (see
:mod:`geventpool.ldap.compat.manager`): host, port, bind identity, TLS files,
retry and pool sizes, plus ``priority`` (for HA clusters) and
``password_callback`` (a rotated secret is picked up by the next new
connection, without a restart).

Building a ``ConnectionInfo`` never raises for bad values: :meth:`validate`
lists every problem, and the managers refuse an invalid one with a
:class:`~geventpool.ConfigurationError` listing them all.  No method ever
shows the password (``repr``, ``to_dict()`` unless asked, messages).
Instances are plain values, safe to share between greenlets.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ...errors import ConfigurationError
from ..credentials import Credentials, decode_password
from ..errors import AuthenticationFailed

__all__ = ["ConnectionInfo", "ValidationResult", "CallbackCredentials"]

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^[0-9A-Fa-f:.]+$")
# field name -> (default, kind) ; kind drives from_env() parsing and validate()
_FIELDS: dict[str, tuple[Any, str]] = {
    "host": (None, "str"),
    "port": (389, "int"),
    "bind_dn": (None, "str"),
    "password": (None, "secret"),
    "use_ssl": (False, "bool"),
    "use_tls": (False, "bool"),
    "timeout": (30, "float"),
    "max_retries": (3, "int"),
    "retry_delay": (1.0, "float"),
    "pool_size": (10, "int"),
    "max_pool_size": (50, "int"),
    "pool_timeout": (60, "float"),
    "validate_cert": (True, "bool"),
    "ca_cert_path": (None, "str"),
    "client_cert_path": (None, "str"),
    "client_key_path": (None, "str"),
    "priority": (0, "int"),
    "password_callback": (None, "callable"),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class ValidationResult:
    """What :meth:`ConnectionInfo.validate` found: ``valid`` and every problem (``errors``).

    ``warnings`` are legal but unwise settings (certificate checks off...).
    ``schema_errors`` is the documentation's name for ``errors``.
    """

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """True when no error was found (warnings do not count)."""
        return not self.errors

    @property
    def schema_errors(self) -> list[str]:
        """The same list as ``errors`` (the documented name)."""
        return self.errors

    def __bool__(self) -> bool:
        return self.valid


class CallbackCredentials(Credentials):
    """Credentials whose password is asked of a callback each time a connection binds.

    The identity key stays the one of the DN (the password is not known in
    advance), so connections bound with an older secret stay in service:
    a rotation costs no re-bind of open connections, only new connections
    use the new secret.

    :raises AuthenticationFailed: (from :meth:`reveal`) the callback returned
        nothing usable; nothing is sent to the server then.
    """

    __slots__ = ("_callback",)
    fixed = False  # the callback may answer another password next time

    def __init__(self, dn: str, callback: Callable[[], str | bytes | None]) -> None:
        super().__init__(dn, "\x00password-callback\x00")  # a placeholder: never sent
        self._callback = callback

    def reveal(self) -> str:
        """Call the callback and return its password, for the bind request only."""


        password = self._callback()
        if isinstance(password, bytes):
            try:
                password = decode_password(password, self.dn)
            except ConfigurationError as error:
                raise AuthenticationFailed({
                    "desc": "Invalid credentials",
                    "info": f"password_callback: {error}; nothing was sent",
                }) from None
        if not isinstance(password, str) or not password:
            raise AuthenticationFailed({
                "desc": "Invalid credentials",
                "info": f"password_callback for {self.dn!r} returned no password; nothing was sent",
            })
        return password

    def __repr__(self) -> str:
        return f"<CallbackCredentials dn={self.dn!r} password=(callback)>"

    __str__ = __repr__


class ConnectionInfo:
    """The configuration of one LDAP server (the documented fields and defaults).

    ``timeout``: seconds for one connect attempt and for one operation;
    ``max_retries``: connect attempts per server (at least one);
    ``retry_delay``: seconds between them; ``pool_size``: connections kept
    open; ``max_pool_size``: the most connections; ``pool_timeout``: seconds
    a caller waits for a free connection; ``validate_cert``: verify the
    server's certificate and hostname (default on); ``priority``: lower is
    preferred in an HA cluster; ``password_callback``: a callable returning
    the password, called whenever a new connection binds (instead of a fixed
    ``password``).
    """

    host: str
    port: int
    bind_dn: str | None
    password: str | None
    use_ssl: bool
    use_tls: bool
    timeout: float
    max_retries: int
    retry_delay: float
    pool_size: int
    max_pool_size: int
    pool_timeout: float
    validate_cert: bool
    ca_cert_path: str | None
    client_cert_path: str | None
    client_key_path: str | None
    priority: int
    password_callback: Callable[[], str | bytes | None] | None

    def __init__(
        self,
        host: str,
        port: int = 389,
        bind_dn: str | None = None,
        password: str | None = None,
        use_ssl: bool = False,
        use_tls: bool = False,
        timeout: float = 30,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        pool_size: int = 10,
        max_pool_size: int = 50,
        pool_timeout: float = 60,
        validate_cert: bool = True,
        ca_cert_path: str | None = None,
        client_cert_path: str | None = None,
        client_key_path: str | None = None,
        *,
        priority: int = 0,
        password_callback: Callable[[], str | bytes | None] | None = None,
    ) -> None:
        values = dict(locals())
        for name in _FIELDS:
            object.__setattr__(self, name, values[name])

    # -- checks ---------------------------------------------------------------------------------

    def validate(self) -> ValidationResult:
        """Check every field; return all the problems found (never raises)."""
        result = ValidationResult()
        err = result.errors.append
        host = self.host
        if not isinstance(host, str) or not host:
            err(f"host must be a non-empty str, got {_shown(host)}")
        elif "://" in host or not _HOSTNAME.match(host):
            err(f"host {host!r} is not a hostname or IP address (give the scheme with use_ssl)")
        _check_int(err, "port", self.port, 1, 65535)
        _check_int(err, "max_retries", self.max_retries, 0, None)
        _check_int(err, "pool_size", self.pool_size, 0, None)
        _check_int(err, "max_pool_size", self.max_pool_size, 1, None)
        if _is_int(self.pool_size) and _is_int(self.max_pool_size) and self.pool_size > self.max_pool_size:
            err(f"pool_size ({self.pool_size}) must not exceed max_pool_size ({self.max_pool_size})")
        _check_int(err, "priority", self.priority, None, None)
        _check_number(err, "timeout", self.timeout, positive=True)
        _check_number(err, "retry_delay", self.retry_delay, positive=False)
        _check_number(err, "pool_timeout", self.pool_timeout, positive=True)
        for name in ("use_ssl", "use_tls", "validate_cert"):
            if not isinstance(getattr(self, name), bool):
                err(f"{name} must be True or False, got {_shown(getattr(self, name))}")
        if self.use_ssl is True and self.use_tls is True:
            err("use_ssl (ldaps://) and use_tls (StartTLS) exclude each other: choose one")
        self._check_identity(err)
        self._check_tls(result)
        return result

    def _check_identity(self, err: Callable[[str], None]) -> None:
        dn: Any = self.bind_dn
        password: Any = self.password
        callback: Any = self.password_callback
        if dn is not None and (not isinstance(dn, str) or "=" not in dn):
            err(f"bind_dn must be a DN such as 'cn=admin,dc=example,dc=com', got {_shown(dn)}")
        if password is not None and not isinstance(password, str):
            err(f"password must be a str, got {type(password).__name__}")
        if callback is not None and not callable(callback):
            err(f"password_callback must be callable, got {type(callback).__name__}")
        if password and callback is not None:
            err("give password or password_callback, not both")
        if dn and not password and callback is None:
            err(f"bind_dn {dn!r} has no password (an unauthenticated bind): give password or "
                "password_callback, or no bind_dn for anonymous access")
        if not dn and (password or callback is not None):
            err("password (or password_callback) given without bind_dn")

    def _check_tls(self, result: ValidationResult) -> None:
        err = result.errors.append
        for name in ("ca_cert_path", "client_cert_path", "client_key_path"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not os.path.isfile(value):
                err(f"{name} {_shown(value)} is not a readable file")
            elif not os.access(value, os.R_OK):
                err(f"{name} {value!r} is not readable")
        if (self.client_cert_path is None) != (self.client_key_path is None):
            err("client_cert_path and client_key_path go together")
        encrypted = self.use_ssl is True or self.use_tls is True
        tls_files = [n for n in ("ca_cert_path", "client_cert_path") if getattr(self, n) is not None]
        if tls_files and not encrypted:
            err(f"{' and '.join(tls_files)} set but neither use_ssl nor use_tls: the file would be unused")
        if self.validate_cert is False and encrypted:
            result.warnings.append("validate_cert=False: the server is not authenticated")
        if not encrypted and (self.password or self.password_callback is not None):
            result.warnings.append("the password is sent in clear text (neither use_ssl nor use_tls)")
        if self.use_ssl is False and self.port == 636:
            result.warnings.append("port 636 is the ldaps port but use_ssl is False")

    def check(self) -> None:
        """Raise :class:`ConfigurationError` listing every problem :meth:`validate` finds."""
        result = self.validate()
        if not result.valid:
            raise ConfigurationError(
                f"ConnectionInfo for {_shown(self.host)}: " + "; ".join(result.errors)
            )

    # -- derived values ----------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """``ldap://host:port`` or ``ldaps://host:port`` (with ``use_ssl``)."""
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"{'ldaps' if self.use_ssl else 'ldap'}://{host}:{self.port}"

    @property
    def encryption(self) -> str:
        """``"ssl"`` (ldaps), ``"starttls"`` or ``"none"``."""
        return "ssl" if self.use_ssl else "starttls" if self.use_tls else "none"

    @property
    def auth_method(self) -> str:
        """``"simple"`` (a bind DN) or ``"anonymous"``."""
        return "simple" if self.bind_dn else "anonymous"

    def credentials(self) -> Credentials:
        """The bind credentials (a callback-backed object with ``password_callback``)."""
        if self.bind_dn and self.password_callback is not None:
            return CallbackCredentials(self.bind_dn, self.password_callback)
        return Credentials(self.bind_dn, self.password)

    # -- conversions -------------------------------------------------------------------------------

    def to_dict(self, include_password: bool = False) -> dict[str, Any]:
        """The fields as a dict; ``password`` only with ``include_password=True``.

        ``password_callback`` is never included (it is not data).
        """
        secret = ("password", "password_callback")
        data = {name: getattr(self, name) for name in _FIELDS if name not in secret}
        if include_password:
            data["password"] = self.password
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectionInfo:
        """Build from a dict (a JSON file's section, say).

        :raises ConfigurationError: unknown keys (all named), no ``host``, or not a mapping.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"ConnectionInfo.from_dict needs a mapping, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise ConfigurationError(
                f"ConnectionInfo.from_dict: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(_FIELDS)}"
            )
        if "host" not in data:
            raise ConfigurationError("ConnectionInfo.from_dict: 'host' is required")
        return cls(**data)

    @classmethod
    def from_env(
        cls, prefix: str = "LDAP_", environ: Mapping[str, str] | None = None, **defaults: Any
    ) -> ConnectionInfo:
        """Build from environment variables ``<prefix><FIELD>`` (``LDAP_HOST``, ``LDAP_PORT``...).

        Every field may be given (``LDAP_USE_SSL=true``, ``LDAP_POOL_SIZE=20``,
        ``LDAP_CA_CERT_PATH``...); a variable wins over the keyword ``defaults``.

        :raises ConfigurationError: no host (variable and default both missing),
            or a variable that does not parse (named; its value is not shown for the password).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (_default, kind) in _FIELDS.items():
            if name in defaults:
                values[name] = defaults.pop(name)
            raw = env.get(prefix + name.upper())
            if raw is None or kind == "callable":
                continue
            values[name] = _parse_env(prefix + name.upper(), raw, kind)
        if defaults:
            raise ConfigurationError(f"ConnectionInfo.from_env: unknown field(s) {sorted(defaults)}")
        if not values.get("host"):
            raise ConfigurationError(f"ConnectionInfo.from_env: {prefix}HOST is not set")
        return cls(**values)

    # -- display -------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        secret = "(callback)" if self.password_callback is not None else "***" if self.password else "(none)"
        return (
            f"ConnectionInfo(host={self.host!r}, port={self.port!r}, bind_dn={self.bind_dn!r}, "
            f"password={secret}, encryption={self.encryption!r}, priority={self.priority!r})"
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConnectionInfo):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("ConnectionInfo cannot be pickled (it may hold a password)")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(err: Callable[[str], None], name: str, value: Any, low: int | None, high: int | None) -> None:
    if not _is_int(value):
        err(f"{name} must be an int, got {_shown(value)}")
    elif (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        err(f"{name} must be {bounds}, got {value}")


def _check_number(err: Callable[[str], None], name: str, value: Any, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        err(f"{name} must be a number of seconds, got {_shown(value)}")
    elif value < 0 or (positive and value == 0) or value == float("inf"):
        err(f"{name} must be {'> 0' if positive else '>= 0'} and finite, got {value}")


def _parse_env(variable: str, raw: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigurationError(
            f"ConnectionInfo.from_env: {variable}={raw!r} is not a valid {kind}"
        ) from None
    return raw or None

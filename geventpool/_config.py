"""Argument checks shared by the pools: each raises ConfigurationError naming the argument."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .errors import ConfigurationError
from .servers import as_server_pool

__all__ = ["check_count", "check_seconds", "check_optional_seconds", "check_exc_classes", "PoolSettings"]


def check_count(owner: str, name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"{owner}: {name} must be an int >= {minimum}, got {value!r}"
        )
    return value


def check_seconds(owner: str, name: str, value: Any, *, allow_zero: bool = True) -> float:
    """Return ``value`` as a float if it is a finite number of seconds (>= 0, or > 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}: {name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{owner}: {name} must be finite and {bound} seconds, got {value!r}")
    return float(value)


def check_optional_seconds(owner: str, name: str, value: Any, *, allow_zero: bool = True) -> float | None:
    """Like :func:`check_seconds`, but ``None`` (meaning "off") is accepted."""
    if value is None:
        return None
    return check_seconds(owner, name, value, allow_zero=allow_zero)


def check_exc_classes(owner: str, value: Any) -> tuple[type[BaseException], ...]:
    """Return ``value`` as a non-empty tuple of exception classes."""
    if isinstance(value, type):
        value = (value,)
    try:
        classes = tuple(value)
    except TypeError:
        classes = ()
    if not classes or not all(
        isinstance(c, type) and issubclass(c, BaseException) for c in classes
    ):
        raise ConfigurationError(
            f"{owner}: exc_classes must be a tuple of exception classes, got {value!r}"
        )
    return classes


class PoolSettings(NamedTuple):
    """A core pool's checked options (every bad value refused here, naming its argument)."""

    name: str
    min_size: int
    max_size: int
    exc_classes: tuple[type[BaseException], ...]
    timeout: float
    connect_timeout: float
    keepalive: float | None
    keepalive_timeout: float
    max_waiting: int
    max_idle: float
    max_lifetime: float
    ping_after: float | None
    max_connecting: int
    reconnect_timeout: float
    leak_threshold: float | None
    server_pool: Any

    @staticmethod
    def seconds(owner: str, name: str, value: Any) -> float:
        """Refuse a value that is not a finite number of seconds >= 0."""
        return check_seconds(owner, name, value)

    @staticmethod
    def sizes(owner: str, min_size: Any, max_size: Any) -> None:
        """Refuse bounds that are not counts, or a ``min_size`` above ``max_size``."""
        check_count(owner, "min_size", min_size)
        check_count(owner, "max_size", max_size, 1)
        if min_size > max_size:
            raise ConfigurationError(f"{owner}: min_size ({min_size}) must not exceed max_size ({max_size})")

    @classmethod
    def check(cls, owner: str, **given: Any) -> PoolSettings:
        """Check the keyword arguments of ``ConnectionPool.__init__``.

        :raises ConfigurationError: a value is invalid (the message names it, never a secret).
        """
        size, min_size, max_size = given["size"], given["min_size"], given["max_size"]
        if size is not None and (min_size is not None or max_size is not None):
            raise ConfigurationError(f"{owner}: give size, or min_size/max_size, not both")
        if size is not None:
            min_size = max_size = check_count(owner, "size", size, 1)
        if min_size is None and max_size is None:
            min_size = max_size = 10
        elif max_size is None:
            max_size = max(check_count(owner, "min_size", min_size), 1)
        elif min_size is None:
            min_size = check_count(owner, "max_size", max_size, 1)
        cls.sizes(owner, min_size, max_size)
        name = given["name"]
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{owner}: name must be a non-empty str, got {name!r}")
        for label in ("reconnect_failed",):
            value = given[label]
            if value is not None and not callable(value):
                raise ConfigurationError(f"{owner}: {label} must be callable, got {value!r}")
        if not callable(given["clock"]) or not callable(given["rng"]):
            raise ConfigurationError(f"{owner}: clock and rng must be callables")
        keepalive = check_optional_seconds(owner, "keepalive", given["keepalive"], allow_zero=False)
        ping_after = check_optional_seconds(owner, "ping_after", given["ping_after"])
        timeout = check_seconds(owner, "timeout", given["timeout"])
        keepalive_timeout = check_seconds(
            owner, "keepalive_timeout", given["keepalive_timeout"], allow_zero=False
        )
        max_lifetime = check_seconds(owner, "max_lifetime", given["max_lifetime"], allow_zero=False)
        if (keepalive is not None or ping_after is not None) and not given["can_check"]:
            raise ConfigurationError(
                f"{owner}: keepalive and ping_after need a _keepalive(conn) method to check connections"
            )
        if keepalive is not None and keepalive >= max_lifetime:
            raise ConfigurationError(
                f"{owner}: keepalive ({keepalive!r}) must be shorter than max_lifetime ({max_lifetime!r})"
            )
        if timeout and keepalive_timeout > timeout and ping_after is not None:
            raise ConfigurationError(
                f"{owner}: keepalive_timeout ({keepalive_timeout!r}) must not exceed timeout ({timeout!r})"
            )
        servers = given["servers"]
        return cls(
            name=name,
            min_size=min_size,
            max_size=max_size,
            exc_classes=check_exc_classes(owner, given["exc_classes"]),
            timeout=timeout,
            connect_timeout=check_seconds(
                owner, "connect_timeout", given["connect_timeout"], allow_zero=False
            ),
            keepalive=keepalive,
            keepalive_timeout=keepalive_timeout,
            max_waiting=check_count(owner, "max_waiting", given["max_waiting"]),
            max_idle=check_seconds(owner, "max_idle", given["max_idle"], allow_zero=False),
            max_lifetime=max_lifetime,
            ping_after=ping_after,
            max_connecting=check_count(owner, given["connecting_label"], given["max_connecting"], 1),
            reconnect_timeout=check_seconds(owner, "reconnect_timeout", given["reconnect_timeout"],
                                            allow_zero=False),
            leak_threshold=check_optional_seconds(owner, "leak_threshold", given["leak_threshold"],
                                                  allow_zero=False),
            server_pool=None if servers is None else as_server_pool(servers),
        )

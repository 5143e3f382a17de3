"""Argument checks shared by the pools: each raises ConfigurationError naming the argument."""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigurationError

__all__ = ["check_count", "check_seconds", "check_optional_seconds", "check_exc_classes"]


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

"""A cooperative, deadline-bound wait for a condition: the tests' deterministic wait."""

from __future__ import annotations

import math
import time
from typing import Callable, TypeVar

import gevent

from ..errors import ConfigurationError

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.001,
    message: str | None = None,
) -> T:
    """Poll ``predicate()`` until it returns a true value, and return that value.

    Sleeps ``interval`` seconds between calls with ``gevent.sleep``, so other
    greenlets run meanwhile; use it instead of a fixed sleep to wait for
    something another greenlet does.  Exceptions raised by ``predicate``
    propagate at once.

    :raises AssertionError: the condition is still false after ``timeout``
        seconds; the message describes it (``message``, or the predicate's
        name) and its last value.
    :raises ConfigurationError: ``timeout`` or ``interval`` is negative or not finite.
    """
    for name, value in (("timeout", timeout), ("interval", interval)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"wait_until: {name} must be a finite number >= 0, got {value!r}")
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__qualname__", None) or repr(predicate)
            raise AssertionError(
                f"wait_until: {what} still false after {timeout:g} s (last value: {result!r})"
            )
        gevent.sleep(interval)

"""The one backoff function: the pool's reconnects, ``@retry`` and the circuit breaker use it."""

from __future__ import annotations

import random
from typing import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    interval: float,
    backoff: float = 1.0,
    max_interval: float = 30.0,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Return the delay before retry number ``attempt`` (1 for the first retry).

    ``interval * backoff ** (attempt - 1)``, capped at ``max_interval``, then
    reduced by a random fraction of up to ``jitter`` (1.0 is "full jitter").
    A pure function of its arguments and ``rand()``.
    """
    exponent = max(attempt - 1, 0)
    try:
        grown = interval * backoff**exponent
    except OverflowError:
        grown = max_interval
    delay = min(max_interval, grown)
    return float(delay * (1.0 - jitter * rand()))

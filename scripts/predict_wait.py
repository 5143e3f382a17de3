#!/usr/bin/env python3
"""Predict how long requests wait for a pooled connection, from a queueing model.

    .venv/bin/python scripts/predict_wait.py --rate 600 --hold 0.0055 --size 4
    .venv/bin/python scripts/predict_wait.py --rate 600 --hold 0.0055 --size 4 --cs2 0.05
    .venv/bin/python scripts/predict_wait.py --rate 600 --hold 0.0055 --target-p99 0.002

The pool is an M/M/c queue: requests arrive at random (Poisson, ``--rate`` per
second), each holds a connection for ``--hold`` seconds on average
(exponentially distributed), ``--size`` connections serve them in FIFO order.
Little's law gives the connections busy on average (``rate x hold``); Erlang's C
formula the chance that a request has to wait, and the wait's mean and
percentiles.  Hold times that vary less than exponential ones (a fixed query:
``--cs2``, the squared coefficient of variation of the hold time, near 0) wait
less: the Allen-Cunneen approximation scales the waits by ``(1 + cs2) / 2``.
``--target-p99`` finds the smallest pool whose p99 wait is within the target.

Standard library only; ``benchmarks/sizing.py`` checks the model against a
measurement on PostgreSQL.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

__all__ = ["Prediction", "erlang_c", "predict", "smallest_pool"]


def erlang_c(servers: int, load: float) -> float:
    """Return the probability that an arrival waits in an M/M/c queue (Erlang C).

    ``servers`` is c (connections), ``load`` is a = rate x mean hold (Erlangs).
    Computed through the Erlang B recursion, stable for large c.

    :raises ValueError: ``servers`` < 1, ``load`` < 0, or ``load`` >= ``servers`` (no steady state).
    """
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if load < 0 or not math.isfinite(load):
        raise ValueError(f"load must be a finite number >= 0, got {load}")
    if load >= servers:
        raise ValueError(f"load {load:g} Erlangs >= {servers} connections: the queue grows without bound")
    blocking = 1.0  # Erlang B with 0 servers
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    rho = load / servers
    return blocking / (1 - rho + rho * blocking)


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one pool (times in seconds)."""

    rate: float
    hold: float
    size: int
    cs2: float
    busy: float  # Little's law: connections in use on average
    utilisation: float
    p_wait: float  # chance that a request waits at all
    mean_wait: float
    p50_wait: float
    p99_wait: float

    def wait_quantile(self, q: float) -> float:
        """Return the ``q`` quantile of the wait (0 < q < 1)."""
        return _quantile(self.p_wait, self._decay, q)

    def wait_exceeds(self, t: float) -> float:
        """Return the predicted share of requests that wait longer than ``t`` seconds."""
        return self.p_wait * math.exp(-self._decay * t) if t >= 0 else 1.0

    @property
    def _decay(self) -> float:
        """Rate (1/s) of the exponential tail of the wait, scaled by the Allen-Cunneen factor."""
        return (self.size / self.hold - self.rate) / ((1 + self.cs2) / 2)


def _quantile(p_wait: float, decay: float, q: float) -> float:
    # P(W > t) = p_wait * exp(-decay * t)  =>  t_q = ln(p_wait / (1 - q)) / decay, 0 if p_wait <= 1 - q
    if p_wait <= 1 - q:
        return 0.0
    return math.log(p_wait / (1 - q)) / decay


def predict(rate: float, hold: float, size: int, cs2: float = 1.0) -> Prediction:
    """Predict the wait for a connection (M/M/c; Allen-Cunneen for ``cs2`` other than 1).

    :raises ValueError: a value out of range, or rate x hold >= size (the pool cannot keep up).
    """
    for name, value in (("rate", rate), ("hold", hold)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not (math.isfinite(cs2) and cs2 >= 0):
        raise ValueError(f"cs2 must be a finite number >= 0, got {cs2!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    load = rate * hold
    p_wait = erlang_c(size, load)
    factor = (1 + cs2) / 2
    decay = (size / hold - rate) / factor
    return Prediction(
        rate=rate, hold=hold, size=size, cs2=cs2, busy=load, utilisation=load / size, p_wait=p_wait,
        mean_wait=p_wait / decay, p50_wait=_quantile(p_wait, decay, 0.5),
        p99_wait=_quantile(p_wait, decay, 0.99),
    )


def smallest_pool(rate: float, hold: float, target_p99: float, cs2: float = 1.0, limit: int = 10_000) -> int:
    """Return the smallest pool size whose predicted p99 wait is at most ``target_p99`` seconds.

    :raises ValueError: none up to ``limit`` connections.
    """
    start = max(1, math.floor(rate * hold) + 1)
    for size in range(start, limit + 1):
        if predict(rate, hold, size, cs2).p99_wait <= target_p99:
            return size
    raise ValueError(f"no pool of up to {limit} connections meets a p99 wait of {target_p99} s")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, required=True, help="requests per second needing a connection")
    parser.add_argument("--hold", type=float, required=True, help="mean seconds a request holds a connection")
    parser.add_argument("--size", type=int, help="connections in the pool")
    parser.add_argument("--cs2", type=float, default=1.0,
                        help="squared coefficient of variation of the hold time (1: exponential, 0: fixed)")
    parser.add_argument("--target-p99", type=float,
                        help="find the smallest pool with this p99 wait (seconds)")
    args = parser.parse_args(argv)
    if args.size is None and args.target_p99 is None:
        parser.error("give --size, --target-p99, or both")
    try:
        print(f"Little's law: {args.rate:g}/s x {_ms(args.hold)} = {args.rate * args.hold:.2f} connections "
              "busy on average")
        if args.target_p99 is not None:
            size = smallest_pool(args.rate, args.hold, args.target_p99, args.cs2)
            print(f"smallest pool with a p99 wait <= {_ms(args.target_p99)}: {size}")
        if args.size is not None:
            p = predict(args.rate, args.hold, args.size, args.cs2)
            print(f"pool of {p.size}: utilisation {p.utilisation:.0%}, {p.p_wait:.1%} of requests wait; "
                  f"wait mean {_ms(p.mean_wait)}, p50 {_ms(p.p50_wait)}, p99 {_ms(p.p99_wait)} "
                  f"(cs2 {p.cs2:g})")
    except ValueError as error:
        print(f"predict_wait: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

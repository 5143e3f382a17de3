"""The fault proxy's modes, their parameters, and the check of both."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import ConfigurationError

__all__ = ["MODES", "check_mode", "is_number", "is_port"]

#: Every mode and the parameters it takes (read-only).
MODES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "pass": (),
    "delay": ("ms",),
    "drip": ("bytes_per_sec",),
    "stall": (),
    "blackhole": (),
    "reset": (),
    "half_close": (),
    "truncate": ("n",),
    "corrupt": ("n",),
    "refuse": (),
    "deaf": (),
    "flap": ("period",),
})


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_port(value: object, allow_zero: bool) -> bool:
    lowest = 0 if allow_zero else 1
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= 65535


def check_mode(mode: object, params: dict[str, Any]) -> None:
    if not isinstance(mode, str) or mode not in MODES:
        raise ConfigurationError(f"FaultProxy: unknown mode {mode!r}; modes: {', '.join(MODES)}")
    wanted = MODES[mode]
    for name in params:
        if name not in wanted:
            raise ConfigurationError(f"FaultProxy: mode {mode!r} takes no parameter {name!r}")
    for name in wanted:
        if name not in params:
            raise ConfigurationError(f"FaultProxy: mode {mode!r} needs the parameter {name}=")
        value = params[name]
        if name == "n":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            rule = "an int >= 0"
        elif name == "ms":
            ok = is_number(value) and value >= 0
            rule = "a finite number >= 0"
        else:
            ok = is_number(value) and value > 0
            rule = "a finite number > 0"
        if not ok:
            raise ConfigurationError(f"FaultProxy: {mode} parameter {name} must be {rule}, got {value!r}")

"""The optional C speedups of the checkout and return paths, and the switch to do without.

``geventpool/_speedups.c`` holds the same checkout (``take``) and the same
:class:`~geventpool.Lease` as the Python code in ``pool.py`` and ``_lease.py``,
only without the interpreter's per-bytecode cost.  It is built when the
package is installed if a C compiler is there (``optional``: a failed build
leaves the pure-Python code in charge, which behaves the same).  Set
``GEVENTPOOL_PURE_PYTHON=1`` to use the Python code even when it was built.
"""

from __future__ import annotations

import importlib
import os
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable

from gevent import getcurrent

from ._slot import Slot, SlotState
from ._state import SlotTable, Waiter

__all__ = ["load", "load_extension", "active"]

_loaded: ModuleType | None = None
_tried = False


def load() -> ModuleType | None:
    """Return the set-up C module, or None (not built, out of date, or turned off)."""
    global _loaded, _tried
    if _tried:
        return _loaded
    _tried = True
    _loaded = load_extension(
        f"{__package__}._speedups",
        Path(__file__).with_name("_speedups.c"),
        lambda module: module.setup(
            Slot, SlotTable, Waiter, SlotState.IDLE, SlotState.IN_USE, getcurrent, time.monotonic
        ),
    )
    return _loaded


#: the header both C modules include: a build older than it is out of date too
SHARED_HEADER = Path(__file__).with_name("_slots.h")


def load_extension(name: str, source: Path, setup: Callable[[ModuleType], object]) -> ModuleType | None:
    """Import the C module ``name`` built from ``source`` and run ``setup(module)``; None (the
    Python code runs) if ``GEVENTPOOL_PURE_PYTHON`` is set, it is not built, it is older than its
    source or :data:`SHARED_HEADER` (with a warning), or ``setup`` refuses its layout (with a
    warning)."""
    if os.environ.get("GEVENTPOOL_PURE_PYTHON"):
        return None
    try:  # not at the top: GEVENTPOOL_PURE_PYTHON must keep the module unloaded
        module = importlib.import_module(name)
    except ImportError:
        return None
    built = Path(module.__file__ or "")
    # whole seconds: a build copies its output with the time truncated to the second
    newer = [path for path in (source, SHARED_HEADER) if path.exists() and built.exists()
             and int(path.stat().st_mtime) > int(built.stat().st_mtime)]
    if newer:
        warnings.warn(
            f"geventpool: {built.name} is older than {newer[0].name}; using the pure-Python code "
            "(rebuild with: python setup.py build_ext --inplace)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    try:
        setup(module)
    except Exception as error:  # a layout the C code does not expect: Python it is
        warnings.warn(f"geventpool: C speedups {name} not used: {error}", RuntimeWarning, stacklevel=3)
        return None
    return module


def active() -> bool:
    """Whether the C speedups are in use in this process."""
    return load() is not None

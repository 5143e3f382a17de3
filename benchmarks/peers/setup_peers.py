"""Build benchmarks/.peers/: a separate venv with the peer pools, and a patched geventconnpool.

Run it with the project's interpreter (so the peers get the same gevent and
greenlet versions as geventpool's own rows)::

    .venv/bin/python benchmarks/peers/setup_peers.py [--fresh]

It needs PyPI (pip's ordinary client) and nothing else.  What it makes:

- ``benchmarks/.peers/venv``: gevent and greenlet pinned to this interpreter's
  versions, plus the peers pinned in ``benchmarks/peers/requirements.txt``;
- ``benchmarks/.peers/geventconnpool-0.2.1-patched/geventconnpool``: the
  geventconnpool 0.2.1 sdist from PyPI with the few edits it needs to import and
  run on Python 3 (listed in ``PATCHES`` below and written to ``PATCHES.txt``
  beside it).  It is put on ``PYTHONPATH`` by ``overhead.py``, never installed.

The directory is gitignored; running this again is cheap (``--fresh`` rebuilds).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from pathlib import Path

__all__ = ["PEERS_DIR", "VENV_DIR", "GEVENTCONNPOOL_DIR", "PATCHES", "peers_python", "main"]

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE.parent / ".peers"
VENV_DIR = PEERS_DIR / "venv"
GEVENTCONNPOOL_VERSION = "0.2.1"
GEVENTCONNPOOL_DIR = PEERS_DIR / f"geventconnpool-{GEVENTCONNPOOL_VERSION}-patched"

#: (file inside the package, text in the sdist, replacement, expected count).
#: The minimum that lets geventconnpool 0.2.1 import and run on Python 3; its
#: logic is left exactly as released.
PATCHES: list[tuple[str, str, str, int]] = [
    ("__init__.py", "from pool import ConnectionPool, retry", "from .pool import ConnectionPool, retry", 1),
    ("pool.py", "from gevent.coros import BoundedSemaphore", "from gevent.lock import BoundedSemaphore", 1),
    ("pool.py", "xrange(", "range(", 2),
    ("pool.py", "f.func_name", "f.__name__", 2),
]


def peers_python() -> Path:
    """Return the peers venv's interpreter (it may not exist yet)."""
    return VENV_DIR / "bin" / "python"


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _pinned_gevent() -> list[str]:
    pins = []
    for name in ("gevent", "greenlet"):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def build_venv(fresh: bool) -> None:
    if fresh and VENV_DIR.exists():
        shutil.rmtree(VENV_DIR)
    if not peers_python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV_DIR)
    _run(
        [str(peers_python()), "-m", "pip", "install", "-q", *_pinned_gevent(),
         "-r", str(HERE / "requirements.txt")]
    )


def patch_geventconnpool(fresh: bool) -> None:
    if GEVENTCONNPOOL_DIR.exists():
        if not fresh:
            return
        shutil.rmtree(GEVENTCONNPOOL_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        _run(
            [str(peers_python()), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"geventconnpool=={GEVENTCONNPOOL_VERSION}", "-d", tmp]
        )
        (sdist,) = Path(tmp).glob("geventconnpool-*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        package = Path(tmp) / f"geventconnpool-{GEVENTCONNPOOL_VERSION}" / "src" / "geventconnpool"
        done = []
        for name, old, new, expected in PATCHES:
            path = package / name
            text = path.read_text()
            found = text.count(old)
            if found != expected:
                raise SystemExit(
                    f"geventconnpool sdist changed: {name} has {found} x {old!r}, expected {expected}"
                )
            path.write_text(text.replace(old, new))
            done.append(f"{name}: {old!r} -> {new!r} ({expected}x)")
        GEVENTCONNPOOL_DIR.mkdir(parents=True)
        shutil.copytree(package, GEVENTCONNPOOL_DIR / "geventconnpool")
    (GEVENTCONNPOOL_DIR / "PATCHES.txt").write_text(
        f"geventconnpool {GEVENTCONNPOOL_VERSION} sdist from PyPI, patched for Python 3 by "
        "benchmarks/peers/setup_peers.py:\n" + "\n".join(done) + "\n"
    )
    print("patched geventconnpool:", *done, sep="\n  ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild benchmarks/.peers from scratch")
    args = parser.parse_args(argv)
    PEERS_DIR.mkdir(exist_ok=True)
    build_venv(args.fresh)
    patch_geventconnpool(args.fresh)
    names = ("gevent", "greenlet", "gsocketpool", "eventlet", "psycopg", "psycopg-pool", "SQLAlchemy")
    _run(
        [str(peers_python()), "-c",
         f"import importlib.metadata as m; print(*(n + ' ' + m.version(n) for n in {names!r}), sep=chr(10))"]
    )
    print(f"peers ready in {PEERS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

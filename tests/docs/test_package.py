"""The distribution builds, passes ``twine check``, and imports without the optional drivers.

Runs ``scripts/check-package.sh`` (sdist + wheel with ``python -m build``,
``twine check --strict``, the wheel's contents, and an install into a fresh
venv without python-ldap or psycopg2).  It needs the package index that pip
is configured with, and takes 20-60 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from gevent import subprocess

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600


@pytest.mark.guard(TIMEOUT + 30)
def test_check_package() -> None:
    for module in ("build", "twine"):
        # in the dev extra (make test installs it); a bare `test` env (tox) skips
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check-package.sh"), sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    report = f"exit status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    assert "check-package: OK" in result.stdout, report
    assert "py.typed included" in result.stdout, report
    assert "PASSED" in result.stdout, report

"""examples/ldap_failover.py runs (two private slapd, a kill, failover and failback) and checks its claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__: list[str] = []

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "ldap_failover.py"


def test_ldap_failover_example() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=SCRIPT.parents[1], env=dict(os.environ, PYTHONUNBUFFERED="1"),
        capture_output=True, text=True, timeout=90, check=False,
    )
    shown = f"exit status {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, shown
    for line in (
        "ok: the primary's rootDSE was read",
        "ok: every call goes to the primary",
        "ok: primary killed: the replica served a call",
        "ok: all 8 connections are on the replica",
        "circuit=open",
        "ok: primary back: the connections failed back to it",
        "0 failed",
        "ldap_failover: all checks passed",
    ):
        assert line in result.stdout, f"missing {line!r}\n{shown}"
    assert "Traceback" not in result.stdout + result.stderr, shown

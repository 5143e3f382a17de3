"""Every examples/dbapi_*.py runs to completion (each starts its own PostgreSQL or uses a temp file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("dbapi_sqlite.py", "rows: 100"),
        ("dbapi_psycopg2.py", "greetings: 20"),
        ("dbapi_connector.py", "blog -> blog"),
        ("dbapi_web.py", "500 requests answered by"),
        ("dbapi_psycopg3.py", "query left on the server after kill: 0"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    if "psycopg3" in script:
        pytest.importorskip("psycopg")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout
    assert "Traceback" not in result.stderr

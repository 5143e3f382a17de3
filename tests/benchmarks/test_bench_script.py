"""Keep scripts/bench.py (what ``make bench`` runs) from rotting: a quick run of the overhead benchmark.

Behaviour only: the pages and the chart are written, the progress bar is shown;
no speed is asserted.  Needs neither the peers' venv nor any server.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

__all__: list[str] = []

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_overhead_run_writes_a_page_a_chart_and_an_index(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "overhead", "--no-peers", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "overhead.md").read_text()
    assert "| geventpool `with pool.get()` |" in page
    assert "quick smoke run" in page
    assert "## Targets" in page and "at most 1.3x the floor" in page
    index = (tmp_path / "README.md").read_text()
    assert "[overhead.md](overhead.md)" in index
    if importlib.util.find_spec("matplotlib") is not None:  # the `bench` extra
        assert "![Checkout overhead (core pool)](overhead.png)" in page
        assert (tmp_path / "overhead.png").read_bytes().startswith(PNG_MAGIC)
        assert "[overhead.png](overhead.png)" in index
    else:
        assert "No chart: matplotlib is not installed" in page
        assert not (tmp_path / "overhead.png").exists()
    assert "overhead" in done.stderr and "100%" in done.stderr  # the progress bar, on stderr
    assert f"results: {tmp_path}/README.md" in done.stdout
    assert not (tmp_path / "dbapi.md").exists()  # --only


def test_unknown_benchmark_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "nosuch", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "unknown benchmarks ['nosuch']" in done.stderr

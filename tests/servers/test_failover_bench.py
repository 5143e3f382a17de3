"""benchmarks/failover.py: its figures from synthetic calls, and one short real run (geventpool+retry)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

__all__: list[str] = []

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "failover.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_failover", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(calls: list[tuple[float, float, int]]) -> dict[str, object]:
    return {"name": "geventpool+retry", "calls": calls, "errors": {}, "stall_ms": 1.0, "before": 1.0,
            "after": 2.0}


def test_summary_of_synthetic_calls(bench: ModuleType) -> None:
    # 10 ms calls back to back before the kill, a 300 ms gap, then 10 ms calls again; one failure
    calls = [(-1.0 + i * 0.01, -1.0 + i * 0.01 + 0.01, 1) for i in range(99)]
    calls.append((0.0, 0.05, 0))
    calls += [(0.3 + i * 0.01, 0.31 + i * 0.01, 1) for i in range(170)]
    row = bench.summarize(_result(calls))
    assert row["failed"] == 1
    assert row["first_ok_ms"] == pytest.approx(310, abs=1)
    assert row["steady_ops"] == pytest.approx(100, rel=0.05)
    assert row["steady_p99_ms"] == pytest.approx(10, abs=0.5)
    assert row["half_rate_ms"] == pytest.approx(400, abs=1)
    assert row["slow_later"] == 0
    claims = dict(bench.targets(row))
    assert claims["zero failed calls with @retry"] is False
    bars, marks = bench.chart_line(_result(calls), 100.0)
    assert len(bars) == len(marks) == 31 and bars[10] == "|" and marks[11] == "x"
    assert bars[12:14] == "  "  # the gap after the kill


def test_short_real_run(tmp_path: Path) -> None:
    page = tmp_path / "failover.md"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "geventpool+retry", "--before", "1", "--after", "1.5",
         "--output", str(page)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PASS geventpool+retry: zero failed calls with @retry" in result.stdout, result.stdout
    assert "kill" in result.stdout and page.exists()

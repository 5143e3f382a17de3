"""Keep benchmarks/overhead.py from rotting: run its floor and geventpool rows briefly.

A behaviour smoke test only: it never asserts a speed, and it needs neither the
peers' venv nor PostgreSQL.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import gevent
import pytest

from geventpool.testing import check_invariants

__all__: list[str] = []

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
IN_PROCESS = ["floor", "floor-bare", "geventpool", "geventpool-acquire", "geventpool-options"]


def _load() -> ModuleType:
    # benchmarks/ is not a package: load the script by path, as a module of its own
    spec = importlib.util.spec_from_file_location("_overhead_under_test", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    return _load()


@pytest.mark.parametrize("key", IN_PROCESS)
def test_measure_runs_in_process(overhead: ModuleType, key: str) -> None:
    with gevent.Timeout(30):
        figures = overhead.measure(key, iterations=50, rounds=2, warmup=5)
    assert len(figures) == 2
    assert all(math.isfinite(x) and x > 0 for x in figures)


def test_geventpool_rows_leave_the_pool_whole(overhead: ModuleType) -> None:
    with gevent.Timeout(30):
        for key in ("geventpool", "geventpool-acquire", "geventpool-options"):
            bench = overhead.build(key)
            try:
                bench.loop(20)
                pool = bench.pool
                check_invariants(pool)
                stats = pool.stats()
                assert pool.size == overhead.POOL_SIZE
                assert stats["requests_num"] == 20
                assert stats["connections_num"] == overhead.POOL_SIZE  # nothing was reopened
                assert stats.get("requests_queued", 0) == 0  # an open connection was always idle
                assert stats["pool_available"] == overhead.POOL_SIZE
                assert stats["pool_in_use"] == 0
            finally:
                bench.close()
            assert pool.closed


def test_floor_pool_hands_out_the_same_connections(overhead: ModuleType) -> None:
    pool = overhead.QueuePool(3)
    seen = set()
    for _ in range(6):
        with pool.get() as conn:
            assert isinstance(conn, overhead.TrivialConnection)
            seen.add(id(conn))
    assert len(seen) <= 3
    assert pool.queue.qsize() == 3


def test_script_prints_the_table_without_peers(tmp_path: Path) -> None:
    output = tmp_path / "overhead.md"
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--no-peers", "--only", "floor,floor-bare,geventpool,gsocketpool",
         "--iterations", "200", "--rounds", "2", "--timeout", "60", "--output", str(output)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| implementation | µs/cycle (CPU, median)")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}
    assert rows["floor: gevent Queue + thinnest `with`"].endswith("| 1.00x |")
    assert rows["geventpool `with pool.get()`"].endswith("x |")
    assert "not run (--no-peers)" in rows["gsocketpool `with pool.connection()`"]
    assert "CPU:" in done.stdout and "gevent" in done.stdout
    assert output.read_text().count("| geventpool `with pool.get()` |") == 1

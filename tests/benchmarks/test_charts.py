"""Every benchmark chart renders from small made-up data, with a label on every axis that carries data.

The charts: scripts/soak.py's timeline, benchmarks/sizing.py's pool-size chart,
benchmarks/failover.py's timeline, and scripts/bench.py's overhead, DB-API and LDAP
charts (benchmarks/e2e.py's chart is rendered by tests/benchmarks/test_e2e.py).  Each
figure is caught as the chart closes it, and checked: a PNG was written; every axes
that draws something has a y label, a title or category tick labels; the bottom axes
of each column has an x label or category tick labels.  No server, no measurement.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib")


def _load(relative: str) -> ModuleType:
    """Import a script by path (benchmarks/ and scripts/ are not packages)."""
    path = ROOT / relative
    for folder in (str(path.parent), str(ROOT)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"_chart_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The figures the charts close (each chart calls ``plt.close(fig)`` after saving it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caught: list[Any] = []
    close = plt.close

    def catch(fig: Any = None) -> None:
        caught.append(fig)

    monkeypatch.setattr(plt, "close", catch)
    yield caught
    for fig in caught:
        close(fig)


def _has_data(ax: Any) -> bool:
    return bool(ax.lines or ax.patches or ax.collections or ax.images)


def _categories(labels: list[Any]) -> bool:
    return any(label.get_text() and not _is_number(label.get_text()) for label in labels)


def _is_number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-"))
    except ValueError:
        return False
    return True


def check_labels(fig: Any) -> None:
    """Every axes that draws data says what its y axis is; each column's lowest axes its x axis."""
    fig.canvas.draw()  # tick labels exist only once drawn
    drawn = [ax for ax in fig.axes if ax.get_visible() and _has_data(ax)]
    assert drawn, "the chart draws nothing"
    for ax in drawn:
        assert ax.get_ylabel() or _categories(ax.get_yticklabels()), f"no y label on {ax.get_title()!r}"
    lowest: dict[float, Any] = {}
    for ax in drawn:
        box = ax.get_position()
        column = round(box.x0, 2)
        if column not in lowest or box.y0 < lowest[column].get_position().y0:
            lowest[column] = ax
    for ax in lowest.values():
        assert ax.get_xlabel() or _categories(ax.get_xticklabels()), f"no x label under {ax.get_title()!r}"


def _png(path: Path) -> None:
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert path.stat().st_size > 10_000


def test_soak_timeline(tmp_path: Path, figures: list[Any]) -> None:
    soak = _load("scripts/soak.py")
    rng = random.Random(3)
    kinds = ["server restart", "proxy reset", "proxy stall"]
    samples = [
        SimpleNamespace(t=i * 0.5, target=name, ok=rng.randint(300, 500), errors=rng.randint(0, 5),
                        size=rng.randint(5, 10), in_use=rng.randint(0, 10),
                        sessions=None if name == "tcp" else rng.randint(5, 10))
        for name in ("tcp", "postgres") for i in range(240)
    ]
    faults = [(rng.uniform(0, 120), name, rng.choice(kinds))
              for name in ("tcp", "postgres") for _ in range(60)]
    report = SimpleNamespace(samples=samples, fault_times=faults, tallies={"tcp": 0, "postgres": 0},
                             duration=120.0, workers=200, lost=0, max_stall=0.004)
    soak.plot(report, str(tmp_path / "soak.png"), 10.0)
    _png(tmp_path / "soak.png")
    [fig] = figures
    check_labels(fig)
    # one panel per pool, rates binned: 12 points per 120 s, not 240
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert [t for t in titles if t] == ["tcp pool: rates per 10 s, connections, faults",
                                         "postgres pool: rates per 10 s, connections, faults"]
    rates = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("tcp"))
    assert len(rates.lines[0].get_xdata()) == 12
    # faults: one short tick per fault in its kind's lane, not a full-height line per fault
    rugs = [ax for ax in fig.axes if ax.get_ylabel() == "faults"]
    assert len(rugs) == 2 and all(len(ax.collections) == len(kinds) for ax in rugs)
    assert not any(ax.get_ylabel() == "operations / s" and len(ax.lines) > 2 for ax in fig.axes)


def test_sizing_chart_and_page(tmp_path: Path, figures: list[Any]) -> None:
    sizing = _load("benchmarks/sizing.py")
    curves = [
        {"query": label, "sql": sql, "greenlets": g, "knee": 8,
         "rows": [{"size": n, "ops_per_s": 1000 * min(n, 8) / 8, "p50_ms": 50 / n, "p99_ms": 100 / n}
                  for n in (1, 2, 4, 8, 16) if n <= g]}
        for label, sql in sizing.QUERIES.items() for g in (50, 200)
    ]
    tail = {str(t): max(0.0, 0.5 - 10 * t) for t in sizing.TAIL_POINTS}
    figures_of = {"p_wait": 0.5, "mean_ms": 2.0, "p50_ms": 1.0, "p99_ms": 15.0, "tail": tail}
    model = [{"size": 4, "rate": 550.0, "measured_rate": 548.0, "arrivals": 1000, "seconds": 2.0,
              "hold_ms": 5.9, "hold_cs2": 0.02, "busy": 3.2, "spawn_lag_p99_ms": 0.3,
              "measured": figures_of, "predicted": {"mmc": figures_of, "allen_cunneen": None}, "rounds": 1,
              "rounds_measured": [{"mean_ms": 2.0, "p99_ms": 15.0, "spawn_lag_p99_ms": 0.3}]}]
    data = {"when": "2026-12-07 12:00 UTC", "python": "3.11", "cpus": 2, "seconds": 1.0, "rounds": 1,
            "quick": True, "run_seconds": 10.0, "curves": curves, "model": model, "command": "made up"}
    assert sizing.chart(data, tmp_path / "sizing.png")
    _png(tmp_path / "sizing.png")
    [fig] = figures
    check_labels(fig)
    page = sizing.markdown(data, "made up")
    assert "![sizing](sizing.png)" in page and "from a pool of 8" in page
    assert "no steady state" in page  # a model without a steady state is said so, not drawn
    assert "each round's measured mean / p99 wait (ms): 2.00 / 15.0" in page
    assert "2.00 / 15.0" in sizing.rst(data)
    assert sizing.knee([(1, 100.0), (2, 195.0), (4, 200.0), (8, 201.0)]) == 2


def test_failover_chart(tmp_path: Path, figures: list[Any]) -> None:
    failover = _load("benchmarks/failover.py")
    calls = [(t / 100 - 1, t / 100 - 1 + 0.01, not (100 <= t < 110)) for t in range(300)]
    results = [{"name": "geventpool", "before": 1.0, "after": 2.0, "calls": calls},
               {"name": "ldappool", "before": 1.0, "after": 2.0, "calls": calls[::2]}]
    assert failover._png(results, tmp_path / "failover.png")
    _png(tmp_path / "failover.png")
    [fig] = figures
    check_labels(fig)


def test_bench_script_charts(tmp_path: Path, figures: list[Any]) -> None:
    bench = _load("scripts/bench.py")
    overhead = {"iterations": 1000, "rounds": 3, "rows": [
        {"key": "floor", "label": "floor", "cpu_us_median": 1.0, "ratio_to_floor": 1.0},
        {"key": "geventpool", "label": "geventpool `with pool.get()`", "cpu_us_median": 1.4,
         "ratio_to_floor": 1.4},
        {"key": "ldappool", "label": "ldappool", "cpu_us_median": 9.0, "ratio_to_floor": 9.0},
    ]}
    dbapi = {"pool_size": 10, "scenarios": [
        {"scenario": "select1-50", "query": "SELECT 1", "workers": 50,
         "rows": [{"name": "geventpool", "ops_per_s": 9000.0}, {"name": "naive-queue", "ops_per_s": 9500.0}]},
        {"scenario": "sleep5ms-50", "query": "SELECT pg_sleep(0.005)", "workers": 50,
         "rows": [{"name": "geventpool", "ops_per_s": 1900.0}, {"name": "raw", "ops_per_s": 1950.0}]},
    ]}
    ldap = {"rows": [{"scenario": "pooled", "greenlets": g, "name": name, "ops_per_s": rate * g}
                     for g in (1, 50) for name, rate in (("geventpool", 900.0), ("ldappool", 300.0))]}
    assert bench.overhead_chart(overhead, tmp_path / "overhead.png")
    assert bench.dbapi_chart(dbapi, tmp_path / "dbapi.png")
    assert bench.ldap_chart(ldap, tmp_path / "ldap.png")
    for name in ("overhead", "dbapi", "ldap"):
        _png(tmp_path / f"{name}.png")
    assert len(figures) == 3
    for fig in figures:
        check_labels(fig)

"""Keep benchmarks/e2e.py from rotting: its load client, its summary, and a tiny real run.

Behaviour only: no speed is asserted.  The load client runs against a small
gevent WSGI server; the summary, targets, page and chart from made-up cells;
the real run starts slapd, PostgreSQL and gunicorn for the two geventpool
variants on loopback for a fraction of a second per cell (the ldappool
variant needs the peers from PyPI, so it is left out).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import gevent
import pytest
from gevent.pywsgi import WSGIServer

__all__: list[str] = []

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(name: str, directory: Path = BENCH_DIR) -> ModuleType:
    # benchmarks/ is not a package: load the script by path, leaving sys.path as it was
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location(f"_{name}_under_test", directory / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
        sys.path[:] = saved
    return module


@pytest.fixture(scope="module")
def load() -> ModuleType:
    return _load("e2e_load")


@pytest.fixture(scope="module")
def e2e() -> ModuleType:
    return _load("e2e")


@pytest.fixture
def server() -> Iterator[tuple[tuple[str, int], set[int]]]:
    """A tiny WSGI server (``/`` 200, ``/fail`` 500, ``/close`` 200 and closes): (address, client ports)."""
    ports: set[int] = set()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ports.add(int(environ["REMOTE_PORT"]))
        path = environ["PATH_INFO"]
        status = "500 Internal Server Error" if path == "/fail" else "200 OK"
        body = b'{"ok": true}'
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if path == "/close":
            headers.append(("Connection", "close"))
        gevent.sleep(0.001)
        start_response(status, headers)
        return [body]

    wsgi = WSGIServer(("127.0.0.1", 0), app, log=None)
    wsgi.start()
    try:
        yield ("127.0.0.1", wsgi.server_port), ports
    finally:
        wsgi.stop(timeout=1)


def test_clients_keep_one_connection_each(load: ModuleType, server: Any) -> None:
    address, ports = server
    result = load.run_load(address, 3, 0.3, lambda n: load.basic_get("/"))
    assert result.errors == 0, result.error_kinds
    assert result.requests > 10
    assert len(ports) == 3  # keep-alive: one connection per client for the whole run
    assert 0.3 <= result.elapsed < 2.0
    assert result.rps == pytest.approx(result.requests / result.elapsed)
    assert 0 < result.quantile_ms(0.5) <= result.quantile_ms(0.99) < 1000


def test_non_200_answers_are_errors(load: ModuleType, server: Any) -> None:
    address, _ = server
    result = load.run_load(address, 2, 0.3, lambda n: load.basic_get("/fail" if n % 2 else "/"))
    assert result.requests > 0 and result.errors > 0
    assert set(result.error_kinds) == {"HTTP 500"}
    assert abs(result.requests - result.errors) <= 2  # every other request; 2 clients


def test_connection_close_reconnects_without_error(load: ModuleType, server: Any) -> None:
    address, ports = server
    result = load.run_load(address, 2, 0.2, lambda n: load.basic_get("/close"))
    assert result.errors == 0, result.error_kinds
    assert len(ports) == result.requests  # a new connection for every request


def test_refused_connections_are_errors_and_the_run_ends(load: ModuleType) -> None:
    from geventpool.testing.ports import free_port

    started = time.monotonic()
    result = load.run_load(("127.0.0.1", free_port()), 2, 0.2, lambda n: load.basic_get("/"))
    assert time.monotonic() - started < 2.0
    assert result.requests == 0 and result.errors > 0
    assert set(result.error_kinds) == {"ConnectionRefusedError"}
    assert math.isnan(result.quantile_ms(0.5))


def test_bad_arguments(load: ModuleType) -> None:
    with pytest.raises(ValueError, match="clients"):
        load.run_load(("127.0.0.1", 1), 0, 1.0, lambda n: b"")
    with pytest.raises(ValueError, match="seconds"):
        load.run_load(("127.0.0.1", 1), 1, 0, lambda n: b"")


def test_percentile(load: ModuleType) -> None:
    assert load.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert load.percentile([1.0, 2.0], 0.5) == 1.5
    assert load.percentile([5.0], 0.99) == 5.0
    assert math.isnan(load.percentile([], 0.5))


def _cells(e2e: ModuleType) -> list[dict[str, Any]]:
    rates = {"geventpool-auth": 1200.0, "geventpool-conn": 900.0, "ldappool": 1000.0}
    cells = []
    for r in (1, 2, 3):
        for scenario, slow in (("loopback", 1.0), ("+5 ms", 10.0)):
            for clients in e2e.CLIENTS:
                for variant, rate in rates.items():
                    if scenario == "+5 ms" and variant != "ldappool":
                        rate *= 10
                    cells.append({"round": r, "scenario": scenario, "clients": clients, "variant": variant,
                                  "rps": rate / slow + r, "p50_ms": float(r), "p99_ms": 10.0 * r,
                                  "errors": 1 if r == 2 else 0, "stall_ms": 2.0 * r,
                                  "cpu_us": 100.0 * r})
    return cells


def test_summary_medians_ratios_and_targets(e2e: ModuleType) -> None:
    rows = e2e.summarize(_cells(e2e))
    assert len(rows) == 2 * 3 * 3
    assert [(r["scenario"], r["clients"], r["variant"]) for r in rows[:3]] == [
        ("loopback", 1, "geventpool-auth"), ("loopback", 1, "geventpool-conn"), ("loopback", 1, "ldappool")]
    auth = rows[0]
    assert auth["rps"] == 1202.0 and auth["p99_ms"] == 20.0 and auth["stall_ms"] == 4.0
    assert auth["max_stall_ms"] == 6.0 and auth["errors"] == 1 and auth["rounds"] == 3
    assert auth["x_ldappool"] == pytest.approx(1202.0 / 1002.0)
    assert auth["x_ldappool_paired"] == pytest.approx(1202.0 / 1002.0)  # the median round's ratio
    verdicts = {t["text"]: t["verdict"] for t in e2e.targets(rows)}
    assert len(verdicts) == 8
    assert all(v == "met" for text, v in verdicts.items() if "geventpool-auth" in text)
    assert [v for text, v in verdicts.items() if "geventpool-conn" in text] == ["NOT met"] * 3 + ["met"]


def test_page_and_chart(e2e: ModuleType, tmp_path: Path) -> None:
    rows = e2e.summarize([c for c in _cells(e2e) if c["variant"] != "ldappool"])  # no reference
    data = {"command": "benchmarks/e2e.py --quick", "date": "today", "python": "CPython", "cpus": 2,
            "users": 1000, "pool_size": 10, "rounds": 3, "seconds": 1.0, "warmup": 0.5, "rows": rows,
            "targets": e2e.targets(rows), "chart": None}
    if importlib.util.find_spec("matplotlib") is not None:  # the `bench` extra
        assert e2e.chart(data, tmp_path / "e2e.png")
        assert (tmp_path / "e2e.png").read_bytes().startswith(PNG_MAGIC)
        data["chart"] = "e2e.png"
    page = e2e.markdown(data)
    assert "| loopback | 50 | geventpool-conn | 902 | - | - | 2.0 | 20.0 | 1 | 4.0 | 200 |" in page
    assert page.count("| not measured |") == 8
    assert ("![End to end](e2e.png)" in page) == (data["chart"] is not None)


@pytest.mark.guard(120)
def test_quick_run_of_the_geventpool_variants(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "e2e.py"), "--quick", "--only", "geventpool-auth,geventpool-conn",
         "--scenarios", "loopback", "--clients", "1,10", "--seconds", "0.3", "--warmup", "0.2",
         "--users", "50", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# run 2/2: round 1 loopback" in done.stderr  # the progress lines scripts/bench.py follows
    data = json.loads((tmp_path / "e2e.json").read_text())
    cells = {(c["variant"], c["clients"]): c for c in data["cells"]}
    assert set(cells) == {(v, c) for v in ("geventpool-auth", "geventpool-conn") for c in (1, 10)}
    for cell in cells.values():
        assert cell["errors"] == 0 and cell["app_failures"] == 0, cell
        assert cell["requests"] > 0 and cell["stall_ms"] >= 0 and cell["cpu_us"] > 0
    page = (tmp_path / "e2e.md").read_text()
    assert "| loopback | 10 | geventpool-conn |" in page
    assert "not measured" in page  # no ldappool variant, no ratio


def test_bench_script_takes_e2e_pages_as_written(e2e: ModuleType, tmp_path: Path) -> None:
    bench = _load("bench", BENCH_DIR.parent / "scripts")
    rows = e2e.summarize(_cells(e2e))
    data = {"command": "benchmarks/e2e.py", "date": "today", "python": "CPython", "cpus": 2, "users": 1000,
            "pool_size": 10, "rounds": 3, "seconds": 3.0, "warmup": 1.0, "rows": rows,
            "targets": e2e.targets(rows), "chart": "e2e.png"}
    (tmp_path / "e2e.json").write_text(json.dumps(data))
    (tmp_path / "e2e.md").write_text(e2e.markdown(data))
    (tmp_path / "e2e.png").write_bytes(PNG_MAGIC)
    command = bench.BENCHMARKS["e2e"].command(argparse.Namespace(quick=True, no_peers=True), tmp_path)
    assert command == ["--out", str(tmp_path), "--quick", "--only", "geventpool-auth,geventpool-conn"]
    entry = bench.write_page(bench.BENCHMARKS["e2e"], tmp_path, 0, "", "", quick=False)
    page = (tmp_path / "e2e.md").read_text()
    assert page.count("## Targets") == 1 and page.count("![End to end]") == 1
    assert "No chart" not in page
    assert entry["chart"] and [t.verdict for t in entry["targets"]].count("met") == 5

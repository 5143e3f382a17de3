"""The optional C speedups (geventpool/_speedups.c): built where CI says so, the same behaviour
as the Python code, no reference leaked or kept.

The rest of the suite runs on whichever code is active (CI: the C code, then ``make pytest-pure``
runs tests/core and tests/testing again with ``GEVENTPOOL_PURE_PYTHON=1``); the tests here check
what only C code can get wrong: reference counts, garbage collection, argument handling.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
import warnings
import weakref
from pathlib import Path

import gevent
import pytest

import geventpool
from geventpool import _accel
from geventpool._lease import PyLease
from geventpool.testing import check_invariants

from .helpers import LinePool, LineServer

ROOT = Path(__file__).resolve().parents[2]
needs_c = pytest.mark.skipif(not _accel.active(), reason="the C speedups are not in use here")


def test_speedups_are_in_use_where_required() -> None:
    if os.environ.get("GEVENTPOOL_REQUIRE_SPEEDUPS"):
        assert _accel.active(), "GEVENTPOOL_REQUIRE_SPEEDUPS is set but geventpool._speedups did not load"
        assert geventpool.Lease is not PyLease
    elif os.environ.get("GEVENTPOOL_PURE_PYTHON"):
        assert not _accel.active()
        assert geventpool.Lease is PyLease


def test_pure_python_switch_keeps_the_module_unloaded() -> None:
    code = (
        "import sys, geventpool; from geventpool import _accel, _lease;"
        "assert not _accel.active(); assert geventpool.Lease is _lease.PyLease;"
        "assert 'geventpool._speedups' not in sys.modules; print('ok')"
    )
    env = {**os.environ, "GEVENTPOOL_PURE_PYTHON": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "ok", out.stderr


@needs_c
def test_no_reference_is_leaked_or_kept_by_a_cycle(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    with pool.get() as conn:
        pass
    slot = pool._table.open[id(conn)]
    watched = {"conn": conn, "slot": slot, "pool": pool, "state": slot.state, "current": gevent.getcurrent()}
    before = {name: sys.getrefcount(value) for name, value in watched.items()}
    for _ in range(20_000):
        with pool.get():
            pass
        lease = pool.get()
        lease.release()
        with pytest.raises(ValueError):
            lease.release()
    del lease
    after = {name: sys.getrefcount(value) for name, value in watched.items()}
    # a reference leaked per cycle would show as 20,000 or more; a few may come and go with
    # whatever else runs in this process (the hub's callbacks hold the current greenlet, say)
    grown = {name: after[name] - before[name] for name in watched if abs(after[name] - before[name]) > 50}
    assert not grown, f"references gained over 20,000 cycles: {grown}"
    check_invariants(pool)
    pool.close()


@needs_c
def test_memory_stays_flat_over_many_cycles_with_waiters(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)

    def borrower() -> None:
        for _ in range(2_000):
            with pool.get():
                gevent.sleep(0)  # 20 greenlets on 2 connections: returns go to waiters

    gevent.joinall([gevent.spawn(borrower) for _ in range(20)], raise_error=True)  # warm up
    gc.collect()
    # what the pool and this test allocate (a greenlet another test left running is not counted)
    mine = [tracemalloc.Filter(True, "*/geventpool/*"), tracemalloc.Filter(True, __file__),
            tracemalloc.Filter(True, "*/helpers.py")]
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot().filter_traces(mine)
        gevent.joinall([gevent.spawn(borrower) for _ in range(20)], raise_error=True)
        gc.collect()
        end = tracemalloc.take_snapshot().filter_traces(mine)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in end.compare_to(start, "filename"))
    assert grown < 256 * 1024, f"{grown} bytes more after 40,000 checkouts"
    check_invariants(pool)
    pool.close()


@needs_c
def test_a_pool_left_with_a_lease_out_is_collected(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    lease = pool.get()
    assert type(lease) is geventpool.Lease
    pool.close(timeout=1)
    gc.collect()
    alive = weakref.ref(pool)
    del pool, lease  # lease <-> slot is a cycle: collected only if the C type is traversed
    gc.collect()
    assert alive() is None


@needs_c
def test_lease_api_and_bad_calls(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    lease = pool.get()
    assert isinstance(lease, geventpool.Lease)
    assert lease.active
    assert repr(lease) == f"<Lease of connection {lease._slot.number} of {pool.name!r} active>"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(lease)
    with pytest.raises(AttributeError):
        lease.conn = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        lease.__exit__(None, None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        lease.release(eror=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        lease.release(None, None)  # type: ignore[call-arg]
    lease.release(error=None)
    assert not lease.active
    assert repr(lease).endswith("returned>")
    with pytest.raises(ValueError, match=f"{pool.name}: this checkout was already returned"):
        lease.__enter__()
    assert geventpool.Lease[int] is not None  # generic in annotations, as the Python class
    with pytest.raises(TypeError):
        geventpool.Lease(pool)  # type: ignore[call-arg]
    check_invariants(pool)
    pool.close()


@needs_c
def test_release_with_an_error_discards_as_the_python_code_does(server: LineServer) -> None:
    pool = LinePool(server.address, 1)
    lease = pool.get()
    conn = lease.conn
    lease.release(error=OSError("broken"))
    with pool.get() as again:
        assert again is not conn  # discarded, replaced
    assert pool.stats()["connections_discarded"] == 1
    pool.close()


@pytest.mark.parametrize("clock_kind", ["int", "raises-once"])
def test_a_clock_that_gives_no_float_or_raises_takes_the_python_path(
    server: LineServer, clock_kind: str
) -> None:

    calls = {"n": 0, "raise": clock_kind == "raises-once"}

    def clock() -> float:
        calls["n"] += 1
        if calls["raise"] and calls["n"] > 50:
            calls["raise"] = False
            raise RuntimeError("clock broke")
        value = time.monotonic()
        return int(value) if clock_kind == "int" else value

    pool = LinePool(server.address, 2, clock=clock)
    pool.wait(5)
    errors = 0
    for _ in range(200):
        try:
            with pool.get():
                pass
        except RuntimeError:
            errors += 1
    assert errors == (1 if clock_kind == "raises-once" else 0)
    check_invariants(pool)  # a slot taken when the clock raised went back: none lost
    assert pool.snapshot().size == 2
    pool.close()


@needs_c
def test_no_reference_is_leaked_by_hand_offs_to_waiters(server: LineServer) -> None:
    pool = LinePool(server.address, 2)
    pool.wait(5)
    with pool.get() as conn:
        pass
    slot = pool._table.open[id(conn)]
    watched = {"conn": conn, "slot": slot, "pool": pool, "in use": geventpool.SlotState.IN_USE}

    def borrower() -> None:
        for _ in range(500):
            with pool.get():
                gevent.sleep(0)  # 20 greenlets on 2 connections: each return goes to a waiter

    gevent.joinall([gevent.spawn(borrower) for _ in range(20)], raise_error=True)  # warm up
    before = {name: sys.getrefcount(value) for name, value in watched.items()}
    gevent.joinall([gevent.spawn(borrower) for _ in range(20)], raise_error=True)
    after = {name: sys.getrefcount(value) for name, value in watched.items()}
    grown = {name: after[name] - before[name] for name in watched if abs(after[name] - before[name]) > 50}
    assert not grown, f"references gained over 10,000 hand-offs: {grown}"
    assert pool.stats()["requests_queued"] > 5_000  # the hand-off path was the one taken
    check_invariants(pool)
    pool.close()


# -- loading: what a user without a compiler, or with a stale build, gets ---------------------------


@pytest.mark.parametrize("edited", ["_speedups.c", "_slots.h"])
def test_a_build_older_than_its_sources_is_not_used(
    edited: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build older than its C file, or than the header both C files include, is not used."""
    if not _accel.active():
        pytest.skip("the C speedups are not built here")
    newer = tmp_path / edited
    newer.write_text("/* edited after the build */\n")
    later = time.time() + 5
    os.utime(newer, (later, later))
    source = newer if edited.endswith(".c") else tmp_path / "absent.c"
    if edited.endswith(".h"):
        monkeypatch.setattr(_accel, "SHARED_HEADER", newer)
    with pytest.warns(RuntimeWarning, match=f"older than {edited}"):
        assert _accel.load_extension("geventpool._speedups", source, lambda module: None) is None


def test_a_layout_the_c_code_refuses_falls_back_with_a_warning(tmp_path: Path) -> None:
    if not _accel.active():
        pytest.skip("the C speedups are not built here")

    def refuse(module: object) -> None:
        raise TypeError("Slot.conn is not a __slots__ field")

    with pytest.warns(RuntimeWarning, match="not used: Slot.conn is not a __slots__ field"):
        assert _accel.load_extension("geventpool._speedups", tmp_path / "absent.c", refuse) is None


def test_a_module_not_built_is_python_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEVENTPOOL_PURE_PYTHON", raising=False)  # else None for that reason alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quietly: no warning either
        assert _accel.load_extension("geventpool._not_built", tmp_path / "absent.c", lambda m: None) is None


def test_no_compiler_leaves_the_install_on_the_python_code(tmp_path: Path) -> None:
    """setup.py's extensions are optional: a compiler that fails makes no .so and no error, and
    the package then runs the Python code."""
    pytest.importorskip("setuptools")  # the build's own requirement (the test extra brings it)
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    out = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    said = out.stdout + out.stderr
    assert out.returncode == 0, said[-2000:]
    assert not list((tmp_path / "lib").rglob("*.so"))
    assert "geventpool._speedups" in said and "geventpool.dbapi._speedups" in said
    # the package as such an install leaves it: the sources with no .so beside them
    package = tmp_path / "pkg" / "geventpool"
    package.parent.mkdir()
    subprocess.run(["cp", "-r", str(ROOT / "geventpool"), str(package.parent)], check=True)
    for built in package.rglob("*.so"):
        built.unlink()
    code = (
        "import geventpool, geventpool.dbapi._fast as fast; from geventpool import _accel;"
        f"assert geventpool.__file__.startswith({str(package)!r}), geventpool.__file__;"
        "print(_accel.active(), fast.active())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GEVENTPOOL_PURE_PYTHON", "PYTHONPATH")}
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False,
        cwd=package.parent,
    )
    assert ran.stdout.strip() == "False False", ran.stderr[-2000:]

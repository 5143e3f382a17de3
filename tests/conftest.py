"""Fixtures shared by the whole suite: a gevent guard per test, fd baselines, log capture."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import gevent
import pytest

#: Seconds a test may run before its gevent guard fails it (it must yield to the hub for this to fire).
TEST_GUARD_SECONDS = float(os.environ.get("GEVENTPOOL_TEST_GUARD", "120"))


class TestHung(Exception):
    """Raised inside a test that ran past its gevent guard."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the long soak profiles")


#: Directories whose every test needs a private slapd (``-m "not ldap"`` leaves them out).
LDAP_DIRECTORIES = ("ldap", "ldapapi", "servers")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ldap_dirs = tuple(os.path.join(here, name) + os.sep for name in LDAP_DIRECTORIES)
    for item in items:
        if str(item.fspath).startswith(ldap_dirs):
            item.add_marker(pytest.mark.ldap)
    if config.getoption("--run-slow"):
        return
    # The long profiles run under `make soak`; deselect (not skip) them here.
    kept = [item for item in items if "slow" not in item.keywords]
    deselected = [item for item in items if "slow" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[Any]:
    marker = pyfuncitem.get_closest_marker("guard")
    seconds = marker.args[0] if marker else TEST_GUARD_SECONDS
    with gevent.Timeout(seconds, TestHung(f"{pyfuncitem.name} ran longer than {seconds} s")):
        yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guard(seconds): the per-test gevent.Timeout guard")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture geventpool's log at DEBUG (row H6 searches it for secrets)."""
    caplog.set_level(logging.DEBUG, logger="geventpool")
    return caplog

"""Fixtures for the tests of geventpool.testing: a timeout guard and a real echo server."""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import pytest

from geventpool.testing import EchoServer, FaultProxy

#: No test here may take longer than this (seconds).
GUARD = 10.0


@pytest.fixture(autouse=True)
def guard() -> Iterator[None]:
    """Fail any test that blocks cooperatively for longer than GUARD seconds."""
    timeout = gevent.Timeout.start_new(GUARD, AssertionError(f"test still running after {GUARD} s"))
    try:
        yield
    finally:
        timeout.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.address) as fault_proxy:
        yield fault_proxy

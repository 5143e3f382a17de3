"""Fixtures of the documented-API tests: private slapd instances and ConnectionInfo builders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """One small slapd for the tests that neither stop nor modify it."""
    with Slapd(users=20) as server:
        yield server


@pytest.fixture
def private_slapd() -> Iterator[Slapd]:
    """A slapd of this test only (it may be stopped, killed or modified)."""
    with Slapd(users=5) as server:
        yield server


@pytest.fixture
def second_slapd() -> Iterator[Slapd]:
    """Another private slapd (HA tests)."""
    with Slapd(users=5) as server:
        yield server


@pytest.fixture
def make_info() -> Callable[..., ConnectionInfo]:
    """Build a ConnectionInfo for a test slapd: StartTLS with its CA, the service account, short timeouts."""

    def make(server: Slapd, **overrides: Any) -> ConnectionInfo:
        fields: dict[str, Any] = dict(
            host="127.0.0.1", port=server.port, bind_dn=SERVICE_DN, password=SERVICE_PW, use_tls=True,
            ca_cert_path=server.ca_file, timeout=3, max_retries=1, retry_delay=0.05, pool_size=2,
            max_pool_size=4, pool_timeout=3,
        )
        fields.update(overrides)
        return ConnectionInfo(**fields)

    return make

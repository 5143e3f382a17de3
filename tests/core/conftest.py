from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import LineServer


@pytest.fixture
def server() -> Iterator[LineServer]:
    srv = LineServer().start()
    yield srv
    srv.stop()

"""eventlet db_pool parity (issue 13, item 1), in our own words: the positional order, put(None),
a returned proxy, another pool's connection, free_items/current_size, a module-like object."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import psycopg2
import pytest

from geventpool import ConfigurationError
from geventpool.dbapi import (
    ConnectionPool,
    ConnectionReturned,
    GenericConnectionWrapper,
    PooledConnection,
    PooledConnectionWrapper,
    RawConnectionPool,
    TpooledConnectionPool,
)
from geventpool.testing.invariants import check_invariants
from geventpool.testing.postgres import PostgresServer


@pytest.fixture(autouse=True)
def guard() -> Iterator[None]:
    with gevent.Timeout(30, AssertionError("test ran longer than 30 s")):
        yield


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "parity.sqlite3")


def test_eventlet_positional_order_with_psycopg2(pg: PostgresServer) -> None:
    """``ConnectionPool(psycopg2, 1, 3, 5, 60, 2, None, host=...)`` means what it means to eventlet."""
    pool = ConnectionPool(psycopg2, 1, 3, 5, 60, 2, None, **pg.connect_kwargs())
    try:
        assert (pool.min_size, pool.max_size, pool.max_age) == (1, 3, 60)
        assert pool._reset_hook is None  # cleanup=None
        with pool.item() as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        check_invariants(pool)
        pool.close()


def test_positional_order_forms(db: str) -> None:
    cleanup_calls: list[Any] = []
    pool = RawConnectionPool(sqlite3, 0, 2, 10, 30, 5, cleanup_calls.append, db)  # then connect's args
    try:
        assert pool.max_size == 2
        pool.put(pool.get())
        assert len(cleanup_calls) == 1
    finally:
        pool.close()
    legacy = RawConnectionPool(sqlite3, db, max_size=3)  # a first argument that is not a number: connect's
    assert legacy.max_size == 3
    legacy.close()
    with pytest.raises(ConfigurationError, match="max_size given by position"):
        RawConnectionPool(sqlite3, 0, 2, max_size=3, database=db)


def test_returned_proxy_is_falsy_and_harmless(db: str) -> None:
    pool = RawConnectionPool(sqlite3, database=db, max_size=1)
    try:
        conn = pool.get()
        assert conn
        assert isinstance(conn, PooledConnectionWrapper) and isinstance(conn, GenericConnectionWrapper)
        conn.close()
        assert not conn
        conn.close()
        pool.put(conn)
        with pytest.raises(AttributeError):
            conn.cursor()
        with pytest.raises(ConnectionReturned):
            conn.execute("SELECT 1")
        assert pool.free() == 1 and pool.current_size == 1 and len(pool.free_items) == 1
        check_invariants(pool)
    finally:
        pool.close()


def test_put_none_discards_the_greenlets_one_checkout(db: str) -> None:
    pool = RawConnectionPool(sqlite3, database=db, max_size=2)
    release, held = gevent.event.Event(), gevent.event.Event()
    try:
        with pytest.raises(ValueError, match="holds 0"):
            pool.put(None)
        lost = pool.get()

        def hold() -> None:  # another live greenlet's checkout: not ours to give back
            with pool.item():
                held.set()
                release.wait()

        other = gevent.spawn(hold)
        held.wait()
        assert pool.free() == 0
        pool.put(None)
        assert not lost and pool.free() == 1 and pool.current_size == 1
        pool.put(lost)  # harmless now
        again = pool.get()
        assert pool.free() == 0
        pool.put(again)
        release.set()
        other.get()
        check_invariants(pool)
    finally:
        pool.close()


def test_put_none_refused_when_several_are_held(db: str) -> None:
    pool = RawConnectionPool(sqlite3, database=db, max_size=2)
    try:
        a, b = pool.get(), pool.get()
        with pytest.raises(ValueError, match="holds 2"):
            pool.put(None)
        pool.put(a)
        pool.put(b)
        check_invariants(pool)
    finally:
        pool.close()


def test_another_pools_connection_is_closed_there(db: str, caplog: pytest.LogCaptureFixture) -> None:
    first = RawConnectionPool(sqlite3, database=db, max_size=1)
    second = RawConnectionPool(sqlite3, database=db, max_size=1)
    try:
        conn = first.get()
        raw = conn.raw
        with caplog.at_level(logging.WARNING, logger="geventpool.dbapi"):
            second.put(conn)
        assert "put() of a connection of pool" in caplog.text
        assert not conn
        assert first.free() == 1 and first.current_size == 0  # its slot is free, the connection closed
        assert second.current_size == 0
        with pytest.raises(sqlite3.ProgrammingError):
            raw.execute("SELECT 1")
        check_invariants(first)
        check_invariants(second)
    finally:
        first.close()
        second.close()


def test_free_items_and_current_size(db: str) -> None:
    pool = RawConnectionPool(sqlite3, database=db, max_size=3)
    try:
        conns = [pool.get() for _ in range(3)]
        assert pool.current_size == 3 and pool.free_items == []
        raws = [c.raw for c in conns]
        for conn in conns:
            pool.put(conn)
        items = pool.free_items
        assert [item[2] for item in items] == raws[::-1]  # most recently used first
        assert all(created <= last_used for last_used, created, _ in items)
        pool.clear()
        assert pool.current_size == 0 and pool.free_items == []
    finally:
        pool.close()


class _ModuleLike:
    """An object with connect() and no DB-API attributes (eventlet's tests pass one)."""

    def __init__(self, db: str) -> None:
        self.db = db

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        return sqlite3.connect(self.db, check_same_thread=False)


@pytest.mark.parametrize("pool_class", [RawConnectionPool, TpooledConnectionPool])
def test_object_with_connect_is_accepted(db: str, pool_class: type[ConnectionPool]) -> None:
    pool = pool_class(_ModuleLike(db), max_size=1)
    try:
        with pool.item() as conn:
            assert isinstance(conn, PooledConnection)
            cur = conn.cursor()
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
        check_invariants(pool)
    finally:
        pool.close()


def test_object_claiming_another_apilevel_is_refused(db: str) -> None:
    class Old(_ModuleLike):
        apilevel = "1.0"

    with pytest.raises(ConfigurationError, match="apilevel"):
        RawConnectionPool(Old(db))

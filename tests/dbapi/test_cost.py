"""What the cheap return path (issue 13, item 6) relies on, checked (the cost itself is measured by
benchmarks/dbapi.py, never asserted here)."""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import psycopg2
import psycopg2.extensions
import psycopg2.sql
import pytest

from geventpool.dbapi import ConnectionPool, hygiene
from geventpool.testing.invariants import check_invariants
from geventpool.testing.postgres import PostgresServer


@pytest.fixture(autouse=True)
def guard() -> Iterator[None]:
    with gevent.Timeout(30, AssertionError("test ran longer than 30 s")):
        yield


def test_verdicts_are_cached_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hygiene, "_VERDICTS", {})
    monkeypatch.setattr(hygiene, "_VERDICTS_MAX", 4)
    assert hygiene.may_change_session("SELECT 1") is False
    assert hygiene.may_change_session("SET search_path = x") is True
    assert hygiene.may_change_session(b"LISTEN x") is True
    assert hygiene._VERDICTS == {"SELECT 1": False, "SET search_path = x": True, b"LISTEN x": True}
    for i in range(10):
        hygiene.may_change_session(f"SELECT {i}")
    assert len(hygiene._VERDICTS) <= 4
    long_query = "SELECT " + "1, " * hygiene._VERDICT_CHARS + "1"
    assert hygiene.may_change_session(long_query) is False
    assert long_query not in hygiene._VERDICTS
    assert hygiene.may_change_session(psycopg2.sql.SQL("SELECT 1")) is True  # not cached: unhashable


def test_a_cached_verdict_still_earns_the_reset(pg: PostgresServer) -> None:
    pool = ConnectionPool(psycopg2, pg.dsn, max_size=1)
    try:
        for _ in range(2):  # the second time the verdict comes from the cache
            with pool.item() as conn:
                cur = conn.cursor()
                cur.execute("SET search_path = pg_catalog")
                conn.commit()
            with pool.item() as conn:
                cur = conn.cursor()
                cur.execute("SHOW search_path")
                assert cur.fetchone()[0] != "pg_catalog"
        check_invariants(pool)
    finally:
        pool.close()


def test_no_statement_watch_without_session_reset(pg: PostgresServer) -> None:
    pool = ConnectionPool(psycopg2, pg.dsn, max_size=1)
    pool.driver.reset_session = False
    try:
        with pool.item() as conn:
            conn.autocommit = True
            cur = conn.cursor()
            assert type(cur) is psycopg2.extensions.cursor  # no watching subclass: nothing to earn
            cur.execute("SELECT 1")
        with pool.item() as conn:
            assert conn.autocommit is False  # attributes are still set back
        check_invariants(pool)
    finally:
        pool.close()


def test_untouched_return_keeps_cleanup_hooks(pg: PostgresServer) -> None:
    """The no-work return of an untouched checkout is skipped when a reset or cleanup must run."""
    calls: list[object] = []
    pool = ConnectionPool(psycopg2, pg.dsn, max_size=1, reset=calls.append)
    try:
        pool.put(pool.get())
        conn = pool.get()
        pool.put(conn, cleanup=None)
        pool.put(pool.get(), cleanup=calls.append)
        assert len(calls) == 2
        check_invariants(pool)
    finally:
        pool.close()


def test_cursor_connection_counts_as_touching_the_attributes(pg: PostgresServer) -> None:
    """A query-only return compares no attribute; a cursor's ``connection`` reached makes it compare."""
    pool = ConnectionPool(psycopg2, pg.dsn, max_size=1)
    try:
        with pool.item() as conn:
            cur = conn.cursor()
            assert conn._use == hygiene.QUERIED
            cur.connection.autocommit = True  # the driver's connection, past the proxy
            cur.execute("SELECT 1")
        with pool.item() as conn:
            assert conn.autocommit is False
        check_invariants(pool)
    finally:
        pool.close()


def test_query_only_return_empties_the_notices(pg: PostgresServer) -> None:
    pg.execute(
        "CREATE OR REPLACE FUNCTION gp_cost_noisy() RETURNS int LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE NOTICE 'for the next borrower?'; RETURN 1; END $$"
    )
    pool = ConnectionPool(psycopg2, pg.dsn, max_size=1)
    try:
        with pool.item() as conn:
            raw = conn.raw  # kept to look at it from outside the next checkouts
        with pool.item() as conn:
            cur = conn.cursor()
            cur.execute("SELECT gp_cost_noisy()")
            assert conn._use == hygiene.QUERIED
            assert len(raw.notices) == 1
        assert not raw.notices
        with pool.item() as conn:
            assert not conn.notices
        check_invariants(pool)
    finally:
        pool.close()

"""Return hygiene (issue 13, item 4): what borrower 1 changes, borrower 2 never sees.

Every test checks out the one connection of a ``max_size=1`` pool twice (the
backend pid proves it is the same session), changes something the first
time and looks for it the second time, against the suite's real PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import psycopg
import psycopg.rows
import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

from geventpool.dbapi import ConnectionPool, ConnectionReturned
from geventpool.dbapi.hygiene import QUERIED, UNTOUCHED
from geventpool.testing.invariants import check_invariants
from geventpool.testing.postgres import PostgresServer
from geventpool.testing.waiting import wait_until

MakePool = Callable[..., ConnectionPool]


def _one(conn: Any, sql: str, params: Any = None) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        row = cur.fetchone() if cur.description is not None else None
    finally:
        cur.close()
    if row is None:
        return None
    return row[0] if isinstance(row, (tuple, list)) else next(iter(row.values()))


def _pid(conn: Any) -> int:
    pid: int = conn.info.backend_pid
    return pid


def _pool(make_pool: MakePool, pg: PostgresServer, module: Any = psycopg2, **kwargs: Any) -> ConnectionPool:
    kwargs.setdefault("max_size", 1)
    kwargs.setdefault("ping_after", None)  # no checkout ping: the test counts round trips itself
    return make_pool(module, pg.dsn, **kwargs)


# -- psycopg2: one test per leak of the issue ----------------------------------------------------


def test_cursor_factory_is_restored(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = _pid(conn)
    conn.cursor_factory = psycopg2.extras.RealDictCursor
    assert _one(conn, "SELECT 7 AS n") == 7
    pool.put(conn)
    conn = pool.get()
    assert _pid(conn) == pid
    assert conn.cursor_factory is None
    cur = conn.cursor()
    cur.execute("SELECT 7 AS n")
    assert cur.fetchone() == (7,)
    cur.close()
    pool.put(conn)


def test_notifies_do_not_reach_the_next_borrower(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = _pid(conn)
    conn.autocommit = True
    _one(conn, "LISTEN hygiene")
    _one(conn, "NOTIFY hygiene, 'for borrower 1'")
    _one(conn, "SELECT 1")
    assert [n.payload for n in conn.notifies] == ["for borrower 1"]
    pool.put(conn)
    conn = pool.get()
    assert _pid(conn) == pid
    assert conn.notifies == []
    assert not conn.autocommit
    pg.execute("NOTIFY hygiene, 'sent after the return'")  # UNLISTEN *: the session no longer hears
    assert _one(conn, "SELECT 1") == 1
    assert conn.notifies == []
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_listening_channels()") == 0
    pool.put(conn)


def test_replaced_notices_and_notifies_lists_are_put_back(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    notices, notifies = conn.notices, conn.notifies
    conn.notices, conn.notifies = [], []
    _one(conn, "DO $$BEGIN RAISE NOTICE 'borrower 1 was here'; END$$")
    assert conn.notices
    pool.put(conn)
    conn = pool.get()
    assert conn.notices is notices and conn.notices == []
    assert conn.notifies is notifies
    pool.put(conn)


def test_with_hold_cursor_is_closed_and_dead(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = _pid(conn)
    held = conn.cursor("held", withhold=True)
    held.execute("SELECT generate_series(1, 100)")
    assert held.fetchone() == (1,)
    conn.commit()  # WITH HOLD: it outlives the transaction
    plain = conn.cursor("plain")
    plain.execute("SELECT generate_series(1, 100)")
    assert plain.fetchone() == (1,)
    pool.put(conn)
    assert held.closed
    with pytest.raises(psycopg2.InterfaceError, match="closed"):  # no I/O on borrower 2's connection
        held.fetchone()
    with pytest.raises(psycopg2.ProgrammingError, match="isn't valid anymore"):  # its transaction is over
        plain.fetchone()
    conn = pool.get()
    assert _pid(conn) == pid
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_cursors") == 0
    pool.put(conn)


def test_with_hold_cursor_declared_in_sql_is_closed(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    conn.autocommit = True
    _one(conn, "DECLARE sqlheld CURSOR WITH HOLD FOR SELECT 1")
    pool.put(conn)
    conn = pool.get()
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_cursors") == 0
    pool.put(conn)


def test_session_settings_do_not_carry_over(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = _pid(conn)
    default_path = _one(conn, "SHOW search_path")
    conn.rollback()
    conn.autocommit = True
    _one(conn, "SET search_path TO pg_catalog")
    _one(conn, "SET statement_timeout TO 1234")
    _one(conn, "SET TIME ZONE 'Asia/Tokyo'")
    _one(conn, "PREPARE borrowed AS SELECT 1")
    _one(conn, "CREATE TEMP TABLE borrowed (x int)")
    _one(conn, "SELECT pg_advisory_lock(4242)")
    pool.put(conn)
    conn = pool.get()
    assert _pid(conn) == pid
    assert _one(conn, "SHOW search_path") == default_path
    assert _one(conn, "SHOW statement_timeout") == "0"
    assert _one(conn, "SHOW TimeZone") != "Asia/Tokyo"
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_prepared_statements") == 0
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'borrowed'") == 0
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'") == 0
    pool.put(conn)


def test_settings_made_by_configure_survive_the_reset(pg: PostgresServer, make_pool: MakePool) -> None:
    def configure(raw: Any) -> None:
        cur = raw.cursor()
        cur.execute("SET statement_timeout TO '5s'; SET application_name TO 'it''s configured'")
        cur.close()

    pool = _pool(make_pool, pg, configure=configure)
    conn = pool.get()
    conn.autocommit = True
    _one(conn, "SET statement_timeout TO 1")
    _one(conn, "SET application_name TO 'borrower 1'")
    pool.put(conn)
    conn = pool.get()
    assert _one(conn, "SHOW statement_timeout") == "5s"
    assert _one(conn, "SHOW application_name") == "it's configured"
    pool.put(conn)


def test_session_attributes_and_encoding_are_restored(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    before = (conn.autocommit, conn.isolation_level, conn.readonly, conn.deferrable, conn.encoding)
    conn.set_session(isolation_level="SERIALIZABLE", readonly=True, deferrable=True, autocommit=True)
    conn.set_client_encoding("LATIN1")
    psycopg2.extensions.register_type(psycopg2.extensions.UNICODE, conn.raw)
    assert conn.string_types
    pool.put(conn)
    conn = pool.get()
    assert (conn.autocommit, conn.isolation_level, conn.readonly, conn.deferrable, conn.encoding) == before
    assert conn.string_types == {}
    assert _one(conn, "SHOW client_encoding") == "UTF8"
    assert _one(conn, "SHOW transaction_read_only") == "off"
    pool.put(conn)


def test_commit_run_as_sql_does_not_leave_autocommit_behind(pg: PostgresServer, make_pool: MakePool) -> None:
    """psycopg2 thinks a transaction is still open after SQL COMMIT; borrower 2 must get a BEGIN."""
    pool = _pool(make_pool, pg)
    pg.execute("CREATE TABLE IF NOT EXISTS hygiene_rows (x int)")
    conn = pool.get()
    _one(conn, "SELECT 1")
    cur = conn.cursor()
    cur.execute("COMMIT")
    cur.close()
    pool.put(conn)
    conn = pool.get()
    cur = conn.cursor()
    cur.execute("INSERT INTO hygiene_rows VALUES (1)")
    cur.close()
    conn.rollback()
    pool.put(conn)
    assert pg.execute("SELECT count(*) FROM hygiene_rows") == [(0,)]


def test_two_phase_transaction_discards_the_connection(pg: PostgresServer, make_pool: MakePool) -> None:
    """psycopg2 refuses rollback() in a two-phase transaction: the connection is replaced."""
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = _pid(conn)
    conn.tpc_begin("hygiene-b1")
    _one(conn, "SELECT 1")
    pool.put(conn)
    conn = pool.get()
    assert _pid(conn) != pid
    assert conn.status == psycopg2.extensions.STATUS_READY
    pool.put(conn)


def test_untouched_connection_costs_no_round_trip(pg: PostgresServer, make_pool: MakePool) -> None:
    """A borrower who only read immutable attributes: the return does no I/O (no query at all)."""
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = _pid(conn)
    _one(conn, "SELECT 1")
    pool.put(conn)
    calls_before = _statements_of(pg, pid)
    for _ in range(20):
        conn = pool.get()
        assert not conn.closed and conn.autocommit is False
        assert conn._use == UNTOUCHED
        pool.put(conn)
    assert _statements_of(pg, pid) == calls_before
    conn = pool.get()
    _one(conn, "SELECT 1")
    assert conn._use == QUERIED
    pool.put(conn)


def test_plain_queries_cost_no_session_reset(pg: PostgresServer, make_pool: MakePool) -> None:
    """psycopg2's statements are watched: only one that may change the session earns the reset."""
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    conn = pool.get()
    pid = _pid(conn)
    pool.put(conn)
    for sql in ("SELECT 1", "UPDATE pg_catalog.pg_class SET relname = relname WHERE false",
                "INSERT INTO t SELECT 1 ON CONFLICT DO NOTHING"):
        conn = pool.get()
        try:
            _one(conn, sql)
        except psycopg2.Error:
            pass  # no table t: the statement only has to be looked at
        pool.put(conn)
        assert _statements_of(pg, pid)[0][0] in (sql, "ROLLBACK"), sql  # no DISCARD ALL after it
    for sql in ("SET search_path TO pg_catalog", "select 1;\n /* x */ reset all", "LISTEN x",
                "CREATE TEMP TABLE tt (x int)", "SELECT pg_catalog.set_config('a.b', 'c', false)",
                "SELECT pg_advisory_lock(1)", b"-- comment\nSET work_mem TO '8MB'"):
        conn = pool.get()
        cur = conn.cursor(cursor_factory=psycopg2.extras.DictCursor)
        assert isinstance(cur, psycopg2.extras.DictCursor)
        cur.execute(sql)
        cur.close()
        pool.put(conn)
        assert _statements_of(pg, pid)[0][0] == "DISCARD ALL", sql


def _statements_of(pg: PostgresServer, pid: int) -> Any:
    """The last statement and its state change time of backend ``pid`` (moves with every query)."""
    return pg.execute("SELECT query, state_change FROM pg_catalog.pg_stat_activity WHERE pid = %s", (pid,))


def test_killed_greenlet_with_a_named_cursor_open(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    opened = gevent.event.Event()
    holder: list[Any] = []

    def borrower() -> None:
        with pool.item() as conn:
            holder.append(_pid(conn))
            cur = conn.cursor("killed", withhold=True)
            cur.execute("SELECT generate_series(1, 1000)")
            cur.fetchone()
            conn.commit()
            holder.append(cur)
            opened.set()
            gevent.sleep(60)

    g = gevent.spawn(borrower)
    opened.wait(10)
    g.kill(block=True, timeout=10)
    assert g.dead
    wait_until(lambda: pool.snapshot().in_use == 0, timeout=10, message="the killed borrower's slot back")
    with pytest.raises((psycopg2.InterfaceError, psycopg2.ProgrammingError)):
        holder[1].fetchone()  # the connection was discarded with its cursor
    conn = pool.get()
    assert _one(conn, "SELECT count(*) FROM pg_catalog.pg_cursors") == 0
    pool.put(conn)
    wait_until(lambda: not any(s["pid"] == holder[0] for s in pg.sessions()), timeout=10,
               message="the killed borrower's session closed")


# -- psycopg 3 ---------------------------------------------------------------------------------


def test_psycopg3_flags_row_factory_and_session(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, module=psycopg)
    conn = pool.get()
    pid = _pid(conn)
    before = (conn.autocommit, conn.isolation_level, conn.read_only, conn.deferrable, conn.prepare_threshold)
    conn.row_factory = psycopg.rows.dict_row
    conn.autocommit = True
    conn.prepare_threshold = 0
    conn.read_only = True
    conn.execute("SET search_path TO pg_catalog")
    conn.execute("LISTEN hygiene3")
    conn.execute("NOTIFY hygiene3, 'for borrower 1'")
    held = conn.cursor("held3", withhold=True)
    held.execute("SELECT generate_series(1, 10)")
    held.fetchone()
    pool.put(conn)
    assert held.closed
    with pytest.raises(psycopg.InterfaceError):
        held.fetchone()
    conn = pool.get()
    assert _pid(conn) == pid
    assert (conn.autocommit, conn.isolation_level, conn.read_only, conn.deferrable,
            conn.prepare_threshold) == before
    assert conn.row_factory is psycopg.rows.tuple_row
    row = conn.execute("SHOW search_path").fetchone()
    assert row is not None and row[0] != "pg_catalog"
    assert conn.execute("SELECT count(*) FROM pg_catalog.pg_cursors").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pg_catalog.pg_listening_channels()").fetchone() == (0,)
    conn.commit()
    conn.autocommit = True
    stream = conn.notifies(timeout=0.1)
    assert list(stream) == []  # borrower 1's notification is not delivered to borrower 2
    pool.put(conn)


def test_psycopg3_adapters_condemn_the_connection(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, module=psycopg)
    conn = pool.get()
    pid = _pid(conn)
    conn.adapters.register_loader("int4", psycopg.types.string.TextLoader)
    assert conn.execute("SELECT 1").fetchone() == ("1",)
    pool.put(conn)
    conn = pool.get()
    assert _pid(conn) != pid
    assert conn.execute("SELECT 1").fetchone() == (1,)
    pool.put(conn)


# -- many borrowers ---------------------------------------------------------------------------


def _exec(conn: Any, sql: str) -> None:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        if not conn.autocommit:
            conn.commit()
    except psycopg2.Error:  # a read-only session refuses CREATE TABLE: that is this borrower's problem
        conn.rollback()
    finally:
        cur.close()


def _held(conn: Any) -> None:
    cur = conn.cursor("storm_held", withhold=True)
    cur.execute("SELECT 1")
    if not conn.autocommit:
        conn.commit()


_CHANGES: list[tuple[str, Callable[[Any], None]]] = [
    ("cursor_factory", lambda c: setattr(c, "cursor_factory", psycopg2.extras.RealDictCursor)),
    ("autocommit", lambda c: setattr(c, "autocommit", True)),
    ("session", lambda c: c.set_session(isolation_level="REPEATABLE READ", readonly=True, deferrable=True)),
    ("encoding", lambda c: c.set_client_encoding("LATIN1")),
    ("search_path", lambda c: _exec(c, "SET search_path TO pg_catalog")),
    ("timeout", lambda c: _exec(c, "SET statement_timeout TO 4321")),
    ("listen", lambda c: _exec(c, "LISTEN storm; NOTIFY storm, 'x'")),
    ("prepare", lambda c: _exec(c, "PREPARE p AS SELECT 1")),
    ("temp", lambda c: _exec(c, "CREATE TEMP TABLE IF NOT EXISTS t (x int)")),
    ("hold", _held),
    ("notices", lambda c: setattr(c, "notices", ["planted"])),
    ("role", lambda c: _exec(c, "SET ROLE storm_role")),
]



_CLEAN_SQL = (
    "SELECT current_setting('search_path'), current_setting('statement_timeout'), "
    "(SELECT count(*) FROM pg_catalog.pg_listening_channels()), "
    "(SELECT count(*) FROM pg_catalog.pg_prepared_statements), "
    "(SELECT count(*) FROM pg_catalog.pg_cursors), "
    "pg_catalog.pg_my_temp_schema() = 0 OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class "
    "WHERE relnamespace = pg_catalog.pg_my_temp_schema()), current_user = session_user, "
    "current_setting('client_encoding')"
)


@pytest.mark.guard(120)
def test_200_greenlets_changing_random_attributes_start_clean(
    pg: PostgresServer, make_pool: MakePool
) -> None:
    pg.execute("DO $$BEGIN CREATE ROLE storm_role; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    pool = _pool(make_pool, pg, max_size=4)
    with pool.item() as conn:
        expected = tuple(_row(conn, _CLEAN_SQL))
    leaks: list[str] = []
    rng = random.Random(13)
    plans = [rng.sample(_CHANGES, rng.randint(1, 4)) for _ in range(200)]

    def borrower(plan: list[tuple[str, Callable[[Any], None]]]) -> None:
        conn = pool.get()
        try:
            state = (conn.autocommit, conn.isolation_level, conn.readonly, conn.deferrable,
                     conn.cursor_factory, conn.encoding, list(conn.notices), list(conn.notifies))
            if state != (False, None, None, None, None, "UTF8", [], []):
                leaks.append(f"attributes {state}")
            seen = tuple(_row(conn, _CLEAN_SQL))
            conn.rollback()
            if seen != expected:
                leaks.append(f"session {seen}")
            for _name, change in plan:
                change(conn)
            gevent.sleep(0)  # let the others queue up behind this borrower
        finally:
            pool.put(conn)

    greenlets = [gevent.spawn(borrower, plan) for plan in plans]
    gevent.joinall(greenlets, timeout=100, raise_error=True)
    assert all(g.successful() for g in greenlets)
    assert leaks == [], leaks[:5]
    check_invariants(pool)


def _row(conn: Any, sql: str) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchone()
    finally:
        cur.close()


def test_reset_session_off_keeps_sql_state(pg: PostgresServer, make_pool: MakePool) -> None:
    """``driver.reset_session = False``: attributes still restored, SQL-level state stays (documented)."""
    pool = _pool(make_pool, pg)
    pool.driver.reset_session = False  # type: ignore[attr-defined]
    conn = pool.get()
    conn.autocommit = True
    _one(conn, "SET statement_timeout TO 777")
    pool.put(conn)
    conn = pool.get()
    assert not conn.autocommit
    assert _one(conn, "SHOW statement_timeout") == "777ms"
    pool.put(conn)


def test_use_after_put_raises(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pool.put(conn)
    with pytest.raises(ConnectionReturned):
        conn.cursor_factory = None


def test_the_quiet_return_after_plain_queries_still_empties_notices(
    pg: PostgresServer, make_pool: MakePool
) -> None:
    """The return of a connection that only ran plain queries in autocommit sends nothing and
    skips the session restore; a notice left in the list still sends it the whole way."""
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    conn = pool.get()
    pid = _pid(conn)
    _one(conn, "SELECT 41")
    cur = conn.cursor()  # a second cursor, left open: the return closes it
    cur.execute("SELECT 42")
    pool.put(conn)
    assert cur.closed
    assert _statements_of(pg, pid)[0][0] == "SELECT 42"  # nothing sent on return
    conn = pool.get()
    cur = conn.cursor()
    cur.execute("SELECT 1 FROM pg_catalog.pg_class WHERE false")
    cur.execute("ROLLBACK")  # outside a transaction: a WARNING, kept in conn.notices
    assert conn.raw.notices
    pool.put(conn)
    conn = pool.get()
    assert _pid(conn) == pid
    assert list(conn.notices) == []
    pool.put(conn)
    check_invariants(pool)

"""The DB-API pool's C fast paths (geventpool/dbapi/_speedups.c) behave as the Python code.

Every scenario runs twice against the suite's PostgreSQL: once with the C checkout, quiet return
and watched cursor in use (where built), once with them switched off (the Python code users
without a compiler run).  The C-only tests check what only C code can get wrong: references
kept or leaked, a failure half way.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

from geventpool.dbapi import ConnectionPool, ConnectionReturned, TpooledConnectionPool, _fast
from geventpool.dbapi.drivers import Psycopg2Driver
from geventpool.dbapi.hygiene import QUERIED, UNTOUCHED, WATCHED_CURSORS
from geventpool.errors import PoolTimeout
from geventpool.testing.invariants import check_invariants
from geventpool.testing.postgres import PostgresServer
from geventpool.testing.waiting import wait_until

MakePool = Callable[..., ConnectionPool]
needs_c = pytest.mark.skipif(not _fast.active(), reason="the DB-API C fast paths are not in use here")


def test_fast_paths_are_in_use_where_required() -> None:
    if os.environ.get("GEVENTPOOL_REQUIRE_SPEEDUPS"):
        assert _fast.active(), "GEVENTPOOL_REQUIRE_SPEEDUPS is set: geventpool.dbapi._speedups must load"
    elif os.environ.get("GEVENTPOOL_PURE_PYTHON"):
        assert not _fast.active()


@pytest.fixture(params=["c", "python"])
def paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the C fast paths (skipped where they are not built), then without."""
    if request.param == "c":
        if not _fast.active():
            pytest.skip("the DB-API C fast paths are not in use here")
    else:
        for name in _C_NAMES:
            monkeypatch.setattr(_fast, name, None)
        # watched cursor classes made so far have the C execute(): make them again, in Python
        made = dict(WATCHED_CURSORS)
        WATCHED_CURSORS.clear()
        request.addfinalizer(lambda: (WATCHED_CURSORS.clear(), WATCHED_CURSORS.update(made)))
    yield request.param


#: what the "python" runs switch off
_C_NAMES = ("checkout", "wrap", "quiet_return", "pg2_clean", "get", "put", "cursor_method",
            "execute_method")


def _pool(make_pool: MakePool, pg: PostgresServer, **kwargs: Any) -> ConnectionPool:
    kwargs.setdefault("max_size", 1)
    kwargs.setdefault("ping_after", None)
    return make_pool(psycopg2, pg.dsn, **kwargs)


def _last_statement(pg: PostgresServer, pid: int) -> Any:
    return pg.execute("SELECT query, state_change FROM pg_catalog.pg_stat_activity WHERE pid = %s", (pid,))


def test_paths_in_use_are_the_ones_asked_for(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    assert (pool._fast_checkout is not None) == (paths == "c")
    assert ("get" in vars(pool) and "put" in vars(pool)) == (paths == "c")  # bound C methods
    pool.put(pool.get())  # the cursor path is settled by a connect (the driver's settings then)
    assert (pool._wrapper._fast_cursor is not None) == (paths == "c")
    pool.driver.reset_session = False  # documented: before the first connect; a later one follows it
    pool.drop_idle()
    pool.put(pool.get())
    assert pool._wrapper._fast_cursor is None
    assert "cursor" not in vars(pool._wrapper)  # the C cursor() went with it


def test_untouched_return_is_quiet_and_kills_the_proxy(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    pid = conn.get_backend_pid()
    pool.put(conn)
    before = _last_statement(pg, pid)
    conn = pool.get()
    assert conn and conn._use == UNTOUCHED
    pool.put(conn)
    assert _last_statement(pg, pid) == before  # nothing sent
    assert not conn and conn.returned
    with pytest.raises(ConnectionReturned):
        conn.cursor()
    pool.put(conn)  # a second put of a returned proxy: harmless (eventlet)
    conn.close()
    assert pool.free() == 1


def test_plain_query_return_closes_its_cursors_without_a_reset(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    conn = pool.get()
    pid = conn.get_backend_pid()
    cursors = [conn.cursor(), conn.cursor()]
    for cur in cursors:
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
    assert conn._use == QUERIED
    pool.put(conn)
    assert all(cur.closed for cur in cursors)
    assert _last_statement(pg, pid)[0][0] == "SELECT 1"  # no DISCARD ALL, no ROLLBACK
    with pytest.raises(psycopg2.InterfaceError):
        cursors[0].execute("SELECT 2")  # closed: it cannot reach the next borrower's session
    with pytest.raises(psycopg2.InterfaceError):
        cursors[1].execute("SELECT 1")  # a statement known harmless (C's straight path): closed too
    pool.put(conn)  # returned twice: harmless, and the connection is lent once
    first, second = pool.get(), None
    with pytest.raises(PoolTimeout):
        second = pool.get(timeout=0.01)
    assert second is None
    pool.put(first)


def test_session_change_earns_the_reset(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    conn = pool.get()
    pid = conn.get_backend_pid()
    cur = conn.cursor()
    cur.execute("SET search_path TO pg_catalog")
    pool.put(conn)
    assert _last_statement(pg, pid)[0][0] == "DISCARD ALL"
    conn = pool.get()
    cur = conn.cursor()
    cur.execute("SHOW search_path")
    assert cur.fetchone()[0] != "pg_catalog"
    pool.put(conn)


def test_open_transaction_is_rolled_back(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)  # autocommit off: SELECT opens a transaction
    conn = pool.get()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    pool.put(conn)
    conn = pool.get()
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    pool.put(conn)


def test_named_cursor_is_closed_server_side(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    conn = pool.get()
    cur = conn.cursor("held", withhold=True)
    cur.execute("SELECT generate_series(1, 10)")
    cur.fetchone()
    pool.put(conn)
    conn = pool.get()
    plain = conn.cursor()
    plain.execute("SELECT count(*) FROM pg_catalog.pg_cursors")
    assert plain.fetchone()[0] == 0
    pool.put(conn)


def test_cursor_factory_of_the_connection_is_watched_too(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    dict_cursors = psycopg2.extras.DictCursor
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "cursor_factory", dict_cursors))
    conn = pool.get()
    pid = conn.get_backend_pid()
    cur = conn.cursor()
    assert isinstance(cur, psycopg2.extras.DictCursor)
    cur.execute("SELECT 1 AS one")
    assert cur.fetchone()["one"] == 1
    conn.commit()
    cur.execute("SET work_mem TO '8MB'")
    conn.commit()
    pool.put(conn)
    assert _last_statement(pg, pid)[0][0] == "DISCARD ALL"


def test_raw_connection_and_timeout_checkouts(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, max_size=2)
    conn = pool.get(timeout=5)  # the general checkout (a timeout given): its proxy made the same way
    raw = conn.raw
    pool.put(raw)  # the raw connection comes back: its proxy dies
    assert conn.returned
    with pytest.raises(ValueError, match="not checked out"):
        pool.put(raw)
    first, second = pool.get(), pool.get()
    first_raw = first.raw
    waiter = gevent.spawn(pool.get)  # waits: both are out
    gevent.sleep(0.01)
    pool.put(first)
    third = waiter.get(timeout=5)  # handed over through the general path
    assert third and third.raw is first_raw
    pool.put(second)
    pool.put(third)
    check_invariants(pool)


def test_put_none_discards_the_callers_connection(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    pool = _pool(make_pool, pg)
    conn = pool.get()
    conn.cursor().execute("SELECT 1")
    pool.put(None)
    assert conn.returned
    assert pool.free() == 1
    again = pool.get()
    pool.put(again)


def test_two_hundred_greenlets_lose_nothing(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, max_size=10, configure=lambda raw: setattr(raw, "autocommit", True))
    done = []

    def work(i: int) -> None:
        for _ in range(5):
            conn = pool.get()
            cur = conn.cursor()
            cur.execute("SELECT %s", (i,))
            assert cur.fetchone() == (i,)
            if i % 7 == 0:
                cur.execute("SET application_name TO 'x'")  # the general path, with a reset
            pool.put(conn)
        done.append(i)

    gevent.joinall([gevent.spawn(work, i) for i in range(200)], timeout=60, raise_error=True)
    assert sorted(done) == list(range(200))
    assert pool.free() == pool.current_size
    check_invariants(pool)


@needs_c
def test_no_reference_is_kept_by_the_c_paths(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))

    def cycle() -> None:
        conn = pool.get()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        pool.put(conn)
        conn = pool.get()
        pool.put(conn)

    for _ in range(50):
        cycle()
    gc.collect()
    conn = pool.get()
    raw = conn.raw
    pool.put(conn)
    refs = sys.getrefcount(raw)
    total = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
    objects = len(gc.get_objects())
    for _ in range(2000):
        cycle()
    gc.collect()
    assert sys.getrefcount(raw) == refs
    assert len(gc.get_objects()) < objects + 100
    if total is not None:
        assert sys.gettotalrefcount() - total < 100
    assert len(pool._proxies) == 1


@needs_c
def test_a_failing_clean_check_leaves_the_connection_to_the_general_path(
    pg: PostgresServer, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))

    def broken(conn: Any, snapshot: Any) -> bool:
        raise RuntimeError("driver check failed")

    conn = pool.get()
    conn.cursor().execute("SELECT 1")
    monkeypatch.setattr(pool.driver, "clean_after_queries", broken)
    with pytest.raises(RuntimeError, match="driver check failed"):
        pool.put(conn)
    assert conn and not conn.returned  # nothing half done: still the borrower's
    monkeypatch.undo()
    pool.put(conn)
    assert conn.returned
    assert pool.free() == 1
    check_invariants(pool)


@needs_c
def test_c_functions_refuse_what_they_do_not_know(pg: PostgresServer, make_pool: MakePool) -> None:
    assert _fast.checkout is not None and _fast.wrap is not None
    assert _fast.quiet_return is not None and _fast.cursor_method is not None
    pool = _pool(make_pool, pg)
    with pytest.raises(TypeError):
        _fast.checkout(pool._table, pool)  # type: ignore[call-arg]
    assert _fast.checkout(pool._table, pool, dict, pool._proxies) is None  # not a proxy class
    assert _fast.quiet_return(object(), pool.driver.clean_after_queries, pool._snapshots) is False
    with pytest.raises(TypeError):
        _fast.cursor_method.__get__(object())  # the C cursor() of something that is not a proxy
    conn = pool.get()
    assert type(conn).cursor is _fast.cursor_method  # the C cursor() is the one called below
    served = _fast.served()["cursor"]
    made = dict(WATCHED_CURSORS)
    WATCHED_CURSORS.clear()
    try:  # no watched class known: the C cursor() hands over, the Python code makes the class
        cur = conn.cursor()
        assert type(cur) is WATCHED_CURSORS[psycopg2.extensions.cursor]
    finally:
        WATCHED_CURSORS.update(made)
    assert _fast.served()["cursor"] == served
    pool.put(conn)
    with pytest.raises(ConnectionReturned):
        conn.cursor()  # a dead proxy: handed over, and the Python code refuses it
    assert _fast.served()["cursor"] == served
    assert _fast.pg2_clean is not None and _fast.execute_method is not None
    with pytest.raises(TypeError):
        _fast.pg2_clean(conn)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="must be a class"):
        _fast.execute_method(42)  # type: ignore[arg-type]
    plain = psycopg2.connect(pg.dsn)
    try:  # the C execute() on a class that is not a watched one: refused, not crashed
        execute = _fast.execute_method(psycopg2.extensions.cursor)
        with pytest.raises(TypeError, match="not a watched cursor class"):
            execute.__get__(plain.cursor())("SELECT 1")
        with pytest.raises(TypeError):
            execute.__get__(plain)  # not a cursor at all
    finally:
        plain.close()


def test_greenlet_killed_between_execute_and_put_never_returns_quietly(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    """eventlet's style, ``try: ... finally: pool.put(conn)``, killed inside ``execute``: the
    connection psycopg2 gave up on is discarded, never handed to the next borrower."""
    name = f"killed-put-{paths}"
    pool = _pool(make_pool, pg, application_name=name, configure=lambda raw: setattr(raw, "autocommit", True))
    pids = []

    def borrower() -> None:
        conn = pool.get()
        try:
            pids.append(conn.get_backend_pid())
            conn.cursor().execute("SELECT pg_sleep(60) /* killed-before-put */")
        finally:
            pool.put(conn)

    worker = gevent.spawn(borrower)
    wait_until(lambda: pg.running_queries("killed-before-put"), 5)
    worker.kill(block=True, timeout=5)
    assert worker.dead
    wait_until(lambda: not pg.running_queries("killed-before-put"), 5, message="query still running")
    assert pool.stats()["connections_discarded"] == 1
    conn = pool.get()
    assert conn.get_backend_pid() != pids[0]
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    pool.put(conn)
    check_invariants(pool)


@needs_c
def test_the_c_paths_serve_the_common_case(pg: PostgresServer, make_pool: MakePool) -> None:
    """The scenarios above would pass on the Python code alone if a C path stopped serving: here
    each must have done the work itself (the C module counts what it served)."""
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    pool.put(pool.get())  # the first connect settles the cursor path
    before = _fast.served()
    for _ in range(5):
        conn = pool.get()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        pool.put(conn)
    after = _fast.served()
    assert {name: after[name] - before[name] for name in after} == {
        "get": 5, "put": 5, "cursor": 5, "execute": 5, "clean": 5
    }


def test_what_the_c_paths_pass_on_behaves_as_python(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    """Calls the C methods hand to the Python code: arguments by keyword, statements never seen,
    bytes and composed statements, a closed cursor, a closed connection."""
    from psycopg2 import sql

    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    pool.put(pool.get())
    conn = pool.get(timeout=None)
    cur = conn.cursor()
    cur.execute("SELECT %s", vars=(7,))
    assert cur.fetchall() == [(7,)]
    cur.execute(query="SELECT 8")
    assert cur.fetchall() == [(8,)]
    cur.execute(b"SELECT 9")
    assert cur.fetchall() == [(9,)]
    cur.execute(f"SELECT {id(cur)} AS never_seen_before")  # judged in Python, then remembered
    cur.execute(sql.SQL("SELECT {}").format(sql.Literal(10)))  # composed: may change the session
    assert cur.fetchall() == [(10,)]
    assert conn._sql == [True, False]
    named = conn.cursor("fast_paths_named")
    assert named.name == "fast_paths_named"
    cur.close()
    with pytest.raises(psycopg2.InterfaceError, match="cursor already closed"):
        cur.execute("SELECT 1")
    pool.put(conn)  # a named cursor and a composed statement: the general return
    assert conn.returned
    with pytest.raises(ConnectionReturned):
        conn.cursor()
    conn = pool.get()
    raw = conn.raw
    raw.close()
    with pytest.raises(psycopg2.InterfaceError, match="connection already closed"):
        conn.cursor()
    pool.put(conn)  # closed: discarded
    assert pool.stats()["connections_discarded"] == 1
    check_invariants(pool)


def test_pool_subclass_keeps_its_own_get_and_put(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    calls: list[str] = []

    class Counting(ConnectionPool):
        def get(self, timeout: float | None = None) -> Any:
            calls.append("get")
            return super().get(timeout)

        def put(self, conn: Any, *args: Any) -> None:
            calls.append("put")
            super().put(conn, *args)

    pool = make_pool(psycopg2, pg.dsn, max_size=1, ping_after=None, pool_class=Counting)
    assert "get" not in vars(pool) and "put" not in vars(pool)
    pool.put(pool.get())
    assert calls == ["get", "put"]


def test_a_foreign_registry_leaves_get_to_python(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    """A proxy registry the C code does not know (a dict subclass) sends every checkout down the
    Python path, which behaves the same."""

    class Registry(dict):  # type: ignore[type-arg]
        pass

    pool = _pool(make_pool, pg)
    pool._proxies = Registry(pool._proxies)
    for _ in range(3):
        conn = pool.get()
        conn.cursor().execute("SELECT 1")
        pool.put(conn)
    assert type(pool._proxies) is Registry and len(pool._proxies) == 1
    assert pool.free() == 1
    check_invariants(pool)


@pytest.mark.parametrize("state", ["idle", "in-transaction", "notices", "closed"])
def test_the_c_clean_check_agrees_with_python(state: str, pg: PostgresServer) -> None:
    if _fast.pg2_clean is None:
        pytest.skip("the DB-API C fast paths are not in use here")
    driver = Psycopg2Driver(psycopg2)
    raw = psycopg2.connect(pg.dsn)
    try:
        snapshot = driver.snapshot(raw)
        if state == "in-transaction":
            raw.cursor().execute("SELECT 1")
        elif state == "notices":
            snapshot = snapshot._replace(notices=["NOTICE: something"])
        elif state == "closed":
            raw.close()
        for snap in (snapshot, None):
            assert _fast.pg2_clean(raw, snap) == Psycopg2Driver.clean_after_queries(driver, raw, snap)
        assert _fast.pg2_clean(raw, None) == (state in ("idle", "notices"))
    finally:
        raw.close()


@pytest.mark.parametrize(
    "factory, row",
    [
        (psycopg2.extras.RealDictConnection, {"n": 1}),
        (psycopg2.extras.DictConnection, [1]),
        (psycopg2.extras.NamedTupleConnection, (1,)),
    ],
)
@pytest.mark.parametrize("threads", [False, True], ids=["green", "threads"])
def test_connection_classes_with_their_own_cursor_keep_their_rows(
    paths: str, pg: PostgresServer, make_pool: MakePool, factory: type, row: Any, threads: bool
) -> None:
    """psycopg2.extras' connection classes pick their cursor class in a cursor() of their own:
    the pool's cursor is the watched subclass of that class (their rows, and a quiet return)."""
    pool = _pool(
        make_pool, pg, connection_factory=factory, configure=lambda raw: setattr(raw, "autocommit", True),
        pool_class=TpooledConnectionPool if threads else ConnectionPool,
    )
    for _ in range(2):
        conn = pool.get()
        cur = conn.cursor()
        cur.execute("SELECT 1 AS n")
        got = cur.fetchone()
        assert (got == row and type(got) is not tuple) or factory is psycopg2.extras.NamedTupleConnection
        assert got.n == 1 if factory is psycopg2.extras.NamedTupleConnection else True
        named = conn.cursor("own_cursor_named")  # by position: the class's pick still holds
        assert isinstance(named, type(cur).__mro__[1])
        named.close()
        pool.put(conn)
        assert conn.returned
    check_invariants(pool)


def test_a_driver_subclass_keeps_its_own_clean_check(
    paths: str, pg: PostgresServer, make_pool: MakePool
) -> None:
    checked: list[Any] = []

    class Careful(Psycopg2Driver):
        def clean_after_queries(self, conn: Any, snapshot: tuple[Any, ...] | None) -> bool:
            checked.append(conn)
            return False  # never quiet: every return after SQL goes the general way

    assert Careful(psycopg2).clean_after_queries.__func__ is Careful.clean_after_queries  # type: ignore[attr-defined]
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    pool.driver = Careful(psycopg2)
    conn = pool.get()
    conn.cursor().execute("SELECT 1")
    pool.put(conn)
    assert checked and conn.returned
    check_invariants(pool)


def test_python_runs_use_the_python_clean_check(paths: str, pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg)
    own = "clean_after_queries" in vars(pool.driver)
    assert own == (paths == "c")


def test_patched_methods_are_kept(
    pg: PostgresServer, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class-level patch of get/put made before the pool exists is what the pool uses."""
    calls: list[str] = []
    real_get, real_put = ConnectionPool.get, ConnectionPool.put

    def get(self: ConnectionPool, timeout: float | None = None) -> Any:
        calls.append("get")
        return real_get(self, timeout)

    def put(self: ConnectionPool, conn: Any, *args: Any) -> None:
        calls.append("put")
        real_put(self, conn, *args)

    monkeypatch.setattr(ConnectionPool, "get", get)
    monkeypatch.setattr(ConnectionPool, "put", put)
    pool = _pool(make_pool, pg)
    pool.put(pool.get())
    assert calls == ["get", "put"]


def test_a_connect_callable_settles_the_driver_and_the_c_paths_follow(
    pg: PostgresServer, make_pool: MakePool
) -> None:
    """A pool built from a bare connect callable learns its driver (and a new proxy class) at the
    first connect, after get/put were bound: they serve it from then on."""
    if not _fast.active():
        pytest.skip("the DB-API C fast paths are not in use here")
    pool = make_pool(lambda: psycopg2.connect(pg.dsn), max_size=1, ping_after=None,
                     configure=lambda raw: setattr(raw, "autocommit", True))
    assert pool.driver.name != "psycopg2"  # not known yet
    pool.put(pool.get())
    assert pool.driver.name == "psycopg2"
    before = _fast.served()
    conn = pool.get()
    conn.cursor().execute("SELECT 1")
    pool.put(conn)
    after = _fast.served()
    assert {name: after[name] - before[name] for name in ("get", "put", "cursor", "execute")} == {
        "get": 1, "put": 1, "cursor": 1, "execute": 1
    }
    check_invariants(pool)


@needs_c
def test_error_paths_keep_no_reference(pg: PostgresServer, make_pool: MakePool) -> None:
    pool = _pool(make_pool, pg, configure=lambda raw: setattr(raw, "autocommit", True))
    pool.put(pool.get())
    conn = pool.get()
    cur = conn.cursor()
    watched, wrapper, driver = type(cur), pool._wrapper, pool.driver
    cur.close()

    def errors() -> None:
        with pytest.raises(psycopg2.InterfaceError):
            cur.execute("SELECT 1")  # closed cursor: the C execute's call fails
        with pytest.raises(TypeError):
            cur.execute()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="cursor_factory must be a subclass of psycopg2"):
            conn.cursor(1, 2, 3, 4, 5, 6, 7, 8, 9)  # type: ignore[call-arg]  # more than the stack holds

    for _ in range(20):
        errors()
    gc.collect()
    counts = [sys.getrefcount(x) for x in (watched, wrapper, driver, conn, cur)]
    for _ in range(2000):
        errors()
    gc.collect()
    assert [sys.getrefcount(x) for x in (watched, wrapper, driver, conn, cur)] == counts
    pool.put(conn)

"""Return hygiene: how much a borrower did with a connection, and how PostgreSQL sessions are reset.

A :class:`~geventpool.dbapi.PooledConnection` records the deepest use its
borrower made of the connection, as one of five levels:

- :data:`UNTOUCHED`: nothing, or only reads of immutable attributes
  (``conn.closed``, ``conn.autocommit``): the return does no work at all;
- :data:`QUERIED`: statements ran through cursors whose driver watches them
  (psycopg2), none of them may change the session, and no attribute was set
  or reached (through the proxy or a cursor's ``connection``): the
  transaction is ended and the notices emptied, nothing compared;
- :data:`TOUCHED`: an attribute was set or a mutable one read (``conn.notices``,
  ``conn.set_session(...)``, a watched cursor's ``connection``): the driver's
  attributes are compared with the connection's first state and set back (no
  round trip, except for a changed client encoding);
- :data:`USED`: the session may have changed (a watched statement matched
  :data:`SESSION_SQL`, or a cursor of a driver that is not watched,
  ``conn.raw``, any other method): the session is reset too, in one round
  trip (``DISCARD ALL``, or :data:`PG_RESET_SQL` followed by the settings
  ``configure`` made);
- :data:`CONDEMNED`: something the driver cannot take back (psycopg 3's
  adapters and notice/notify handlers): the connection is closed on return.

The drivers say which attribute names are at which level
(``Driver.attribute_levels``); any name not listed counts as :data:`USED`.
Everything here is pure data and small functions: no state, no switches
except in the round trips of the driver functions, which yield only if the
driver is cooperative.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "UNTOUCHED",
    "TOUCHED",
    "QUERIED",
    "USED",
    "CONDEMNED",
    "Usage",
    "Condemned",
    "PG_RESET_SQL",
    "PG_SESSION_SETTINGS_SQL",
    "pg_reapply_sql",
    "SESSION_SQL",
    "may_change_session",
    "pg2_open_cursor",
    "watched_cursor_class",
    "WATCHED_CURSORS",
    "PSYCOPG2_LEVELS",
    "PSYCOPG_LEVELS",
    "Pg2Snapshot",
    "PgSnapshot",
    "pg2_snapshot",
    "pg2_close_cursors",
    "pg2_restore",
    "pg_snapshot",
    "pg_close_cursors",
    "pg_restore",
]

UNTOUCHED = 0
QUERIED = 1
TOUCHED = 2
USED = 3
CONDEMNED = 4


class Usage(NamedTuple):
    """What one borrower did: the deepest :data:`level` reached, and the named cursors it opened."""

    level: int
    named_cursors: tuple[Any, ...] = ()


#: The usage assumed when no proxy watched the borrower (a raw connection returned, a core path).
UNKNOWN_USAGE = Usage(USED)


class Condemned(Exception):
    """A returned connection holds state the driver cannot take back: the pool discards it."""


#: What a PostgreSQL session is reset with after use: every part of ``DISCARD ALL`` but
#: ``DISCARD PLANS`` (cached plans are not state a borrower can see) and ``DEALLOCATE ALL``
#: (added per driver: psycopg 3 keeps its own prepared statements).  Unlike ``DISCARD ALL``
#: it may run in one multi-statement string, so the settings of ``configure`` are set again in
#: the same round trip.
PG_RESET_SQL = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)

#: The settings a session made itself (``configure``'s ``SET``): the reset puts them back.
PG_SESSION_SETTINGS_SQL = (
    "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' "
    "ORDER BY name <> 'session_authorization', name"  # SET SESSION AUTHORIZATION resets the role
)


def pg_reapply_sql(settings: list[tuple[str, str]], quote: Any) -> str:
    """Return the statement that sets ``settings`` again (``""`` if none).

    ``quote(value) -> str`` is the driver's literal quoting.
    """
    if not settings:
        return ""
    calls = ", ".join(f"pg_catalog.set_config({quote(name)}, {quote(value)}, false)"
                      for name, value in settings)
    return f"; SELECT {calls}"


#: Statements that may change a PostgreSQL session: ``SET``, ``RESET``, ``LISTEN``, ``PREPARE``,
#: ``DECLARE``, ``DISCARD``, ``LOAD``, ``DO``, ``CALL`` at the start of a statement; temporary
#: tables, ``set_config()`` and session advisory locks anywhere.  Matching too much costs a
#: reset; a function that changes the session by itself is not seen (see the docs).
SESSION_SQL = (
    r"(?:^|;)(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
    r"(?:SET|RESET|LISTEN|PREPARE|DECLARE|DISCARD|LOAD|DO|CALL)\b"
    r"|\bTEMP(?:ORARY)?\b"
    r"|\b(?:set_config|pg_(?:try_)?advisory_lock(?:_shared)?)\s*\("
)
_SESSION_STR = re.compile(SESSION_SQL, re.IGNORECASE | re.DOTALL).search
_SESSION_BYTES = re.compile(SESSION_SQL.encode(), re.IGNORECASE | re.DOTALL).search


#: query text -> verdict of may_change_session, for texts up to _VERDICT_CHARS long (an
#: application runs the same few statements over and over: a dict lookup instead of the regex)
_VERDICTS: dict[str | bytes, bool] = {}
_VERDICTS_MAX = 2048
_VERDICT_CHARS = 2048


def may_change_session(query: Any) -> bool:
    """Tell whether ``query`` may change the session (anything but ``str`` or ``bytes``: yes)."""
    kind = type(query)
    if kind is str or kind is bytes:
        verdict = _VERDICTS.get(query)
        if verdict is None:
            verdict = (_SESSION_STR if kind is str else _SESSION_BYTES)(query) is not None
            if len(query) <= _VERDICT_CHARS:
                if len(_VERDICTS) >= _VERDICTS_MAX:
                    _VERDICTS.clear()  # many different texts: start again rather than grow
                _VERDICTS[query] = verdict
        return verdict
    return True  # psycopg2.sql.Composed and the like: not worth rendering to look


#: psycopg2 cursor class -> its watched subclass (made by :func:`watched_cursor_class`)
WATCHED_CURSORS: dict[type, type] = {}


def watched_cursor_class(cls: type) -> type:
    """A subclass of psycopg2 cursor class ``cls`` whose statements are looked at (cached)."""
    sub = WATCHED_CURSORS.get(cls)
    if sub is not None:
        return sub

    base_execute = cls.execute  # type: ignore[attr-defined]
    base_connection = cls.connection  # type: ignore[attr-defined]

    class Watched(cls):  # type: ignore[misc]
        __slots__ = ("_gp_flag", "_gp_guard")  # no instance dict to create per cursor
        _gp_flag: list[bool]
        #: None, or a check of a statement that may change the session (raises to refuse it)
        _gp_guard: Callable[[Any], None] | None

        def execute(self, query: Any, vars: Any = None) -> Any:
            # the verdict cache inlined for the common case: a str seen before
            verdict = _VERDICTS.get(query) if type(query) is str else None
            if verdict is None:
                verdict = may_change_session(query)
            if verdict:
                if self._gp_guard is not None:
                    self._gp_guard(query)
                self._gp_flag[0] = True
            return base_execute(self, query, vars)

        def executemany(self, query: Any, vars_list: Any) -> Any:
            if may_change_session(query):
                if self._gp_guard is not None:
                    self._gp_guard(query)
                self._gp_flag[0] = True
            return super().executemany(query, vars_list)

        def callproc(self, procname: Any, parameters: Any = None) -> Any:
            self._gp_flag[0] = True  # a function may change anything
            return super().callproc(procname, parameters)

        @property
        def connection(self) -> Any:
            """The driver's connection (its attributes are then compared on return)."""
            self._gp_flag[1] = True
            return base_connection.__get__(self, type(self))

    Watched.__name__, Watched.__qualname__ = cls.__name__, cls.__qualname__
    Watched.__module__ = cls.__module__
    from . import _fast  # noqa: PLC0415 (here: _fast imports this module)

    if _fast.execute_method is not None:  # execute() in C: a statement judged before goes straight through
        Watched._gp_base_execute = base_execute
        Watched._gp_slow_execute = Watched.execute
        Watched.execute = _fast.execute_method(cls)  # type: ignore[method-assign]
    WATCHED_CURSORS[cls] = Watched
    return Watched


def pg2_open_cursor(
    conn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], flag: list[bool], default: type,
    guard: Callable[[Any], None] | None = None,
) -> Any:
    """``conn.cursor(*args, **kwargs)``, of a subclass of the class asked for (``default``:
    psycopg2's) that sets ``flag[0]`` when a statement may change the session, after
    ``guard(statement)`` (if given) let it through, and ``flag[1]`` when its ``connection``
    is reached.
    ``isinstance`` with the class asked for still holds.  A connection class with a
    ``cursor()`` of its own (``psycopg2.extras.RealDictConnection``...) gets the watched subclass
    of the class it picks itself."""
    real = conn.wrapped if isinstance(getattr(type(conn), "wrapped", None), property) else conn  # threads
    if _overrides_cursor(type(real)):
        default = _own_cursor_class(real)
    if not args and not kwargs:  # the common case, without building arguments
        cursor = conn.cursor(cursor_factory=watched_cursor_class(conn.cursor_factory or default))
    else:
        if len(args) >= 2:
            factory = _cursor_class(args[1] or conn.cursor_factory or default, default)
            args = (args[0], watched_cursor_class(factory), *args[2:])
        else:
            factory = _cursor_class(kwargs.get("cursor_factory") or conn.cursor_factory or default, default)
            kwargs = {**kwargs, "cursor_factory": watched_cursor_class(factory)}
        cursor = conn.cursor(*args, **kwargs)
    cursor._gp_flag = flag
    cursor._gp_guard = guard
    return cursor


def _cursor_class(factory: Any, base: type) -> type:
    """``factory``, checked: a subclass of the driver's cursor class ``base`` (TypeError if not,
    as psycopg2 says itself)."""
    if not (isinstance(factory, type) and issubclass(factory, base)):
        raise TypeError(
            f"cursor_factory must be a subclass of {base.__module__}.{base.__qualname__}, got {factory!r}"
        )
    return factory


#: connection class -> whether it is a C connection class whose cursor() a Python subclass overrides
_OVERRIDES: dict[type, bool] = {}


def _overrides_cursor(cls: type) -> bool:
    """Whether ``cls`` extends a C connection class with a ``cursor()`` of its own (the driver's
    connection: behind a ThreadedConnection, its ``wrapped`` one)."""
    known = _OVERRIDES.get(cls)
    if known is None:
        own = getattr(cls, "cursor", None)
        known = _OVERRIDES[cls] = not isinstance(own, types.MethodDescriptorType) and any(
            isinstance(vars(base).get("cursor"), types.MethodDescriptorType) for base in cls.__mro__
        )
    return known


def _own_cursor_class(conn: Any) -> type:
    """The cursor class a connection class with a ``cursor()`` of its own picks when given none
    (``RealDictConnection``: ``RealDictCursor``): one of its unnamed cursors, closed unused (no
    I/O), says."""
    probe = conn.cursor()
    try:
        return type(probe)
    finally:
        probe.close()


def _run_autocommit(conn: Any, sql: str, **options: Any) -> None:
    """Run ``sql`` outside a transaction (psycopg2 and psycopg 3 alike), then set autocommit back."""
    autocommit = conn.autocommit
    if not autocommit:
        conn.autocommit = True
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, **options)
        finally:
            cursor.close()
    finally:
        if not autocommit and not conn.closed:
            conn.autocommit = False


def _session_settings(conn: Any) -> list[tuple[str, str]]:
    """The settings the session made itself (one round trip, outside a transaction)."""
    autocommit = conn.autocommit
    if not autocommit:
        conn.autocommit = True
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(PG_SESSION_SETTINGS_SQL)
            rows = cursor.fetchall()
        finally:
            cursor.close()
    finally:
        if not autocommit:
            conn.autocommit = False
    return [(str(row[0]), str(row[1])) for row in rows]


def _pg_quote(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings: E'' keeps backslashes right)."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# -- psycopg2 --------------------------------------------------------------------------------

_READS = ("closed", "status", "dsn", "info", "server_version", "protocol_version", "encoding",
          "autocommit", "isolation_level", "readonly", "deferrable", "cursor_factory", "async",
          "async_", "get_transaction_status", "get_backend_pid", "get_parameter_status",
          "get_dsn_parameters", "fileno", "isexecuting", "Error", "Warning", "InterfaceError",
          "DatabaseError", "DataError", "OperationalError", "IntegrityError", "InternalError",
          "ProgrammingError", "NotSupportedError")

#: psycopg2: reads of immutable values are free; the flag setters and the mutable
#: lists and dicts make the return compare the attributes; anything else may run SQL.
PSYCOPG2_LEVELS: dict[str, int] = {
    **dict.fromkeys(_READS, UNTOUCHED),
    **dict.fromkeys(("notices", "notifies", "string_types", "binary_types", "set_session",
                     "set_isolation_level", "set_client_encoding"), TOUCHED),
}

_STATUS_READY = 1  # psycopg2.extensions.STATUS_READY
_STATUS_BEGIN = 2  # psycopg2.extensions.STATUS_BEGIN


class Pg2Snapshot(NamedTuple):
    """A psycopg2 connection as the pool lends it."""

    autocommit: bool
    isolation_level: Any
    readonly: Any
    deferrable: Any
    cursor_factory: Any
    notices: Any
    notifies: Any
    encoding: str
    string_types: dict[Any, Any]
    binary_types: dict[Any, Any]
    #: The session reset (with ``configure``'s settings), or "" when it is off.
    reset_sql: str


def pg2_snapshot(conn: Any, reset: bool) -> Pg2Snapshot:
    """Record ``conn``'s attributes and, when ``reset``, the session's own settings (one round trip).

    The reset is ``DISCARD ALL`` (measured the cheapest: about a ``SELECT 1``)
    unless the session made settings of its own; then it is
    :data:`PG_RESET_SQL` with ``DEALLOCATE ALL``, and the settings again.
    """
    reset_sql = ""
    if reset:
        settings = _session_settings(conn)
        reset_sql = "DEALLOCATE ALL; " + PG_RESET_SQL + pg_reapply_sql(settings, _pg_quote) if settings \
            else "DISCARD ALL"
    return Pg2Snapshot(
        conn.autocommit, conn.isolation_level, conn.readonly, conn.deferrable, conn.cursor_factory,
        conn.notices, conn.notifies, conn.encoding, dict(conn.string_types), dict(conn.binary_types),
        reset_sql,
    )


def pg2_close_cursors(conn: Any, cursors: tuple[Any, ...], io: Callable[[str], Any]) -> None:
    """Close the borrower's WITH HOLD cursors (a ``CLOSE`` each: they outlive the rollback).

    A named cursor without hold needs nothing: psycopg2 refuses it once its
    transaction is over ("named cursor isn't valid anymore"), with no I/O.

    :raises Condemned: one could not be closed.
    """
    for cursor in cursors:
        if cursor.closed or not cursor.withhold:
            continue
        try:
            with io("closing a WITH HOLD cursor"):
                cursor.close()
        except conn.Error as error:
            raise Condemned(f"a WITH HOLD cursor could not be closed: {error!r}") from error


def pg2_restore(conn: Any, snap: Pg2Snapshot, usage: Usage, io: Callable[[str], Any]) -> None:
    """Put ``conn`` back as :func:`pg2_snapshot` found it (after the pool's rollback).

    :raises Condemned: it cannot be (a two-phase transaction, a condemned use).
    """
    level = usage.level
    if level < QUERIED:
        return
    if level >= CONDEMNED:
        raise Condemned("the borrower changed what the driver cannot take back")
    status = conn.status
    if status != _STATUS_READY:
        if status == _STATUS_BEGIN and conn.get_transaction_status() == 0:
            # COMMIT or ROLLBACK ran as SQL: psycopg2 still thinks a transaction is open and
            # would not BEGIN the next borrower's
            with io("rollback"):
                conn.rollback()
        else:
            raise Condemned(f"psycopg2 status {status} on return (a two-phase transaction?)")
    if level == QUERIED:  # statements only: no attribute was set, and none was reached
        if snap.notices:
            _empty(snap.notices)
        if snap.notifies:
            _empty(snap.notifies)
        return
    if conn.autocommit is not snap.autocommit:
        conn.autocommit = snap.autocommit
    if conn.isolation_level != snap.isolation_level:
        conn.isolation_level = snap.isolation_level
    if conn.readonly != snap.readonly:
        conn.readonly = snap.readonly
    if conn.deferrable != snap.deferrable:
        conn.deferrable = snap.deferrable
    if conn.cursor_factory is not snap.cursor_factory:
        conn.cursor_factory = snap.cursor_factory
    for current, saved in ((conn.string_types, snap.string_types), (conn.binary_types, snap.binary_types)):
        if current != saved:
            current.clear()
            current.update(saved)
    if level >= USED and snap.reset_sql:
        with io("resetting the session"):
            _run_autocommit(conn, snap.reset_sql)
    if conn.encoding != snap.encoding:  # set_client_encoding, or RESET ALL undid a SET client_encoding
        with io("restoring the client encoding"):
            conn.set_client_encoding(snap.encoding)
    if conn.notices is not snap.notices:
        conn.notices = snap.notices
    if conn.notifies is not snap.notifies:
        conn.notifies = snap.notifies
    _empty(snap.notices)
    _empty(snap.notifies)


def _empty(messages: Any) -> None:
    if messages:
        clear = getattr(messages, "clear", None)
        if clear is not None:
            clear()


# -- psycopg 3 -------------------------------------------------------------------------------

_PSYCOPG_FLAGS = ("autocommit", "isolation_level", "read_only", "deferrable", "row_factory",
                  "cursor_factory", "server_cursor_factory", "prepare_threshold", "prepared_max")

#: psycopg 3: as for psycopg2, and its adapters and handlers, which it gives no way to take
#: back, condemn the connection.
PSYCOPG_LEVELS: dict[str, int] = {
    **dict.fromkeys((*_PSYCOPG_FLAGS, "closed", "broken", "info", "fileno", "Error", "Warning",
                     "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                     "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
                     "remove_notice_handler", "remove_notify_handler"), UNTOUCHED),
    **dict.fromkeys(("set_autocommit", "set_isolation_level", "set_read_only", "set_deferrable"),
                    TOUCHED),
    **dict.fromkeys(("adapters", "add_notice_handler", "add_notify_handler"), CONDEMNED),
}


class PgSnapshot(NamedTuple):
    """A psycopg 3 connection as the pool lends it: its flags and the session reset."""

    flags: tuple[Any, ...]
    reset_sql: str


def pg_snapshot(conn: Any, reset: bool) -> PgSnapshot:
    """Record ``conn``'s flags and, when ``reset``, the session's own settings (one round trip).

    The reset leaves out ``DEALLOCATE ALL``: the statements psycopg 3 prepared are its own.
    """
    reset_sql = PG_RESET_SQL + pg_reapply_sql(_session_settings(conn), _pg_quote) if reset else ""
    return PgSnapshot(tuple(getattr(conn, name) for name in _PSYCOPG_FLAGS), reset_sql)


def pg_close_cursors(conn: Any, cursors: tuple[Any, ...], io: Callable[[str], Any]) -> None:
    """Close the borrower's server cursors (``CLOSE`` while their transaction is still there).

    :raises Condemned: one could not be closed.
    """
    for cursor in cursors:
        if cursor.closed:
            continue
        try:
            with io("closing a server-side cursor"):
                cursor.close()
        except conn.Error as error:
            raise Condemned(f"a server-side cursor could not be closed: {error!r}") from error


def pg_restore(conn: Any, snap: PgSnapshot, usage: Usage, io: Callable[[str], Any]) -> None:
    """Put ``conn`` back as :func:`pg_snapshot` found it (after the pool's rollback).

    :raises Condemned: it cannot be.
    """
    level = usage.level
    if level < QUERIED:
        return
    if level >= CONDEMNED:
        raise Condemned("the borrower changed psycopg's adapters or handlers")
    for name, saved in zip(_PSYCOPG_FLAGS, snap.flags, strict=True):
        if getattr(conn, name) != saved:
            setattr(conn, name, saved)
    if level >= USED:
        if snap.reset_sql:
            with io("resetting the session"):
                _run_autocommit(conn, snap.reset_sql, prepare=False)  # several statements
        # notifications received while nobody iterated notifies(): psycopg keeps them for the
        # next caller, and offers no public way to drop them
        _empty(getattr(conn, "_notifies_backlog", None))

#!/usr/bin/env python3
"""Generate docs/generated/bad_input.rst: every bad argument of the public API and the exact error.

    .venv/bin/python scripts/bad_input_table.py            # rewrite the file
    .venv/bin/python scripts/bad_input_table.py --check    # exit 1 if the file is out of date

Rows A1-A8 of the reliability matrix.  The cases come from the test suite
where they exist (tests/core/test_config.py ``BAD_ARGUMENTS``, the
parametrized cases of tests/core/test_servers.py, tests/dbapi/test_config.py
and tests/ldap/test_config.py), plus the methods' bad values listed here.
Each call is really made; the table shows the class and message raised
(memory addresses masked), so it cannot drift from the code:
tests/reliability/test_bad_input_table.py fails when the committed file
differs from a fresh run.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OUTPUT = os.path.join(ROOT, "docs", "generated", "bad_input.rst")

Case = tuple[str, str, Callable[[], Any]]  # (row, call as text, the call)


def _params(test: Any) -> list[Any]:
    """The parameter list of a test's ``@pytest.mark.parametrize``."""
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            return list(mark.args[1])
    raise LookupError(f"{test.__name__} is not parametrized")


def _kw(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in kwargs.items())


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, tuple):
        inner = ", ".join(_show(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if hasattr(value, "__name__") and not isinstance(value, (str, bytes)):
        return str(value.__name__)
    return repr(value)


def core_cases() -> list[Case]:
    import gevent

    import geventpool
    from geventpool import ConnectionPool, Server, ServerPool, retry
    from geventpool.testing import FaultProxy, HubMonitor, wait_until
    from tests.core import test_config, test_servers

    class Plain(ConnectionPool[object]):
        def _new_connection(self) -> object:
            return object()

    class ReturnsNone(ConnectionPool[object]):
        def _new_connection(self) -> Any:
            return None

    class Raises(ConnectionPool[object]):
        def _new_connection(self) -> object:
            raise ValueError("bad host name")

    cases: list[Case] = []
    for kwargs, _named in test_config.BAD_ARGUMENTS:
        cases.append(("A1", f"ConnectionPool({_kw(kwargs)})", lambda k=kwargs: Plain(**k)))
    for args, kwargs, _named in _params(test_servers.test_bad_servers):
        text = ", ".join([*(_show(a) for a in args), *(f"{k}={_show(v)}" for k, v in kwargs.items())])
        cases.append(("A2", f"Server({text})", lambda a=args, k=kwargs: Server(*a, **k)))
    cases.append(("A2", "ServerPool([], strategy='FASTEST')", lambda: ServerPool([], strategy="FASTEST")))
    cases.append(("A2", "ConnectionPool(servers=['h'])  # _new_connection takes no server",
                  lambda: Plain(servers=["h"])))

    def pool() -> Plain:
        return Plain(2, name="pool")

    def started() -> Plain:
        p = pool()
        p.wait(5)
        return p

    cases += [
        ("A1", "pool.resize(min_size=5, max_size=2)", lambda: pool().resize(5, 2)),
        ("A1", "pool.resize(max_size=0)", lambda: pool().resize(0, 0)),
        ("A1", "pool.resize(max_size=1.5)", lambda: pool().resize(max_size=1.5)),  # type: ignore[arg-type]
        ("A1", "pool.wait(timeout=-1)", lambda: pool().wait(-1)),
        ("A1", "pool.wait(timeout=nan)", lambda: pool().wait(math.nan)),
        ("A1", "pool.close(timeout='5')", lambda: pool().close("5")),  # type: ignore[arg-type]
        ("A1", "pool.on('connected', print)", lambda: pool().on("connected", print)),
        ("A1", "pool.on('connect', 3)", lambda: pool().on("connect", 3)),  # type: ignore[arg-type]
        ("A7", "_new_connection() returns None; pool.get()", lambda: ReturnsNone(1, name="pool").get(5)),
        ("A7", "_new_connection() raises ValueError; pool.get()", lambda: Raises(1, name="pool").get(5)),
    ]

    def closed_get() -> Any:
        p = pool()
        p.close()
        return p.get()

    def release_twice() -> None:
        p = started()
        conn = p.acquire()
        p.release(conn)
        p.release(conn)

    def release_foreign() -> None:
        p, other = started(), Plain(1, name="other")
        other.release(p.acquire())

    def enter_returned() -> None:
        p = started()
        lease = p.get()
        with lease:
            pass
        with lease:
            pass

    def timed_out_get() -> None:
        p = Plain(1, name="pool")
        p.acquire()
        p.get(timeout=-1)

    cases += [
        ("A8", "pool.close(); pool.get()", closed_get),
        ("A8", "pool.release(conn) twice", release_twice),
        ("A8", "other_pool.release(conn)", release_foreign),
        ("A8", "with lease: ... (a lease already returned)", enter_returned),
        ("A1", "pool.get(timeout=-1) on a full pool", timed_out_get),
        ("A1", "retry(max_failures=-1)", lambda: retry(max_failures=-1)),
        ("A1", "retry(interval=-1)", lambda: retry(interval=-1)),
        ("A1", "retry(exc_classes=(3,))", lambda: retry(exc_classes=(3,))),  # type: ignore[arg-type]
        ("A1", "HubMonitor(interval=0)", lambda: HubMonitor(interval=0)),
        ("A1", "wait_until(f, timeout=-1)", lambda: wait_until(bool, timeout=-1)),
        ("A1", "FaultProxy(...).set_mode('explode')",
         lambda: FaultProxy(upstream=("127.0.0.1", 1)).set_mode("explode")),
    ]
    _ = (gevent, geventpool)
    return cases


def dbapi_cases() -> list[Case]:
    import sqlite3

    import psycopg2

    from geventpool.dbapi import ConnectionPool, DatabaseConnector
    from tests.dbapi import test_config

    cases: list[Case] = []
    for module, _words in _params(test_config.test_a4_not_a_dbapi_module_is_refused):
        name = getattr(module, "__name__", repr(module))
        if name == "fakedb":
            attrs = {k: _show(getattr(module, k)) for k in ("apilevel", "threadsafety") if hasattr(module, k)}
            if getattr(module, "OperationalError", "missing") is None:
                attrs["OperationalError"] = "None"
            name = f"<module with {_kw(attrs) if attrs else 'only connect()'}>".replace("'", "")
        cases.append(("A4", f"dbapi.ConnectionPool({name})", lambda m=module: ConnectionPool(m)))
    for args, kwargs in _params(test_config.test_a5_private_sqlite_memory_refused_above_one):
        text = ", ".join([*(_show(a) for a in args), *(f"{k}={_show(v)}" for k, v in kwargs.items())])
        cases.append(("A5", f"dbapi.ConnectionPool(sqlite3, {text}, max_size=2)",
                      lambda a=args, k=kwargs: ConnectionPool(sqlite3, *a, max_size=2, **k)))
    for kwargs, _name in _params(test_config.test_bad_options_name_the_argument):
        cases.append(("A1", f"dbapi.ConnectionPool(sqlite3, 'x.db', {_kw(kwargs)})",
                      lambda k=kwargs: ConnectionPool(sqlite3, "x.db", **k)))

    def resize_bad() -> None:
        ConnectionPool(sqlite3, "x.db", name="pool").resize(-1)

    cases += [
        ("A1", "dbapi.ConnectionPool(sqlite3, 'x.db').resize(-1)", resize_bad),
        ("A4", "DatabaseConnector(psycopg2, credentials=['h'])",
         lambda: DatabaseConnector(psycopg2, ["h"])),  # type: ignore[arg-type]
    ]
    return cases


def ldap_cases() -> list[Case]:
    from geventpool.ldap import LDAPPool
    from tests.ldap import test_config

    cases: list[Case] = []
    for uri, _fragment in _params(test_config.test_bad_uris_name_the_entry):
        cases.append(("A2", f"LDAPPool({uri!r})", lambda u=uri: LDAPPool(u)))
    for kwargs, _name in _params(test_config.test_bad_arguments_are_named):
        shown = _kw(kwargs).replace(ROOT + "/", "")
        cases.append(("A1", f"LDAPPool('ldap://127.0.0.1:1', {shown})",
                      lambda k=kwargs: LDAPPool("ldap://127.0.0.1:1", **k)))
    for password in _params(test_config.test_empty_password_with_a_dn_is_refused_at_construction):
        cases.append(("A6", f"LDAPPool(uri, 'cn=x,dc=example,dc=com', {password!r})",
                      lambda p=password: LDAPPool("ldap://127.0.0.1:1", "cn=x,dc=example,dc=com", p)))
    cases.append(("A2", "LDAPPool('ldap://user:<password>@h')",
                  lambda: LDAPPool("ldap://user:S3cret@h")))
    return cases


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    import gevent

    try:
        with gevent.Timeout(10):
            call()
    except BaseException as error:  # the table records whatever a user would get
        cls = type(error)
        module = cls.__module__
        name = cls.__qualname__ if module in ("builtins",) else f"{module}.{cls.__qualname__}"
        return name, clean(str(error))
    return "(no error)", ""


def clean(text: str) -> str:
    text = re.sub(r"0x[0-9a-fA-F]+", "0x...", text)
    text = text.replace(ROOT + "/", "")
    text = re.sub(r"(ConnectionPool|Plain|ReturnsNone|Raises)-\d+", r"\1-N", text)
    text = re.sub(r"#\d+", "#N", text)
    text = re.sub(r"connection \d+ of", "connection N of", text)
    return " ".join(text.split())


def rst_cell(text: str) -> str:
    if not text:
        return ""
    return "``" + text.replace("`", "'") + "``" if len(text) < 60 else text.replace("*", r"\*")


def generate() -> str:
    import logging

    logging.disable(logging.CRITICAL)  # warnings of the calls (TLS opt-outs...) are not the table
    rows = []
    for section, builder in (("core", core_cases), ("dbapi", dbapi_cases), ("ldap", ldap_cases)):
        for row, raw_call_text, call in builder():
            error, message = outcome(call)
            call_text = re.sub(r"(://[^:/@]+:)[^@]+@", r"\1<password>@", raw_call_text)  # the input's secret
            rows.append((row, section, call_text, error, message))
    lines = [
        ".. This file is generated by scripts/bad_input_table.py; do not edit it by hand.",
        "",
        "Bad input: what each wrong argument raises",
        "==========================================",
        "",
        "Every call below was made by ``scripts/bad_input_table.py`` and the error it raised was",
        "recorded verbatim (memory addresses and pool numbers masked).  Rows A1-A8 refer to the",
        "reliability test matrix: A1 sizes and timeouts, A2 URIs and servers, A4 DB-API modules,",
        "A5 private sqlite databases, A6 empty passwords, A7 misbehaving hooks, A8 closed pools and",
        "foreign returns.  ``ConfigurationError`` is also a ``ValueError``.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 5 8 35 20 40",
        "",
        "   * - Row",
        "     - Pool",
        "     - Call",
        "     - Raises",
        "     - Message",
    ]
    for row, section, call_text, error, message in rows:
        lines += [
            f"   * - {row}",
            f"     - {section}",
            f"     - ``{call_text}``",
            f"     - ``{error}``",
            f"     - {rst_cell(message)}",
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{args.output} is out of date: run scripts/bad_input_table.py", file=sys.stderr)
            return 1
        return 0
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

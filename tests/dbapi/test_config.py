"""Rows A4, A5, H6, H7: what the DB-API pool refuses at construction, and secrets it never shows."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import sqlite3
import types
import uuid

import psycopg2
import pytest

from geventpool import ConfigurationError, PoolTimeout
from geventpool.dbapi import ConnectionPool


def _module(**attrs: object) -> types.ModuleType:
    mod = types.ModuleType("fakedb")
    for key, value in attrs.items():
        setattr(mod, key, value)
    return mod


def _dbapi_attrs(**overrides: object) -> dict[str, object]:
    class Error(Exception):
        pass

    attrs: dict[str, object] = {
        "apilevel": "2.0", "threadsafety": 1, "paramstyle": "qmark", "connect": lambda *a, **k: None,
        "Error": Error, "OperationalError": type("OperationalError", (Error,), {}),
        "InterfaceError": type("InterfaceError", (Error,), {}),
    }
    attrs.update(overrides)
    return attrs


@pytest.mark.parametrize(
    ("db_module", "words"),
    [
        (json, "no connect()"),
        (socket, "no connect()"),
        (_module(connect=lambda: None), "apilevel"),
        (_module(**_dbapi_attrs(apilevel="1.0")), "apilevel"),
        (_module(**_dbapi_attrs(threadsafety=0)), "threadsafety"),
        (_module(**_dbapi_attrs(OperationalError=None)), "OperationalError"),
        (42, "DB-API 2.0 module"),
    ],
)
def test_a4_not_a_dbapi_module_is_refused(db_module: object, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ConnectionPool(db_module)


def test_a4_connect_returning_none_fails_get_clearly() -> None:
    pool = ConnectionPool(_module(**_dbapi_attrs()), timeout=5)
    try:
        with pytest.raises(ConfigurationError, match="not a DB-API connection"):
            pool.get()
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((":memory:",), {}), (("",), {}), ((), {"database": ":memory:"}),
     (("file:x?mode=memory",), {"uri": True}), (("file::memory:",), {"uri": True})],
)
def test_a5_private_sqlite_memory_refused_above_one(args: tuple[str], kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="cache=shared"):
        ConnectionPool(sqlite3, *args, max_size=2, **kwargs)


def test_a5_memory_allowed_with_one_connection_or_shared_cache() -> None:
    ConnectionPool(sqlite3, ":memory:", max_size=1).close()
    ConnectionPool(sqlite3, "file:a5?mode=memory&cache=shared", uri=True, max_size=3).close()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"max_idle": -1}, "max_idle"), ({"max_age": "x"}, "max_age"), ({"timeout": float("nan")}, "timeout"),
     ({"check": 3}, "check"), ({"reset": "DISCARD ALL"}, "reset"), ({"max_size": 0}, "max_size"),
     ({"pool_options": {"max_lifetime": 3}}, "max_lifetime"), ({"ping_after": -1}, "ping_after")],
)
def test_bad_options_name_the_argument(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        ConnectionPool(sqlite3, "x.db", **kwargs)


def test_h7_unverified_tls_warns_unless_allowed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="geventpool")
    for mode in ("require", "prefer"):
        ConnectionPool(psycopg2, f"host=127.0.0.1 sslmode={mode}").close()
        ConnectionPool(psycopg2, host="127.0.0.1", sslmode=mode).close()
    assert sum("verify-full" in r.getMessage() for r in caplog.records) == 4
    caplog.clear()
    ConnectionPool(psycopg2, "host=127.0.0.1 sslmode=require", allow_unverified_tls=True).close()
    ConnectionPool(psycopg2, "host=127.0.0.1 sslmode=verify-full").close()
    assert not [r for r in caplog.records if "verify-full" in r.getMessage()]


def test_h6_password_never_shown(debug_log: pytest.LogCaptureFixture, closed_port: int) -> None:
    secret = f"S3cr3t-SENTINEL-{uuid.uuid4()}"
    pool = ConnectionPool(psycopg2, host="127.0.0.1", port=closed_port, user="u", password=secret,
                          timeout=0.3, connect_timeout=0.2)
    pool2 = ConnectionPool(psycopg2, f"host=127.0.0.1 port={closed_port} password={secret}", timeout=0.3)
    texts = []
    for p in (pool, pool2):
        with pytest.raises(PoolTimeout) as info:
            p.get()
        texts += [repr(p), str(p), str(p.stats()), p.name, str(info.value), repr(info.value.__cause__)]
        with pytest.raises(TypeError):
            pickle.dumps(p)
        p.close()
    texts += [r.getMessage() for r in debug_log.records]
    assert not [t for t in texts if secret in t]

"""The security audit as tests (row H6, issue 6 part 4): a sentinel password never shows anywhere.

For every pool — the core pool (credentials kept by a subclass), the DB-API
pool (a DSN with a password; a wrong password against a private PostgreSQL
with password authentication), the LDAP pool (wrong and right service
passwords, ``authenticate()``) — the error paths run at DEBUG logging, then
the sentinel ``S3cr3t-SENTINEL-<uuid>`` is searched in: every log record
(message and formatted traceback), repr/str/stats of the pools, exception
messages, reprs and formatted tracebacks (with their causes), and pickles
(pools, connections and credentials refuse with TypeError).  It must
appear 0 times.  :data:`REVIEWED_REPRS` lists every public object whose repr
was reviewed.
"""

from __future__ import annotations

import logging
import pickle
import socket
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.socket
import pytest

import geventpool
from geventpool import ConnectionPool, PoolTimeout, Server, ServerPool
from geventpool.testing import EchoServer, FaultProxy, HubMonitor, wait_until

from .servers import LineServer, read_line

#: Every public object whose repr/str this audit checks (and a reviewer read).
REVIEWED_REPRS = [
    "geventpool.ConnectionPool (repr, str status table, stats, server_stats)",
    "geventpool.Slot",
    "geventpool.Server", "geventpool.ServerPool", "geventpool.ServerHealth",
    "geventpool errors: PoolError, PoolTimeout, BackendUnavailable, ConnectTimeout, PoolClosed, "
    "TooManyWaiters, ConfigurationError",
    "geventpool.dbapi.ConnectionPool (repr, str, stats)", "geventpool.dbapi.PooledConnection",
    "geventpool.dbapi.DatabaseConnector",
    "geventpool.ldap.LDAPPool (repr, str, stats)", "geventpool.ldap.LDAPConnection",
    "geventpool.ldap.Credentials", "geventpool.ldap.TLSPolicy", "geventpool.ldap.LDAPServer",
    "geventpool.ldap errors: AuthenticationFailed, BackendError, MaxConnectionReachedError",
    "geventpool.testing: FaultProxy, EchoServer, HubMonitor",
]


@pytest.fixture
def sentinel() -> str:
    return f"S3cr3t-SENTINEL-{uuid.uuid4()}"


class Evidence:
    """Everything a user or an operator could see; searched for the sentinel."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, str(text)))

    def error(self, where: str, error: BaseException) -> None:
        self.add(f"{where}: str", error)
        self.add(f"{where}: repr", repr(error))
        self.add(f"{where}: traceback", "".join(traceback.format_exception(error)))
        cause = error.__cause__ or error.__context__
        if cause is not None:
            self.add(f"{where}: cause", repr(cause))

    def pool(self, where: str, pool: Any) -> None:
        self.add(f"{where}: repr", repr(pool))
        self.add(f"{where}: str", str(pool))
        self.add(f"{where}: stats", pool.stats())
        if hasattr(pool, "server_stats"):
            self.add(f"{where}: server_stats", pool.server_stats())
        with pytest.raises(TypeError):
            pickle.dumps(pool)

    def assert_clean(self, secret: str, *, logged: bool = True) -> None:
        for record in self.caplog.records:
            text = record.getMessage()
            if record.exc_info:
                text += "".join(traceback.format_exception(*record.exc_info))
            self.add(f"log {record.name} {record.levelname}", text)
        assert self.caplog.records or not logged, "nothing was logged: the audit ran no error path"
        leaks = [where for where, text in self.texts if secret in text]
        assert not leaks, f"the password appears in: {leaks}"


@pytest.fixture
def evidence(caplog: pytest.LogCaptureFixture) -> Evidence:
    caplog.set_level(logging.DEBUG, logger="geventpool")
    return Evidence(caplog)


# -- the core pool ------------------------------------------------------------------------------


class LoginRefused(Exception):
    """The server refused the password (not a connection error: it reaches the caller unchanged)."""


class AuthPool(ConnectionPool[socket.socket]):
    """A user's pool that logs in with a password: ``AUTH <password>`` must be answered ``OK``."""

    def __init__(self, address: tuple[str, int], password: str, **kwargs: Any) -> None:
        self.address = address
        self._password = password
        super().__init__(**kwargs)

    def _new_connection(self) -> socket.socket:
        sock = gevent.socket.create_connection(self.address)
        try:
            sock.sendall(b"AUTH " + self._password.encode() + b"\n")
            if read_line(sock) != b"OK\n":
                raise LoginRefused("login refused")
        except BaseException:
            sock.close()
            raise
        return sock

    def _keepalive(self, conn: socket.socket) -> None:
        conn.sendall(b"PING\n")
        if read_line(conn) != b"PONG\n":
            raise ConnectionError("bad answer")


class AuthServer(LineServer):
    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password

    def _answer(self, sock: socket.socket, port: int, line: bytes) -> None:
        if line.startswith(b"AUTH "):
            ok = line[5:-1].decode() == self.password
            sock.sendall(b"OK\n" if ok else b"NO\n")
        else:
            super()._answer(sock, port, line)


def test_core_pool_error_paths(sentinel: str, evidence: Evidence) -> None:
    # refused: nobody listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    pool = AuthPool(("127.0.0.1", closed_port), sentinel, size=2, timeout=0.3, connect_timeout=0.2)
    with pytest.raises(PoolTimeout) as info:
        pool.get()
    evidence.error("refused", info.value)
    evidence.pool("refused pool", pool)
    pool.close()

    with AuthServer(password="right") as server:
        # wrong password: the user's own error reaches the caller unchanged
        pool = AuthPool(server.address, sentinel, size=1, timeout=2, name="auth")
        with pytest.raises(LoginRefused) as refused:
            pool.get()
        evidence.error("login refused", refused.value)
        evidence.pool("login refused pool", pool)
        pool.close()

        # right password: discard, keepalive failure, leak warning, timeout, close with a holder
        server.password = sentinel
        with FaultProxy(upstream=server.address) as proxy:
            pool = AuthPool(proxy.address, sentinel, size=2, timeout=0.3, keepalive=0.5,
                            keepalive_timeout=0.2, leak_threshold=0.05, name="auth-ok")
            with pool.get():
                evidence.add("slot repr", repr(pool.snapshot().slots))
            held = pool.acquire()
            gevent.sleep(0.15)
            pool.run_housekeeping()  # reports the leak
            with pytest.raises(OSError) as lost, pool.get():
                raise ConnectionResetError("lost")
            evidence.error("discard", lost.value)
            other = pool.acquire()
            with pytest.raises(PoolTimeout) as timed_out:
                pool.get(timeout=0.05)
            evidence.error("timeout", timed_out.value)
            pool.release(other)
            proxy.set_mode("blackhole")
            pool.snapshot().idle_slots[0].last_used -= 10  # due for a keepalive
            pool.run_housekeeping()
            wait_until(lambda: pool.stats()["connections_discarded"] >= 2, timeout=5)
            proxy.set_mode("pass")
            evidence.pool("auth pool", pool)
            pool.release(held)
            pool.close()
    evidence.assert_clean(sentinel)


def test_servers_refuse_credentials_in_uris(sentinel: str, evidence: Evidence) -> None:
    with pytest.raises(geventpool.ConfigurationError) as info:
        Server(f"ldap://admin:{sentinel}@127.0.0.1:389")
    evidence.error("server uri", info.value)
    servers = ServerPool([Server("127.0.0.1", 1), Server("127.0.0.1", 2)])
    evidence.add("server pool", repr(servers))
    evidence.add("server", repr(servers.servers[0]) if hasattr(servers, "servers") else repr(servers))
    evidence.assert_clean(sentinel, logged=False)


# -- the DB-API pool ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_password() -> Iterator[Any]:
    """A private PostgreSQL with password (scram) authentication for role ``app`` (password ``right``)."""
    from geventpool.testing.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        server.require_password("app", "right")
        yield server
    finally:
        server.cleanup()


@pytest.mark.postgres
def test_dbapi_pool_wrong_password_and_dsn(pg_password: Any, sentinel: str, evidence: Evidence) -> None:
    import psycopg2

    from geventpool.dbapi import ConnectionPool as DBPool
    from geventpool.dbapi import DatabaseConnector

    pg = pg_password
    pools = [
        DBPool(psycopg2, host="127.0.0.1", port=pg.port, user="app", dbname="postgres", password=sentinel,
               timeout=1, connect_timeout=2),
        DBPool(psycopg2, f"host=127.0.0.1 port={pg.port} user=app dbname=postgres password={sentinel}",
               timeout=1, connect_timeout=2),
        DBPool(psycopg2, f"postgresql://app:{sentinel}@127.0.0.1:{pg.port}/postgres", timeout=1,
               connect_timeout=2),
    ]
    for number, pool in enumerate(pools):
        with pytest.raises(Exception) as info:
            pool.get()
        evidence.error(f"dbapi {number}", info.value)
        evidence.pool(f"dbapi pool {number}", pool)
        pool.close()
    # the sentinel as the real password: connections, queries, errors, the connector
    pg.execute(f"ALTER ROLE app PASSWORD '{sentinel}'")
    try:
        pool = DBPool(psycopg2, host="127.0.0.1", port=pg.port, user="app", dbname="postgres",
                      password=sentinel, timeout=2)
        conn = pool.get()
        evidence.add("pooled connection repr", repr(conn))
        with pytest.raises(TypeError):
            pickle.dumps(conn)
        with pytest.raises(psycopg2.Error) as failed:
            conn.cursor().execute("SELECT * FROM no_such_table")
        evidence.error("query error", failed.value)
        pool.put(conn)
        evidence.pool("dbapi pool right password", pool)
        pool.close()
        connector = DatabaseConnector(psycopg2, {"127.0.0.1": {"port": pg.port, "user": "app",
                                                               "password": sentinel}})
        evidence.add("connector", repr(connector))
    finally:
        pg.execute("ALTER ROLE app PASSWORD 'right'")
    evidence.assert_clean(sentinel)


def test_dbapi_unparsable_dsn_is_refused_at_construction_without_quoting_it(
    sentinel: str, evidence: Evidence
) -> None:
    """libpq's parse error quotes the text around the fault: with an unquoted space in the
    password, that text is the password's second half."""
    import psycopg2

    from geventpool.dbapi import ConnectionPool as DBPool

    with pytest.raises(geventpool.ConfigurationError) as info:
        DBPool(psycopg2, f"host=127.0.0.1 port=1 user=app password=first {sentinel}")
    evidence.error("unparsable dsn", info.value)
    evidence.assert_clean(sentinel, logged=False)  # refused before anything could log


# -- the LDAP pool -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slapd_server() -> Iterator[Any]:
    from geventpool.testing.slapd import Slapd

    with Slapd(users=5, tls=False) as server:
        yield server


@pytest.mark.ldap
def test_ldap_pool_wrong_and_right_passwords(slapd_server: Any, sentinel: str, evidence: Evidence) -> None:
    from geventpool.ldap import AuthenticationFailed, Credentials, LDAPPool
    from geventpool.testing.slapd import SERVICE_DN, user_dn

    slapd = slapd_server
    wrong = LDAPPool(slapd.uri, SERVICE_DN, sentinel, size=2, checkout_timeout=3, retry_max=1)
    with pytest.raises(AuthenticationFailed) as info:
        with wrong.connection():
            pass
    evidence.error("wrong service password", info.value)
    evidence.pool("wrong pool", wrong)
    wrong.close()

    slapd.set_password(SERVICE_DN, sentinel)
    user = user_dn(1)
    slapd.set_password(user, sentinel)
    try:
        pool = LDAPPool(slapd.uri, SERVICE_DN, sentinel, size=2, checkout_timeout=3, retry_max=1)
        with pool.connection() as conn:
            evidence.add("ldap connection repr", repr(conn))
            with pytest.raises(TypeError):
                pickle.dumps(conn)
        assert pool.authenticate(user, sentinel) is True
        assert pool.authenticate(user, sentinel + "-wrong") is False
        with pytest.raises(AuthenticationFailed) as bad_bind:
            with pool.connection(user, sentinel + "-wrong"):
                pass
        evidence.error("per-request bind", bad_bind.value)
        with pool.connection(user, sentinel) as conn:
            evidence.add("user connection", repr(conn))
        evidence.pool("ldap pool", pool)
        credentials = Credentials(SERVICE_DN, sentinel)
        evidence.add("credentials", repr(credentials))
        with pytest.raises(TypeError):
            pickle.dumps(credentials)
        # the server goes away: connection errors at DEBUG
        with FaultProxy(upstream=("127.0.0.1", slapd.port)) as proxy:
            proxied = LDAPPool(f"ldap://127.0.0.1:{proxy.port}", SERVICE_DN, sentinel, size=1,
                               checkout_timeout=1, connect_timeout=0.3, timeout=0.5, retry_max=1)
            with proxied.connection():
                pass
            proxy.set_mode("refuse")
            proxy.reset_all()
            with pytest.raises(Exception) as down:
                with proxied.connection() as conn:
                    conn.whoami_s()
            evidence.error("server down", down.value)
            evidence.pool("proxied ldap pool", proxied)
            proxied.close()
        pool.close()
    finally:
        from geventpool.testing.slapd import SERVICE_PW, USER_PW

        slapd.set_password(SERVICE_DN, SERVICE_PW)
        slapd.set_password(user, USER_PW)
    evidence.assert_clean(sentinel)


def test_testing_helpers_reprs(sentinel: str, evidence: Evidence) -> None:
    with EchoServer() as echo, FaultProxy(upstream=echo.address) as proxy, HubMonitor() as hub:
        for obj in (echo, proxy, hub):
            evidence.add(type(obj).__name__, repr(obj))
            assert type(obj).__name__ in repr(obj)
    evidence.assert_clean(sentinel, logged=False)



@pytest.mark.ldap
def test_ldap_passwords_that_are_not_utf8_never_show(
    slapd_server: Any, sentinel: str, evidence: Evidence
) -> None:
    """A bytes password that is not UTF-8: a UnicodeDecodeError would carry its bytes in repr and logs."""
    from geventpool.ldap import AuthenticationFailed, ConnectionInfo, LDAPConnectionManager, LDAPPool
    from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, user_dn

    slapd = slapd_server
    secret = b"\xe9" + sentinel.encode()
    with pytest.raises(geventpool.ConfigurationError) as at_construction:
        LDAPPool(slapd.uri, SERVICE_DN, secret)
    evidence.error("pool with a non-UTF-8 password", at_construction.value)
    pool = LDAPPool(slapd.uri, SERVICE_DN, SERVICE_PW, size=1, checkout_timeout=3)
    with pytest.raises(geventpool.ConfigurationError) as per_request:
        with pool.connection(user_dn(1), secret):
            pass
    evidence.error("per-request bind", per_request.value)
    with pytest.raises(geventpool.ConfigurationError) as authenticate:
        pool.authenticate(user_dn(1), secret)
    evidence.error("authenticate", authenticate.value)
    pool.close()
    info = ConnectionInfo(host="127.0.0.1", port=slapd.port, bind_dn=SERVICE_DN,
                          password_callback=lambda: secret, timeout=2, max_retries=1, pool_size=1,
                          max_pool_size=1, pool_timeout=2)
    manager = LDAPConnectionManager(info, auto_reconnect=False)
    result = manager.connect()  # reports, never raises
    assert not result.connected
    evidence.add("connect result", repr(result))
    with pytest.raises(AuthenticationFailed) as callback:
        with manager.get_connection():
            pass
    evidence.error("callback", callback.value)
    manager.disconnect()
    evidence.assert_clean(sentinel)

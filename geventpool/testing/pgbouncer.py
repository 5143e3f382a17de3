"""A private PgBouncer in front of a private PostgreSQL, for tests, examples and benchmarks.

:class:`PgBouncerServer` writes ``pgbouncer.ini`` and an auth file into a
temporary directory and runs ``pgbouncer`` (Debian package ``pgbouncer``)
as a child of this process, listening on 127.0.0.1 on a free port, in
``transaction`` or ``session`` pooling mode, in front of a
:class:`~geventpool.testing.postgres.PostgresServer`.  Every database name
is forwarded to that server (``* =``), with trust authentication; the
login :data:`ADMIN_USER` reaches PgBouncer's admin console (database
``pgbouncer``): :meth:`PgBouncerServer.admin` runs ``PAUSE``, ``RESUME``,
``RECONNECT``, ``SHOW POOLS``...

PgBouncer refuses to run as root ("PgBouncer should not run as root"); when
this process is root the helper passes ``-u postgres`` (PgBouncer then
drops to that OS user) and hands the directory to that user.  Every signal
goes to the PID of the child this object started, never to a process found
by name.  Waits go through gevent (``gevent.sleep``); the admin helper
opens a short psycopg2 connection, green once a gevent wait callback is
installed.  Not thread-safe.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess as std_subprocess
import tempfile
import time
from typing import Any

import gevent

from ._child import ChildServer
from .ports import free_port
from .postgres import PostgresServer

__all__ = ["PgBouncerServer", "PgBouncerError", "find_pgbouncer", "ADMIN_USER", "POOL_MODES"]

#: The admin console's login (trust authentication, database ``pgbouncer``).
ADMIN_USER = "pgbadmin"
#: The pooling modes :class:`PgBouncerServer` accepts.
POOL_MODES = ("session", "transaction")

_SETTINGS = {
    "auth_type": "trust",
    "max_client_conn": "400",
    "default_pool_size": "20",
    # a failed server login blocks new clients this long (default 15 s): short for restart tests
    "server_login_retry": "0.2",
    # check a server connection idle for longer than this before reuse (default 30 s)
    "server_check_delay": "0",
    "server_connect_timeout": "5",
    # libpq sends nothing PgBouncer does not know; JDBC-style clients would need this
    "ignore_startup_parameters": "extra_float_digits",
}


class PgBouncerError(Exception):
    """PgBouncer did not start, or exited."""


def find_pgbouncer() -> str:
    """Return the path of the ``pgbouncer`` program (raise FileNotFoundError if none)."""
    for path in (os.environ.get("PGBOUNCER"), shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if path and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("pgbouncer not found (Debian package 'pgbouncer'); set PGBOUNCER")


class PgBouncerServer(ChildServer):
    """One private PgBouncer: ``with PgBouncerServer(pg, "transaction") as bouncer: bouncer.dsn``.

    ``settings`` are extra ``[pgbouncer]`` lines (name -> value).  The
    PostgreSQL server must be running when clients connect, not when
    PgBouncer starts.

    :raises ValueError: ``pool_mode`` is not ``session`` or ``transaction``.
    """

    def __init__(
        self,
        postgres: PostgresServer,
        pool_mode: str = "transaction",
        *,
        port: int | None = None,
        base_dir: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, got {pool_mode!r}")
        self.postgres = postgres
        self.pool_mode = pool_mode
        self.program = find_pgbouncer()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.user = postgres.user
        self.dbname = postgres.dbname
        self.settings = dict(_SETTINGS, **(settings or {}))
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="geventpool-pgbouncer-")
        self.config_file = os.path.join(self.base_dir, "pgbouncer.ini")
        self.auth_file = os.path.join(self.base_dir, "userlist.txt")
        self.log_file = os.path.join(self.base_dir, "pgbouncer.log")
        self._as_user = "postgres" if os.geteuid() == 0 else None
        self._process: std_subprocess.Popen[bytes] | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """A libpq connection string for clients of the bouncer."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    @property
    def admin_dsn(self) -> str:
        """A libpq connection string for the admin console."""
        return f"host={self.host} port={self.port} user={ADMIN_USER} dbname=pgbouncer"

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect`` / ``psycopg.connect`` through the bouncer."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "dbname": self.dbname}
        kwargs.update(overrides)
        return kwargs

    # -- lifecycle ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        os.makedirs(self.base_dir, exist_ok=True)
        lines = [
            "[databases]",
            f"* = host={self.postgres.host} port={self.postgres.port}",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"pool_mode = {self.pool_mode}",
            f"auth_file = {self.auth_file}",
            f"admin_users = {ADMIN_USER}",
            f"logfile = {self.log_file}",
            "pidfile =",
        ]
        lines += [f"{name} = {value}" for name, value in self.settings.items()]
        with open(self.config_file, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        with open(self.auth_file, "w", encoding="utf-8") as f:  # trust: the names must be listed
            f.write(f'"{self.user}" ""\n"{ADMIN_USER}" ""\n')
        if self._as_user:
            for name in (self.base_dir, self.config_file, self.auth_file):
                shutil.chown(name, self._as_user)

    def start(self, timeout: float = 30.0) -> PgBouncerServer:
        """Start PgBouncer (writing its files first); return when it accepts TCP connections.

        :raises PgBouncerError: it exited, or did not listen within ``timeout`` seconds.
        """
        if self.running:
            return self
        self._write_config()
        argv = [self.program, "-q"]
        if self._as_user:
            argv += ["-u", self._as_user]
        # the standard library spawns without fork() (gevent's fork warns in a threaded process)
        self._process = std_subprocess.Popen(
            [*argv, self.config_file], stdin=std_subprocess.DEVNULL, stdout=std_subprocess.DEVNULL,
            stderr=std_subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise PgBouncerError(f"pgbouncer exited with {self._process.returncode}: {self._log_tail()}")
            if self._listening():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise PgBouncerError(f"pgbouncer did not listen within {timeout:g} s: {self._log_tail()}")
            gevent.sleep(0.01)

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Shut PgBouncer down at once (SIGTERM: every client connection is closed); SIGKILL after
        ``timeout``.  (SIGINT, its "safe" shutdown, would wait for session-mode clients to leave.)"""
        super().stop(timeout)

    def cleanup(self) -> None:
        """Stop PgBouncer and remove its directory."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PgBouncerServer {self.pool_mode} 127.0.0.1:{self.port} {state}>"

    # -- the admin console -------------------------------------------------------------------

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run one admin console command (``PAUSE``, ``RESUME``, ``RECONNECT``, ``SHOW POOLS``...);
        return its rows as dicts (empty for commands without rows).

        ``PAUSE`` returns once every server connection is released (in
        session mode: once every client has disconnected).
        """
        import psycopg2  # noqa: PLC0415 - optional (a Python built without it, a missing extra)

        conn = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        try:
            conn.autocommit = True  # the console speaks the simple query protocol, no BEGIN
            cursor = conn.cursor()
            cursor.execute(command)
            if cursor.description is None:
                return []
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.close()

    def pools(self) -> list[dict[str, Any]]:
        """``SHOW POOLS`` for the bouncer's client database (cl_active, sv_active, sv_idle...)."""
        return [row for row in self.admin("SHOW POOLS") if row["database"] == self.dbname]

"""A private MariaDB server for tests, examples and benchmarks.

:class:`MariaDBServer` runs ``mariadb-install-db`` into a temporary
directory, then ``mariadbd`` as a child of this process, listening on
127.0.0.1 on a free port (no name resolution, no binary log, small InnoDB
files).  A startup file creates the login :data:`USER` / :data:`PASSWORD`
(all privileges, from 127.0.0.1) and the database :data:`DATABASE`.
``mariadbd`` refuses to run as root unless told ``--user=root``; this helper
passes that when this process is root, so the server never changes user and
needs no system account.

The instance can be stopped, killed (SIGKILL), paused (SIGSTOP), resumed and
restarted on the same port and data directory; every signal goes to the PID
of the child this object started, never to a process found by name.  Waits
go through gevent (``gevent.sleep``, gevent's thread pool); the admin
helpers (:meth:`MariaDBServer.execute`, :meth:`~MariaDBServer.processlist`)
open a short PyMySQL connection on a gevent socket, so they are green too.
Not thread-safe.  Needs the Debian package ``mariadb-server`` (and PyMySQL for
the admin helpers).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess as std_subprocess
import tempfile
import time
from typing import Any

import gevent

from ._child import ChildServer
from .ports import free_port as _free_port

__all__ = ["MariaDBServer", "MariaDBError", "find_mariadbd", "USER", "PASSWORD", "DATABASE"]

#: The test login the startup file creates (all privileges, from 127.0.0.1 only).
USER = "geventpool"
PASSWORD = "geventpool-test-pw"
#: The database the startup file creates.
DATABASE = "geventpool"

_SETTINGS = {
    "bind-address": "127.0.0.1",
    "skip-name-resolve": "",
    "skip-log-bin": "",
    "max_connections": "200",
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "8M",
    "innodb_flush_log_at_trx_commit": "0",
    "innodb_doublewrite": "0",
    "performance_schema": "OFF",
    "skip-external-locking": "",
    "character-set-server": "utf8mb4",
}


class MariaDBError(RuntimeError):
    """The server could not be set up or started (the message quotes its error log)."""


def find_mariadbd() -> str:
    """Return the path of ``mariadbd`` (or ``mysqld``); raise FileNotFoundError if none."""
    for candidate in (os.environ.get("MARIADBD"), "/usr/sbin/mariadbd", shutil.which("mariadbd"),
                      "/usr/sbin/mysqld"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("mariadbd not found: install the Debian package mariadb-server, or set MARIADBD")


def _install_db() -> str:
    for candidate in (shutil.which("mariadb-install-db"), shutil.which("mysql_install_db")):
        if candidate:
            return candidate
    raise FileNotFoundError("mariadb-install-db not found: install the Debian package mariadb-server")


class MariaDBServer(ChildServer):
    """One private MariaDB instance: ``with MariaDBServer() as db: db.connect_kwargs()``.

    ``settings`` are extra ``[mariadbd]`` lines (name -> value; "" for a bare
    flag).  :meth:`start` is idempotent and initialises the data directory on
    first use; :meth:`cleanup` stops the server and removes its directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        base_dir: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.mariadbd = find_mariadbd()
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.user = USER
        self.password = PASSWORD
        self.database = DATABASE
        self.settings = dict(_SETTINGS, **(settings or {}))
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="geventpool-mariadb-")
        self.data_dir = os.path.join(self.base_dir, "data")
        self.socket_path = os.path.join(self.base_dir, "mariadb.sock")
        self.pid_file = os.path.join(self.base_dir, "mariadb.pid")
        self.log_file = os.path.join(self.base_dir, "error.log")
        self.config_file = os.path.join(self.base_dir, "my.cnf")
        self.init_file = os.path.join(self.base_dir, "init.sql")
        self._process: std_subprocess.Popen[bytes] | None = None

    # -- addresses --------------------------------------------------------------------------

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``MySQLdb.connect`` / ``pymysql.connect`` (TCP, the test login)."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "password": self.password, "database": self.database}
        kwargs.update(overrides)
        return kwargs

    # -- lifecycle ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        lines = ["[mariadbd]", f"datadir = {self.data_dir}", f"socket = {self.socket_path}",
                 f"port = {self.port}", f"pid-file = {self.pid_file}", f"log-error = {self.log_file}",
                 f"init-file = {self.init_file}"]
        if os.geteuid() == 0:
            lines.append("user = root")  # mariadbd refuses root without it; never switch users
        lines += [f"{name} = {value}" if value else name for name, value in self.settings.items()]
        with open(self.config_file, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        with open(self.init_file, "w", encoding="utf-8") as f:
            f.write(
                f"CREATE DATABASE IF NOT EXISTS {self.database};\n"
                f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';\n"
                f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1';\n"
            )

    @property
    def initialized(self) -> bool:
        """Whether the data directory has been set up."""
        return os.path.isdir(os.path.join(self.data_dir, "mysql"))

    def _init(self) -> None:
        os.makedirs(self.base_dir, exist_ok=True)
        self._write_config()
        argv = [_install_db(), f"--defaults-file={self.config_file}", "--skip-test-db",
                "--auth-root-authentication-method=normal"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        options = {"capture_output": True, "text": True, "timeout": 120, "check": False}
        # in a thread: waits green; the standard library spawns without fork()
        result = gevent.get_hub().threadpool.apply(std_subprocess.run, (argv,), options)
        if result.returncode != 0:
            raise MariaDBError(f"mariadb-install-db failed ({result.returncode}): {result.stderr[-2000:]}")

    def start(self, timeout: float = 60.0) -> MariaDBServer:
        """Start the server (initialise first if needed); return when the test login works.

        :raises MariaDBError: it exited or did not accept logins within ``timeout`` seconds.
        """
        if not self.initialized:
            self._init()
        if self.running:
            return self
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child keeps its own descriptor
        try:
            # the standard library spawns without fork() (gevent's fork warns in a threaded process)
            self._process = std_subprocess.Popen(
                [self.mariadbd, f"--defaults-file={self.config_file}"],
                stdin=std_subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise MariaDBError(f"mariadbd exited with {self._process.returncode}: {self._log_tail()}")
            if self._accepts_login():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise MariaDBError(f"mariadbd did not accept logins within {timeout:g} s: {self._log_tail()}")
            gevent.sleep(0.02)

    def _accepts_login(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            self.execute("SELECT 1")
        except Exception:  # the init file has not run yet, or the server is still starting
            return False
        return True

    def pause(self) -> None:
        """SIGSTOP the server: it accepts TCP (kernel backlog) but answers nothing."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what :meth:`pause` stopped."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def cleanup(self) -> None:
        """Stop the server (kill it if that fails) and remove its directory."""
        try:
            self.stop()
        except Exception:
            self.kill()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MariaDBServer 127.0.0.1:{self.port} {state}>"

    # -- admin queries ---------------------------------------------------------------------

    def _admin(self) -> Any:
        from ..dbapi.mysql import green_pymysql_connect  # noqa: PLC0415 - needs PyMySQL

        return green_pymysql_connect(**self.connect_kwargs(connect_timeout=10, autocommit=True))

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a short admin connection (autocommit); return its rows (if any)."""
        conn = self._admin()
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows: list[tuple[Any, ...]] = list(cur.fetchall()) if cur.description is not None else []
            return rows
        finally:
            conn.close()

    def processlist(self, like: str | None = None) -> list[dict[str, Any]]:
        """Client sessions of ``SHOW PROCESSLIST`` but the admin's own (id, user, command, time,
        state, info); with ``like``, only those running a statement that contains it."""
        conn = self._admin()
        try:
            cur = conn.cursor()
            cur.execute("SELECT CONNECTION_ID()")
            own = cur.fetchone()[0]
            cur.execute("SHOW FULL PROCESSLIST")
            names = [d[0].lower() for d in cur.description]
            rows = [dict(zip(names, row, strict=False)) for row in cur.fetchall()]
        finally:
            conn.close()
        sessions = [r for r in rows if r["id"] != own and r["user"] == self.user]
        if like is not None:
            sessions = [r for r in sessions if r["command"] == "Query" and like in (r["info"] or "")]
        return sessions

    def kill_connections(self) -> int:
        """``KILL CONNECTION`` every session of the test login (but the admin's); return how many."""
        killed = 0
        for session in self.processlist():
            try:
                self.execute(f"KILL CONNECTION {int(session['id'])}")
                killed += 1
            except Exception:  # it ended meanwhile
                pass
        return killed

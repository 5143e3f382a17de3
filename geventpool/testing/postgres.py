"""A private PostgreSQL server for tests, examples and benchmarks.

:class:`PostgresServer` runs ``initdb`` in a temporary directory, listens on
127.0.0.1 on a free port (trust authentication, no password) and can be
stopped, killed and restarted; every signal goes to a PID read from the
server's own ``postmaster.pid``, never to a process found by name.
PostgreSQL refuses to run as root, so when this process is root the server
runs as the unprivileged ``postgres`` OS user (through ``runuser``).

The admin helpers (:meth:`PostgresServer.sessions`, :meth:`~PostgresServer.execute`,
:meth:`~PostgresServer.terminate`) open a short-lived psycopg2 connection
(application_name ``geventpool-admin``, left out of :meth:`sessions`).  They
are blocking calls, or green ones once a gevent wait callback is installed;
meant for tests, not for production code.  Not thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

from .ports import free_port as _free_port

__all__ = ["PostgresServer", "find_bin_dir", "free_port", "ADMIN_APPLICATION"]

logger = logging.getLogger("geventpool.testing.postgres")

#: application_name of the helper's own admin connections.
ADMIN_APPLICATION = "geventpool-admin"

_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def find_bin_dir() -> str:
    """Return the directory holding ``initdb`` and ``pg_ctl`` (raise FileNotFoundError if none)."""
    env = os.environ.get("PG_BIN_DIR")
    candidates = [env] if env else []
    base = "/usr/lib/postgresql"
    if os.path.isdir(base):
        versions = sorted(os.listdir(base), key=lambda v: int(v) if v.isdigit() else 0, reverse=True)
        candidates += [os.path.join(base, v, "bin") for v in versions]
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(os.path.dirname(which))
    for path in candidates:
        if path and os.path.exists(os.path.join(path, "initdb")):
            return path
    raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found; set PG_BIN_DIR")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (outside the ephemeral range)."""
    return _free_port()


class PostgresServer:
    """One private PostgreSQL instance: ``with PostgresServer() as pg: pg.dsn``.

    ``settings`` are extra ``postgresql.conf`` lines (name -> literal value).
    :meth:`start` is idempotent and runs ``initdb`` on first use; :meth:`cleanup`
    stops the server and removes its directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        bin_dir: str | None = None,
        base_dir: str | None = None,
        settings: dict[str, str] | None = None,
        user: str = "postgres",
        dbname: str = "postgres",
    ) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = user
        self.dbname = dbname
        self.settings = dict(_SETTINGS, **(settings or {}))
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix="geventpool-pg-")
        self.data_dir = os.path.join(self.base_dir, "data")
        self.sock_dir = os.path.join(self.base_dir, "sock")
        self.log_file = os.path.join(self.base_dir, "postgres.log")
        self._as_postgres = os.geteuid() == 0

    # -- addresses --------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """A libpq connection string for the server (TCP, trust auth)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect`` / ``psycopg.connect``."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user,
                                  "dbname": self.dbname}
        kwargs.update(overrides)
        return kwargs

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def _init(self) -> None:
        os.makedirs(self.sock_dir, exist_ok=True)
        if self._as_postgres:
            for root, dirs, files in os.walk(self.base_dir):
                for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                    shutil.chown(name, "postgres", "postgres")
        self._run(
            os.path.join(self.bin_dir, "initdb"), "-D", self.data_dir, "-U", self.user,
            "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
        )
        lines = [f"{k} = {v}" for k, v in self.settings.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.sock_dir}'"]
        conf = os.path.join(self.data_dir, "postgresql.conf")
        with open(conf, "a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(lines) + "\n")

    @property
    def initialized(self) -> bool:
        """Whether ``initdb`` has run."""
        return os.path.exists(os.path.join(self.data_dir, "PG_VERSION"))

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Start the server (initdb first if needed); return when it accepts connections."""
        if not self.initialized:
            self._init()
        if self.running:
            return self
        self._remove_stale_pidfile()
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file,
            "-w", "-t", str(int(timeout)), "start",
        )
        self._wait_accepting(timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``mode`` is pg_ctl's ``smart``, ``fast`` or ``immediate``."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"stop mode must be smart, fast or immediate, got {mode!r}")
        if not self.running:
            return
        self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """Kill the postmaster and its children with SIGKILL (by PID); no clean shutdown."""
        pid = self.pid
        if pid is None:
            return
        children = _children_of(pid)
        for p in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in [pid, *children]) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._remove_stale_pidfile()

    def restart(self, mode: str = "fast") -> None:
        """Stop (``mode``) and start again on the same port and data directory."""
        self.stop(mode)
        self.start()

    def pause(self) -> None:
        """SIGSTOP the postmaster and every backend: the server accepts TCP but answers nothing."""
        pid = self.pid
        if pid is not None:
            for p in [pid, *_children_of(pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what :meth:`pause` stopped."""
        pid = self.pid
        if pid is not None:
            for p in [pid, *_children_of(pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGCONT)

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster, from its ``postmaster.pid`` (None when down)."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"), encoding="ascii") as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self.pid is not None

    def _remove_stale_pidfile(self) -> None:
        # A killed postmaster may linger as a zombie that still "exists" for its lock checks.
        path = os.path.join(self.data_dir, "postmaster.pid")
        if os.path.exists(path) and self.pid is None:
            for stale in (path, os.path.join(self.sock_dir, f".s.PGSQL.{self.port}.lock")):
                with contextlib.suppress(OSError):
                    os.unlink(stale)

    def cleanup(self) -> None:
        """Stop the server (fast, or kill if that fails) and remove its directory."""
        try:
            self.stop("fast")
        except Exception:
            logger.warning("stopping PostgreSQL on port %d failed; killing it", self.port)
            self.kill()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer 127.0.0.1:{self.port} {state}>"

    # -- admin queries ---------------------------------------------------------------------

    def _admin(self) -> Any:
        import psycopg2  # noqa: PLC0415 - optional (a Python built without it, a missing extra)

        conn = psycopg2.connect(self.dsn, application_name=ADMIN_APPLICATION, connect_timeout=10)
        conn.autocommit = True
        return conn

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on an admin connection (autocommit); return its rows (if any)."""
        conn = self._admin()
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows: list[tuple[Any, ...]] = cur.fetchall() if cur.description is not None else []
            return rows
        finally:
            conn.close()

    def sessions(self, application_name: str | None = None) -> list[dict[str, Any]]:
        """Client backends in ``pg_stat_activity`` (pid, state, query, application_name, backend_start).

        Leaves out the helper's own admin connections; filters on
        ``application_name`` when given.
        """
        sql = (
            "SELECT pid, state, query, application_name, backend_start, xact_start "
            "FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND application_name <> %s"
        )
        params: list[Any] = [ADMIN_APPLICATION]
        if application_name is not None:
            sql += " AND application_name = %s"
            params.append(application_name)
        keys = ("pid", "state", "query", "application_name", "backend_start", "xact_start")
        return [dict(zip(keys, row, strict=False)) for row in self.execute(sql, params)]

    def running_queries(self, like: str, application_name: str | None = None) -> list[dict[str, Any]]:
        """Sessions in state ``active`` whose query contains ``like``."""
        return [s for s in self.sessions(application_name) if s["state"] == "active" and like in s["query"]]

    def terminate(self, pid: int) -> bool:
        """``pg_terminate_backend(pid)``: end one session as an administrator would."""
        return bool(self.execute("SELECT pg_terminate_backend(%s)", [pid])[0][0])

    def terminate_all(self, application_name: str | None = None) -> int:
        """Terminate every client session (but the admin's); return how many."""
        return sum(self.terminate(s["pid"]) for s in self.sessions(application_name))

    def require_password(self, role: str, password: str) -> None:
        """Create login ``role`` with ``password``; TCP logins of roles other than ``user`` then need
        their password (scram-sha-256).  The administrator keeps trust authentication.

        :raises ValueError: ``role`` is not a plain identifier.
        """
        if not role.isidentifier():
            raise ValueError(f"require_password: role must be a plain identifier, not {role!r}")
        self.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", [password])
        with open(os.path.join(self.data_dir, "pg_hba.conf"), "w", encoding="ascii") as f:
            f.write("local all all trust\n"
                    f"host all {self.user} 127.0.0.1/32 trust\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n")
        self.execute("SELECT pg_reload_conf()")

    def set_setting(self, name: str, value: str | None) -> None:
        """``ALTER SYSTEM SET name = value`` (None: RESET) and reload the configuration."""
        if value is None:
            self.execute(f"ALTER SYSTEM RESET {name}")
        else:
            self.execute(f"ALTER SYSTEM SET {name} = %s", [value])
        self.execute("SELECT pg_reload_conf()")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children

"""Pools in gunicorn workers: declared once, built in each worker, closed when it exits.

Declare each pool once, in the application module, with a factory (nothing is
built yet)::

    from geventpool.contrib import gunicorn as pools

    ldap_pool = pools.register("ldap", lambda: LDAPPool(os.environ["LDAP_URI"], size=10))
    db_pool = pools.register("db", lambda: ConnectionPool(psycopg2, os.environ["PG_DSN"], max_size=10),
                             wait=5)

    def application(environ, start_response):
        ok = ldap_pool.get().authenticate(dn, password)   # this worker's pool
        with db_pool.get().item() as conn: ...

and put the hooks in ``gunicorn.conf.py``::

    from geventpool.contrib.gunicorn import on_exit, post_worker_init, when_ready, worker_exit

(or ``globals().update(hooks(my_registry))`` for a registry of your own; your
own hook functions can call these ones too).

What each hook does:

- ``post_worker_init(worker)``, in each worker, after gevent's monkey-patching
  and the application's import: builds every registered pool, and fills those
  registered with ``wait=`` (a failure there is logged, never stops the worker
  from booting: requests fail cleanly until the server is back).  It is not
  ``post_fork``: that runs before the gevent worker patches the standard library.
- ``worker_exit(server, worker)``, in the worker, after gunicorn finished its
  graceful drain: closes the worker's pools (in parallel) within what is left
  of ``graceful_timeout`` since the worker was told to stop, so the master's
  SIGKILL does not cut the goodbyes (unbind, terminate).  Called by the master
  for a worker already dead, it does nothing.
- ``when_ready(server)`` and ``on_exit(server)``, in the master: close the pools
  the master built itself (with ``--preload``, e.g. a check at import time), so
  the master holds no server sessions while the workers run.

A pool is only ever used by the process that built it: ``PoolRef.get()`` (and
:func:`get`) build this process's pool on first use, and a pool inherited
through ``fork()`` (``--preload``) is never handed out in the child (the core
pool's fork handling already keeps the child off the parent's sockets).
After ``worker_exit`` closed them, ``get()`` raises :class:`~geventpool.PoolClosed`
instead of reopening sessions in an exiting worker.

Greenlet-safe (two greenlets that race to build a pool get the same one); not
thread-safe.  This module does not import gunicorn.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any, Callable, Generic, Protocol, TypeVar

import gevent

from .._config import check_optional_seconds
from ..errors import ConfigurationError, PoolClosed

__all__ = [
    "PoolRef",
    "PoolRegistry",
    "registry",
    "register",
    "get",
    "hooks",
    "post_worker_init",
    "worker_exit",
    "when_ready",
    "on_exit",
]

logger = logging.getLogger("geventpool.contrib.gunicorn")


class _Pool(Protocol):
    def close(self, timeout: float = ...) -> None: ...


P = TypeVar("P", bound=_Pool)

#: Seconds kept back from ``graceful_timeout`` so the worker exits before the master's SIGKILL.
EXIT_MARGIN = 0.5
#: How often (seconds) a worker notices that it was told to stop (to date the graceful deadline).
SHUTDOWN_POLL = 0.1


class PoolRef(Generic[P]):
    """One registered pool: its factory, and the pool this process built with it.

    Returned by :meth:`PoolRegistry.register`; keep it in a module global and
    call :meth:`get` where the pool is needed.
    """

    def __init__(
        self, registry: PoolRegistry, name: str, factory: Callable[[], P],
        wait: float | None, close_timeout: float | None,
    ) -> None:
        self.name = name
        self.factory = factory
        #: Seconds ``post_worker_init`` waits for ``min_size`` connections (None: do not wait).
        self.wait = wait
        #: Upper bound of this pool's ``close()`` in ``worker_exit`` (None: what is left of the budget).
        self.close_timeout = close_timeout
        self._registry = registry
        self._pool: P | None = None
        self._pid = 0
        self._inherited: list[P] = []

    @property
    def built(self) -> bool:
        """Whether this process has built its pool (a pool inherited through fork does not count)."""
        return self._pool is not None and self._pid == os.getpid()

    def peek(self) -> P | None:
        """Return this process's pool if it is built, else None (never builds)."""
        return self._pool if self.built else None

    def get(self) -> P:
        """Return this process's pool, building it with the factory on first use.

        :raises PoolClosed: this process's pools were closed (the worker is exiting).
        :raises ConfigurationError: the factory raised it (bad pool arguments).
        """
        pool = self._pool
        pid = os.getpid()
        if pool is not None and self._pid == pid:
            return pool
        if self._registry._closed_in == pid:
            raise PoolClosed(f"pool {self.name!r}: the pools of process {pid} are closed")
        new = self.factory()
        if self._pool is not None and self._pid == pid:
            # another greenlet built one while the factory yielded: keep the first
            logger.debug("pool %r was built twice concurrently; closing the extra one", self.name)
            new.close(timeout=0)
            return self._pool
        if pool is not None and self._pid != pid:
            # Inherited through fork: keep it alive, or its connections' finalizers
            # would talk on the parent's sockets (a DB terminate, an LDAP unbind).
            self._inherited.append(pool)
        self._pool, self._pid = new, pid
        logger.debug("pool %r built in process %d", self.name, pid)
        return new

    def _take(self) -> P | None:
        """Forget and return this process's pool (for closing)."""
        pool = self.peek()
        if pool is not None:
            self._pool = None
        return pool

    def __repr__(self) -> str:
        state = "built" if self.built else "not built"
        return f"<PoolRef {self.name!r} {state}>"


class PoolRegistry:
    """Named pool factories; each process builds and closes its own pools.

    Most applications use the module's default :data:`registry` through
    :func:`register` and :func:`get`.  Greenlet-safe, not thread-safe.
    """

    def __init__(self) -> None:
        self._refs: dict[str, PoolRef[Any]] = {}
        self._closed_in = 0  # the pid whose pools were closed by close_all()
        self._shutdown_at: tuple[int, float] | None = None  # (pid, monotonic time)

    def register(
        self, name: str, factory: Callable[[], P], *, wait: float | None = None,
        close_timeout: float | None = None, replace: bool = False,
    ) -> PoolRef[P]:
        """Declare pool ``name``, built by ``factory()`` in each process that uses it.

        ``wait``: seconds :meth:`open_all` (``post_worker_init``) waits for the
        pool's ``min_size`` connections (None: build only; connections open on
        first use).  ``close_timeout``: the most seconds its ``close()`` may
        take at exit (None: whatever is left of ``graceful_timeout``).

        :raises ConfigurationError: a bad argument, or ``name`` already
            registered (unless ``replace=True``).
        """
        owner = "geventpool.contrib.gunicorn"
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{owner}: name must be a non-empty str, got {name!r}")
        if not callable(factory):
            raise ConfigurationError(f"{owner}: factory of {name!r} must be callable, got {factory!r}")
        wait = check_optional_seconds(owner, "wait", wait)
        close_timeout = check_optional_seconds(owner, "close_timeout", close_timeout)
        if name in self._refs and not replace:
            raise ConfigurationError(f"{owner}: a pool named {name!r} is already registered")
        ref: PoolRef[P] = PoolRef(self, name, factory, wait, close_timeout)
        self._refs[name] = ref
        return ref

    def ref(self, name: str) -> PoolRef[Any]:
        """Return the :class:`PoolRef` registered as ``name``.

        :raises KeyError: no pool of that name.
        """
        try:
            return self._refs[name]
        except KeyError:
            raise KeyError(f"no pool named {name!r} is registered (known: {sorted(self._refs)})") from None

    def get(self, name: str) -> Any:
        """Return this process's pool ``name`` (see :meth:`PoolRef.get`)."""
        return self.ref(name).get()

    def __iter__(self) -> Iterator[PoolRef[Any]]:
        return iter(list(self._refs.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._refs

    def __len__(self) -> int:
        return len(self._refs)

    def open_all(self) -> dict[str, BaseException | None]:
        """Build every pool in this process; fill those registered with ``wait`` (concurrently).

        Never raises for a backend that is down: returns ``{name: error or
        None}`` and logs a warning per failure.  A factory's own error (bad
        configuration) is raised.
        """
        self._closed_in = 0
        pools = {ref.name: (ref, ref.get()) for ref in self}
        results: dict[str, BaseException | None] = dict.fromkeys(pools)

        def fill(name: str, pool: Any, timeout: float) -> None:
            try:
                pool.wait(timeout)
            except Exception as error:
                results[name] = error
                logger.warning("pool %r not ready within %g s at start-up: %r", name, timeout, error)

        jobs = [
            gevent.spawn(fill, name, pool, ref.wait)
            for name, (ref, pool) in pools.items()
            if ref.wait is not None and callable(getattr(pool, "wait", None))
        ]
        gevent.joinall(jobs, raise_error=True)
        return results

    def close_all(self, timeout: float = 5.0) -> dict[str, float]:
        """Close this process's pools concurrently, within about ``timeout`` seconds.

        Afterwards :meth:`PoolRef.get` raises :class:`~geventpool.PoolClosed`
        in this process (until :meth:`open_all`).  Pools inherited from a
        parent process are left alone.  Returns ``{name: seconds taken}``;
        errors from ``close()`` are logged, never raised.
        """
        timeout = max(0.0, float(timeout))
        self._closed_in = os.getpid()
        taken: dict[str, float] = {}

        def close(ref: PoolRef[Any], pool: Any) -> None:
            started = time.monotonic()
            budget = timeout if ref.close_timeout is None else min(timeout, ref.close_timeout)
            try:
                pool.close(timeout=budget)
            except Exception:
                logger.exception("closing pool %r failed", ref.name)
            taken[ref.name] = time.monotonic() - started

        jobs = [gevent.spawn(close, ref, pool) for ref in self if (pool := ref._take()) is not None]
        gevent.joinall(jobs, timeout=timeout + 1.0)
        for job in jobs:
            job.kill(block=False)
        return taken

    # -- graceful shutdown --------------------------------------------------------------------

    def watch_shutdown(self, worker: Any) -> None:
        """Note when ``worker.alive`` turns False (gunicorn was told to stop it), in a greenlet."""
        pid = os.getpid()

        def watch() -> None:
            while getattr(worker, "alive", False):
                gevent.sleep(SHUTDOWN_POLL)
            self._shutdown_at = (pid, time.monotonic())

        gevent.spawn(watch)

    def exit_budget(self, graceful_timeout: float) -> float:
        """Seconds left for closing pools before gunicorn's graceful deadline (minus a margin)."""
        elapsed = 0.0
        if self._shutdown_at is not None and self._shutdown_at[0] == os.getpid():
            elapsed = time.monotonic() - self._shutdown_at[1]
        return max(0.0, graceful_timeout - elapsed - min(EXIT_MARGIN, graceful_timeout / 10))

    # -- gunicorn hooks ---------------------------------------------------------------------------

    def post_worker_init(self, worker: Any) -> None:
        """gunicorn hook (in the worker): build this worker's pools; see the module docstring."""
        started = time.monotonic()
        results = self.open_all()
        self.watch_shutdown(worker)
        failed = sorted(name for name, error in results.items() if error is not None)
        _log(worker, logging.INFO, "geventpool: worker %d built %d pools in %.3f s%s", os.getpid(),
             len(results), time.monotonic() - started, f" (not ready: {', '.join(failed)})" if failed else "")

    def worker_exit(self, server: Any, worker: Any) -> None:
        """gunicorn hook: close the exiting worker's pools within ``graceful_timeout``."""
        if getattr(worker, "pid", None) != os.getpid():
            return  # the master reaping a worker that is already gone
        graceful = float(getattr(getattr(worker, "cfg", None), "graceful_timeout", 30.0))
        budget = self.exit_budget(graceful)
        taken = self.close_all(budget)
        details = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in sorted(taken.items()))
        _log(worker, logging.INFO, "geventpool: worker %d closed %d pools (budget %.1f s): %s",
             os.getpid(), len(taken), budget, details or "-")

    def when_ready(self, server: Any) -> None:
        """gunicorn hook (in the master): close pools the master built (``--preload``)."""
        self._close_master_pools(server)

    def on_exit(self, server: Any) -> None:
        """gunicorn hook (in the master, at shutdown): close pools the master built."""
        self._close_master_pools(server)

    def _close_master_pools(self, server: Any) -> None:
        if not any(ref.built for ref in self):
            return
        taken = self.close_all(5.0)
        self._closed_in = 0  # the master may build again (its forks start afresh anyway)
        _log(server, logging.INFO, "geventpool: master closed %d pools it built: %s", len(taken),
             ", ".join(sorted(taken)))

    def hooks(self) -> dict[str, Callable[..., None]]:
        """Return the gunicorn hooks of this registry: ``globals().update(registry.hooks())``."""
        return {
            "post_worker_init": self.post_worker_init,
            "worker_exit": self.worker_exit,
            "when_ready": self.when_ready,
            "on_exit": self.on_exit,
        }


def _log(holder: Any, level: int, message: str, *args: Any) -> None:
    """Log to gunicorn's error log when the worker/arbiter has one, else to this module's logger."""
    glog = getattr(holder, "log", None)
    if glog is not None and callable(getattr(glog, "log", None)):
        glog.log(level, message, *args)
    else:
        logger.log(level, message, *args)


#: The default registry, used by the module-level functions and hooks.
registry = PoolRegistry()


def register(
    name: str, factory: Callable[[], P], *, wait: float | None = None,
    close_timeout: float | None = None, replace: bool = False,
) -> PoolRef[P]:
    """Declare a pool in the default registry (see :meth:`PoolRegistry.register`)."""
    return registry.register(name, factory, wait=wait, close_timeout=close_timeout, replace=replace)


def get(name: str) -> Any:
    """Return this process's pool ``name`` from the default registry, building it on first use."""
    return registry.get(name)


def hooks(reg: PoolRegistry | None = None) -> dict[str, Callable[..., None]]:
    """Return the gunicorn hooks of ``reg`` (default: the default registry) by name."""
    return (reg if reg is not None else registry).hooks()


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: build the default registry's pools in this worker."""
    registry.post_worker_init(worker)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: close this worker's pools within ``graceful_timeout``."""
    registry.worker_exit(server, worker)


def when_ready(server: Any) -> None:
    """gunicorn hook: close the pools the master built (``--preload``)."""
    registry.when_ready(server)


def on_exit(server: Any) -> None:
    """gunicorn hook: close the pools the master built, at shutdown."""
    registry.on_exit(server)

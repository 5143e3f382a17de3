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

    from geventpool.contrib.gunicorn import (
        nworkers_changed, on_exit, post_worker_init, when_ready, worker_exit)

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
  the master holds no server sessions while the workers run.  ``when_ready``
  and ``nworkers_changed(server, new, old)`` also publish the worker count the
  master wants (start, TTIN, TTOU, reload) for the budgets; ``on_exit`` removes it.

A connection budget: ``register("db", factory, budget=40)`` keeps the
sessions of pool ``"db"``, summed over all the master's workers, at or under
40 at every instant.  Each worker gets ``budget // workers`` (never above the
factory's ``max_size``).  When the count changes, shrinking workers resize
their pools at once (idle extras close, busy ones close when returned; the
room is given back :data:`RELEASE_GRACE` seconds after they closed) and a
growing or new worker takes only the room the others have given back, as
recorded in a ledger they share (a directory in the temp dir, one record per
worker, ``flock``-ed while it lives).  A killed worker's share is reused
``RECLAIM_AFTER`` (1) second after it is found dead.  A worker without a
share yet builds that pool when it gets one: ``get()`` waits for it up to
:attr:`PoolRegistry.budget_wait` seconds.

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
import gevent.event

from .._config import check_count, check_optional_seconds
from ..errors import ConfigurationError, PoolClosed, PoolTimeout
from ._budget import Ledger, directory_of

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
    "nworkers_changed",
]

logger = logging.getLogger("geventpool.contrib.gunicorn")


class _Pool(Protocol):
    def close(self, timeout: float = ...) -> None: ...


class _Sized(Protocol):
    """What a pool needs for a budget (the core pool and its subclasses have it)."""

    min_size: int
    max_size: int

    @property
    def size(self) -> int: ...

    def resize(self, *, min_size: int | None = ..., max_size: int | None = ...) -> None: ...


P = TypeVar("P", bound=_Pool)

#: Seconds kept back from ``graceful_timeout`` so the worker exits before the master's SIGKILL.
EXIT_MARGIN = 0.5
#: How often (seconds) a worker notices that it was told to stop (to date the graceful deadline).
SHUTDOWN_POLL = 0.1
#: How often (seconds) a worker compares its shares of the budgets with the master's worker count.
BUDGET_POLL = 0.1
#: Seconds a worker's record keeps a count its pools gave up (the server drops closed sessions late).
RELEASE_GRACE = 0.25


class PoolRef(Generic[P]):
    """One registered pool: its factory, and the pool this process built with it.

    Returned by :meth:`PoolRegistry.register`; keep it in a module global and
    call :meth:`get` where the pool is needed.
    """

    def __init__(
        self, registry: PoolRegistry, name: str, factory: Callable[[], P],
        wait: float | None, close_timeout: float | None, budget: int | None = None,
    ) -> None:
        self.name = name
        self.factory = factory
        #: Seconds ``post_worker_init`` waits for ``min_size`` connections (None: do not wait).
        self.wait = wait
        #: Upper bound of this pool's ``close()`` in ``worker_exit`` (None: what is left of the budget).
        self.close_timeout = close_timeout
        #: Connections all the master's workers together may hold for this pool (None: no budget).
        self.budget = budget
        self._registry = registry
        self._pool: P | None = None
        self._pid = 0
        self._inherited: list[P] = []
        self._sizes: tuple[int, int] | None = None  # the factory's (min_size, max_size)
        self._retiring: list[Any] = []  # pools closed because the share fell to 0, until empty

    @property
    def share(self) -> int | None:
        """This worker's share of :attr:`budget` now (None: no budget, or not in a gunicorn worker)."""
        shares = self._registry._shares_here() if self.budget is not None else None
        return None if shares is None else shares.granted.get(self.name, 0)

    @property
    def built(self) -> bool:
        """Whether this process has built its pool (a pool inherited through fork does not count)."""
        return self._pool is not None and self._pid == os.getpid()

    def peek(self) -> P | None:
        """Return this process's pool if it is built, else None (never builds)."""
        return self._pool if self.built else None

    def get(self) -> P:
        """Return this process's pool, building it with the factory on first use.

        With a budget, first waits (cooperatively) for this worker's share,
        and builds the pool within it.

        :raises PoolClosed: this process's pools were closed (the worker is exiting).
        :raises PoolTimeout: with a budget, no share within :attr:`PoolRegistry.budget_wait`.
        :raises ConfigurationError: the factory raised it (bad pool arguments), or
            with a budget the pool cannot be resized.
        """
        pool = self._pool
        pid = os.getpid()
        if pool is not None and self._pid == pid:
            return pool
        if self._registry._closed_in == pid:
            raise PoolClosed(f"pool {self.name!r}: the pools of process {pid} are closed")
        while True:
            if self.budget is not None:
                self._registry._wait_share(self)
            new = self.factory()
            if self._pool is not None and self._pid == pid:
                # another greenlet built one while the factory yielded: keep the first
                logger.debug("pool %r was built twice concurrently; closing the extra one", self.name)
                new.close(timeout=0)
                return self._pool
            if self.budget is None or self._fit(new):  # before anyone uses it: nothing connected yet
                break
            new.close(timeout=0)  # the share fell to 0 while the factory yielded
        if pool is not None and self._pid != pid:
            # Inherited through fork: keep it alive, or its connections' finalizers
            # would talk on the parent's sockets (a DB terminate, an LDAP unbind).
            self._inherited.append(pool)
        self._pool, self._pid = new, pid
        logger.debug("pool %r built in process %d", self.name, pid)
        return new

    def _fit(self, pool: Any) -> bool:
        """Bound a budgeted pool by this worker's share (the whole budget outside gunicorn);
        False if the share is 0."""
        if not all(hasattr(pool, attr) for attr in ("resize", "size", "min_size", "max_size")):
            raise ConfigurationError(
                f"pool {self.name!r}: a budget needs a pool with resize(), size, min_size and max_size, "
                f"got {type(pool).__name__}")
        self._sizes = (pool.min_size, pool.max_size)
        shares = self._registry._shares_here()
        share = self.budget if shares is None else shares.granted.get(self.name, 0)
        if not share:
            return False
        self.resize_to(pool, share)
        return True

    def resize_to(self, pool: _Sized, share: int) -> None:
        """Resize ``pool`` to ``share`` (at most the factory's ``max_size``; ``share`` >= 1)."""
        assert self._sizes is not None and share >= 1
        low, high = self._sizes
        top = min(high, share)
        pool.resize(min_size=min(low, top), max_size=top)

    def _held(self) -> int:
        """Connections this process's pools (retiring ones included) may hold now."""
        pool: Any = self.peek()
        self._retiring = [old for old in self._retiring if old.size > 0]
        return int(pool.size if pool is not None else 0) + sum(int(old.size) for old in self._retiring)

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

    #: Seconds :meth:`PoolRef.get` waits for this worker's first share of a budget.
    budget_wait = 10.0

    def __init__(self) -> None:
        self._refs: dict[str, PoolRef[Any]] = {}
        self._closed_in = 0  # the pid whose pools were closed by close_all()
        self._shutdown_at: tuple[int, float] | None = None  # (pid, monotonic time)
        self._shares: _Shares | None = None

    def register(
        self, name: str, factory: Callable[[], P], *, wait: float | None = None,
        close_timeout: float | None = None, budget: int | None = None, replace: bool = False,
    ) -> PoolRef[P]:
        """Declare pool ``name``, built by ``factory()`` in each process that uses it.

        ``wait``: seconds :meth:`open_all` (``post_worker_init``) waits for the
        pool's ``min_size`` connections (None: build only; connections open on
        first use).  ``close_timeout``: the most seconds its ``close()`` may
        take at exit (None: whatever is left of ``graceful_timeout``).
        ``budget``: the most connections of this pool all the master's workers
        may hold together (each gets ``budget // workers``, see the module
        docstring); outside gunicorn the process's pool is capped at it.  The
        pool must have ``resize()`` (every geventpool pool has).

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
        if budget is not None:
            check_count(owner, "budget", budget, 1)
        if name in self._refs and not replace:
            raise ConfigurationError(f"{owner}: a pool named {name!r} is already registered")
        ref: PoolRef[P] = PoolRef(self, name, factory, wait, close_timeout, budget)
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
        shares = self._shares_here()
        waiting = [ref.name for ref in self if shares is not None and ref.budget is not None
                   and not ref.built and not shares.granted.get(ref.name)]
        for name in waiting:
            logger.info("pool %r: no share of its budget yet in worker %d; built when it has one",
                        name, os.getpid())
        pools = {ref.name: (ref, ref.get()) for ref in self if ref.name not in waiting}
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
        shares = self._shares_here(start=False)
        if shares is not None:
            shares.stop()  # its record stays until the process is gone (the sessions go with it)
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

    # -- budgets ----------------------------------------------------------------------------------

    def _shares_here(self, start: bool = True) -> _Shares | None:
        """This worker's shares: started here on first need when the parent is a gunicorn master
        that publishes a ledger; None elsewhere (outside gunicorn, or no pool has a budget)."""
        shares = self._shares
        if shares is not None and shares.pid == os.getpid():
            return shares
        if not start or not any(ref.budget is not None for ref in self):
            return None
        ledger = Ledger(directory_of(os.getppid()))
        if not ledger.exists():
            return None
        return self._start_shares(ledger, 1)

    def _start_shares(self, ledger: Ledger, fallback_workers: int) -> _Shares:
        shares = self._shares = _Shares(self, ledger, fallback_workers)
        shares.step()  # this worker's first shares, before any of its pools is built
        shares.start()
        return shares

    def _wait_share(self, ref: PoolRef[Any]) -> None:
        """Wait until this worker has a share of ``ref``'s budget (no-op outside gunicorn)."""
        shares = self._shares_here()
        if shares is None or shares.granted.get(ref.name):
            return
        deadline = time.monotonic() + self.budget_wait
        while not shares.granted.get(ref.name):
            left = deadline - time.monotonic()
            if left <= 0:
                raise PoolTimeout(
                    f"pool {ref.name!r}: worker {os.getpid()} got no share of its budget of {ref.budget} "
                    f"within {self.budget_wait:g} s ({shares.workers} workers; the others hold the rest)")
            shares.changed.wait(min(left, BUDGET_POLL * 5))

    def _publish_workers(self, server: Any, count: Any) -> None:
        """In the master: publish the worker count it wants for the workers' budgets."""
        try:
            Ledger(directory_of(os.getpid())).write_workers(max(0, int(count)))
        except (OSError, TypeError, ValueError) as error:
            _log(server, logging.ERROR, "geventpool: cannot publish the worker count %r for budgets: %r",
                 count, error)

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
        if any(ref.budget is not None for ref in self) and self._shares_here() is None:
            ledger = Ledger(directory_of(int(getattr(worker, "ppid", 0) or os.getppid())))
            configured = int(getattr(getattr(worker, "cfg", None), "workers", 1) or 1)
            _log(worker, logging.WARNING, "geventpool: the master publishes no worker count (add the "
                 "when_ready and nworkers_changed hooks): budgets shared by the %d configured workers, "
                 "TTIN/TTOU not followed", configured)
            ledger.create()
            self._start_shares(ledger, configured)
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
        """gunicorn hook (in the master): close pools the master built (``--preload``);
        publish the worker count for the budgets."""
        self._close_master_pools(server)
        self._publish_workers(server, getattr(server, "num_workers", 1))

    def nworkers_changed(self, server: Any, new_value: Any, old_value: Any) -> None:
        """gunicorn hook (in the master, TTIN/TTOU/reload): publish the new worker count."""
        if old_value is not None:  # None: gunicorn's set-up, before when_ready (and a daemon's fork)
            self._publish_workers(server, new_value)

    def on_exit(self, server: Any) -> None:
        """gunicorn hook (in the master, at shutdown): close pools the master built; remove the
        budgets' ledger."""
        self._close_master_pools(server)
        Ledger(directory_of(os.getpid())).remove()

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
            "nworkers_changed": self.nworkers_changed,
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
    close_timeout: float | None = None, budget: int | None = None, replace: bool = False,
) -> PoolRef[P]:
    """Declare a pool in the default registry (see :meth:`PoolRegistry.register`)."""
    return registry.register(name, factory, wait=wait, close_timeout=close_timeout, budget=budget,
                             replace=replace)


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


def nworkers_changed(server: Any, new_value: Any, old_value: Any) -> None:
    """gunicorn hook: publish the master's new worker count for the budgets."""
    registry.nworkers_changed(server, new_value, old_value)


class _Shares:
    """One worker's shares of its registry's budgets, kept in step with the ledger by one greenlet.

    A share shrinks at once (the pool is resized, then the record lowered); it grows only
    into room the ledger shows (the record raised first, then the pool resized).
    """

    def __init__(self, registry: PoolRegistry, ledger: Ledger, fallback_workers: int) -> None:
        self.pid = os.getpid()
        self.registry = registry
        self.ledger = ledger
        self.fallback_workers = max(1, fallback_workers)
        self.workers = self.fallback_workers
        #: pool name -> this worker's share now
        self.granted: dict[str, int] = {}
        #: set (and replaced) whenever a share grows
        self.changed = gevent.event.Event()
        self._published: dict[str, int] | None = None
        self._lower_since: dict[str, float] = {}  # pool name -> when its count first fell below the record
        self._greenlet: gevent.Greenlet[Any] | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _loop(self) -> None:
        while True:
            gevent.sleep(BUDGET_POLL)
            try:
                self.step()
            except Exception:
                logger.exception("budget: worker %d could not update its shares; retrying", self.pid)

    def step(self) -> None:
        """Compare the shares with the master's worker count; shrink, or grow into free room."""
        published = self.ledger.read_workers()
        self.workers = max(1, published if published is not None else self.fallback_workers)
        refs = [ref for ref in self.registry if ref.budget is not None]
        targets: dict[str, int] = {}
        for ref in refs:
            assert ref.budget is not None
            target = ref.budget // self.workers
            if ref._sizes is not None:
                target = min(target, ref._sizes[1])
            targets[ref.name] = target
            if target < self.granted.get(ref.name, 0):
                self._apply(ref, target)  # shrink first, lower the record after
        held = self._lowered_late({ref.name: max(self.granted.get(ref.name, 0), ref._held()) for ref in refs})
        if held == self._published and all(targets[name] <= self.granted.get(name, 0) for name in targets):
            return
        budgets = {ref.name: ref.budget or 0 for ref in refs}
        grown: dict[str, int] = {}

        def decide(others: dict[str, int]) -> dict[str, int]:
            record = dict(held)
            for name, target in targets.items():
                share = self.granted.get(name, 0)
                room = budgets[name] - others.get(name, 0)
                if target > share and room > share:
                    grown[name] = min(target, room)
                    record[name] = max(record[name], grown[name])
            return record

        self._published = self.ledger.exchange(decide)  # the record covers the growth before it happens
        for ref in refs:
            if ref.name in grown:
                self._apply(ref, grown[ref.name])
        if grown:
            woken, self.changed = self.changed, gevent.event.Event()
            woken.set()

    def _lowered_late(self, held: dict[str, int]) -> dict[str, int]:
        """Keep a record's old, higher count until the pool has been below it for RELEASE_GRACE
        seconds: a session the client closed leaves the server's view a moment later."""
        now = time.monotonic()
        published = self._published or {}
        for name, count in held.items():
            before = published.get(name, 0)
            if count >= before:
                self._lower_since.pop(name, None)
            elif now - self._lower_since.setdefault(name, now) < RELEASE_GRACE:
                held[name] = before
            else:
                self._lower_since.pop(name, None)
        return held

    def _apply(self, ref: PoolRef[Any], share: int) -> None:
        old = self.granted.get(ref.name, 0)
        self.granted[ref.name] = share
        logger.info("budget: pool %r in worker %d: share %d -> %d of %s (%d workers)",
                    ref.name, self.pid, old, share, ref.budget, self.workers)
        pool = ref.peek()
        if pool is None:
            return
        if share >= 1:
            ref.resize_to(pool, share)
        else:  # no room at all: close it; get() builds a new one when a share comes back
            ref._take()
            ref._retiring.append(pool)
            gevent.spawn(pool.close, 30.0)

"""The ``retry`` decorator: re-run a function when its connection breaks.

Meant for idempotent work done through a pool: the pool discards the broken
connection, and the next attempt gets a fresh one.  Waits go through
``gevent.sleep``, so other greenlets run meanwhile.
"""

from __future__ import annotations

import functools
import logging
import math
import socket
import time
from typing import Any, Callable, Iterable, TypeVar, overload

import gevent

from ._config import check_exc_classes
from .backoff import backoff_delay
from .errors import ConfigurationError

__all__ = ["retry", "backoff_delay", "DEFAULT_EXC_CLASSES"]

#: The errors retried (``@retry``) and that mark a connection broken (pools) when ``exc_classes``
#: is not given: geventconnpool's default.
DEFAULT_EXC_CLASSES: tuple[type[BaseException], ...] = (socket.error,)

_DEFAULT_RETRY_MESSAGE = (
    "Connection broken in '{f}' (error: '{e}'); retrying with new connection."
)
_DEFAULT_GIVE_UP_MESSAGE = "Max retries reached for '{f}'. Aborting."

F = TypeVar("F", bound=Callable[..., Any])


def _check_nonnegative(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or math.isinf(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"retry: {name} must be a finite number >= 0, got {value!r}"
        )


def _format(template: str, name: str, error: BaseException, attempt: int) -> str:
    # {f}/{e} as geventconnpool's README; {func}/{err} as its later code
    return template.format(f=name, e=error, func=name, err=error, attempt=attempt)


def _function_name(f: Callable[..., Any]) -> str:
    name = getattr(f, "__qualname__", None)
    if name is None:
        inner = getattr(f, "func", None)  # functools.partial
        name = getattr(inner, "__qualname__", None) or repr(f)
    return str(name)


@overload
def retry(f: F) -> F: ...


@overload
def retry(
    f: None = None,
    *,
    exc_classes: Iterable[type[BaseException]] = ...,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = ...,
    retry_log_level: int = ...,
    retry_log_message: str = ...,
    max_failures: int | None = ...,
    interval: float = ...,
    max_failure_log_level: int = ...,
    max_failure_log_message: str = ...,
    backoff: float = ...,
    max_interval: float = ...,
    jitter: float = ...,
    deadline: float | None = ...,
) -> Callable[[F], F]: ...


def retry(
    f: F | None = None,
    exc_classes: Iterable[type[BaseException]] = DEFAULT_EXC_CLASSES,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    retry_log_level: int = logging.INFO,
    retry_log_message: str = _DEFAULT_RETRY_MESSAGE,
    max_failures: int | None = 3,
    interval: float = 0.0,
    max_failure_log_level: int = logging.ERROR,
    max_failure_log_message: str = _DEFAULT_GIVE_UP_MESSAGE,
    backoff: float = 1.0,
    max_interval: float = 30.0,
    jitter: float = 0.0,
    deadline: float | None = None,
) -> F | Callable[[F], F]:
    """Retry the decorated function when it raises one of ``exc_classes``.

    Usable bare (``@retry``) or with arguments (``@retry(max_failures=5)``),
    also through ``functools.partial``.  After ``max_failures`` retries
    (``None``: no limit), or when the next wait would pass ``deadline``
    seconds since the first call, the last error is raised.  The delay
    before retry *n* is :func:`backoff_delay`.  Other exceptions, and
    ``BaseException`` such as ``gevent.Timeout``, are never retried.
    Log messages are ``str.format`` templates with ``{f}`` or ``{func}`` (the
    function's ``__qualname__``), ``{e}`` or ``{err}`` (the error) and ``{attempt}``.

    :raises ConfigurationError: at decoration time, for a bad argument.
    """
    classes = check_exc_classes("retry", exc_classes)  # one class is accepted, as the pools accept it
    if max_failures is not None and (
        isinstance(max_failures, bool)
        or not isinstance(max_failures, int)
        or max_failures < 0
    ):
        raise ConfigurationError(
            f"retry: max_failures must be an int >= 0 or None, got {max_failures!r}"
        )
    _check_nonnegative("interval", interval)
    _check_nonnegative("backoff", backoff)
    _check_nonnegative("max_interval", max_interval)
    _check_nonnegative("deadline", deadline, allow_none=True)
    if (
        isinstance(jitter, bool)
        or not isinstance(jitter, (int, float))
        or not 0.0 <= jitter <= 1.0
    ):
        raise ConfigurationError(f"retry: jitter must be a number within [0, 1], got {jitter!r}")
    for label, level in (
        ("retry_log_level", retry_log_level),
        ("max_failure_log_level", max_failure_log_level),
    ):
        if isinstance(level, bool) or not isinstance(level, int):
            raise ConfigurationError(
                f"retry: {label} must be a logging level (an int such as logging.INFO), got {level!r}"
            )

    for label, template in (
        ("retry_log_message", retry_log_message),
        ("max_failure_log_message", max_failure_log_message),
    ):
        try:
            _format(template, "f", OSError("e"), 1)
        except (KeyError, IndexError, ValueError, AttributeError) as error:
            raise ConfigurationError(f"retry: {label} is not a valid template: {error!r}") from None

    def decorate(func: F) -> F:
        name = _function_name(func)

        def log(level: int, template: str, error: BaseException, attempt: int) -> None:
            if logger is not None:
                logger.log(level, _format(template, name, error, attempt))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            failures = 0
            while True:
                try:
                    return func(*args, **kwargs)
                except classes as error:
                    failures += 1
                    delay = backoff_delay(
                        failures, interval, backoff, max_interval, jitter
                    )
                    out_of_tries = max_failures is not None and failures > max_failures
                    out_of_time = (
                        deadline is not None
                        and time.monotonic() + delay - started > deadline
                    )
                    if out_of_tries or out_of_time:
                        log(max_failure_log_level, max_failure_log_message, error, failures)
                        raise
                    log(retry_log_level, retry_log_message, error, failures)
                gevent.sleep(delay)

        return wrapper  # type: ignore[return-value]

    if f is None:
        return decorate
    if not callable(f):
        raise ConfigurationError(f"retry: expected a callable, got {f!r}")
    return decorate(f)

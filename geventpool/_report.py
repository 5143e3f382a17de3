"""How a pool describes itself: the stats dict, the status table, the leak warning."""

from __future__ import annotations

from types import CodeType
from typing import TYPE_CHECKING, Any

from ._slot import Slot, SlotState
from .errors import BackendUnavailable, PoolTimeout

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = [
    "COUNTERS", "stats_of", "status_table", "leak_message", "server_stats", "timeout_error",
    "all_down_error", "counts_text", "render_table",
]

#: The pool's counters (``pool._counters``, zero at start), reported by :func:`stats_of`.
COUNTERS = (
    "requests_queued", "requests_wait_ms", "requests_errors", "requests_too_many",
    "returns_bad", "connections_num", "connections_ms", "connections_errors",
    "connections_lost", "connections_discarded", "connections_reclaimed",
    "keepalives", "leaks",
)


def stats_of(pool: ConnectionPool[Any]) -> dict[str, float]:
    """Gauges and counters of ``pool``, keyed as psycopg_pool's ``get_stats()``."""
    state = pool.snapshot()
    stats: dict[str, float] = {
        "pool_min": pool.min_size,
        "pool_max": pool.max_size,
        "pool_size": state.size,
        "pool_available": state.idle,
        "pool_in_use": state.in_use,
        "pool_checking": state.checking,
        "pool_opening": state.opening,
        "pool_closing": state.closing,
        "requests_waiting": state.waiting,
        "generation": state.generation,
    }
    counters = pool._counters
    live_uses = sum(s.uses for s in state.slots)
    stats["requests_num"] = (
        live_uses + pool._closer.closed_uses + counters["requests_errors"] + counters["requests_too_many"]
    )
    stats["usage_ms"] = pool._table.usage * 1000.0
    stats.update(counters)
    for key in ("requests_wait_ms", "connections_ms", "usage_ms"):
        stats[key] = round(stats[key], 3)
    return stats


def _holder_name(holder: Any) -> str:
    if holder is None:
        return "-"
    name = getattr(holder, "name", None) or type(holder).__name__
    return f"{name}@{id(holder):x}"


def _age(seconds: float) -> str:
    return f"{seconds:.1f}s"


def status_table(pool: ConnectionPool[Any]) -> str:
    """A text table of every connection: slot, state, server, age, idle time, holder."""
    now = pool._clock()
    header = ("Slot", "State", "Server", "Age", "Idle", "Uses", "Holder")
    rows: list[tuple[str, ...]] = []
    state = pool.snapshot()
    for slot in state.slots:
        idle = _age(now - slot.last_used) if slot.state is SlotState.IDLE else "-"
        rows.append(
            (
                str(slot.number),
                slot.state.value,
                "-" if slot.server is None else str(slot.server),
                _age(now - slot.created),
                idle,
                str(slot.uses),
                _holder_name(slot.holder),
            )
        )
    for _ in range(state.opening):
        rows.append(("-", "opening", "-", "-", "-", "-", "-"))
    for _ in range(state.closing):
        rows.append(("-", "closing", "-", "-", "-", "-", "-"))
    return render_table(pool, header, rows)


def render_table(pool: ConnectionPool[Any], header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """The one status-table renderer: ``repr(pool)``, the rows in a box, then each server's health."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    lines = [repr(pool), rule, line(header), rule, *map(line, rows), rule]
    if pool.server_pool is not None:
        lines.append(f"servers ({pool.server_pool.strategy}):")
        stats = server_stats(pool)
        for server in pool.server_pool:
            entry = stats[server.name]
            lines.append(
                f"  {server.uri} priority={server.priority} circuit={entry['state']} "
                f"connections={entry['connections']} failures={entry['failures']} "
                f"open_for={entry['open_for']}s last_error={entry['last_error'] or '-'}"
            )
    return "\n".join(lines)


def server_stats(pool: ConnectionPool[Any]) -> dict[str, dict[str, Any]]:
    """Per-server health of ``pool``'s servers, keyed by server name."""
    if pool.server_pool is None:
        return {}
    result: dict[str, dict[str, Any]] = {}
    for server in pool.server_pool:
        entry = server.health.snapshot()
        entry["priority"] = server.priority
        entry["connections"] = sum(1 for s in pool.snapshot().slots if s.server is server)
        result[server.name] = entry
    return result


def _line_of(code: CodeType, lasti: int) -> int | None:
    """The source line of bytecode offset ``lasti`` in ``code``."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line
    return None


def leak_message(pool_name: str, slot: Slot[Any], now: float, verdict: str) -> str:
    """The one warning logged for a connection held too long, or taken back from a dead borrower."""
    where = ""
    if slot.where is not None:
        code, lasti = slot.where
        line = _line_of(code, lasti)
        where = f"; acquired at {code.co_filename}:{line} in {code.co_name}"
    return (
        f"{pool_name}: connection {slot.number} held for {now - slot.checked_out_at:.1f} s "
        f"by {_holder_name(slot.holder)}; {verdict}{where}"
    )


def counts_text(pool: ConnectionPool[Any]) -> str:
    """``size=.. idle=.. in_use=.. opening=.. closing=.. waiting=.. max_size=..`` for messages."""
    s = pool.snapshot()
    return (
        f"size={s.size} idle={s.idle} in_use={s.in_use + s.checking} opening={s.opening} "
        f"closing={s.closing} waiting={s.waiting} max_size={pool.max_size}"
    )


def timeout_error(pool: ConnectionPool[Any], timeout: float) -> PoolTimeout:
    """The error of a checkout that waited ``timeout`` in vain: it names the pool and its counts."""
    counts = counts_text(pool)
    connector = pool._connector
    if connector.failing_since is not None and connector.last_error is not None:
        return BackendUnavailable(
            f"{pool.name}: no connection within {timeout:g} s; connecting keeps failing "
            f"({connector.failures} failures, last: {connector.last_error!r}) [{counts}]"
        )
    return PoolTimeout(f"{pool.name}: no connection within {timeout:g} s [{counts}]")


def all_down_error(pool: ConnectionPool[Any]) -> BackendUnavailable:
    """Every server's circuit is open (``__cause__``: the last connect error)."""
    error = BackendUnavailable(
        f"{pool.name}: every server is down ({pool.server_pool!r}) [{counts_text(pool)}]"
    )
    error.__cause__ = pool._connector.last_error
    return error

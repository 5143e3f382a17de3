"""``str(pool)``: ldappool's status table (Slot, Connected, Active, URI, Lifetime, Bind DN), then
the servers' health (circuit state, connections, failures, open time, last error)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .._report import render_table
from .._slot import SlotState

if TYPE_CHECKING:
    from ._base import LDAPHooks

__all__ = ["status_table"]


def status_table(pool: LDAPHooks, pools: Sequence[LDAPHooks]) -> str:
    """Return a text table with one row per connection of ``pools`` (never a password)."""
    now = pool._clock()
    header = (
        f"Slot ({pool.max_size} max)", "Connected", "Active", "URI",
        f"Lifetime ({pool.max_lifetime:g} max)", "Bind DN", "Pool",
    )
    rows: list[tuple[str, ...]] = []
    number = 0
    for member in pools:
        for slot in member._slots():
            conn: Any = slot.conn
            number += 1
            rows.append((
                str(number),
                "not connected" if conn.closed or conn.broken else "connected",
                "active" if slot.state is SlotState.IN_USE else "inactive",
                str(conn.__dict__.get("_uri", "-")),
                f"{now - slot.created:.1f}",
                "-" if conn.bound_dn is None else (conn.bound_dn or "(anonymous)"),
                member.name,
            ))
    return render_table(pool, header, rows)

"""The alarm table for ``gasiot edge alarms`` (rich is imported only when a table is drawn)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from edge.alarms.model import Alarm, AlarmState

if TYPE_CHECKING:
    from rich.table import Table

_PRIORITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
_STATE_STYLE = {
    AlarmState.ACTIVE_UNACKED: "bold red",
    AlarmState.ACTIVE_ACKED: "red",
    AlarmState.CLEARED_UNACKED: "yellow",
    AlarmState.NORMAL: "green",
}


def format_alarms(alarms: Iterable[Alarm], *, tz: tzinfo | None = None, title: str = "alarms") -> Table:
    """Columns: id, device, priority, state (with shelved/suppressed), since, message zh/en,
    acked by.  ``since`` is the time of the current activation (of the last change once normal),
    in ``tz`` (default: the machine's local zone)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for column in ("id", "device", "priority", "state", "since", "message", "acked by"):
        table.add_column(column, overflow="fold")
    for a in alarms:
        state = f"[{_STATE_STYLE[a.state]}]{a.state.value}[/]"
        if a.shelved_until_ms is not None:
            state += f"\nshelved until {_time(a.shelved_until_ms, tz)} by {escape(a.shelved_by or '')}"
        if a.suppressed:
            state += "\nsuppressed (device offline)"
        since = a.changed_ms if a.state is AlarmState.NORMAL or a.raised_ms is None else a.raised_ms
        acked = "—" if a.acked_by is None else f"{escape(a.acked_by)} ({a.ack_origin})"
        table.add_row(
            escape(a.id),
            escape(a.device),
            f"[{_PRIORITY_STYLE.get(a.priority, '')}]{a.priority}[/]",
            state,
            _time(since, tz),
            f"{escape(a.message_zh)}\n{escape(a.message_en)}",
            acked,
        )
    return table


def _time(ms: int, tz: tzinfo | None) -> str:
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return (at.astimezone(tz) if tz is not None else at.astimezone()).strftime("%Y-%m-%d %H:%M:%S")

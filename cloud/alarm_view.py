"""The cloud's view of every gateway's alarms, kept from the ``alarm.*`` events the gateways send
(the edge alarm engine stays the authority: acknowledgements go down as commands and come back
as events).  Serves the active-alarm list, alarm history and the notifier's "still
unacknowledged?" question."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cloud.sqldb import Dialect, SqlDb
from gascore.records import Event

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS alarm_current(gateway_id TEXT NOT NULL, alarm_id TEXT NOT NULL,
            device TEXT NOT NULL, rule TEXT NOT NULL, priority TEXT NOT NULL, state TEXT NOT NULL,
            message_zh TEXT NOT NULL, message_en TEXT NOT NULL, value TEXT, raised_ms INTEGER,
            changed_ms INTEGER NOT NULL, annunciated INTEGER NOT NULL, acked_by TEXT,
            PRIMARY KEY (gateway_id, alarm_id));
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS alarm_current(gateway_id TEXT NOT NULL, alarm_id TEXT NOT NULL,
            device TEXT NOT NULL, rule TEXT NOT NULL, priority TEXT NOT NULL, state TEXT NOT NULL,
            message_zh TEXT NOT NULL, message_en TEXT NOT NULL, value TEXT, raised_ms BIGINT,
            changed_ms BIGINT NOT NULL, annunciated INTEGER NOT NULL, acked_by TEXT,
            PRIMARY KEY (gateway_id, alarm_id));
    """,
}

PRIORITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_COLUMNS = (
    "gateway_id",
    "alarm_id",
    "device",
    "rule",
    "priority",
    "state",
    "message_zh",
    "message_en",
    "value",
    "raised_ms",
    "changed_ms",
    "annunciated",
    "acked_by",
)


class AlarmView:
    def __init__(self, db: SqlDb) -> None:
        self.db = db
        db.script(DDL)
        self.listeners: list[Callable[[str, dict[str, Any], Event], None]] = []

    def observe(self, gateway_id: str, events: Sequence[Event]) -> None:
        """An ingest observer.  Events of one alarm arrive in order on the events lane; an older
        event (a resent batch) never overwrites a newer state."""
        for event in events:
            if not event.kind.startswith("alarm.") or not isinstance(event.data.get("alarm_id"), str):
                continue
            d = event.data
            row = (
                gateway_id,
                d["alarm_id"],
                event.device,
                str(d.get("rule", "")),
                str(d.get("priority", "medium")),
                str(d.get("state", "")),
                str(d.get("message_zh", "")),
                str(d.get("message_en", "")),
                json.dumps(d.get("value")),
                d.get("raised_ms") if isinstance(d.get("raised_ms"), int) else None,
                event.ts_ms,
                int(bool(d.get("annunciated", True))),
                str(d["by"]) if event.kind == "alarm.acked" and "by" in d else None,
            )
            with self.db.transaction() as tx:
                tx.execute(
                    f"INSERT INTO alarm_current({', '.join(_COLUMNS)}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608
                    " ON CONFLICT (gateway_id, alarm_id) DO UPDATE SET device = excluded.device,"
                    " rule = excluded.rule, priority = excluded.priority, state = excluded.state,"
                    " message_zh = excluded.message_zh, message_en = excluded.message_en, value = excluded.value,"
                    " raised_ms = excluded.raised_ms, changed_ms = excluded.changed_ms,"
                    " annunciated = excluded.annunciated,"
                    " acked_by = coalesce(excluded.acked_by, CASE WHEN excluded.raised_ms = alarm_current.raised_ms"
                    " THEN alarm_current.acked_by END)"
                    " WHERE excluded.changed_ms >= alarm_current.changed_ms",
                    row,
                )
            for listener in self.listeners:
                listener(gateway_id, dict(zip(_COLUMNS, row, strict=True)), event)

    def active(self, visible: Callable[[str], bool] = lambda g: True) -> list[dict[str, Any]]:
        """Alarms not back to normal, worst first."""
        rows = self.db.query(f"SELECT {', '.join(_COLUMNS)} FROM alarm_current WHERE state <> 'normal'")  # noqa: S608
        out = [_row(r) for r in rows if visible(r[0])]
        return sorted(out, key=lambda a: (-PRIORITY_RANK.get(a["priority"], 0), -(a["raised_ms"] or 0)))

    def get(self, gateway_id: str, alarm_id: str) -> dict[str, Any] | None:
        row = self.db.one(
            f"SELECT {', '.join(_COLUMNS)} FROM alarm_current WHERE gateway_id = ? AND alarm_id = ?",  # noqa: S608
            (gateway_id, alarm_id),
        )
        return _row(row) if row else None


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_COLUMNS, row, strict=True))
    out["value"] = json.loads(out["value"]) if out["value"] is not None else None
    out["annunciated"] = bool(out["annunciated"])
    return out

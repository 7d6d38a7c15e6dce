"""Storage of gateway releases and of each gateway's release states (see cloud/firmware.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from cloud.sqldb import Dialect, SqlDb
from gascore.records import Event

MAX_PACKAGE_BYTES = 64 * 1024 * 1024

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS firmware(version TEXT PRIMARY KEY, filename TEXT NOT NULL, sha256 TEXT NOT NULL,
            size INTEGER NOT NULL, data BLOB NOT NULL, uploaded_ms INTEGER NOT NULL, uploaded_by TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS firmware_state(gateway_id TEXT NOT NULL, version TEXT NOT NULL,
            state TEXT NOT NULL, state_ms INTEGER NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (gateway_id, version));
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS firmware(version TEXT PRIMARY KEY, filename TEXT NOT NULL, sha256 TEXT NOT NULL,
            size BIGINT NOT NULL, data BYTEA NOT NULL, uploaded_ms BIGINT NOT NULL, uploaded_by TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS firmware_state(gateway_id TEXT NOT NULL, version TEXT NOT NULL,
            state TEXT NOT NULL, state_ms BIGINT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (gateway_id, version));
    """,
}


class FirmwareStore:
    def __init__(self, db: SqlDb, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock
        db.script(DDL)

    def add(self, version: str, filename: str, data: bytes, by: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM firmware WHERE version = ?", (version,)):
                raise ValueError(f"release {version} exists; versions are immutable")
            tx.execute(
                "INSERT INTO firmware(version, filename, sha256, size, data, uploaded_ms, uploaded_by)"
                " VALUES (?,?,?,?,?,?,?)",
                (version, filename, digest, len(data), data, self.clock(), by),
            )
        return digest

    def meta(self, version: str) -> dict[str, Any] | None:
        row = self.db.one(
            "SELECT version, filename, sha256, size, uploaded_ms FROM firmware WHERE version = ?", (version,)
        )
        return dict(zip(("version", "filename", "sha256", "size", "uploaded_ms"), row, strict=True)) if row else None

    def data(self, version: str) -> bytes | None:
        row = self.db.one("SELECT data FROM firmware WHERE version = ?", (version,))
        return bytes(row[0]) if row else None

    def releases(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT version, filename, sha256, size, uploaded_ms FROM firmware ORDER BY uploaded_ms")
        return [dict(zip(("version", "filename", "sha256", "size", "uploaded_ms"), r, strict=True)) for r in rows]

    def set_state(self, gateway_id: str, version: str, state: str, detail: str = "") -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO firmware_state(gateway_id, version, state, state_ms, detail) VALUES (?,?,?,?,?)"
                " ON CONFLICT (gateway_id, version) DO UPDATE SET state = excluded.state,"
                " state_ms = excluded.state_ms, detail = excluded.detail",
                (gateway_id, version, state, self.clock(), detail[:2000]),
            )

    def states(self, gateway_id: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT version, state, state_ms, detail FROM firmware_state WHERE gateway_id = ? ORDER BY state_ms",
            (gateway_id,),
        )
        return [dict(zip(("version", "state", "state_ms", "detail"), r, strict=True)) for r in rows]

    def observer(self) -> Callable[[str, Sequence[Event]], None]:
        def observe(gateway_id: str, events: Sequence[Event]) -> None:
            for event in events:
                if event.kind.startswith("firmware.") and isinstance(event.data.get("version"), str):
                    state = event.kind.removeprefix("firmware.")
                    self.set_state(gateway_id, event.data["version"], state, str(event.data.get("reason", "")))

        return observe

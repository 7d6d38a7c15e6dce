"""Versioned station configurations kept in the cloud and pushed to gateways (A-4.1.5-cloudedge,
O-8.1.3): each upload is a new version (never edited); pushing one queues a signed
``config.apply`` command (dual control); the gateway's ``config.*`` events say what became of it,
so the cloud always knows which version each gateway runs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from cloud.sqldb import Dialect, SqlDb
from gascore.records import Event

MAX_CONFIG_BYTES = 512 * 1024

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS station_configs(gateway_id TEXT NOT NULL, version INTEGER NOT NULL,
            sha256 TEXT NOT NULL, text TEXT NOT NULL, comment TEXT NOT NULL, created_ms INTEGER NOT NULL,
            created_by TEXT NOT NULL, state TEXT NOT NULL, state_ms INTEGER NOT NULL, detail TEXT NOT NULL,
            PRIMARY KEY (gateway_id, version));
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS station_configs(gateway_id TEXT NOT NULL, version INTEGER NOT NULL,
            sha256 TEXT NOT NULL, text TEXT NOT NULL, comment TEXT NOT NULL, created_ms BIGINT NOT NULL,
            created_by TEXT NOT NULL, state TEXT NOT NULL, state_ms BIGINT NOT NULL, detail TEXT NOT NULL,
            PRIMARY KEY (gateway_id, version));
    """,
}

_EVENT_STATE = {"config.applied": "applied", "config.rejected": "rejected", "config.rolled_back": "rolled_back"}


class ConfigStoreError(Exception):
    pass


class ConfigStore:
    def __init__(self, db: SqlDb, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock
        db.script(DDL)

    def add(self, gateway_id: str, text: str, comment: str, created_by: str) -> tuple[int, str]:
        """Store a new version after a first check (YAML, the right gateway); the gateway
        validates it fully against its models before applying."""
        if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
            raise ConfigStoreError(f"a station file is at most {MAX_CONFIG_BYTES // 1024} KiB")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigStoreError(f"not YAML: {err}") from err
        gateway = doc.get("gateway") if isinstance(doc, dict) else None
        if not isinstance(gateway, dict) or gateway.get("id") != gateway_id:
            raise ConfigStoreError(f"the file's gateway.id must be {gateway_id!r}")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        now = self.clock()
        with self.db.transaction() as tx:
            if tx.dialect == "postgresql":
                tx.execute("LOCK TABLE station_configs IN EXCLUSIVE MODE")
            row = tx.one("SELECT max(version) FROM station_configs WHERE gateway_id = ?", (gateway_id,))
            version = int(row[0]) + 1 if row and row[0] is not None else 1
            tx.execute(
                "INSERT INTO station_configs(gateway_id, version, sha256, text, comment, created_ms, created_by, state,"
                " state_ms, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (gateway_id, version, digest, text, comment, now, created_by, "stored", now, ""),
            )
        return version, digest

    def get(self, gateway_id: str, version: int) -> dict[str, Any] | None:
        row = self.db.one(
            "SELECT version, sha256, text, comment, created_ms, created_by, state, state_ms, detail"
            " FROM station_configs WHERE gateway_id = ? AND version = ?",
            (gateway_id, version),
        )
        keys = ("version", "sha256", "text", "comment", "created_ms", "created_by", "state", "state_ms", "detail")
        return dict(zip(keys, row, strict=True)) if row else None

    def versions(self, gateway_id: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT version, sha256, comment, created_ms, created_by, state, state_ms, detail FROM station_configs"
            " WHERE gateway_id = ? ORDER BY version",
            (gateway_id,),
        )
        keys = ("version", "sha256", "comment", "created_ms", "created_by", "state", "state_ms", "detail")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def set_state(self, gateway_id: str, version: int, state: str, detail: str = "") -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE station_configs SET state = ?, state_ms = ?, detail = ? WHERE gateway_id = ? AND version = ?",
                (state, self.clock(), detail[:2000], gateway_id, version),
            )

    def observer(self) -> Callable[[str, Sequence[Event]], None]:
        """An ingest observer: the gateway's ``config.*`` events set each version's state."""

        def observe(gateway_id: str, events: Sequence[Event]) -> None:
            for event in events:
                state = _EVENT_STATE.get(event.kind)
                version = event.data.get("version")
                if state is not None and isinstance(version, int):
                    self.set_state(gateway_id, version, state, str(event.data.get("reason", "")))

        return observe

"""Push export to external systems (A-4.1.6-exchange, S-7.4d): an application (an API token of
its own, so its rights and scope are its own) subscribes a webhook to chosen properties and/or
alarms of gateways in its scope; each stored batch's matching records are POSTed as JSON.  A
delivery that fails is retried with backoff a few times and then recorded as failed; every
delivery is recorded (not in the audit log, which records the subscription itself)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from cloud.access import Principal
from cloud.registry import Registry
from cloud.sqldb import Dialect, SqlDb
from gascore.records import Event, Reading

log = logging.getLogger(__name__)

ATTEMPTS = 4
DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS export_subs(id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,
            owner TEXT NOT NULL, role TEXT NOT NULL, scopes TEXT NOT NULL, created_ms INTEGER NOT NULL,
            active INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE IF NOT EXISTS export_log(id INTEGER PRIMARY KEY AUTOINCREMENT, sub_id INTEGER NOT NULL,
            records INTEGER NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL, ts_ms INTEGER NOT NULL);
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS export_subs(id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL,
            owner TEXT NOT NULL, role TEXT NOT NULL, scopes TEXT NOT NULL, created_ms BIGINT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE IF NOT EXISTS export_log(id BIGSERIAL PRIMARY KEY, sub_id BIGINT NOT NULL,
            records INTEGER NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL, ts_ms BIGINT NOT NULL);
    """,
}


class ExportError(ValueError):
    pass


@dataclass(frozen=True)
class Subscription:
    id: int
    url: str
    gateway_id: str
    points: frozenset[tuple[str, str]]  # (device, point); empty: no readings
    alarms: bool
    owner: Principal

    @classmethod
    def parse(cls, sub_id: int, body: dict[str, Any], owner: Principal) -> Subscription:
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ExportError("url: the receiver's http(s) URL")
        gateway_id = body.get("gateway_id")
        if not isinstance(gateway_id, str):
            raise ExportError("gateway_id: the gateway whose data is exported")
        points = body.get("points", [])
        if not isinstance(points, list) or not all(isinstance(p, str) and "." in p for p in points):
            raise ExportError("points: a list of 'device.point'")
        alarms = body.get("alarms", False)
        if not isinstance(alarms, bool) or (not points and not alarms):
            raise ExportError("export some points, or alarms: true, or both")
        pairs = frozenset(tuple(p.split(".", 1)) for p in points)
        return cls(sub_id, url, gateway_id, pairs, alarms, owner)


class PushExporter:
    def __init__(self, db: SqlDb, registry: Registry, clock: Callable[[], int]) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock
        db.script(DDL)
        self._queue: asyncio.Queue[tuple[Subscription, list[dict[str, Any]]]] = asyncio.Queue(maxsize=10_000)

    def _visible(self, owner: Principal, gateway_id: str) -> bool:
        if owner.everywhere:
            return True
        placement = self.registry.placement(gateway_id)
        return placement is not None and owner.sees(placement.station_id, placement.org_id)

    def subscribe(self, body: dict[str, Any], owner: Principal) -> Subscription:
        if not owner.may("data.read"):
            raise ExportError("the application needs data.read")
        sub = Subscription.parse(0, body, owner)
        if not self._visible(owner, sub.gateway_id):
            raise ExportError(f"gateway {sub.gateway_id} is outside the application's scope")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO export_subs(body, owner, role, scopes, created_ms) VALUES (?,?,?,?,?)",
                (json.dumps(body), owner.id, owner.role, ",".join(sorted(owner.scopes)), self.clock()),
            )
            row = tx.one("SELECT max(id) FROM export_subs")
        assert row is not None
        return Subscription.parse(int(row[0]), body, owner)

    def subscriptions(self) -> list[Subscription]:
        out = []
        for sub_id, body, owner, role, scopes in self.db.query(
            "SELECT id, body, owner, role, scopes FROM export_subs WHERE active = 1"
        ):
            principal = Principal(str(owner), str(role), frozenset(str(scopes).split(",")))
            out.append(Subscription.parse(int(sub_id), json.loads(body), principal))
        return out

    def log_entries(self, sub_id: int) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT records, status, detail, ts_ms FROM export_log WHERE sub_id = ? ORDER BY id", (sub_id,)
        )
        return [dict(zip(("records", "status", "detail", "ts_ms"), r, strict=True)) for r in rows]

    # ---- ingest observers ---------------------------------------------------------------------

    def on_readings(self, gateway_id: str, readings: Sequence[Reading]) -> None:
        for sub in self.subscriptions():
            if sub.gateway_id != gateway_id or not sub.points or not self._visible(sub.owner, gateway_id):
                continue
            chosen = [
                {"device": r.device, "point": r.point, "ts_ms": r.ts_ms, "value": r.value, "quality": r.quality.value}
                for r in readings
                if (r.device, r.point) in sub.points
            ]
            if chosen:
                self._enqueue(sub, chosen)

    def on_events(self, gateway_id: str, events: Sequence[Event]) -> None:
        for sub in self.subscriptions():
            if sub.gateway_id != gateway_id or not sub.alarms or not self._visible(sub.owner, gateway_id):
                continue
            chosen = [
                {
                    "device": e.device,
                    "kind": e.kind,
                    "ts_ms": e.ts_ms,
                    "level": e.level.value,
                    "alarm_id": e.data.get("alarm_id"),
                    "state": e.data.get("state"),
                    "priority": e.data.get("priority"),
                    "message_zh": e.data.get("message_zh"),
                    "message_en": e.data.get("message_en"),
                }
                for e in events
                if e.kind.startswith("alarm.")
            ]
            if chosen:
                self._enqueue(sub, chosen)

    def _enqueue(self, sub: Subscription, records: list[dict[str, Any]]) -> None:
        try:
            self._queue.put_nowait((sub, records))
        except asyncio.QueueFull:
            self._log(sub.id, len(records), "dropped", "export queue full")

    # ---- delivery -----------------------------------------------------------------------------

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                sub, records = await self._queue.get()
                await self._deliver(http, sub, records)

    async def drain(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while not self._queue.empty():
                sub, records = self._queue.get_nowait()
                await self._deliver(http, sub, records)

    async def _deliver(self, http: aiohttp.ClientSession, sub: Subscription, records: list[dict[str, Any]]) -> None:
        body = {"subscription": sub.id, "gateway_id": sub.gateway_id, "records": records}
        error = ""
        for attempt in range(ATTEMPTS):
            try:
                async with http.post(sub.url, json=body) as r:
                    if r.status < 300:
                        self._log(sub.id, len(records), "delivered", f"HTTP {r.status}")
                        return
                    error = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError) as err:
                error = str(err) or type(err).__name__
            await asyncio.sleep(0.2 * 2**attempt)  # the retry backoff
        self._log(sub.id, len(records), "failed", error)
        log.warning("export %d to %s failed after %d attempts: %s", sub.id, sub.url, ATTEMPTS, error)

    def _log(self, sub_id: int, count: int, status: str, detail: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO export_log(sub_id, records, status, detail, ts_ms) VALUES (?,?,?,?,?)",
                (sub_id, count, status, detail[:500], self.clock()),
            )

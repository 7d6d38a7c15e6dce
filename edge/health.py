"""What the gateway's health surface reports, read from state the gateway already keeps.

* ``snapshot(gateway, now_ms)`` reads the device statuses, the store (queue depth, the record
  first in line, the last acknowledgement of each lane) and the alarm manager.  Cheap enough for
  every scrape: no row is counted, every query is an index look-up.
* ``degraded_reasons(snapshot, max_sync_silence_s)`` is the whole health policy: the store
  fails, or records wait while the cloud has acknowledged nothing for too long.  Offline field
  devices are reported but do not make the gateway unhealthy (restarting it would not help).
* ``LaneHealth`` is shared with `gasiot edge status`, which reads the store file of a gateway
  that may not be running.

Sync lag of a lane: how long records have waited without the cloud acknowledging anything,
``now − max(last ack, gateway start, arrival of the oldest waiting record)``; 0 when nothing waits.
A lane that drains a long backlog batch after batch has a small lag and an old oldest record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from edge.alarms.model import PRIORITIES
from edge.device_status import DeviceStatus
from edge.local_control import LocalControl
from edge.store import SqliteStore, StoreError
from edge.sync import SyncClient
from gascore.records import Lane


class Observed(Protocol):
    """What the health surface reads from a running gateway (``edge.runtime.Gateway``)."""

    @property
    def store(self) -> SqliteStore: ...
    @property
    def statuses(self) -> Mapping[str, DeviceStatus]: ...
    @property
    def sync(self) -> SyncClient | None: ...
    @property
    def local(self) -> LocalControl | None: ...
    @property
    def started_ms(self) -> int: ...
    @property
    def store_error(self) -> str | None: ...
    @property
    def store_failures(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LaneHealth:
    depth: int  # records not yet acknowledged (the in-flight batch included)
    oldest_unsent_ms: int | None  # ts_ms of the record first in line
    last_ack_ms: int | None  # when the cloud last acknowledged a batch of this lane

    def oldest_age_s(self, now_ms: int) -> float | None:
        return None if self.oldest_unsent_ms is None else max(0.0, (now_ms - self.oldest_unsent_ms) / 1000)

    def lag_s(self, now_ms: int, since_ms: int | None = None) -> float | None:
        """Sync lag (module docstring); ``since_ms``: when the gateway started, if it runs."""
        if self.depth == 0:
            return 0.0
        marks = [m for m in (self.last_ack_ms, since_ms, self.oldest_unsent_ms) if m is not None]
        return max(0.0, (now_ms - max(marks)) / 1000) if marks else None


def lanes_of(store: SqliteStore, *, exact: bool = False) -> dict[Lane, LaneHealth]:
    """Per-lane queue state; ``exact`` counts the rows (for the CLI) instead of ``store.depth``."""
    acks = store.last_acks()
    return {
        lane: LaneHealth(
            store.buffered(lane) if exact else store.depth(lane), store.oldest_unsent_ms(lane), acks.get(lane)
        )
        for lane in Lane
    }


@dataclass(frozen=True, slots=True)
class Snapshot:
    now_ms: int
    started_ms: int
    lanes: dict[Lane, LaneHealth]  # empty when the store could not be read
    store_error: str | None  # the last write failed (until one succeeds), or reading failed now
    online: list[str]
    offline: list[str]
    unknown: list[str]  # not polled or heard from yet
    alarms_active: dict[str, int]  # priority → alarms whose condition is active
    sync_error: str | None  # the last upload failure, while uploads fail

    def lag_s(self, lane: Lane) -> float | None:
        return self.lanes[lane].lag_s(self.now_ms, self.started_ms)


def snapshot(gateway: Observed, now_ms: int) -> Snapshot:
    store_error = gateway.store_error
    try:
        lanes = lanes_of(gateway.store)
    except (sqlite3.Error, StoreError) as err:
        lanes, store_error = {}, f"cannot read the store: {err}"
    online: list[str] = []
    offline: list[str] = []
    unknown: list[str] = []
    for device, status in sorted(gateway.statuses.items()):
        {True: online, False: offline, None: unknown}[status.online].append(device)
    active: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
    if gateway.local is not None:
        for alarm in gateway.local.alarms.alarms():
            if alarm.state.active:
                active[alarm.priority] += 1
    sync = gateway.sync
    sync_error = sync.stats.last_error if sync is not None and sync.failing else None
    return Snapshot(now_ms, gateway.started_ms, lanes, store_error, online, offline, unknown, active, sync_error)


def degraded_reasons(snap: Snapshot, max_sync_silence_s: float) -> list[str]:
    """Why the gateway is degraded; empty when it is ok."""
    reasons = []
    if snap.store_error is not None:
        reasons.append(f"store: {snap.store_error}")
    for lane in snap.lanes:
        lag = snap.lag_s(lane)
        if lag is not None and lag > max_sync_silence_s:
            reasons.append(
                f"sync: {snap.lanes[lane].depth} {lane.value} records wait and the cloud has acknowledged "
                f"nothing for {lag:.0f} s (health.max_sync_silence_s: {max_sync_silence_s:g})"
            )
    return reasons


def report(snap: Snapshot, gateway_id: str, reasons: list[str]) -> dict[str, Any]:
    """The /healthz document (no secrets: ids, counts, times and error summaries)."""
    return {
        "status": "degraded" if reasons else "ok",
        "reasons": reasons,
        "gateway": gateway_id,
        "now_ms": snap.now_ms,
        "uptime_s": round(max(0, snap.now_ms - snap.started_ms) / 1000, 3),
        "devices": {
            "online": len(snap.online),
            "offline": len(snap.offline),
            "unknown": len(snap.unknown),
            "offline_ids": snap.offline,
        },
        "lanes": {
            lane.value: {
                "buffered": h.depth,
                "oldest_unsent_ms": h.oldest_unsent_ms,
                "oldest_unsent_age_s": _round(h.oldest_age_s(snap.now_ms)),
                "last_ack_ms": h.last_ack_ms,
                "sync_lag_s": _round(snap.lag_s(lane)),
            }
            for lane, h in snap.lanes.items()
        },
        "sync": {
            "last_ack_ms": max((h.last_ack_ms for h in snap.lanes.values() if h.last_ack_ms), default=None),
            "lag_s": _round(max((snap.lag_s(lane) or 0.0 for lane in snap.lanes), default=None)),
            "error": None if snap.sync_error is None else snap.sync_error[:200],
        },
        "store": {"ok": snap.store_error is None, "error": snap.store_error},
        "alarms": {"active": sum(snap.alarms_active.values()), "by_priority": snap.alarms_active},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)

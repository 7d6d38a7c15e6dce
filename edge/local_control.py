"""Local control: each poll cycle's readings go through the rules; condition changes become
ISA-18.2 alarms and trigger interlocks; everything a cycle produces (readings, computed points,
events, alarm state) is committed in one store transaction.  Nothing here waits for the cloud."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge.alarms import persist
from edge.alarms.manager import AlarmManager
from edge.alarms.model import AlarmState, RequestResult
from edge.group_commit import GroupCommit
from edge.interlocks.engine import InterlockEngine
from edge.rules.engine import RuleEngine, RuleOutput
from edge.store import SqliteStore
from gascore.records import Event, Reading

log = logging.getLogger(__name__)

_LINK = {"device_online": True, "device_offline": False}


@dataclass
class LocalControl:
    store: SqliteStore
    rules: RuleEngine
    alarms: AlarmManager
    interlocks: InterlockEngine | None = None
    clock: Callable[[], int] = field(default=lambda: 0)
    # Plain counters, read by the metrics collector at scrape time.
    rule_passes: int = 0  # rule-engine passes over a cycle's readings
    rule_ticks: int = 0  # timer passes (housekeeping, about once a second)
    readings_evaluated: int = 0  # readings fed to the rules
    group: GroupCommit | None = None  # plain-reading cycles may share a commit (set by the gateway)

    @classmethod
    def open(
        cls, store: SqliteStore, rules: RuleEngine, interlocks: InterlockEngine | None, clock: Callable[[], int]
    ) -> LocalControl:
        alarms = AlarmManager(persist.load(store.db), comm_rules=rules.comm_rules)
        control = cls(store, rules, alarms, interlocks, clock)
        store.on_fresh_file.append(control._into_fresh_file)
        # Conditions the alarm store still holds active must be able to clear after a restart.
        active = [a.id for a in alarms.alarms() if a.state in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED)]
        unknown = rules.restore_active(active)
        if unknown:
            log.info("%d alarms refer to rules no longer configured: %s", len(unknown), ", ".join(unknown[:5]))
        return control

    def _into_fresh_file(self, db: sqlite3.Connection) -> None:
        """A damaged store file was replaced while running: the alarm tables and every alarm's
        current state go into the fresh one (inside the store's transaction)."""
        persist.ensure_schema(db)
        persist.save(db, self.alarms.alarms())

    def cycle(
        self, readings: list[Reading], events: list[Event], observed: Sequence[Reading], *, may_wait: bool = False
    ) -> bool:
        """One poll cycle (or push delivery, or interlock outcome): evaluate, then commit atomically.
        With ``may_wait`` a cycle of plain readings may wait for a group commit (``group``).
        True when this cycle committed now."""
        now = self.clock()
        out_events = list(events)
        computed: list[Reading] = []
        for event in events:  # link changes first: suppression must be set before the changes land
            online = _LINK.get(event.kind)
            if online is None:
                continue
            if not online:
                out_events += self.alarms.set_device_online(event.device, False, event.ts_ms)
            computed += self._conditions(self.rules.device_link(event.device, online, event.ts_ms), out_events)
            if online:
                out_events += self.alarms.set_device_online(event.device, True, event.ts_ms)
        if observed:
            self.rule_passes += 1
            self.readings_evaluated += len(observed)
            computed += self._conditions(self.rules.observe(observed, now), out_events)
        if self.interlocks is not None and (observed or computed):
            out_events += self.interlocks.observe([*observed, *computed])
        return self._commit([*readings, *computed], out_events, [], may_wait=may_wait)

    def housekeeping(self) -> None:
        """About once a second: rule timers, shelve expiry, read-back deadlines, CLI requests."""
        now = self.clock()
        events: list[Event] = []
        self.rule_ticks += 1
        computed = self._conditions(self.rules.tick(now), events)
        events += self.alarms.tick(now)
        if self.interlocks is not None:
            events += self.interlocks.tick(now)
        request_events, results = self.alarms.apply_requests(persist.pending_requests(self.store.db), now)
        events += request_events
        self._commit(computed, events, results)

    def _conditions(self, output: RuleOutput, events: list[Event]) -> list[Reading]:
        if output.changes:
            events += self.alarms.on_changes(output.changes)
            if self.interlocks is not None:
                events += self.interlocks.on_changes(output.changes)
        return output.computed

    def _commit(
        self, readings: list[Reading], events: list[Event], results: list[RequestResult], *, may_wait: bool = False
    ) -> bool:
        dirty = self.alarms.take_dirty()
        if not readings and not events and not dirty and not results:
            return False
        group = self.group
        if group is not None:
            if may_wait and not events and not dirty and not results and group.hold(readings):
                return False
            readings = [*group.take(), *readings]  # held readings first: order is kept
        now = self.clock()

        def alarm_state(db: sqlite3.Connection) -> None:
            persist.save(db, dirty)
            for r in results:
                persist.mark_done(db, r.request.id, r.result.text, now)

        try:
            self.store.append(readings, events, also=alarm_state if dirty or results else None)
        except BaseException:
            self.alarms.restore_dirty(dirty)
            raise
        return True

    def shelve(self, alarm_id: str, until_ms: int, by: str, reason: str, origin: str = "cloud") -> tuple[str, str]:
        """Shelving from the cloud (downlink command): same state as a shelve on site."""
        result = self.alarms.shelve(alarm_id, until_ms, by, reason, self.clock(), origin=origin)  # type: ignore[arg-type]
        self._commit([], [result.event] if result.event else [], [])
        return str(result.outcome), result.detail

    def ack(self, alarm_id: str, by: str, raised_ms: int | None, origin: str = "cloud") -> tuple[str, str]:
        """An acknowledgement from the cloud (downlink command): same state as an edge ack."""
        result = self.alarms.ack(alarm_id, by, self.clock(), origin=origin, raised_ms=raised_ms)  # type: ignore[arg-type]
        self._commit([], [result.event] if result.event else [], [])
        return str(result.outcome), result.detail

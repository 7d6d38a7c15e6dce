"""Random sequences of condition changes, acks, shelves, device status changes and restarts:
no alarm reaches an invalid state, every transition emits exactly one event (and nothing else
does), and the state agrees with a small reference model of ISA-18.2."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from alarmkit import change
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edge.alarms import Alarm, AlarmManager, AlarmState, Result, persist
from edge.rules.types import Priority
from gascore.records import Event

N, AU, AA, CU = AlarmState.NORMAL, AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED, AlarmState.CLEARED_UNACKED
DEVICES = ("d1", "d2")
ALARM_IDS = st.sampled_from(["d1.hi", "d1.comm_loss", "d2.hi"])
COMM = {"comm_loss"}
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-1e6, 1e6))
STEP_MS = 100

# (state before, state after, event kind) of every legal transition
LEGAL = {
    (N, AU, "alarm.raised"),
    (CU, AU, "alarm.raised"),
    (N, AU, "alarm.suppressed"),
    (AU, AU, "alarm.raised"),  # a suppressed alarm annunciated when its device recovers
    (AU, AA, "alarm.acked"),
    (CU, N, "alarm.acked"),
    (AU, CU, "alarm.cleared"),
    (AA, N, "alarm.normal"),
    (AU, N, "alarm.normal"),  # a suppressed activation clearing
} | {(s, s, k) for s in AlarmState for k in ("alarm.shelved", "alarm.unshelved")}


@dataclasses.dataclass
class Ref:
    """The reference model: what an operator's alarm list must show."""

    state: AlarmState = N
    suppressed: bool = False
    shelved_until: int | None = None
    raised_ms: int | None = None


def _essence(a: Alarm) -> tuple[Any, ...]:
    """Everything an event must report a change of (changed_ms is the change's time)."""
    return dataclasses.astuple(dataclasses.replace(a, changed_ms=0))


class AlarmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        persist.ensure_schema(self.db)
        self.manager = AlarmManager(comm_rules=COMM, max_shelve_ms=100_000)
        self.ref: dict[str, Ref] = {}
        self.offline: set[str] = set()
        self.now = 1_000

    def teardown(self) -> None:
        self.db.close()

    # ---- helpers ----------------------------------------------------------------------------

    def _step(self, advance: int) -> int:
        self.now += advance
        return self.now

    def _run(self, action: Any) -> list[Event]:
        """Run one action; check one event per changed alarm and none for the others."""
        before = {a.id: a for a in self.manager.alarms()}
        events: list[Event] = action()
        after = {a.id: a for a in self.manager.alarms()}
        changed = [k for k in sorted(after) if k not in before or _essence(before[k]) != _essence(after[k])]
        assert sorted(e.data["alarm_id"] for e in events) == changed, (events, changed)
        for event in events:
            new = after[event.data["alarm_id"]]
            old_state = before[new.id].state if new.id in before else N
            assert (old_state, new.state, event.kind) in LEGAL, (old_state, new.state, event.kind)
            assert event.data["state"] == new.state.value and event.device == new.device
            assert event.data["annunciated"] == new.annunciated
            assert event.ts_ms == self.now
            assert new.changed_ms == self.now
            assert Event.from_wire(event.to_wire()) == event
        return events

    def _act(self, action: Any) -> Result:
        """Run one operator action through ``_run``; an event exactly when it succeeded."""
        results: list[Result] = []

        def run() -> list[Event]:
            results.append(action())
            return [results[0].event] if results[0].event else []

        self._run(run)
        assert results[0].ok == (results[0].event is not None)
        return results[0]

    def _known(self, aid: str) -> Ref | None:
        ref = self.ref.get(aid)
        return ref if ref is not None and ref.raised_ms is not None else None

    # ---- rules ------------------------------------------------------------------------------
    # Few alarms and one rule per kind of step, so that interesting interleavings (offline, then
    # an activation, then an ack, ...) are common; time moves by STEP_MS per step, by more in
    # ``advance``, and exactly onto the next shelve expiry in ``tick_at_expiry``.

    @rule(aid=ALARM_IDS, value=VALUES, priority=st.sampled_from(["low", "medium", "high", "critical"]))
    def activate(self, aid: str, value: Any, priority: Priority) -> None:
        self._condition(aid, True, value, priority)

    @rule(aid=ALARM_IDS, value=VALUES)
    def clear(self, aid: str, value: Any) -> None:
        self._condition(aid, False, value, "high")

    def _condition(self, aid: str, active: bool, value: Any, priority: Priority) -> None:
        now = self._step(STEP_MS)
        device, rule_id = aid.split(".")
        c = change(rule_id, active, now, device=device, priority=priority, value=value)
        self._run(lambda: self.manager.on_change(c))
        ref = self.ref.setdefault(c.condition_id, Ref())
        if active and not ref.state.active:
            ref.suppressed = ref.state is N and device in self.offline and rule_id not in COMM
            ref.state, ref.raised_ms = AU, now
        elif not active and ref.state is AA:
            ref.state = N
        elif not active and ref.state is AU:
            ref.state = N if ref.suppressed else CU
            ref.suppressed = False

    @rule(aid=ALARM_IDS, origin=st.sampled_from(["edge", "cloud"]), which=st.sampled_from(["any", "current", "older"]))
    def ack(self, aid: str, origin: Any, which: str) -> None:
        now = self._step(STEP_MS)
        ref = self._known(aid)
        raised = None if which == "any" or ref is None else ref.raised_ms
        if which == "older" and raised is not None:
            raised -= 1
        result = self._act(lambda: self.manager.ack(aid, "op", now, origin=origin, raised_ms=raised))
        applies = ref is not None and ref.state.unacked and not (which == "older" and raised is not None)
        assert result.ok == applies, (result, ref)
        if ref is not None and applies:
            ref.state = AA if ref.state is AU else N
            ref.suppressed = False

    @rule(aid=ALARM_IDS, duration=st.sampled_from([-1, 0, 1, 500, 5_000, 100_000, 100_001]))
    def shelve(self, aid: str, duration: int) -> None:
        now = self._step(STEP_MS)
        result = self._act(lambda: self.manager.shelve(aid, now + duration, "op", "work", now))
        ref = self._known(aid)
        valid = ref is not None and 0 < duration <= 100_000 and ref.shelved_until != now + duration
        assert result.ok == valid, (result, ref, duration)
        if ref is not None and valid:
            ref.shelved_until = now + duration

    @rule(aid=ALARM_IDS)
    def unshelve(self, aid: str) -> None:
        now = self._step(STEP_MS)
        result = self._act(lambda: self.manager.unshelve(aid, "op", now))
        ref = self._known(aid)
        assert result.ok == (ref is not None and ref.shelved_until is not None)
        if ref is not None:
            ref.shelved_until = None

    @rule(advance=st.integers(0, 20_000))
    def advance(self, advance: int) -> None:
        self._tick(self._step(advance))

    @rule()
    def tick_at_expiry(self) -> None:
        expiry = self.manager.next_expiry_ms()
        self._tick(self._step(max(0, expiry - self.now) if expiry is not None else STEP_MS))

    def _tick(self, now: int) -> None:
        events = self._run(lambda: self.manager.tick(now))
        assert all(e.kind == "alarm.unshelved" for e in events)
        expired = sorted(k for k, r in self.ref.items() if r.shelved_until is not None and r.shelved_until <= now)
        assert [e.data["alarm_id"] for e in events] == expired
        for key in expired:
            self.ref[key].shelved_until = None

    @rule(device=st.sampled_from(DEVICES))
    def go_offline(self, device: str) -> None:
        now = self._step(STEP_MS)
        assert self._run(lambda: self.manager.set_device_online(device, False, now)) == []
        self.offline.add(device)

    @rule(device=st.sampled_from(DEVICES))
    def go_online(self, device: str) -> None:
        now = self._step(STEP_MS)
        events = self._run(lambda: self.manager.set_device_online(device, True, now))
        self.offline.discard(device)
        recovered = sorted(k for k, r in self.ref.items() if k.startswith(f"{device}.") and r.suppressed)
        assert [e.data["alarm_id"] for e in events] == recovered
        for key in recovered:
            self.ref[key].suppressed = False

    @rule()
    def restart(self) -> None:
        """Save what changed (as the store would each cycle), then a new manager from the file."""
        self.db.execute("BEGIN IMMEDIATE")
        persist.save(self.db, self.manager.take_dirty())
        self.db.execute("COMMIT")
        before = self.manager.alarms()
        self.manager = AlarmManager(persist.load(self.db), comm_rules=COMM, max_shelve_ms=100_000)
        assert self.manager.alarms() == before
        for device in sorted(self.offline):  # the pollers report their devices' status again
            assert self.manager.set_device_online(device, False, self.now) == []

    # ---- invariants -------------------------------------------------------------------------

    @invariant()
    def alarms_are_valid_and_match_the_reference(self) -> None:
        alarms = {a.id: a for a in self.manager.alarms()}
        assert set(alarms) == {k for k, r in self.ref.items() if r.raised_ms is not None}
        for aid, alarm in alarms.items():
            assert alarm.problems() == [], (aid, alarm)
            ref = self.ref[aid]
            got = (alarm.state, alarm.suppressed, alarm.shelved_until_ms, alarm.raised_ms)
            assert got == (ref.state, ref.suppressed, ref.shelved_until, ref.raised_ms), (aid, alarm, ref)
            if ref.suppressed:
                assert not alarm.annunciated


TestAlarmMachine = AlarmMachine.TestCase
TestAlarmMachine.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

"""The alarm manager: condition changes, operator actions and device status in, one event per
alarm transition out.

Transitions and the event each produces (``EventKind``)::

    normal          --condition active-->          active_unacked   alarm.raised
                                                    (device offline:  alarm.suppressed, not annunciated)
    active_unacked  --ack-->                       active_acked     alarm.acked
    active_unacked  --condition clears-->          cleared_unacked  alarm.cleared
                                                    (suppressed: -> normal, alarm.normal, no ack needed)
    active_acked    --condition clears-->          normal           alarm.normal
    cleared_unacked --ack-->                       normal           alarm.acked
    cleared_unacked --condition active again-->    active_unacked   alarm.raised (a new activation)
    suppressed      --device back online-->        (same state)     alarm.raised (annunciated now)
    any             --shelve / unshelve / expiry-> (same state)     alarm.shelved / alarm.unshelved

Anything else (a repeated condition change, acking an acknowledged alarm, ...) changes nothing
and produces nothing; operator actions say why in their ``Result``.

The manager is synchronous and does no I/O: the caller stores the events it returns and the
alarms ``take_dirty`` hands out in one store transaction (see ``edge.alarms.persist``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable
from typing import Any

from edge.alarms.model import (
    REQUEST_KINDS,
    Alarm,
    AlarmState,
    EventKind,
    Origin,
    Outcome,
    Request,
    RequestResult,
    Result,
)
from edge.rules.types import ConditionChange
from gascore.records import Event, Value

log = logging.getLogger(__name__)

DEFAULT_COMM_RULES: frozenset[str] = frozenset({"comm_loss"})
DEFAULT_MAX_SHELVE_MS = 24 * 3600 * 1000  # ISA-18.2: shelving is always time-limited
DEFAULT_REQUEST_TTL_MS = 5 * 60 * 1000

_N, _AU, _AA, _CU = (
    AlarmState.NORMAL,
    AlarmState.ACTIVE_UNACKED,
    AlarmState.ACTIVE_ACKED,
    AlarmState.CLEARED_UNACKED,
)


class AlarmManager:
    """ISA-18.2 alarms for one gateway, keyed by condition id.

    ``comm_rules``: rule ids (``ConditionChange.rule``) of communication-loss rules; their alarms
    are never suppressed while the device is offline (they are what an offline device should
    raise).  ``max_shelve_ms`` bounds how far ahead a shelve may expire.
    """

    def __init__(
        self,
        alarms: Iterable[Alarm] = (),
        *,
        comm_rules: Collection[str] = DEFAULT_COMM_RULES,
        max_shelve_ms: int = DEFAULT_MAX_SHELVE_MS,
    ) -> None:
        self._alarms: dict[str, Alarm] = {a.id: a for a in alarms}
        self._comm_rules = frozenset(comm_rules)
        self._max_shelve_ms = max_shelve_ms
        self._offline: set[str] = set()
        self._dirty: set[str] = set()

    # ---- inspection ---------------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    def alarms(self) -> list[Alarm]:
        """Every alarm, sorted by id."""
        return [self._alarms[k] for k in sorted(self._alarms)]

    def next_expiry_ms(self) -> int | None:
        """When the next shelve expires (so the caller can schedule ``tick``), or None."""
        return min((a.shelved_until_ms for a in self._alarms.values() if a.shelved_until_ms is not None), default=None)

    def take_dirty(self) -> list[Alarm]:
        """The alarms changed since the last call, for ``persist.save`` in this cycle's transaction."""
        out = [self._alarms[k] for k in sorted(self._dirty)]
        self._dirty.clear()
        return out

    def restore_dirty(self, alarms: Iterable[Alarm]) -> None:
        """The transaction that was to save ``alarms`` rolled back: save them next time."""
        self._dirty.update(a.id for a in alarms if a.id in self._alarms)

    # ---- conditions and device status -----------------------------------------------------

    def on_change(self, change: ConditionChange) -> list[Event]:
        """Apply one condition change; returns the transition's event, if there was one."""
        alarm = self._alarms.get(change.condition_id)
        ts = change.ts_ms
        if change.active:
            if alarm is None:
                alarm = Alarm(
                    change.condition_id,
                    change.device,
                    change.rule,
                    change.priority,
                    change.message.zh,
                    change.message.en,
                )
            if alarm.state.active:
                return []
            # A new activation takes the rule's current priority and message (config may have changed).
            new = dataclasses.replace(
                alarm,
                device=change.device,
                rule=change.rule,
                priority=change.priority,
                message_zh=change.message.zh,
                message_en=change.message.en,
                state=_AU,
                raised_ms=ts,
                value=change.value,
                activations=alarm.activations + 1,
                acked_ms=None,
                acked_by=None,
                ack_origin=None,
                cleared_ms=None,
                # Only activations out of normal are hidden: an alarm still waiting for its ack
                # (cleared_unacked) has been shown already and stays shown.
                suppressed=alarm.state is _N and self._suppresses(change.device, change.rule),
                changed_ms=ts,
            )
            if new.suppressed:
                log.debug("alarm %s suppressed (device %s offline)", new.id, new.device)
                return [self._commit(new, EventKind.SUPPRESSED, ts)]
            log.info("alarm %s raised (%s): %s", new.id, new.priority, new.message_en)
            return [self._commit(new, EventKind.RAISED, ts)]

        if alarm is None or not alarm.state.active:
            return []
        extra: dict[str, Any] = {} if change.value is None else {"clear_value": change.value}
        if alarm.state is _AA:
            log.info("alarm %s back to normal", alarm.id)
            return [self._commit(dataclasses.replace(alarm, state=_N, changed_ms=ts), EventKind.NORMAL, ts, extra)]
        if alarm.suppressed:
            # Never annunciated, so nobody has to acknowledge it.
            new = dataclasses.replace(alarm, state=_N, suppressed=False, changed_ms=ts)
            return [self._commit(new, EventKind.NORMAL, ts, {**extra, "cause": "cleared_while_suppressed"})]
        log.info("alarm %s cleared, waiting for acknowledgement", alarm.id)
        new = dataclasses.replace(alarm, state=_CU, cleared_ms=ts, changed_ms=ts)
        return [self._commit(new, EventKind.CLEARED, ts, extra)]

    def on_changes(self, changes: Iterable[ConditionChange]) -> list[Event]:
        return [e for c in changes for e in self.on_change(c)]

    def set_device_online(self, device: str, online: bool, now_ms: int) -> list[Event]:
        """Record a device's link state.  Going offline changes no alarm (later activations of
        its non-comm-loss alarms are suppressed); coming online annunciates every suppressed
        alarm of the device (one ``alarm.raised`` each; suppressed alarms are always active)."""
        if not online:
            self._offline.add(device)
            return []
        self._offline.discard(device)
        # Not only for devices known offline: suppression survives a restart, the offline set does not.
        events: list[Event] = []
        for key in sorted(self._alarms):
            alarm = self._alarms[key]
            if alarm.device == device and alarm.suppressed:
                new = dataclasses.replace(alarm, suppressed=False, changed_ms=now_ms)
                events.append(self._commit(new, EventKind.RAISED, now_ms, {"cause": "device_recovered"}))
        if events:
            log.info("device %s back online: %d suppressed alarm(s) annunciated", device, len(events))
        return events

    def tick(self, now_ms: int) -> list[Event]:
        """Unshelve every alarm whose shelve has expired."""
        events: list[Event] = []
        for key in sorted(self._alarms):
            alarm = self._alarms[key]
            if alarm.shelved_until_ms is not None and alarm.shelved_until_ms <= now_ms:
                log.info("alarm %s: shelve expired", alarm.id)
                events.append(
                    self._commit(_unshelved(alarm, now_ms), EventKind.UNSHELVED, now_ms, {"cause": "expired"})
                )
        return events

    # ---- operator actions -----------------------------------------------------------------

    def ack(
        self, alarm_id: str, by: str, now_ms: int, *, origin: Origin = "edge", raised_ms: int | None = None
    ) -> Result:
        """Acknowledge the current activation of ``alarm_id``.

        ``raised_ms`` names the activation the person saw (the cloud always sends it): an ack of
        an older activation never acknowledges a newer one (``Outcome.STALE``).
        """
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            return Result(Outcome.NOT_FOUND, f"no alarm {alarm_id!r}")
        if not by:
            return Result(Outcome.INVALID, "who acknowledges must be named", alarm)
        if raised_ms is not None and raised_ms != alarm.raised_ms:
            return Result(
                Outcome.STALE,
                f"the ack is for the activation raised at {raised_ms}, the current one was raised at {alarm.raised_ms}",
                alarm,
            )
        if alarm.acked_ms is not None:
            return Result(
                Outcome.ALREADY_ACKED,
                f"acknowledged already by {alarm.acked_by} ({alarm.ack_origin}) at {alarm.acked_ms}",
                alarm,
            )
        if alarm.state is _N:
            return Result(Outcome.NOT_ACTIVE, "the alarm is normal: nothing to acknowledge", alarm)
        new = dataclasses.replace(
            alarm,
            state=_AA if alarm.state is _AU else _N,
            acked_ms=now_ms,
            acked_by=by,
            ack_origin=origin,
            suppressed=False,  # seen by a person now
            changed_ms=now_ms,
        )
        log.info("alarm %s acknowledged by %s (%s)", alarm_id, by, origin)
        event = self._commit(new, EventKind.ACKED, now_ms, {"by": by, "origin": origin})
        return Result(Outcome.OK, f"acknowledged; now {new.state}", new, event)

    def shelve(
        self, alarm_id: str, until_ms: int, by: str, reason: str, now_ms: int, *, origin: Origin = "edge"
    ) -> Result:
        """Hide the alarm from operators until ``until_ms`` (its state is still tracked and every
        transition still produces its event, with ``annunciated: false``)."""
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            return Result(Outcome.NOT_FOUND, f"no alarm {alarm_id!r}")
        if not by or not reason:
            return Result(Outcome.INVALID, "shelving needs who and why", alarm)
        if until_ms <= now_ms:
            return Result(Outcome.INVALID, "the shelve must expire in the future", alarm)
        if until_ms - now_ms > self._max_shelve_ms:
            hours = self._max_shelve_ms / 3_600_000
            return Result(Outcome.INVALID, f"a shelve may last at most {hours:g} h", alarm)
        if (alarm.shelved_until_ms, alarm.shelved_by, alarm.shelved_reason) == (until_ms, by, reason):
            return Result(Outcome.ALREADY_SHELVED, f"shelved already until {until_ms}", alarm)
        new = dataclasses.replace(
            alarm, shelved_until_ms=until_ms, shelved_by=by, shelved_reason=reason, changed_ms=now_ms
        )
        log.info("alarm %s shelved by %s until %d: %s", alarm_id, by, until_ms, reason)
        event = self._commit(new, EventKind.SHELVED, now_ms, {"by": by, "origin": origin, "reason": reason})
        return Result(Outcome.OK, f"shelved until {until_ms}", new, event)

    def unshelve(self, alarm_id: str, by: str, now_ms: int, *, origin: Origin = "edge") -> Result:
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            return Result(Outcome.NOT_FOUND, f"no alarm {alarm_id!r}")
        if not by:
            return Result(Outcome.INVALID, "who unshelves must be named", alarm)
        if not alarm.shelved:
            return Result(Outcome.NOT_SHELVED, "the alarm is not shelved", alarm)
        new = _unshelved(alarm, now_ms)
        log.info("alarm %s unshelved by %s", alarm_id, by)
        event = self._commit(new, EventKind.UNSHELVED, now_ms, {"by": by, "origin": origin, "cause": "manual"})
        return Result(Outcome.OK, "unshelved", new, event)

    def apply_requests(
        self, requests: Iterable[Request], now_ms: int, *, ttl_ms: int = DEFAULT_REQUEST_TTL_MS
    ) -> tuple[list[Event], list[RequestResult]]:
        """Apply requests queued by the CLI (origin ``edge``), oldest first.  A request older than
        ``ttl_ms`` is not applied (``Outcome.EXPIRED``): the person may have seen another state."""
        events: list[Event] = []
        results: list[RequestResult] = []
        for req in sorted(requests, key=lambda r: r.id):
            result = self._apply(req, now_ms, ttl_ms)
            if result.event is not None:
                events.append(result.event)
            results.append(RequestResult(req, result))
        return events, results

    def _apply(self, req: Request, now_ms: int, ttl_ms: int) -> Result:
        if req.kind not in REQUEST_KINDS:
            return Result(Outcome.INVALID, f"unknown request kind {req.kind!r}")
        if now_ms - req.requested_ms > ttl_ms:
            return Result(Outcome.EXPIRED, f"queued at {req.requested_ms}, more than {ttl_ms // 1000} s ago")
        if req.kind == "ack":
            return self.ack(req.alarm_id, req.by, now_ms, raised_ms=req.raised_ms)
        if req.kind == "unshelve":
            return self.unshelve(req.alarm_id, req.by, now_ms)
        if req.until_ms is None:
            return Result(Outcome.INVALID, "a shelve request needs until_ms")
        return self.shelve(req.alarm_id, req.until_ms, req.by, req.reason, now_ms)

    # ---- internals ----------------------------------------------------------------------

    def _suppresses(self, device: str, rule: str) -> bool:
        return device in self._offline and rule not in self._comm_rules

    def _commit(self, new: Alarm, kind: EventKind, ts_ms: int, extra: dict[str, Any] | None = None) -> Event:
        """Store the alarm's new version and build the one event of this transition."""
        self._alarms[new.id] = new
        self._dirty.add(new.id)
        return alarm_event(new, kind, ts_ms, extra)


def alarm_event(alarm: Alarm, kind: EventKind, ts_ms: int, extra: dict[str, Any] | None = None) -> Event:
    """The event of a transition that left ``alarm`` as it is now."""
    value: Value = alarm.value
    data: dict[str, Any] = {
        "alarm_id": alarm.id,
        "rule": alarm.rule,
        "state": alarm.state.value,
        "priority": alarm.priority,
        "message_zh": alarm.message_zh,
        "message_en": alarm.message_en,
        "value": value,
        "raised_ms": alarm.raised_ms,
        "activations": alarm.activations,
        "annunciated": alarm.annunciated,
    }
    if alarm.shelved_until_ms is not None:
        data["shelved_until_ms"] = alarm.shelved_until_ms
    if extra:
        data.update(extra)
    return Event(alarm.device, kind.value, ts_ms, alarm.level, data)


def _unshelved(alarm: Alarm, now_ms: int) -> Alarm:
    return dataclasses.replace(alarm, shelved_until_ms=None, shelved_by=None, shelved_reason=None, changed_ms=now_ms)

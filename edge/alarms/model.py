"""Alarm records (ISA-18.2 states), operator requests and the typed outcome of an operator action.

Everything here is a frozen value: the manager replaces an alarm on every transition, so a
snapshot handed to ``persist.save`` or to the CLI never changes under its reader.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from edge.rules.types import Priority
from gascore.records import Event, EventLevel, Value

Origin = Literal["edge", "cloud", "opcua"]
RequestKind = Literal["ack", "shelve", "unshelve"]
REQUEST_KINDS: frozenset[str] = frozenset({"ack", "shelve", "unshelve"})
PRIORITIES: tuple[Priority, ...] = ("low", "medium", "high", "critical")

LEVEL_OF_PRIORITY: dict[str, EventLevel] = {
    "low": EventLevel.INFO,
    "medium": EventLevel.WARNING,
    "high": EventLevel.MAJOR,
    "critical": EventLevel.CRITICAL,
}


class AlarmState(enum.StrEnum):
    """ISA-18.2 alarm states (the storage and wire form is the member's text)."""

    NORMAL = "normal"
    ACTIVE_UNACKED = "active_unacked"
    ACTIVE_ACKED = "active_acked"
    CLEARED_UNACKED = "cleared_unacked"

    @property
    def active(self) -> bool:
        """The condition behind the alarm is active."""
        return self in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED)

    @property
    def unacked(self) -> bool:
        return self in (AlarmState.ACTIVE_UNACKED, AlarmState.CLEARED_UNACKED)


class EventKind(enum.StrEnum):
    """The ``kind`` of the event every transition produces (one per transition)."""

    RAISED = "alarm.raised"  # normal/cleared_unacked -> active_unacked; or annunciated after suppression
    ACKED = "alarm.acked"  # active_unacked -> active_acked; cleared_unacked -> normal
    CLEARED = "alarm.cleared"  # active_unacked -> cleared_unacked
    NORMAL = "alarm.normal"  # active_acked -> normal; a suppressed activation clearing
    SHELVED = "alarm.shelved"
    UNSHELVED = "alarm.unshelved"  # by a person, or at expiry (data.cause = "expired")
    SUPPRESSED = "alarm.suppressed"  # activated while its device is offline: recorded, not annunciated


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm per condition id (``<device>.<rule id>``).

    ``raised_ms``, ``value`` and ``activations`` describe the current (latest) activation;
    ``acked_*`` the acknowledgement of that activation (None while unacknowledged);
    ``changed_ms`` is when the alarm last changed (state, shelving or suppression).

    Invariants (checked by ``problems()``): acked fields are set exactly in ``active_acked`` and
    after an acknowledged activation returned to ``normal``; ``suppressed`` only in
    ``active_unacked`` (an acknowledged or annunciated activation is never hidden again);
    the three ``shelved_*`` fields are set together.
    """

    id: str
    device: str
    rule: str
    priority: Priority
    message_zh: str
    message_en: str
    state: AlarmState = AlarmState.NORMAL
    raised_ms: int | None = None
    value: Value = None
    activations: int = 0
    acked_ms: int | None = None
    acked_by: str | None = None
    ack_origin: Origin | None = None
    cleared_ms: int | None = None
    shelved_until_ms: int | None = None
    shelved_by: str | None = None
    shelved_reason: str | None = None
    suppressed: bool = False
    changed_ms: int = 0

    @property
    def shelved(self) -> bool:
        return self.shelved_until_ms is not None

    @property
    def annunciated(self) -> bool:
        """Shown to operators: not normal, not shelved, not suppressed."""
        return self.state is not AlarmState.NORMAL and not self.shelved and not self.suppressed

    @property
    def level(self) -> EventLevel:
        return LEVEL_OF_PRIORITY[self.priority]

    def problems(self) -> list[str]:
        """Broken invariants (empty for every alarm the manager produces)."""
        out: list[str] = []
        acked = self.acked_ms is not None
        if (self.acked_by is not None) != acked or (self.ack_origin is not None) != acked:
            out.append("acked_ms/acked_by/ack_origin not set together")
        if self.state is AlarmState.ACTIVE_ACKED and not acked:
            out.append("active_acked without an acknowledgement")
        if self.state.unacked and acked:
            out.append(f"{self.state} with an acknowledgement")
        if self.state is AlarmState.CLEARED_UNACKED and self.cleared_ms is None:
            out.append("cleared_unacked without cleared_ms")
        if self.state.active and self.cleared_ms is not None:
            out.append(f"{self.state} with cleared_ms")
        if self.state is not AlarmState.NORMAL and (self.raised_ms is None or self.activations < 1):
            out.append(f"{self.state} without an activation")
        if self.suppressed and self.state is not AlarmState.ACTIVE_UNACKED:
            out.append(f"suppressed in {self.state}")
        shelf = (self.shelved_until_ms, self.shelved_by, self.shelved_reason)
        if any(v is None for v in shelf) and any(v is not None for v in shelf):
            out.append("shelved_until_ms/shelved_by/shelved_reason not set together")
        if self.priority not in PRIORITIES:
            out.append(f"unknown priority {self.priority!r}")
        return out


class Outcome(enum.StrEnum):
    """What became of an operator action (ack, shelve, unshelve) or queued request."""

    OK = "ok"
    NOT_FOUND = "not_found"  # no alarm with that id has ever been raised on this gateway
    ALREADY_ACKED = "already_acked"  # the activation is acknowledged already (no event)
    NOT_ACTIVE = "not_active"  # the alarm is normal: nothing to acknowledge
    STALE = "stale"  # the ack names another activation (raised_ms) than the current one
    ALREADY_SHELVED = "already_shelved"  # shelved already, same expiry, by and reason
    NOT_SHELVED = "not_shelved"
    INVALID = "invalid"  # a bad argument (expiry in the past or too far, empty name, unknown kind)
    EXPIRED = "expired"  # a queued request waited too long to be applied

    @property
    def ok(self) -> bool:
        return self is Outcome.OK


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one operator action: ``event`` is the transition's event, or None (and
    ``detail`` says why) when nothing changed."""

    outcome: Outcome
    detail: str
    alarm: Alarm | None = None
    event: Event | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def text(self) -> str:
        """``"<outcome>: <detail>"``, the form stored in ``alarm_requests.result``."""
        return f"{self.outcome.value}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Request:
    """An operator action queued in ``alarm_requests`` by a process other than the gateway."""

    id: int
    kind: str  # one of REQUEST_KINDS; anything else is answered with Outcome.INVALID
    alarm_id: str
    by: str
    requested_ms: int
    until_ms: int | None = None
    reason: str = ""
    raised_ms: int | None = None  # ack only: the activation the person saw (None: the current one)
    done_ms: int | None = None
    result: str | None = None


@dataclass(frozen=True, slots=True)
class RequestResult:
    request: Request
    result: Result

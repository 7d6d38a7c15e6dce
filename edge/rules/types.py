"""The records rules exchange with alarms and interlocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gascore.records import Value

Priority = Literal["low", "medium", "high", "critical"]


@dataclass(frozen=True, slots=True)
class Message:
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class ConditionChange:
    """A rule's condition became active or inactive (after its delays and hysteresis).

    ``condition_id`` is stable across restarts and config reloads: ``<device>.<rule id>``.
    ``value`` is the value that decided the change (for the alarm message), ``inputs`` the
    property values an expression rule looked at.
    """

    condition_id: str
    device: str
    rule: str
    active: bool
    ts_ms: int
    priority: Priority
    message: Message
    value: Value = None
    inputs: dict[str, Value] = field(default_factory=dict)
    source: str = ""  # the rule pack / template this rule came from (for the audit trail)

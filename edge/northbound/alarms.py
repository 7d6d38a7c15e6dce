"""Edge alarms as OPC-UA Alarms & Conditions (AlarmConditionType events from the Server object).

Every committed ``alarm.*`` event becomes a condition event: ConditionId (one object per alarm
under Objects/Station/Alarms), SourceNode/SourceName (the device), ConditionName (the rule),
Message (Chinese), Severity (from the ISA-18.2 priority), ActiveState, AckedState, Retain.

``Acknowledge`` (called on the condition with the EventId the client saw) goes to the edge alarm
engine as an acknowledgement by the logged-in user (origin ``opcua``); the resulting
``alarm.acked`` event is what the cloud receives, like any other ack.  ``ConditionRefresh``
re-sends the retained conditions to the asking subscription between RefreshStart/RefreshEnd.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from edge.northbound.access import CURRENT_USER
from edge.northbound.address_space import node_id, ns0
from gascore.records import Event

log = logging.getLogger(__name__)

SEVERITY = {"low": 200, "medium": 500, "high": 700, "critical": 900}
_ACTIVE = {"active_unacked", "active_acked"}
_UNACKED = {"active_unacked", "cleared_unacked"}

AckHandler = Callable[[str, str, int | None], Awaitable[tuple[str, str]]]
"""(alarm id, by, raised_ms) → (outcome, detail), outcome as the alarm engine names it."""

_ACK_STATUS = {
    "ok": StatusCodes.Good,
    "already_acked": StatusCodes.BadConditionBranchAlreadyAcked,
    "not_found": StatusCodes.BadNodeIdUnknown,
    "not_active": StatusCodes.BadConditionBranchAlreadyAcked,
    "stale": StatusCodes.BadEventIdUnknown,
}


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


@dataclass
class _Condition:
    node: Node
    device: str
    data: dict[str, Any]
    ts_ms: int
    event_ids: set[bytes] = field(default_factory=set)  # events of the current state (refresh copies too)

    @property
    def retained(self) -> bool:
        return self.data.get("state") != "normal"


class AlarmBridge:
    def __init__(self, server: Server, ns: int, station_node: Node, device_nodes: dict[str, Node]) -> None:
        self._server = server
        self._ns = ns
        self._station_node = station_node
        self.device_nodes = device_nodes  # replaced on reload
        self._folder: Node | None = None
        self._generator: EventGenerator | None = None
        self._refresh: tuple[EventGenerator, EventGenerator] | None = None
        self._conditions: dict[str, _Condition] = {}
        self.ack_handler: AckHandler | None = None

    async def start(self) -> None:
        self._folder = await self._station_node.add_object(
            node_id(self._ns, "Alarms"), ua.QualifiedName("Alarms", self._ns)
        )
        server_node = self._server.nodes.server.nodeid
        self._generator = await self._server.get_event_generator(ObjectIds.AlarmConditionType, server_node)
        self._refresh = (
            await self._server.get_event_generator(ObjectIds.RefreshStartEventType, server_node),
            await self._server.get_event_generator(ObjectIds.RefreshEndEventType, server_node),
        )
        self._server.link_method(
            self._server.get_node(ns0(ObjectIds.AcknowledgeableConditionType_Acknowledge)), self._ack
        )
        self._server.link_method(
            self._server.get_node(ns0(ObjectIds.ConditionType_ConditionRefresh)), self._refresh_all
        )

    def known(self, alarm_id: str) -> bool:
        return alarm_id in self._conditions

    async def load(self, events: Iterable[Event]) -> None:
        """The current state of every alarm (at start): conditions exist, nothing is sent."""
        for event in events:
            await self._condition(event)

    async def on_events(self, events: Iterable[Event]) -> None:
        for event in events:
            if not event.kind.startswith("alarm."):
                continue
            cond = await self._condition(event)
            cond.event_ids = set()
            await self._send(cond, event.data.get("alarm_id", ""), None)

    async def _condition(self, event: Event) -> _Condition:
        alarm_id = str(event.data.get("alarm_id"))
        cond = self._conditions.get(alarm_id)
        if cond is None:
            assert self._folder is not None
            node = await self._folder.add_object(
                node_id(self._ns, f"Alarms.{alarm_id}"), ua.QualifiedName(alarm_id, self._ns)
            )
            cond = _Condition(node, event.device, dict(event.data), event.ts_ms)
            self._conditions[alarm_id] = cond
        cond.data = dict(event.data)
        cond.ts_ms = event.ts_ms
        return cond

    async def _send(self, cond: _Condition, alarm_id: str, subscription_id: int | None) -> None:
        assert self._generator is not None
        ev: Any = self._generator.event
        data, state = cond.data, str(cond.data.get("state"))
        device = self.device_nodes.get(cond.device)
        ev.SourceNode = device.nodeid if device is not None else self._station_node.nodeid
        ev.SourceName = cond.device
        ev.Severity = SEVERITY.get(str(data.get("priority")), 500)
        ev.ConditionName = str(data.get("rule"))
        ev.add_property("NodeId", cond.node.nodeid, ua.VariantType.NodeId)  # the ConditionId field
        ev.Retain = cond.retained
        ev.add_property("ActiveState/Id", state in _ACTIVE, ua.VariantType.Boolean)
        ev.add_property("AckedState/Id", state not in _UNACKED, ua.VariantType.Boolean)
        ev.add_property("EnabledState/Id", True, ua.VariantType.Boolean)
        ev.ActiveState = ua.LocalizedText("Active" if state in _ACTIVE else "Inactive", "en")
        ev.AckedState = ua.LocalizedText("Unacknowledged" if state in _UNACKED else "Acknowledged", "en")
        ev.EnabledState = ua.LocalizedText("Enabled", "en")
        ev.add_property(
            "SuppressedOrShelved",
            bool(data.get("shelved_until_ms")) or not data.get("annunciated", True),
            ua.VariantType.Boolean,
        )
        ev.Quality = _status(StatusCodes.Good)
        message = str(data.get("message_zh") or data.get("message_en") or alarm_id)
        when = datetime.fromtimestamp(cond.ts_ms / 1000, UTC)
        ev.Message = ua.LocalizedText(message, "zh-CN")  # trigger() would drop the locale
        await self._generator.trigger(time_attr=when, subscription_id=subscription_id)
        event_id = ev.EventId.Value if isinstance(ev.EventId, ua.Variant) else ev.EventId
        cond.event_ids.add(bytes(event_id))

    async def _ack(self, parent: ua.NodeId, event_id: Any, comment: Any = None) -> ua.StatusCode:
        by = CURRENT_USER.get()
        alarm_id = next((a for a, c in self._conditions.items() if c.node.nodeid == parent), None)
        if alarm_id is None:
            return _status(StatusCodes.BadNodeIdUnknown)
        cond = self._conditions[alarm_id]
        raw = event_id.Value if isinstance(event_id, ua.Variant) else event_id
        if not isinstance(raw, bytes) or raw not in cond.event_ids:
            log.warning("opcua: %s acknowledged %s with an unknown EventId", by, alarm_id)
            return _status(StatusCodes.BadEventIdUnknown)
        if self.ack_handler is None:
            return _status(StatusCodes.BadNotSupported)
        raised = cond.data.get("raised_ms")
        outcome, detail = await self.ack_handler(alarm_id, f"{by} (opcua)", raised if isinstance(raised, int) else None)
        log.info("opcua: %s acknowledged %s: %s %s", by, alarm_id, outcome, detail)
        return _status(_ACK_STATUS.get(outcome, StatusCodes.BadInvalidState))

    async def _refresh_all(self, parent: ua.NodeId, subscription_id: Any = None) -> ua.StatusCode:
        sub = subscription_id.Value if isinstance(subscription_id, ua.Variant) else subscription_id
        assert self._refresh is not None
        start, end = self._refresh
        await start.trigger(subscription_id=sub)
        for alarm_id, cond in self._conditions.items():
            if cond.retained:
                await self._send(cond, alarm_id, sub)
        await end.trigger(subscription_id=sub)
        return _status(StatusCodes.Good)

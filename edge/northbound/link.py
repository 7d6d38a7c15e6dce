"""How a running gateway and its OPC-UA server are tied together: the store feeds the server
(values and alarm events after each commit, history inside each commit), the server calls back
into the gateway (writes and services through ``edge.control``, acks through the alarm engine).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge.alarms.manager import alarm_event
from edge.alarms.model import AlarmState, EventKind
from edge.control import ControlRefused
from edge.northbound.history import HistoryTable
from edge.northbound.server import Handlers, NorthboundServer
from edge.poller import now_ms
from gascore.records import Event

if TYPE_CHECKING:
    from edge.runtime import Gateway

log = logging.getLogger(__name__)

_STATE_KIND = {
    AlarmState.ACTIVE_UNACKED: EventKind.RAISED,
    AlarmState.ACTIVE_ACKED: EventKind.ACKED,
    AlarmState.CLEARED_UNACKED: EventKind.CLEARED,
    AlarmState.NORMAL: EventKind.NORMAL,
}


def install_history(gateway: Gateway) -> HistoryTable | None:
    """Called at build: history is written from the first poll cycle on."""
    config = gateway.station.opcua_server
    if config is None or not config.history.enabled:
        return None
    table = HistoryTable(gateway.store.db, config.history.retention_days)
    gateway.store.writers.append(table.write)
    gateway.store.on_fresh_file.append(table.create)  # a damaged store file replaced while running
    return table


def handlers(gateway: Gateway) -> Handlers:
    async def write(device: str, point: str, value: Any, by: str) -> str:
        if gateway.control is None:
            return "refused: no control path"
        try:
            return str(await gateway.control.write(device, point, value, by=by, origin="opcua"))
        except ControlRefused as err:
            return f"refused: {err}"

    async def call(device: str, service: str, args: dict[str, Any], by: str) -> str:
        if gateway.control is None:
            return "refused: no control path"
        try:
            return str(await gateway.control.call(device, service, args, by=by, origin="opcua"))
        except ControlRefused as err:
            return f"refused: {err}"

    async def ack(alarm_id: str, by: str, raised_ms: int | None) -> tuple[str, str]:
        if gateway.local is None:
            return "not_found", "this gateway has no alarms"
        return gateway.local.ack(alarm_id, by, raised_ms, origin="opcua")

    return Handlers(
        write=write,
        call=call,
        ack=ack,
        statuses=lambda: {d: s.snapshot() for d, s in gateway.statuses.items()},
    )


def current_alarms(gateway: Gateway) -> list[Event]:
    if gateway.local is None:
        return []
    return [alarm_event(a, _STATE_KIND[a.state], a.changed_ms) for a in gateway.local.alarms.alarms()]


async def attach(gateway: Gateway, server: NorthboundServer) -> None:
    server.attach(handlers(gateway))
    gateway.store.listeners.append(server.publish)
    await server.load_alarms(current_alarms(gateway))


def detach(gateway: Gateway, server: NorthboundServer) -> None:
    if server.publish in gateway.store.listeners:
        gateway.store.listeners.remove(server.publish)
    server.attach(Handlers())


def prune_history(gateway: Gateway) -> None:
    if gateway.history is not None:
        removed = gateway.history.prune(gateway.store.db, now_ms())
        if removed:
            log.debug("history: %d values past retention removed", removed)

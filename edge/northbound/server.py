"""The northbound OPC-UA server of a station.

Lifecycle: ``start()`` once (certificate made at first start, endpoints, users, address space,
history, alarms), ``attach()`` the running gateway's handlers (attached again after a config
reload, which also calls ``apply(station)`` to change the address space in place: sessions and
subscriptions of SCADA clients survive), ``publish()`` after each store commit, ``stop()``.

Values are written in commit order by one task, so a subscriber never sees an older value after a
newer one; a full queue (a stalled server) drops the oldest updates and counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from drivers.opcua.security import create_self_signed
from drivers.opcua.trust_dir import TrustDirectory, TrustDirError
from edge.config import Station
from edge.northbound.access import CURRENT_USER, Accounts, RolePermissions, StationUsers
from edge.northbound.address_space import (
    DIAGNOSTICS,
    MethodTarget,
    StationNodes,
    add_device,
    build_station,
    placeholder,
    remove_device,
    to_variant_value,
)
from edge.northbound.alarms import AckHandler, AlarmBridge
from edge.northbound.config import OpcUaServerConfig
from edge.northbound.history import QUALITY_STATUS, StoreHistory, quality_status
from edge.northbound.users import Role
from gascore.records import Event, Reading

log = logging.getLogger(__name__)

NAMESPACE_SUFFIX = ":station"
MAX_QUEUED_UPDATES = 200_000
WRITES_PER_YIELD = 250
"""Values written between two yields to the event loop.  asyncua notifies every subscription inside
each write without suspending, so one large commit would otherwise hold back Reads, Publishes and the
clients' keep-alive probes until all of it is written (5,000 values to three subscribers: hundreds of
ms on a 2-core gateway, scripts/bench/opcua_fanout.py)."""
_POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


class _WrittenValue(ua.DataValue):
    """A value the server writes once and never changes afterwards (a fresh object per reading, of
    immutable scalars).  asyncua deep-copies the written DataValue for every monitored item on every
    write, about 20 µs each: half the server's CPU at 5,000 values/s to three subscribers
    (scripts/bench/opcua_fanout.py).  A copy of a value nobody changes is the value itself."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> _WrittenValue:
        return self


WriteHandler = Callable[[str, str, Any, str], Awaitable[str]]
"""(device, property, value, by) → outcome text; raises ControlRefused."""
CallHandler = Callable[[str, str, dict[str, Any], str], Awaitable[str]]
"""(device, service, arguments, by) → outcome text; raises ControlRefused."""


class NorthboundError(Exception):
    """The OPC-UA server cannot start as configured."""


@dataclass
class Handlers:
    """What the running gateway lends the server (re-attached after a reload)."""

    write: WriteHandler | None = None
    call: CallHandler | None = None
    ack: AckHandler | None = None
    statuses: Callable[[], dict[str, dict[str, Any]]] = field(default=dict)


@dataclass(frozen=True, slots=True)
class Paths:
    certificate: Path
    private_key: Path
    trust_dir: Path

    @classmethod
    def of(cls, config: OpcUaServerConfig, data_dir: Path) -> Paths:
        pki = data_dir / "pki"
        return cls(
            config.certificate or pki / "opcua-server-cert.der",
            config.private_key or pki / "opcua-server-key.pem",
            config.trust_dir or pki / "opcua-clients",
        )


class NorthboundServer:
    def __init__(self, station: Station, store_path: Path) -> None:
        config = station.opcua_server
        if config is None:
            raise NorthboundError("the station has no opcua_server section")
        self.station = station
        self.config: OpcUaServerConfig = config
        self.paths = Paths.of(config, station.data_dir)
        self.application_uri = config.application_uri or f"urn:gasiot:{station.config.gateway.id}:server"
        self._store_path = store_path
        self.accounts = Accounts.from_config(config)
        self.handlers = Handlers()
        self._server: Server | None = None
        self._nodes: StationNodes | None = None
        self._history: StoreHistory | None = None
        self._alarms: AlarmBridge | None = None
        self._queue: deque[tuple[list[Reading], list[Event]]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_status: dict[tuple[str, str], Any] = {}
        self.dropped_updates = 0
        self.port = 0

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        url = urlsplit(self.config.endpoint)
        host = url.hostname or "127.0.0.1"
        return f"opc.tcp://{host}:{self.port}{url.path}"

    async def start(self) -> None:
        secure = any(option != "None" for option in self.config.security)
        if secure:
            await asyncio.to_thread(self._ensure_certificate)
        TrustDirectory(self.paths.trust_dir).create()
        server = Server(user_manager=StationUsers(self.accounts))
        await server.init()
        url = urlsplit(self.config.endpoint)
        server.set_endpoint(self.config.endpoint)
        server.set_server_name(f"gasiot {self.station.config.gateway.name or self.station.config.gateway.id}")
        await server.set_application_uri(self.application_uri)
        if secure:
            await server.load_certificate(str(self.paths.certificate))
            await server.load_private_key(str(self.paths.private_key))
        permissions = RolePermissions(lambda: self.accounts, self._method_role)
        server.set_security_policy(
            [_POLICIES[o] for o in self.config.security],
            permission_ruleset=permissions,  # type: ignore[arg-type]  # asyncua types only its own ruleset
        )
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.config.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(self._validate_client)
        ns = await server.register_namespace(f"urn:gasiot:{self.station.config.gateway.id}{NAMESPACE_SUFFIX}")
        history = self.config.history.enabled
        self._nodes = await build_station(server, ns, self.station, history=history, on_method=self._on_method)
        if history:
            self._history = StoreHistory(
                self._store_path, self._history_points(), self.config.history.max_values_per_read
            )
            server.iserver.history_manager.set_storage(self._history)
        self._alarms = AlarmBridge(server, ns, self._nodes.station, self._nodes.devices)
        await self._alarms.start()
        try:
            await server.start()
        except OSError as err:
            with contextlib.suppress(Exception):
                await server.stop()
            raise NorthboundError(
                f"opcua_server.endpoint {self.config.endpoint}: cannot listen: {err.strerror}"
            ) from err
        self._server = server
        assert server.bserver is not None
        self.port = int(server.bserver.port)
        if url.port == 0:  # asyncua advertises ":0"; clients must see the bound port
            for ep in await server.get_endpoints():
                ep.EndpointUrl = self.endpoint
                ep.Server.DiscoveryUrls = [self.endpoint]
        self._tasks = [
            asyncio.create_task(self._write_values(), name="opcua-values"),
            asyncio.create_task(self._refresh_diagnostics(), name="opcua-diagnostics"),
        ]
        log.info(
            "OPC-UA server on %s (%s), %d devices, %d users%s",
            self.endpoint,
            ", ".join(self.config.security),
            len(self._nodes.devices),
            len(self.accounts.users),
            ", anonymous viewer" if self.config.allow_anonymous else "",
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        server, self._server = self._server, None
        if server is None:
            return
        clock: asyncio.Task[None] | None = getattr(server.iserver, "time_task", None)
        if clock is not None:  # asyncua's clock sleeps a second between ticks; stop() would wait for it
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock
            server.iserver.time_task = None
        try:
            await server.stop()
        except (OSError, RuntimeError) as err:
            log.warning("OPC-UA server: error while stopping: %s", err)

    def attach(self, handlers: Handlers) -> None:
        self.handlers = handlers
        if self._alarms is not None:
            self._alarms.ack_handler = handlers.ack

    async def load_alarms(self, events: Sequence[Event]) -> None:
        """Current alarm states (at start and after a reload), so ConditionRefresh shows them."""
        if self._alarms is not None:
            await self._alarms.load(events)

    # ---- data ---------------------------------------------------------------------------------

    def publish(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        """After a store commit (called in the event loop; never blocks)."""
        if not readings and not events:
            return
        if len(self._queue) >= MAX_QUEUED_UPDATES:
            dropped_readings, _ = self._queue.popleft()
            self.dropped_updates += len(dropped_readings)
        self._queue.append((list(readings), [e for e in events if e.kind.startswith("alarm.")]))
        self._wake.set()

    async def _write_values(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                readings, events = self._queue.popleft()
                await self._apply_readings(readings)
                if events and self._alarms is not None:
                    try:
                        await self._alarms.on_events(events)
                    except Exception:
                        log.exception("OPC-UA alarm events failed")  # never stop the value updates

    async def _apply_readings(self, readings: Sequence[Reading]) -> None:
        server, nodes = self._server, self._nodes
        if server is None or nodes is None:
            return
        now = cast("ua.DateTime", datetime.now(UTC))
        for i, r in enumerate(readings, 1):
            if i % WRITES_PER_YIELD == 0:
                await asyncio.sleep(0)  # a yield, not a wait: see WRITES_PER_YIELD
                if self._server is not server:  # stopped meanwhile
                    return
            target = nodes.points.get((r.device, r.point))
            if target is None:
                continue
            node, vtype = target
            try:
                variant = placeholder(vtype) if r.value is None else ua.Variant(to_variant_value(vtype, r.value), vtype)
            except (TypeError, ValueError):
                variant, quality = placeholder(vtype), "bad/device_error"
            else:
                quality = r.quality
            dv = _WrittenValue(
                variant,
                StatusCode=quality_status(quality),
                SourceTimestamp=cast("ua.DateTime", datetime.fromtimestamp(r.ts_ms / 1000, UTC)),
                ServerTimestamp=now,
            )
            await server.write_attribute_value(node.nodeid, dv)

    async def _refresh_diagnostics(self) -> None:
        while True:
            await self._write_diagnostics()
            await asyncio.sleep(1.0)  # a display refresh period, not synchronisation

    async def _write_diagnostics(self) -> None:
        server, nodes = self._server, self._nodes
        if server is None or nodes is None:
            return
        statuses = self.handlers.statuses()
        for device, variables in nodes.diagnostics.items():
            status = statuses.get(device)
            if status is None:
                continue
            for name, (node, vtype) in variables.items():
                key = DIAGNOSTICS[name][0]
                value = status.get(key)
                if self._last_status.get((device, name), object()) == value:
                    continue
                self._last_status[(device, name)] = value
                if value is None and vtype is ua.VariantType.String:
                    dv = ua.DataValue(ua.Variant("", vtype))
                elif value is None:
                    dv = ua.DataValue(
                        placeholder(vtype),
                        StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.UncertainNoCommunicationLastUsableValue)),
                    )
                elif vtype is ua.VariantType.DateTime:
                    dv = ua.DataValue(ua.Variant(datetime.fromtimestamp(value / 1000, UTC), vtype))
                elif vtype is ua.VariantType.Double:
                    dv = ua.DataValue(ua.Variant(float(value), vtype))
                elif vtype is ua.VariantType.UInt32:
                    dv = ua.DataValue(ua.Variant(int(value), vtype))
                elif vtype is ua.VariantType.Boolean:
                    dv = ua.DataValue(ua.Variant(bool(value), vtype))
                else:
                    dv = ua.DataValue(ua.Variant(str(value), vtype))
                await server.write_attribute_value(node.nodeid, dv)

    # ---- methods ------------------------------------------------------------------------------

    def _method_role(self, method: ua.NodeId) -> Role | None:
        target = self._nodes.methods.get(method) if self._nodes is not None else None
        if target is None:
            return None
        return Role.OPERATOR if target.kind == "write" else Role.ENGINEER

    async def _on_method(self, device: str, name: str, args: dict[str, Any]) -> str:
        by = f"{CURRENT_USER.get()} (opcua)"
        nodes = self._nodes
        target = next(
            (t for t in (nodes.methods.values() if nodes else []) if t.device == device and t.name == name), None
        )
        if target is None:
            raise LookupError(f"no method {device}.{name}")
        return await self._execute(target, args, by)

    async def _execute(self, target: MethodTarget, args: dict[str, Any], by: str) -> str:
        if target.kind == "write":
            if self.handlers.write is None:
                return "refused: the gateway is not running"
            return await self.handlers.write(target.device, target.name, args.get("value"), by)
        if self.handlers.call is None:
            return "refused: the gateway is not running"
        return await self.handlers.call(target.device, target.name, args, by)

    # ---- security -----------------------------------------------------------------------------

    def _ensure_certificate(self) -> None:
        cert, key = self.paths.certificate, self.paths.private_key
        if cert.is_file() and key.is_file():
            return
        host = urlsplit(self.config.endpoint).hostname or "localhost"
        names = sorted({host, socket.gethostname(), "localhost", "127.0.0.1"} - {"0.0.0.0", "::"})  # noqa: S104
        create_self_signed(cert, key, self.application_uri, hostnames=names, server=True)
        log.info("OPC-UA server certificate created: %s (give it to the SCADA administrator to trust)", cert)

    async def _validate_client(self, cert: Any, app_description: ua.ApplicationDescription) -> None:
        from asyncua.common.utils import ServiceError
        from cryptography.hazmat.primitives.serialization import Encoding

        der = cert.public_bytes(Encoding.DER)
        store = TrustDirectory(self.paths.trust_dir)
        try:
            verdict = await asyncio.to_thread(store.verdict, der)
        except TrustDirError as err:
            log.error("OPC-UA trust_dir %s: %s", self.paths.trust_dir, err)  # noqa: TRY400
            raise ServiceError(StatusCodes.BadCertificateUntrusted) from err
        if not verdict.trusted:
            with contextlib.suppress(OSError, TrustDirError):
                await asyncio.to_thread(store.reject, der)
            log.warning(
                "OPC-UA client %s refused: %s; to trust it: gasiot keys trust %s %s",
                app_description.ApplicationUri,
                verdict.reason,
                self.paths.trust_dir,
                _fingerprint(der)[:16],
            )
            raise ServiceError(StatusCodes.BadCertificateUntrusted)

    # ---- reload -------------------------------------------------------------------------------

    async def apply(self, station: Station) -> list[str]:
        """Follow a new station config without restarting: users and roles, devices and points.
        Returns what still needs a restart (endpoint, security, certificate paths)."""
        assert station.opcua_server is not None
        new = station.opcua_server
        restart = [
            name
            for name in ("endpoint", "security", "application_uri", "certificate", "private_key", "trust_dir")
            if getattr(new, name) != getattr(self.config, name)
        ]
        self.accounts = Accounts.from_config(new)
        users = self._server.iserver.user_manager if self._server is not None else None
        if isinstance(users, StationUsers):
            users.accounts = self.accounts
        old_station, self.station, self.config = self.station, station, new
        nodes, server = self._nodes, self._server
        if nodes is not None and server is not None:
            before = _device_signatures(old_station)
            after = _device_signatures(station)
            for device in [d for d in before if before[d] != after.get(d)]:
                await remove_device(server, nodes, device)
                self._last_status = {k: v for k, v in self._last_status.items() if k[0] != device}
            for device in [d for d in after if before.get(d) != after[d]]:
                await add_device(nodes, station, device, history=self.config.history.enabled, on_method=self._on_method)
            if self._history is not None:
                self._history.points = self._history_points()
            if self._alarms is not None:
                self._alarms.device_nodes = nodes.devices
            changed = sorted(d for d in set(before) | set(after) if before.get(d) != after.get(d))
            if changed:
                log.info("OPC-UA address space updated for: %s", ", ".join(changed))
        if restart:
            log.warning("opcua_server: %s changed; restart the gateway to apply", ", ".join(restart))
        return restart

    def _history_points(self) -> dict[ua.NodeId, tuple[str, str, ua.VariantType]]:
        assert self._nodes is not None
        return {node.nodeid: (device, point, vtype) for (device, point), (node, vtype) in self._nodes.points.items()}


def _device_signatures(station: Station) -> dict[str, str]:
    """What of a device shapes its nodes: model, bound points, services, names."""
    out = {}
    for device in station.config.devices:
        model = station.model_of(device)
        out[device.id] = repr((model.model_dump(), sorted(device.points), sorted(device.services)))
    return out


def _fingerprint(der: bytes) -> str:
    import hashlib

    return hashlib.sha256(der).hexdigest()


__all__ = ["QUALITY_STATUS", "Handlers", "NorthboundError", "NorthboundServer"]

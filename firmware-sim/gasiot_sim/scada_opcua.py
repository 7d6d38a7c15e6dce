"""Serve a simulated gate station (门站) SCADA over OPC-UA (asyncua server, one port per station).

Independent of the gateway code: it uses asyncua's server, never ``drivers``.  The physics
(:class:`GateStation`) is deterministic for a seed and a fixed step; the server publishes every
output on each tick with the tick's time as SourceTimestamp (what a field RTU would stamp) and
reads the writable inputs (outlet setpoint, bypass valve) back from the address space.

Scenarios: ``restart`` (after ``scenario_after_s`` the server goes away for ``down_s`` and comes
back on the same port, sessions and subscriptions gone, as a SCADA server restart does) and
``node_removed`` (after ``scenario_after_s`` the node ``removed_node`` is deleted, as after a
SCADA reconfiguration).  Both are also callable directly: :meth:`ScadaSimServer.restart`,
:meth:`ScadaSimServer.remove_node`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import math
import random
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from asyncua import ua
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

_log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:gasiot:sim:gate-station"
APPLICATION_URI = "urn:gasiot:sim:scada"
SCENARIOS = ("normal", "restart", "node_removed")
Scenario = Literal["normal", "restart", "node_removed"]
Value = float | int | bool | str | datetime

FIELD_LATENCY = timedelta(milliseconds=150)  # SourceTimestamp lags the server clock by the RTU link
_MAX_TICK_GAP_S = 1.0  # after a stall do not jump the physics far ahead


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One variable: ``ns=<station ns>;s=<name>`` under GateStation/<folder>/<leaf>."""

    vtype: ua.VariantType
    unit: str = ""
    writable: bool = False


NODES: dict[str, NodeSpec] = {
    "Inlet.Pressure": NodeSpec(ua.VariantType.Double, "MPa"),
    "Inlet.Temperature": NodeSpec(ua.VariantType.Double, "°C"),
    "Outlet.Pressure": NodeSpec(ua.VariantType.Double, "MPa"),
    "Outlet.Temperature": NodeSpec(ua.VariantType.Double, "°C"),
    "Outlet.PressureSetpoint": NodeSpec(ua.VariantType.Double, "MPa", writable=True),
    "Metering.Flow": NodeSpec(ua.VariantType.Double, "Nm3/h"),
    "Metering.Volume": NodeSpec(ua.VariantType.Double, "Nm3"),
    "Valves.InletOpen": NodeSpec(ua.VariantType.Boolean),
    "Valves.OutletOpen": NodeSpec(ua.VariantType.Boolean),
    "Valves.BypassOpen": NodeSpec(ua.VariantType.Boolean, writable=True),
    "Station.Name": NodeSpec(ua.VariantType.String),
    "Station.AlarmCount": NodeSpec(ua.VariantType.UInt32),
    "Station.LastMaintenance": NodeSpec(ua.VariantType.DateTime),  # a type gateways do not take
}
INPUTS = frozenset(name for name, spec in NODES.items() if spec.writable)


class GateStation:
    """Gate-station physics, no I/O.

    Inlet: transmission line 3.6–4.4 MPa (mean-reverting random walk around 4.0), ground
    temperature ≈ 8 °C.  Flow follows a "day" of ``flow_period_s`` between ≈ 4,000 and 16,000
    Nm3/h plus noise; zero with the outlet valve closed.  Outlet pressure follows the setpoint
    (default 0.40 MPa) with a 3 s lag and droops 0.01 MPa at full flow; the bypass valve puts
    the outlet on the inlet through a restriction (outlet rises toward 1.6 MPa).  Outlet
    temperature: Joule–Thomson cooling 4.5 K per MPa of pressure drop, less a water-bath heater
    that adds 14 K.  Volume integrates flow.  An alarm counts each rise of the outlet pressure
    above setpoint + 0.05 MPa.
    """

    def __init__(self, *, seed: int = 0, flow_period_s: float = 600.0) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulation noise
        self.flow_period_s = flow_period_s
        self.t = 0.0
        self.inlet_pressure = 4.0
        self.inlet_temperature = 8.0
        self.setpoint = 0.40
        self.outlet_pressure = 0.40
        self.flow = 0.0
        self.volume = 1_234_567.0
        self.inlet_open = True
        self.outlet_open = True
        self.bypass_open = False
        self.alarm_count = 0
        self._alarm = False
        self.step(0.0)

    def step(self, dt_s: float) -> None:
        rng = self._rng
        self.t += dt_s
        self.inlet_pressure += 0.05 * (4.0 - self.inlet_pressure) * dt_s + rng.gauss(0, 0.004) * math.sqrt(dt_s)
        self.inlet_pressure = min(4.4, max(3.6, self.inlet_pressure))
        self.inlet_temperature = 8.0 + 0.5 * math.sin(2 * math.pi * self.t / (4 * self.flow_period_s))
        self.inlet_temperature += rng.gauss(0, 0.02)
        if self.inlet_open and self.outlet_open:
            day = 0.5 - 0.5 * math.cos(2 * math.pi * self.t / self.flow_period_s)
            self.flow = max(0.0, 4000 + 12000 * day + rng.gauss(0, 80))
        else:
            self.flow = 0.0
        if self.bypass_open and self.inlet_open:
            target = min(1.6, self.inlet_pressure)
        elif self.inlet_open:
            target = self.setpoint - 0.01 * self.flow / 16000
        else:
            target = 0.0
        lag = 1 - math.exp(-dt_s / 3.0) if dt_s > 0 else 0.0
        self.outlet_pressure += (target - self.outlet_pressure) * lag + rng.gauss(0, 0.0005) * math.sqrt(dt_s)
        self.outlet_pressure = max(0.0, self.outlet_pressure)
        self.volume += self.flow * dt_s / 3600
        alarm = self.outlet_pressure > self.setpoint + 0.05
        if alarm and not self._alarm:
            self.alarm_count += 1
        self._alarm = alarm

    @property
    def outlet_temperature(self) -> float:
        return self.inlet_temperature - 4.5 * (self.inlet_pressure - self.outlet_pressure) + 14.0

    def outputs(self) -> dict[str, Value]:
        """Every node's value in engineering units (inputs included)."""
        return {
            "Inlet.Pressure": round(self.inlet_pressure, 4),
            "Inlet.Temperature": round(self.inlet_temperature, 2),
            "Outlet.Pressure": round(self.outlet_pressure, 4),
            "Outlet.Temperature": round(self.outlet_temperature, 2),
            "Outlet.PressureSetpoint": self.setpoint,
            "Metering.Flow": round(self.flow, 1),
            "Metering.Volume": round(self.volume, 1),
            "Valves.InletOpen": self.inlet_open,
            "Valves.OutletOpen": self.outlet_open,
            "Valves.BypassOpen": self.bypass_open,
            "Station.Name": "Gate station 1 (simulated)",
            "Station.AlarmCount": self.alarm_count,
            "Station.LastMaintenance": datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        }


class _Users(UserManager):
    """asyncua user manager: the configured username/password pairs, nothing else."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class ScadaSimServer:
    """One simulated station on one TCP port.  ``start`` then ``stop``; restartable on the same port."""

    def __init__(
        self,
        *,
        seed: int = 0,
        tick_s: float | None = 0.5,
        security: bool = False,
        pki_dir: Path | None = None,
        users: Mapping[str, str] | None = None,
        scenario: Scenario = "normal",
        scenario_after_s: float = 5.0,
        down_s: float = 2.0,
        removed_node: str = "Metering.Flow",
        host: str = "127.0.0.1",
    ) -> None:
        """``tick_s=None``: no ticker; the physics moves only on :meth:`tick` (deterministic tests).
        ``security``: also offer Basic256Sha256 Sign and SignAndEncrypt with a self-signed
        certificate kept in ``pki_dir`` (a temporary folder if None).  ``users``: require one of
        these username/password pairs instead of anonymous access."""
        if tick_s is not None and tick_s <= 0:
            raise ValueError("tick_s must be > 0 (or None for manual ticks)")
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        if removed_node not in NODES:
            raise ValueError(f"unknown node {removed_node!r}")
        self.station = GateStation(seed=seed)
        self.tick_s = tick_s
        self.security = security
        self.users = dict(users) if users else None
        self.scenario = scenario
        self.scenario_after_s = scenario_after_s
        self.down_s = down_s
        self.removed_node = removed_node
        self.host = host
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if security and pki_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="scada-pki-")
            pki_dir = Path(self._tmp.name)
        self.pki_dir = pki_dir
        self.port: int | None = None
        self.starts = 0  # how often the server started (restarts show here)
        self.ticks = 0
        self._server: Server | None = None
        self._ns = 2
        self._removed: set[str] = set()
        self._served: dict[str, Value] = {}
        self._source_ts: dict[str, datetime] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._scenario_task: asyncio.Task[None] | None = None
        self._ticked = asyncio.Condition()

    # ------------------------------------------------------------------ properties

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"opc.tcp://{self.host}:{self.port}/gasiot/scada"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def certificate_path(self) -> Path:
        """The server certificate (DER): give it to clients as a trusted server certificate."""
        if self.pki_dir is None:
            raise RuntimeError("security is off: the server has no certificate")
        return self.pki_dir / "scada-cert.der"

    @property
    def private_key_path(self) -> Path:
        if self.pki_dir is None:
            raise RuntimeError("security is off: the server has no private key")
        return self.pki_dir / "scada-key.pem"

    def node_id(self, name: str) -> str:
        """The NodeId string of a node, as a binding's ``node:`` takes it."""
        return f"ns={self._ns};s={name}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        if self.security:
            await asyncio.to_thread(self._ensure_certificate)
        server = await self._build(port)
        try:
            await server.start()
        except OSError:
            await _quiet_stop(server)
            raise
        assert server.bserver is not None
        self.port = int(server.bserver.port)
        self._server = server
        self.starts += 1
        await self._fix_advertised_port(server)
        if self.tick_s is not None and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_forever(), name=f"scada-tick:{self.port}")
        if self.scenario != "normal" and self._scenario_task is None and self.starts == 1:
            self._scenario_task = asyncio.create_task(self._run_scenario(), name=f"scada-scenario:{self.port}")
        _log.info("SCADA simulator listening on %s (%s)", self.endpoint, self.scenario)
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop every session (the physics state is kept)."""
        for task in (self._ticker, self._scenario_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._scenario_task = None
        await self._shutdown()

    async def restart(self, down_s: float = 0.0) -> None:
        """Stop the server, stay away ``down_s``, start again on the same port."""
        await self._shutdown()
        if down_s > 0:
            await asyncio.sleep(down_s)
        assert self.port is not None
        await self.start(self.port)

    async def close(self) -> None:
        """Stop and remove the temporary certificate folder, if one was made."""
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> ScadaSimServer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._take_inputs()  # what clients wrote survives a restart
            self.snapshot()
        server, self._server = self._server, None
        if server is not None:
            await _quiet_stop(server)
            _log.info("SCADA simulator on port %s stopped", self.port)

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Value]:
        """Every node's value as currently served (removed nodes left out)."""
        if self._server is not None:
            for name in INPUTS - self._removed:
                self._served[name] = self._read_input(name)
        return {name: value for name, value in self._served.items() if name not in self._removed}

    def source_timestamp(self, name: str) -> datetime:
        """The SourceTimestamp served with the node's current value."""
        return self._source_ts[name]

    async def tick(self, dt_s: float | None = None) -> None:
        """Advance the physics one step (``dt_s``, default ``tick_s`` or 0.5 s) and publish."""
        self._take_inputs()
        self.station.step(dt_s if dt_s is not None else (self.tick_s or 0.5))
        await self._publish()
        self.ticks += 1
        async with self._ticked:
            self._ticked.notify_all()

    async def wait_ticks(self, count: int = 1) -> None:
        """Return after ``count`` more ticks have been published."""
        target = self.ticks + count
        async with self._ticked:
            await self._ticked.wait_for(lambda: self.ticks >= target)

    async def set_value(self, name: str, value: Value) -> None:
        """Set a node as if the field had changed it (for tests), published at once."""
        if name == "Outlet.PressureSetpoint":
            self.station.setpoint = float(value)  # type: ignore[arg-type]
        elif name == "Valves.BypassOpen":
            self.station.bypass_open = bool(value)
        elif name not in NODES:
            raise KeyError(name)
        await self._publish({name: value})

    async def remove_node(self, name: str) -> None:
        """Delete a node from the address space (and keep it deleted across restarts).

        Monitored items on it are told first with a BadNodeIdUnknown value, as a real server
        does: asyncua's own delete path would call its (async) data-change callbacks without
        awaiting them.
        """
        if name not in NODES:
            raise KeyError(name)
        self._removed.add(name)
        server = self._server
        if server is None:
            return
        node_id = _node_id(name, self._ns)
        bad = ua.DataValue(
            StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadNodeIdUnknown)), ServerTimestamp=cast(ua.DateTime, _now())
        )
        await server.write_attribute_value(node_id, bad)
        aspace = server.iserver.aspace
        with contextlib.suppress(KeyError):
            callbacks = aspace[node_id].attributes[AttributeIds.Value].datachange_callbacks
            for handle in list(callbacks):
                aspace.delete_datachange_callback(handle)
        await server.delete_nodes([server.get_node(node_id)])
        _log.warning("SCADA simulator: node %s removed", name)

    # ------------------------------------------------------------------ server

    async def _build(self, port: int) -> Server:
        user_manager = _Users(self.users) if self.users else None
        server = Server(user_manager=user_manager)
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{port}/gasiot/scada")
        server.set_server_name("gasiot simulated gate-station SCADA")
        await server.set_application_uri(APPLICATION_URI)
        policies = [ua.SecurityPolicyType.NoSecurity]
        if self.security:
            policies += [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
            await server.load_certificate(self.certificate_path)
            await server.load_private_key(self.private_key_path)
        server.set_security_policy(policies)
        server.set_identity_tokens([ua.UserNameIdentityToken] if self.users else [ua.AnonymousIdentityToken])
        self._ns = await server.register_namespace(NAMESPACE_URI)
        await self._add_nodes(server)
        return server

    async def _add_nodes(self, server: Server) -> None:
        ns = self._ns
        station = await server.nodes.objects.add_object(
            _node_id("GateStation", ns), ua.QualifiedName("GateStation", ns)
        )
        folders: dict[str, Any] = {}
        now = _now()
        values = {**self.station.outputs(), **self._served}
        for name, spec in NODES.items():
            if name in self._removed:
                continue
            folder_name, leaf = name.split(".", 1)
            folder = folders.get(folder_name)
            if folder is None:
                folder = folders[folder_name] = await station.add_object(
                    _node_id(folder_name, ns), ua.QualifiedName(folder_name, ns)
                )
            variable = await folder.add_variable(
                _node_id(name, ns), ua.QualifiedName(leaf, ns), ua.Variant(values[name], spec.vtype), spec.vtype
            )
            if spec.writable:
                await variable.set_writable()
            self._served[name] = values[name]
            self._source_ts[name] = self._source_ts.get(name, now - FIELD_LATENCY)
            await server.write_attribute_value(
                _node_id(name, ns), _datavalue(values[name], spec.vtype, self._source_ts[name], now)
            )

    async def _fix_advertised_port(self, server: Server) -> None:
        # Bound to port 0, asyncua still advertises ":0" in its endpoint descriptions.
        for endpoint in await server.get_endpoints():
            endpoint.EndpointUrl = self.endpoint
            endpoint.Server.DiscoveryUrls = [self.endpoint]

    def _ensure_certificate(self) -> None:
        if self.certificate_path.is_file() and self.private_key_path.is_file():
            return
        assert self.pki_dir is not None
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        key = generate_private_key()
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(APPLICATION_URI),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        cert = generate_self_signed_app_certificate(
            key,
            "gasiot simulated SCADA",
            {},
            sans,
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=365,
        )
        self.private_key_path.write_bytes(dump_private_key_as_pem(key))
        self.certificate_path.write_bytes(cert.public_bytes(Encoding.DER))

    # ------------------------------------------------------------------ ticking

    def _read_input(self, name: str) -> Value:
        assert self._server is not None
        dv = self._server.read_attribute_value(_node_id(name, self._ns))
        value = dv.Value.Value if dv.Value is not None else None
        return value if value is not None else self._served[name]

    def _take_inputs(self) -> None:
        """Writes by clients to the setpoint and the bypass valve reach the physics here."""
        if self._server is None:
            return
        if "Outlet.PressureSetpoint" not in self._removed:
            setpoint = float(self._read_input("Outlet.PressureSetpoint"))  # type: ignore[arg-type]
            self.station.setpoint = min(1.6, max(0.1, setpoint))
        if "Valves.BypassOpen" not in self._removed:
            self.station.bypass_open = bool(self._read_input("Valves.BypassOpen"))

    async def _publish(self, values: Mapping[str, Value] | None = None) -> None:
        if values is None:
            values = {name: value for name, value in self.station.outputs().items() if name not in INPUTS}
        now = _now()
        source = now - FIELD_LATENCY
        for name, value in values.items():
            if name in self._removed or (self._served.get(name) == value and name in self._source_ts):
                continue
            self._served[name] = value
            self._source_ts[name] = source
            if self._server is not None:
                await self._server.write_attribute_value(
                    _node_id(name, self._ns), _datavalue(value, NODES[name].vtype, source, now)
                )

    async def _tick_forever(self) -> None:
        assert self.tick_s is not None
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            await self.tick(min(now - last, _MAX_TICK_GAP_S))
            last = now

    async def _run_scenario(self) -> None:
        await asyncio.sleep(self.scenario_after_s)
        if self.scenario == "restart":
            _log.warning("SCADA simulator: restarting (down for %s s)", self.down_s)
            await self.restart(self.down_s)
        elif self.scenario == "node_removed":
            await self.remove_node(self.removed_node)


def _now() -> datetime:
    return datetime.now(UTC)


def _node_id(name: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(name), ua.Int16(ns))


def _datavalue(value: Value, vtype: ua.VariantType, source: datetime, server: datetime) -> ua.DataValue:
    return ua.DataValue(
        Value=ua.Variant(value, vtype),
        SourceTimestamp=cast(ua.DateTime, source),
        ServerTimestamp=cast(ua.DateTime, server),
    )


async def _quiet_stop(server: Server) -> None:
    # asyncua's clock task sleeps a second between updates and stop() waits for it: end it now.
    clock: asyncio.Task[None] | None = getattr(server.iserver, "time_task", None)
    if clock is not None:
        clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock
        server.iserver.time_task = None
    try:
        await server.stop()
    except (OSError, RuntimeError) as err:  # asyncua's own errors are RuntimeErrors
        _log.warning("SCADA simulator: error while stopping: %s", err)


async def run_scada(
    host: str,
    port: int,
    *,
    seed: int = 0,
    scenario: Scenario = "normal",
    security: bool = False,
    pki_dir: Path | None = None,
    on_ready: Callable[[ScadaSimServer], None] | None = None,
) -> None:
    """Serve one station until cancelled; ``on_ready(server)`` is called once it listens."""
    server = ScadaSimServer(seed=seed, scenario=scenario, security=security, pki_dir=pki_dir, host=host)
    await server.start(port)
    try:
        if on_ready is not None:
            on_ready(server)
        await asyncio.Event().wait()  # forever: the caller cancels
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gasiot_sim.scada_opcua", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="normal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--security", action="store_true", help="also offer Basic256Sha256 Sign/SignAndEncrypt")
    parser.add_argument("--pki", type=Path, default=None, help="folder for the server certificate (with --security)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("asyncua", "asyncua.server", "asyncua.common"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def ready(server: ScadaSimServer) -> None:
        sys.stdout.write(f"listening on {server.endpoint}\n")
        if server.security:
            sys.stdout.write(f"server certificate: {server.certificate_path}\n")
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_scada(
                args.host, args.port, seed=args.seed, scenario=args.scenario, security=args.security,
                pki_dir=args.pki, on_ready=ready,
            )
        )  # fmt: skip


if __name__ == "__main__":
    main()

"""The gateway's northbound OPC-UA server against a client nobody on this project wrote: node-opcua
(opcua_server_client.mjs), over Basic256Sha256 SignAndEncrypt with user logins.

The gateway runs here (tests/edge/northbound/northbound_kit.py: the regulator simulator, users
viewer1/operator1/engineer1); the node script is driven one request per line and waits for what
it is told to wait for (a value, an event) with a deadline of its own.  node-opcua makes its own
client certificate, which the test trusts in the gateway's trust dir, and it trusts the gateway's
certificate only once told to (unknown certificates are not accepted automatically).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.opcua.trust_dir import TrustDirectory
from edge.alarms.model import AlarmState
from gascore.records import Reading
from support.wait import eventually

pytestmark = pytest.mark.peer

HERE = Path(__file__).parent
SCRIPT = HERE / "opcua_server_client.mjs"
NS_URI = "urn:gasiot:gw-nb:station"  # the kit's gateway id is gw-nb
TAMPER = "ns=station;s=Alarms.dev0.tamper"  # the script puts the index of NS_URI for "station"


def _northbound_kit() -> ModuleType:
    """The running gateway of the asyncua server tests, so that both clients see the same server."""
    folder = str(HERE.parent / "edge" / "northbound")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module("northbound_kit")


kit = _northbound_kit()


# ---------------------------------------------------------------------- the peer


class PeerError(AssertionError):
    pass


class NodeClient:
    """One opcua_server_client.mjs process: ``ask`` sends a request line and reads its reply line."""

    def __init__(self, proc: asyncio.subprocess.Process, home: Path) -> None:
        self.proc = proc
        self.home = home
        self.certificate = home / "pki" / "own" / "certs" / "client_certificate.pem"  # told in the first reply
        self.other_output: list[str] = []  # node-opcua's own warnings on stdout

    @classmethod
    async def start(cls, node_bin: Path, endpoint: str, home: Path) -> NodeClient:
        home.mkdir(parents=True)
        with (home / "stderr.log").open("w") as stderr:  # the child keeps its own descriptor
            proc = await asyncio.create_subprocess_exec(
                str(node_bin),
                str(SCRIPT),
                "--endpoint",
                endpoint,
                "--pki",
                str(home / "pki"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "XDG_CONFIG_HOME": str(home)},  # node-opcua's defaults stay in tmp
                limit=1 << 20,
            )
        client = cls(proc, home)
        hello = await client._reply(timeout=30)  # a new RSA key and certificate
        client.certificate = Path(hello["certificate"])
        return client

    async def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await self.proc.stdout.readline()).decode()
                    if not line:
                        raise PeerError(f"opcua_server_client.mjs exited: {self.stderr()}")
                    if line.startswith("reply "):
                        reply: dict[str, Any] = json.loads(line[len("reply ") :])
                        return reply
                    self.other_output.append(line)
        except TimeoutError:
            raise PeerError(f"no reply from opcua_server_client.mjs in {timeout}s: {self.stderr()}") from None

    def stderr(self) -> str:
        return (self.home / "stderr.log").read_text()[-2000:]

    async def ask(self, op: str, *, timeout: float = 20, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._reply(timeout)

    async def ok(self, op: str, **args: Any) -> dict[str, Any]:
        reply = await self.ask(op, **args)
        if not reply["ok"]:
            raise PeerError(f"{op}: {reply.get('status')} {reply.get('error')}\n{self.stderr()}")
        return reply

    async def close(self) -> None:
        with contextlib.suppress(PeerError, OSError):
            await self.ask("quit", timeout=10)
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        (self.home / "stdout.log").write_text("".join(self.other_output))  # for a look after a failure

    def certificate_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.certificate.read_bytes()).public_bytes(Encoding.DER)


@contextlib.asynccontextmanager
async def node_client(
    node_bin: Path, running: Any, name: str, *, trusted: bool = True, trust_server: bool = True
) -> AsyncIterator[NodeClient]:
    client = await NodeClient.start(node_bin, running.endpoint, running.tmp / f"node-{name}")
    try:
        if trusted:
            TrustDirectory(running.server.paths.trust_dir).trust(client.certificate)
        if trust_server:
            await client.ok("trust_server", der=str(running.server.paths.certificate))
        yield client
    finally:
        await client.close()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Any]:
    """The kit's gateway; only node-opcua's certificate is trusted (the kit's asyncua one is not)."""
    async with kit.running_gateway(tmp_path, trust_client=False) as running:
        yield running


async def login(peer: NodeClient, user: str, name: str | None = None) -> int:
    reply = await peer.ok("connect", name=name or user, user=user, password=kit.PASSWORDS[user], namespace=NS_URI)
    assert (reply["securityMode"], reply["policy"]) == (
        "SignAndEncrypt",
        "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
    )
    assert reply["ns"] > 0
    return int(reply["ns"])


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


# ---------------------------------------------------------------------- tests


async def test_browse_read_subscribe_and_call_methods(node_opcua: Path, gateway: Any) -> None:
    sim = gateway.sim
    async with node_client(node_opcua, gateway, "a") as peer:
        ns = await login(peer, "viewer1")
        await login(peer, "operator1")

        # 1. Objects/Station/dev0: property variables and methods, found by browsing
        dev0 = await peer.ok("browse_path", name="viewer1", path=["Station", "dev0"])
        assert dev0["nodeId"] == f"ns={ns};s=dev0"
        variables = {c["browseName"]: c for c in dev0["children"] if c["nodeClass"] == "Variable"}
        assert {"inlet_pressure", "outlet_pressure", "setpoint", "temperature", "door_open"} <= set(variables)
        pressure = variables["outlet_pressure"]
        assert pressure["nodeId"] == f"ns={ns};s=dev0.outlet_pressure"
        assert pressure["displayName"] == "出口压力"
        attributes = ["DataType", "ValueRank", "AccessLevel", "UserAccessLevel", "Historizing"]
        reply = await peer.ok("attributes", name="viewer1", nodeId=pressure["nodeId"], attributes=attributes)
        # Double, scalar, CurrentRead | HistoryRead (so a SCADA offers its trend), historized
        assert reply["attributes"] == {
            "DataType": "ns=0;i=11",
            "ValueRank": -1,
            "AccessLevel": 5,
            "UserAccessLevel": 5,
            "Historizing": True,
        }
        methods = {c["browseName"] for c in dev0["children"] if c["nodeClass"] == "Method"}
        assert {"Set_setpoint", "set_outlet_pressure"} <= methods

        async def polled() -> bool:
            return (await peer.ok("read", name="viewer1", nodeId=pressure["nodeId"]))["status"] == "Good"

        await eventually(polled, what="a polled outlet pressure")
        value = await peer.ok("read", name="viewer1", nodeId=pressure["nodeId"])
        assert value["dataType"] == "Double"
        assert value["value"] == pytest.approx(sim.snapshot()["outlet_pressure"], abs=0.01)
        assert value["sourceTimestamp"] is not None

        properties = await peer.ok("browse", name="viewer1", nodeId=pressure["nodeId"])
        by_name = {c["browseName"]: c["nodeId"] for c in properties["children"]}
        eu = (await peer.ok("read", name="viewer1", nodeId=by_name["EngineeringUnits"]))["value"]
        assert eu["displayName"]["text"] == "kPa"
        assert eu["unitId"] == int.from_bytes(b"KPA", "big")
        assert eu["namespaceUri"] == "http://www.opcfoundation.org/UA/units/un/cefact"
        eu_range = (await peer.ok("read", name="viewer1", nodeId=by_name["EURange"]))["value"]
        assert (eu_range["low"], eu_range["high"]) == (0.0, 10.0)

        # 2. a data change after the simulated box changes
        item = (await peer.ok("subscribe", name="viewer1", nodeId=variables["setpoint"]["nodeId"]))["item"]
        before = float(sim.snapshot()["setpoint"])
        await peer.ok("wait_value", item=item, equals=before, tolerance=0.005)
        new = 2.7 if abs(before - 2.7) > 0.1 else 2.2
        sim.box.set_setpoint(new)
        sim.step(0.1)
        change = await peer.ok("wait_value", item=item, equals=new, tolerance=0.005)
        assert change["status"] == "Good"

        # 3. Set_setpoint: refused for a viewer, done for an operator (and seen by the subscriber)
        call = {"objectId": dev0["nodeId"], "methodId": f"ns={ns};s=dev0.Set_setpoint"}
        refused = await peer.ask("call", name="viewer1", **call, args=[{"type": "Double", "value": 3.1}])
        assert refused.get("status") == "BadUserAccessDenied", refused
        assert float(sim.snapshot()["setpoint"]) == pytest.approx(new, abs=0.01)
        done = await peer.ok("call", name="operator1", **call, args=[{"type": "Double", "value": 3.1}])
        assert done["status"] == "Good" and done["outputs"][0].startswith("done"), done
        assert float(sim.snapshot()["setpoint"]) == pytest.approx(3.1, abs=0.01)
        await peer.ok("wait_value", item=item, equals=3.1, tolerance=0.005)


async def test_alarm_condition_refresh_and_acknowledge(node_opcua: Path, gateway: Any) -> None:
    sim, local = gateway.sim, gateway.gateway.local
    assert local is not None
    async with node_client(node_opcua, gateway, "a") as peer:
        ns = await login(peer, "operator1")
        await login(peer, "viewer1")
        tamper = f"ns={ns};s=Alarms.dev0.tamper"
        await peer.ok("subscribe_events", name="operator1")
        quiet = await peer.ok("condition_refresh", name="operator1")
        assert quiet["status"] == "Good" and quiet["started"]
        assert tamper not in [e["ConditionId"] for e in quiet["events"]]

        sim.box.set_door(True)
        sim.step(0.1)
        live = {"name": "operator1", "conditionId": TAMPER, "refresh": False}
        raised = (await peer.ok("wait_event", **live, activeState=True))["event"]
        assert raised["ConditionId"] == tamper
        assert raised["EventType"] == "ns=0;i=2915"  # AlarmConditionType
        assert raised["AckedState.Id"] is False and raised["Retain"] is True
        assert raised["SourceName"] == "dev0" and raised["Severity"] > 0
        assert raised["Message"]["text"]

        refreshed = await peer.ok("condition_refresh", name="operator1")
        (condition,) = [e for e in refreshed["events"] if e["ConditionId"] == tamper]
        assert condition["ActiveState.Id"] is True and condition["AckedState.Id"] is False
        assert condition["Retain"] is True

        ack = {"conditionId": TAMPER, "eventId": condition["EventId"], "comment": "door checked on site"}
        denied = await peer.ask("acknowledge", name="viewer1", **ack)
        assert denied.get("status") == "BadUserAccessDenied", denied
        assert (await peer.ok("acknowledge", name="operator1", **ack))["status"] == "Good"
        acked = (await peer.ok("wait_event", **live, ackedState=True))["event"]
        assert acked["ActiveState.Id"] is True

    alarm = local.alarms.get("dev0.tamper")
    assert alarm is not None and alarm.state == AlarmState.ACTIVE_ACKED
    assert alarm.ack_origin == "opcua"
    assert alarm.acked_by is not None and "operator1" in alarm.acked_by


async def test_history_read_raw_with_continuation_points(node_opcua: Path, gateway: Any) -> None:
    base = 1_700_000_000_000  # 2023-11-14: far from the live polls, so only these values are in the window
    readings = [Reading("dev0", "temperature", base + 1000 * i, 10.0 + 0.5 * i) for i in range(7)]
    gateway.gateway.accept(readings, [])
    async with node_client(node_opcua, gateway, "a") as peer:
        await login(peer, "viewer1")
        history = await peer.ok(
            "history_raw",
            name="viewer1",
            nodeId="ns=station;s=dev0.temperature",
            start=iso(base - 500),
            end=iso(base + 60_000),
            perRequest=3,
        )
    assert history["status"] == "Good"
    assert [(v["value"], v["status"]) for v in history["values"]] == [(r.value, "Good") for r in readings]
    assert [datetime.fromisoformat(v["ts"]) for v in history["values"]] == [
        datetime.fromtimestamp(r.ts_ms / 1000, UTC) for r in readings
    ]
    assert history["requests"] == [
        {"count": 3, "continuation": True},
        {"count": 3, "continuation": True},
        {"count": 1, "continuation": False},
    ]


async def test_untrusted_certificates_and_wrong_password_are_refused(node_opcua: Path, gateway: Any) -> None:
    viewer = {"user": "viewer1", "namespace": NS_URI}
    async with node_client(node_opcua, gateway, "a", trust_server=False) as peer:
        # The client checks the server: its certificate is not trusted yet.
        unknown = await peer.ask("connect", name="v", password=kit.PASSWORDS["viewer1"], **viewer)
        assert not unknown["ok"] and unknown["status"] == "BadCertificateUntrusted", unknown
        assert "server certificate verification failed" in unknown["error"].lower(), unknown  # said by the client
        await peer.ok("trust_server", der=str(gateway.server.paths.certificate))
        wrong = await peer.ask("connect", name="v", password="not-the-password", **viewer)
        assert not wrong["ok"] and wrong["status"] in {"BadUserAccessDenied", "BadIdentityTokenRejected"}, wrong
        await peer.ok("connect", name="v", password=kit.PASSWORDS["viewer1"], **viewer)

    # The server checks the client: a new certificate nobody trusted is refused and kept for review.
    async with node_client(node_opcua, gateway, "b", trusted=False) as stranger:
        refused = await stranger.ask("connect", name="v", password=kit.PASSWORDS["viewer1"], **viewer)
        assert not refused["ok"] and refused["status"] == "BadCertificateUntrusted", refused
        rejected = list((gateway.server.paths.trust_dir / "rejected").iterdir())
        assert [p.read_bytes() for p in rejected] == [stranger.certificate_der()]

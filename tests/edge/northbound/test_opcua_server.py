"""The northbound OPC-UA server, seen by an asyncua client (the independent node-opcua client is
in tests/peers/test_peer_opcua_server.py): the address space, values with units and quality,
roles, methods with read-back, alarms as conditions, history, config reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import ua
from northbound_kit import Running, session

from support.wait import eventually

NS_URI = "urn:gasiot:gw-nb:station"


async def test_address_space_units_and_values(running: Running) -> None:
    async with session(running, "viewer1") as client:
        ns = await client.get_namespace_index(NS_URI)
        var = client.get_node(ua.NodeId("dev0.outlet_pressure", ns))
        assert (await var.read_browse_name()).Name == "outlet_pressure"
        assert (await var.read_display_name()).Text == "出口压力"
        eu = await (await var.get_child(["0:EngineeringUnits"])).read_value()
        assert eu.DisplayName.Text == "kPa" and eu.UnitId == int.from_bytes(b"KPA", "big")
        rng = await (await var.get_child(["0:EURange"])).read_value()
        assert (rng.Low, rng.High) == (0.0, 10.0)

        async def value_is_there() -> bool:
            dv = await var.read_data_value(raise_on_bad_status=False)
            return dv.StatusCode.is_good()

        await eventually(value_is_there, what="a polled value")
        dv = await var.read_data_value()
        assert dv.Value.Value == pytest.approx(running.sim.snapshot()["outlet_pressure"], abs=0.01)
        assert dv.SourceTimestamp is not None
        online = client.get_node(ua.NodeId("dev0.Diagnostics.Online", ns))

        async def is_online() -> bool:
            return (await online.read_data_value(raise_on_bad_status=False)).Value.Value is True

        await eventually(is_online, what="device online in Diagnostics")


async def test_roles_on_methods_with_read_back(running: Running) -> None:
    async with session(running, "viewer1") as viewer, session(running, "operator1") as operator:
        ns = await viewer.get_namespace_index(NS_URI)
        device = ua.NodeId("dev0", ns)
        set_setpoint = ua.NodeId("dev0.Set_setpoint", ns)
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await viewer.get_node(device).call_method(set_setpoint, ua.Variant(3.1, ua.VariantType.Double))
        outcome = await operator.get_node(device).call_method(set_setpoint, ua.Variant(3.1, ua.VariantType.Double))
        assert outcome.startswith("done"), outcome
        assert running.sim.snapshot()["setpoint"] == pytest.approx(3.1, abs=0.01)
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidArgument"):
            await operator.get_node(device).call_method(set_setpoint, ua.Variant(9.0, ua.VariantType.Double))
        assert running.sim.snapshot()["setpoint"] == pytest.approx(3.1, abs=0.01)  # nothing written
        service = ua.NodeId("dev0.set_outlet_pressure", ns)
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await operator.get_node(device).call_method(service, ua.Variant(2.5, ua.VariantType.Double))
    async with session(running, "engineer1") as engineer:
        outcome = await engineer.get_node(device).call_method(service, ua.Variant(2.5, ua.VariantType.Double))
        assert outcome.startswith("done"), outcome
        assert running.sim.snapshot()["setpoint"] == pytest.approx(2.5, abs=0.01)
    audit = running.gateway.store.read_all(__import__("gascore.records", fromlist=["Lane"]).Lane.EVENTS)
    kinds = [(row[1], row[4].get("by"), row[4].get("origin")) for row in audit if row[1].startswith("control.")]
    assert ("control.write", "operator1 (opcua)", "opcua") in kinds
    assert ("control.call", "engineer1 (opcua)", "opcua") in kinds
    assert kinds.count(("control.done", "operator1 (opcua)", "opcua")) == 1


async def test_logins_are_checked(running: Running, tmp_path: Path) -> None:
    with pytest.raises(ua.UaError):
        async with session(running, "nobody"):
            pass
    with pytest.raises(ua.UaError):
        async with session(running, None):  # anonymous is off by default
            pass
    # A client certificate nobody trusted: refused, and kept in rejected/ for review.
    from northbound_kit import CLIENT_URI

    from drivers.opcua.security import create_self_signed

    other = (tmp_path / "other" / "cert.der", tmp_path / "other" / "key.pem")
    await asyncio.to_thread(create_self_signed, other[0], other[1], CLIENT_URI, hostnames=["localhost"])
    with pytest.raises(Exception):  # noqa: B017 - asyncua raises several types for a refused channel
        async with session(running, "viewer1", cert=other):
            pass
    rejected = list((running.server.paths.trust_dir / "rejected").iterdir())
    assert len(rejected) == 1 and rejected[0].read_bytes() == other[0].read_bytes()


class _Events:
    def __init__(self) -> None:
        self.received: list[object] = []

    def event_notification(self, event: object) -> None:
        self.received.append(event)


async def test_alarm_condition_and_acknowledge(running: Running) -> None:
    from edge.alarms.model import AlarmState

    async with session(running, "operator1") as client:
        handler = _Events()
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_alarms_and_conditions(client.nodes.server, ua.ObjectIds.AlarmConditionType)
        running.sim.box.set_door(True)
        running.sim.step(0.1)

        def tamper(active: bool, acked: bool) -> object | None:
            for ev in handler.received:
                fields = ev.get_event_props_as_fields_dict()
                if (
                    getattr(ev, "ConditionName", None) == "tamper"
                    and fields.get("ActiveState/Id", ua.Variant(None)).Value is active
                    and fields.get("AckedState/Id", ua.Variant(None)).Value is acked
                ):
                    return ev
            return None

        await eventually(lambda: tamper(True, False) is not None, what="tamper condition event")
        event = tamper(True, False)
        assert event.SourceName == "dev0" and event.Severity >= 700
        assert event.Message.Locale == "zh-CN" and event.Message.Text  # the rule pack's Chinese message
        ns = await client.get_namespace_index(NS_URI)
        condition = client.get_node(ua.NodeId("Alarms.dev0.tamper", ns))
        with pytest.raises(ua.UaStatusCodeError, match="BadEventIdUnknown"):
            await condition.call_method(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                ua.Variant(b"not-an-event-id", ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText("?"), ua.VariantType.LocalizedText),
            )
        await condition.call_method(
            ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
            ua.Variant(event.EventId, ua.VariantType.ByteString),
            ua.Variant(ua.LocalizedText("seen on site"), ua.VariantType.LocalizedText),
        )
        assert running.gateway.local is not None
        alarm = running.gateway.local.alarms.get("dev0.tamper")
        assert alarm is not None and alarm.state is AlarmState.ACTIVE_ACKED
        assert (alarm.acked_by, alarm.ack_origin) == ("operator1 (opcua)", "opcua")
        await eventually(lambda: tamper(True, True) is not None, what="the acknowledged condition event")
        # A late subscriber gets the retained condition by ConditionRefresh.
        late = _Events()
        sub2 = await client.create_subscription(50, late)
        await sub2.subscribe_alarms_and_conditions(client.nodes.server, ua.ObjectIds.AlarmConditionType)
        await client.nodes.server.call_method(
            ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
            ua.Variant(sub2.subscription_id, ua.VariantType.UInt32),
        )
        await eventually(
            lambda: any(getattr(e, "ConditionName", None) == "tamper" for e in late.received),
            what="refreshed condition",
        )


async def test_viewer_may_not_acknowledge(running: Running) -> None:
    async with session(running, "viewer1") as client:
        ns = await client.get_namespace_index(NS_URI)
        running.sim.box.set_door(True)
        running.sim.step(0.1)
        await eventually(lambda: running.gateway.northbound._alarms.known("dev0.tamper"), what="condition")  # type: ignore[union-attr]
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await client.get_node(ua.NodeId("Alarms.dev0.tamper", ns)).call_method(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                ua.Variant(b"x", ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText("?"), ua.VariantType.LocalizedText),
            )


async def test_history_read_with_continuation(running: Running) -> None:
    from datetime import UTC, datetime

    from gascore.records import Reading

    base = 1_700_000_000_000
    running.gateway.accept([Reading("dev0", "temperature", base + i * 1000, 10.0 + i) for i in range(25)], [])
    async with session(running, "viewer1") as client:
        ns = await client.get_namespace_index(NS_URI)
        node = client.get_node(ua.NodeId("dev0.temperature", ns))
        details = ua.ReadRawModifiedDetails()
        details.StartTime = datetime.fromtimestamp(base / 1000, UTC)
        details.EndTime = datetime.fromtimestamp((base + 60_000) / 1000, UTC)
        details.NumValuesPerNode = 10
        details.ReturnBounds = False
        values: list[float] = []
        continuation = None
        rounds = 0
        while True:
            result = await node.history_read(details, continuation)
            result.StatusCode.check()
            values += [dv.Value.Value for dv in result.HistoryData.DataValues]
            continuation = result.ContinuationPoint
            rounds += 1
            if not continuation:
                break
        assert values == [10.0 + i for i in range(25)]
        assert rounds == 3
        # The whole range in one call, through asyncua's own helper.
        everything = await node.read_raw_history(details.StartTime, details.EndTime)
        assert [dv.Value.Value for dv in everything] == values


async def test_reload_changes_the_address_space_and_users_without_dropping_sessions(tmp_path: Path) -> None:
    import copy

    from northbound_kit import Running, regulator_station

    from edge.config import load_station
    from edge.runtime import Gateway, serve
    from gascore.crypto import generate_signer, write_key_file
    from gasiot_sim.modbus_server import RegulatorSimServer
    from support.station import write_station

    sim = RegulatorSimServer(seed=5, tick_s=3600)
    port = await sim.start()
    data = regulator_station(tmp_path, port)
    station_file = write_station(tmp_path / "station.yaml", data)
    station = load_station(station_file)
    station.data_dir.mkdir(parents=True)
    write_key_file(generate_signer("sm2-sm3"), station.key_file)
    from northbound_kit import CLIENT_URI

    from drivers.opcua.security import create_self_signed
    from drivers.opcua.trust_dir import TrustDirectory

    cert, key = tmp_path / "client" / "cert.der", tmp_path / "client" / "key.pem"
    await asyncio.to_thread(create_self_signed, cert, key, CLIENT_URI, hostnames=["localhost"])
    TrustDirectory(station.data_dir / "pki" / "opcua-clients").trust(cert)
    gateway = Gateway.build(station)
    stop, reload = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(gateway, stop=stop, reload=reload, load=lambda: load_station(station_file)))
    try:
        await eventually(lambda: gateway.northbound is not None and gateway.northbound.port > 0, what="server up")
        server = gateway.northbound
        assert server is not None
        running = Running(gateway, sim, station_file, data, cert, key, tmp_path)
        async with session(running, "operator1") as client:
            ns = await client.get_namespace_index(NS_URI)
            # A station that does not load is refused; the gateway goes on.
            station_file.write_text("gateway: [this is not a station\n", encoding="utf-8")
            reload.set()
            await eventually(lambda: not reload.is_set(), what="reload attempt")
            assert not task.done()
            # A valid change: a second device, and viewer1 removed.
            new = copy.deepcopy(data)
            second = copy.deepcopy(new["devices"][0])
            second["id"] = "dev1"
            new["devices"].append(second)
            new["opcua_server"]["users"] = [u for u in new["opcua_server"]["users"] if u["name"] != "viewer1"]
            write_station(station_file, new)
            reload.set()

            async def dev1_served() -> bool:
                try:
                    name = await client.get_node(ua.NodeId("dev1.outlet_pressure", ns)).read_browse_name()
                except ua.UaStatusCodeError:
                    return False
                return name.Name == "outlet_pressure"

            await eventually(dev1_served, what="dev1 in the address space, on the same session")
            with pytest.raises(ua.UaError):
                async with session(running, "viewer1"):
                    pass
            assert server is not None and server.port > 0 and not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await sim.stop()

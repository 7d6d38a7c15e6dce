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

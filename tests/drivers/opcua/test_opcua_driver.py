"""OpcUaDriver against the simulated gate-station SCADA (asyncua server), over real sockets on
127.0.0.1: polling, subscriptions, deadband, bad nodes, server restart, writes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest
import pytest_asyncio
from opcua_kit import Recorder, running

from drivers.base import CommError, DeviceError, Sample, Subscription
from drivers.opcua import OpcUaChannel, OpcUaDriver, OpcUaPoint, WriteValueError
from drivers.opcua.browse import browse, format_browse
from gasiot_sim.scada_opcua import NODES, ScadaSimServer
from support.wait import eventually

FAST = {"timeout_s": 2.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}
SHARED = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_sim() -> AsyncIterator[ScadaSimServer]:
    """One station for the tests that neither restart nor reconfigure it (a server start is ~1 s)."""
    server = ScadaSimServer(seed=11, tick_s=None)
    await server.start()
    yield server
    await server.close()


def driver_for(sim: ScadaSimServer, **kw: object) -> OpcUaDriver:
    return OpcUaDriver(OpcUaChannel(endpoint=sim.endpoint, **{**FAST, **kw}))


def point(sim: ScadaSimServer, name: str, **kw: object) -> OpcUaPoint:
    return OpcUaPoint(node=sim.node_id(name), **kw)


def ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _has_value(recorder: Recorder, key: str, value: object) -> Callable[[], bool]:
    return lambda: recorder.has(key, lambda s: s.value == value)


def _last_is(recorder: Recorder, key: str, value: object) -> Callable[[], bool]:
    return lambda: bool(recorder.samples[key]) and recorder.samples[key][-1].value == value


@SHARED
async def test_poll_reads_every_node_as_served(shared_sim: ScadaSimServer) -> None:
    sim = shared_sim
    drv = driver_for(sim)
    points = [(name, point(sim, name, mode="poll")) for name in NODES]
    try:
        samples = await drv.read(1, points)
    finally:
        await drv.close()
    snapshot = sim.snapshot()
    assert [s.key for s in samples] == list(NODES)
    for sample in samples:
        if NODES[sample.key].vtype.name == "DateTime":
            assert sample.error == "unsupported_type:DateTime"
            continue
        assert sample.error is None, sample
        assert sample.value == snapshot[sample.key]
        assert sample.ts_ms == ms(sim.source_timestamp(sample.key))
        assert sample.quality is None
    assert drv.statistics.sessions == 1


@SHARED
async def test_poll_with_a_bad_node_marks_only_that_point(shared_sim: ScadaSimServer) -> None:
    sim = shared_sim
    drv = driver_for(sim)
    try:
        samples = await drv.read(
            1,
            [
                ("inlet", point(sim, "Inlet.Pressure")),
                ("ghost", OpcUaPoint(node="ns=2;s=NoSuchNode")),
                ("name", point(sim, "Station.Name")),
            ],
        )
    finally:
        await drv.close()
    assert samples[0].value == sim.snapshot()["Inlet.Pressure"]
    assert samples[1] == Sample("ghost", None, "BadNodeIdUnknown", samples[1].ts_ms, None)
    assert samples[2].value == "Gate station 1 (simulated)"


@SHARED
async def test_subscription_delivers_changes_with_source_timestamps(
    shared_sim: ScadaSimServer, recorder: Recorder
) -> None:
    sim = shared_sim
    drv = driver_for(sim)
    sub = Subscription(
        "gs1",
        1,
        (
            ("flow", point(sim, "Metering.Flow", sampling_interval_ms=100)),
            ("flow_server_ts", point(sim, "Metering.Flow", sampling_interval_ms=100, timestamp="server")),
            ("inlet_open", point(sim, "Valves.InletOpen", sampling_interval_ms=100)),
            ("volume", point(sim, "Metering.Volume", mode="poll")),  # left to read()
        ),
    )
    async with running(drv, [sub], recorder):
        await eventually(
            lambda: recorder.ups == 1 and bool(recorder.samples["flow"]), timeout=10, what="initial values"
        )
        for _ in range(3):
            await sim.tick(60.0)  # a minute of physics: the flow surely moves
            flow = sim.snapshot()["Metering.Flow"]
            await eventually(_has_value(recorder, "flow", flow), timeout=5, what="new flow")
            got = next(s for s in recorder.samples["flow"] if s.value == flow)
            assert got.ts_ms == ms(sim.source_timestamp("Metering.Flow"))
            assert got.error is None and got.quality is None
    assert len(set(recorder.values("flow"))) == 4  # the initial value and three changes
    assert recorder.values("inlet_open") == [True]  # unchanged: reported once
    assert recorder.devices["flow"] == "gs1"
    assert "volume" not in recorder.samples
    # The server timestamp is when the SCADA received the value, after the field's own time.
    source = {s.value: s.ts_ms for s in recorder.samples["flow"]}
    for sample in recorder.samples["flow_server_ts"]:
        assert sample.ts_ms is not None and sample.ts_ms >= source[sample.value] + 100  # type: ignore[operator]


async def test_server_deadband_suppresses_small_changes(sim: ScadaSimServer, recorder: Recorder) -> None:
    drv = driver_for(sim)
    setpoint = "Outlet.PressureSetpoint"
    sub = Subscription(
        "gs1",
        1,
        (
            ("raw", point(sim, setpoint, sampling_interval_ms=50)),
            (
                "filtered",
                point(sim, setpoint, sampling_interval_ms=50, server_deadband={"type": "absolute", "value": 0.05}),
            ),
        ),
    )
    steps = [0.401, 0.402, 0.403, 0.5, 0.501, 0.502, 0.46]
    async with running(drv, [sub], recorder):
        await eventually(lambda: bool(recorder.samples["raw"]), timeout=10, what="initial value")
        for value in steps:
            await sim.set_value(setpoint, value)
            # Same subscription, same publish: once raw has it, filtered has had its chance.
            await eventually(_last_is(recorder, "raw", value), timeout=5, what=f"raw {value}")
    assert recorder.values("raw") == [0.4, *steps]
    assert recorder.values("filtered") == [0.4, 0.5]  # 0.5 moved 0.097 from 0.403; 0.46 only 0.042 from 0.502


@SHARED
async def test_bad_node_id_is_an_error_for_that_point_only(shared_sim: ScadaSimServer, recorder: Recorder) -> None:
    sim = shared_sim
    drv = driver_for(sim)
    sub = Subscription(
        "gs1",
        1,
        (
            ("flow", point(sim, "Metering.Flow", sampling_interval_ms=100)),
            ("ghost", OpcUaPoint(node="ns=2;s=NoSuchNode", sampling_interval_ms=100)),
            ("other_ns", OpcUaPoint(node="ns=7;i=4711", sampling_interval_ms=2000)),
        ),
    )
    async with running(drv, [sub], recorder):
        await eventually(lambda: bool(recorder.samples["ghost"]) and bool(recorder.samples["other_ns"]), timeout=10)
        await sim.tick(60.0)
        flow = sim.snapshot()["Metering.Flow"]
        await eventually(
            lambda: recorder.has("flow", lambda s: s.value == flow), timeout=5, what="flow after the error"
        )
        # Refused items are retried (every reconnect_max_s), but the same error is reported once.
        refusals = drv.statistics.items_refused
        await eventually(lambda: drv.statistics.items_refused >= refusals + 2, timeout=5, what="a retry")
        assert drv.monitored is not None
        assert drv.monitored.refused == {("gs1", "ghost"): "BadNodeIdUnknown", ("gs1", "other_ns"): "BadNodeIdUnknown"}
    assert recorder.samples["ghost"] == [Sample("ghost", None, "BadNodeIdUnknown")]
    assert recorder.samples["other_ns"] == [Sample("other_ns", None, "BadNodeIdUnknown")]
    assert recorder.links == [(None, True, "connected")]  # the device never went offline


async def test_server_restart_recreates_subscriptions_without_help(sim: ScadaSimServer, recorder: Recorder) -> None:
    drv = driver_for(sim)
    sub = Subscription(
        "gs1",
        1,
        (
            ("flow", point(sim, "Metering.Flow", sampling_interval_ms=100)),
            ("inlet", point(sim, "Inlet.Pressure", sampling_interval_ms=250)),
            ("outlet", point(sim, "Outlet.Pressure", sampling_interval_ms=250)),
        ),
    )
    async with running(drv, [sub], recorder):
        await eventually(lambda: len(recorder.samples) == 3, timeout=10, what="initial values")
        created = (drv.statistics.subscriptions_created, drv.statistics.items_created)
        assert created == (2, 3)  # one subscription per publishing interval
        await drv.write(1, point(sim, "Outlet.PressureSetpoint"), 0.5)
        await sim.restart()
        await eventually(lambda: recorder.ups == 2, timeout=15, what="reconnected")
        (setpoint,) = await drv.read(1, [("sp", point(sim, "Outlet.PressureSetpoint"))])
        assert setpoint.value == 0.5  # the station kept what was written before the restart
        assert sim.starts == 2
        assert (drv.statistics.subscriptions_created, drv.statistics.items_created) == (4, 6)
        assert drv.monitored is not None and set(drv.monitored.actual) == {
            ("gs1", "flow"),
            ("gs1", "inlet"),
            ("gs1", "outlet"),
        }
        await sim.tick(60.0)
        flow = sim.snapshot()["Metering.Flow"]
        await eventually(lambda: recorder.has("flow", lambda s: s.value == flow), timeout=5, what="flow after restart")
    (_, up1, why1), (_, down, why_down), (_, up2, why2) = recorder.links
    assert (up1, down, up2) == (True, False, True)
    assert (why1, why2) == ("connected", "reconnected")
    assert "connection lost" in why_down
    assert drv.statistics.sessions == 2


async def test_node_removed_at_runtime(sim: ScadaSimServer, recorder: Recorder) -> None:
    drv = driver_for(sim)
    sub = Subscription(
        "gs1",
        1,
        (
            ("flow", point(sim, "Metering.Flow", sampling_interval_ms=100)),
            ("inlet", point(sim, "Inlet.Pressure", sampling_interval_ms=100)),
        ),
    )
    async with running(drv, [sub], recorder):
        await eventually(lambda: len(recorder.samples) == 2, timeout=10, what="initial values")
        await sim.remove_node("Metering.Flow")
        await eventually(lambda: recorder.has("flow", lambda s: s.error == "BadNodeIdUnknown"), timeout=5)
        await sim.tick(60.0)
        inlet = sim.snapshot()["Inlet.Pressure"]
        await eventually(lambda: recorder.has("inlet", lambda s: s.value == inlet), timeout=5, what="others flow")
        assert drv.monitored is not None
        assert drv.monitored.refused == {("gs1", "flow"): "BadNodeIdUnknown"}
        assert set(drv.monitored.actual) == {("gs1", "inlet")}
    assert recorder.ups == 1 and recorder.downs == 0


@SHARED
async def test_write_and_read_back(shared_sim: ScadaSimServer) -> None:
    sim = shared_sim
    drv = driver_for(sim)
    setpoint = point(sim, "Outlet.PressureSetpoint")
    bypass = point(sim, "Valves.BypassOpen")
    try:
        await drv.write(1, setpoint, 0.45)
        await drv.write(1, bypass, True)
        assert [s.value for s in await drv.read(1, [("sp", setpoint), ("bypass", bypass)])] == [0.45, True]
        await sim.tick(1.0)
        assert sim.station.setpoint == 0.45 and sim.station.bypass_open
        await drv.write(1, setpoint, 1)  # an int into a Double node: written as Double
        assert (await drv.read(1, [("sp", setpoint)]))[0].value == 1.0
        with pytest.raises(WriteValueError, match="takes a number"):
            await drv.write(1, setpoint, True)
        with pytest.raises(DeviceError, match="BadNodeIdUnknown"):
            await drv.write(1, OpcUaPoint(node="ns=2;s=NoSuchNode"), 1.0)
        with pytest.raises(DeviceError, match="Bad"):
            await drv.write(1, point(sim, "Inlet.Pressure"), 9.9)  # read-only node
        assert sim.snapshot()["Inlet.Pressure"] != 9.9
    finally:
        await drv.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_one_link_down_then_up_when_it_comes(recorder: Recorder) -> None:
    port = _closed_port()
    drv = OpcUaDriver(OpcUaChannel(endpoint=f"opc.tcp://127.0.0.1:{port}/gasiot/scada", **FAST))
    with pytest.raises(CommError, match="cannot connect"):
        await drv.connect()
    sim = ScadaSimServer(seed=1, tick_s=None)
    sub = Subscription("gs1", 1, (("flow", OpcUaPoint(node="ns=2;s=Metering.Flow", sampling_interval_ms=100)),))
    try:
        async with running(drv, [sub], recorder):
            await eventually(lambda: recorder.downs == 1, timeout=5, what="link down")
            attempts = drv.statistics.sessions
            await sim.start(port)
            await eventually(lambda: bool(recorder.samples["flow"]), timeout=15, what="values once the server is up")
            assert drv.statistics.sessions == attempts + 1
    finally:
        await sim.close()
    assert [(up, why) for _, up, why in recorder.links][1:] == [(True, "connected")]
    assert recorder.links[0][1] is False and "cannot connect" in recorder.links[0][2]


@SHARED
async def test_browse_prints_the_station_tree(shared_sim: ScadaSimServer) -> None:
    sim = shared_sim
    entries = await browse(sim.endpoint, depth=3)
    by_id = {e.node_id: e for e in entries}
    pressure = by_id[sim.node_id("Inlet.Pressure")]
    assert (pressure.node_class, pressure.data_type, pressure.access, pressure.depth) == ("Variable", "Double", "r", 3)
    assert by_id[sim.node_id("Outlet.PressureSetpoint")].access == "rw"
    assert all(not e.node_id.startswith("i=") for e in entries)  # the standard Server object is left out
    text = format_browse(entries)
    assert text.splitlines()[0] == f"GateStation  Object  {sim.node_id('GateStation')}"
    assert f"│   ├── Pressure  Double r = {sim.snapshot()['Inlet.Pressure']!r}  {sim.node_id('Inlet.Pressure')}" in text
    assert "└── Station  Object" in text
    shallow = await browse(sim.endpoint, depth=1)
    assert [e.browse_name for e in shallow] == ["GateStation"]

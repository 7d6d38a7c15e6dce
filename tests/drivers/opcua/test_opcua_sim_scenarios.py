"""The simulated SCADA's own promises: deterministic physics, scenarios on a timer, CLI port."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from opcua_kit import Recorder, running

from drivers.base import Subscription
from drivers.opcua import OpcUaChannel, OpcUaDriver, OpcUaPoint
from gasiot_sim.scada_opcua import GateStation, ScadaSimServer
from support.wait import eventually

FAST = {"timeout_s": 2.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}


def test_physics_is_deterministic_and_plausible() -> None:
    a, b = GateStation(seed=5), GateStation(seed=5)
    for _ in range(600):
        a.step(0.5)
        b.step(0.5)
    assert a.outputs() == b.outputs()
    out = a.outputs()
    assert 3.6 <= out["Inlet.Pressure"] <= 4.4  # type: ignore[operator]
    assert abs(out["Outlet.Pressure"] - 0.40) < 0.03  # type: ignore[operator]
    assert 4000 - 500 <= out["Metering.Flow"] <= 16000 + 500  # type: ignore[operator]
    assert out["Metering.Volume"] > 1_234_567.0  # type: ignore[operator]
    a.outlet_open = False
    a.step(0.5)
    assert a.outputs()["Metering.Flow"] == 0.0


async def test_restart_scenario_comes_back_on_the_same_port(recorder: Recorder) -> None:
    sim = ScadaSimServer(seed=2, tick_s=0.2, scenario="restart", scenario_after_s=0.5, down_s=0.5)
    port = await sim.start()
    drv = OpcUaDriver(OpcUaChannel(endpoint=sim.endpoint, **FAST))
    sub = Subscription("gs1", 1, (("flow", OpcUaPoint(node=sim.node_id("Metering.Flow"), sampling_interval_ms=100)),))
    try:
        async with running(drv, [sub], recorder):
            await eventually(lambda: sim.starts == 2 and recorder.ups == 2, timeout=15, what="restart and reconnect")
            seen = len(recorder.samples["flow"])
            await eventually(lambda: len(recorder.samples["flow"]) > seen + 2, timeout=5, what="values after restart")
    finally:
        await sim.close()
    assert sim.port == port
    assert [up for _, up, _ in recorder.links] == [True, False, True]


async def test_node_removed_scenario(recorder: Recorder) -> None:
    sim = ScadaSimServer(
        seed=2, tick_s=0.2, scenario="node_removed", scenario_after_s=0.5, removed_node="Inlet.Pressure"
    )
    await sim.start()
    drv = OpcUaDriver(OpcUaChannel(endpoint=sim.endpoint, **FAST))
    sub = Subscription("gs1", 1, (("inlet", OpcUaPoint(node=sim.node_id("Inlet.Pressure"), sampling_interval_ms=100)),))
    try:
        async with running(drv, [sub], recorder):
            await eventually(lambda: recorder.has("inlet", lambda s: s.error == "BadNodeIdUnknown"), timeout=10)
            assert "Inlet.Pressure" not in sim.snapshot()
            await sim.restart()  # stays removed after a restart
            (sample,) = await drv.read(1, [("inlet", OpcUaPoint(node=sim.node_id("Inlet.Pressure")))])
            assert sample.error == "BadNodeIdUnknown"
    finally:
        await sim.close()


async def test_cli_prints_the_bound_port() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot_sim.scada_opcua", "--port", "0",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        assert line.startswith("listening on opc.tcp://127.0.0.1:")
        endpoint = line.split()[-1]
        drv = OpcUaDriver(OpcUaChannel(endpoint=endpoint, **FAST))
        (sample,) = await drv.read(1, [("name", OpcUaPoint(node="ns=2;s=Station.Name"))])
        await drv.close()
        assert sample.value == "Gate station 1 (simulated)"
    finally:
        proc.terminate()
        await proc.wait()

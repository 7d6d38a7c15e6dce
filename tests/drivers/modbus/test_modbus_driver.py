"""ModbusTcpDriver against the simulated regulator box, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import socket

import pytest

from drivers.base import CommError, DeviceError, Sample
from drivers.modbus import CodecError, ModbusPoint, ModbusTcpChannel, ModbusTcpDriver
from gasiot_sim.modbus_server import RegulatorSimServer
from gasiot_sim.regulator import SLAM_SHUT_TRIP_KPA
from gasiot_sim.test_pattern import TEST_PATTERN

FROZEN = 3600.0  # tick period long enough that the physics never moves during a test

PATTERN_POINTS = tuple(
    (
        key,
        ModbusPoint(
            table="input",
            address=p.address,
            type=p.type,
            bit=p.bit,
            byte_order=p.byte_order,
            word_order=p.word_order,
        ),
    )
    for key, p in TEST_PATTERN.items()
)

HOLDING_POINTS = (
    ("inlet_pressure", ModbusPoint(table="holding", address=0, type="float32")),
    ("outlet_pressure", ModbusPoint(table="holding", address=2, type="float32")),
    ("temperature", ModbusPoint(table="holding", address=4, type="int16")),
    ("filter_dp", ModbusPoint(table="holding", address=5, type="uint16")),
    ("box_methane", ModbusPoint(table="holding", address=6, type="uint16")),
    ("slam_shut_closed", ModbusPoint(table="holding", address=7, type="bool", bit=0)),
    ("relief_valve_open", ModbusPoint(table="holding", address=7, type="bool", bit=1)),
    ("door_open", ModbusPoint(table="holding", address=7, type="bool", bit=2)),
    ("flow", ModbusPoint(table="holding", address=8, type="uint32")),
    ("setpoint", ModbusPoint(table="holding", address=10, type="uint16")),
)
SCALE = {"temperature": 0.1, "filter_dp": 0.01, "box_methane": 0.1, "flow": 0.01, "setpoint": 0.01}
SETPOINT = dict(HOLDING_POINTS)["setpoint"]
SLAM_RESET = ModbusPoint(table="coil", address=0, type="bool")
DOOR_INPUT = ModbusPoint(table="discrete", address=0, type="bool")


def channel(port: int, **kw) -> ModbusTcpChannel:
    return ModbusTcpChannel(host="127.0.0.1", port=port, **kw)


@pytest.fixture
async def sim():
    server = RegulatorSimServer(tick_s=FROZEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def driver(sim):
    drv = ModbusTcpDriver(channel(sim.port, timeout_s=0.5))
    yield drv
    await drv.close()


def values(samples: list[Sample]) -> dict[str, object]:
    assert all(s.error is None for s in samples), samples
    return {s.key: s.value for s in samples}


@pytest.mark.parametrize(("max_gap", "requests"), [(8, 1), (2, 2), (0, 4)])
async def test_reads_every_type_and_order_of_the_test_pattern(sim, max_gap, requests):
    drv = ModbusTcpDriver(channel(sim.port, max_gap=max_gap))
    try:
        got = values(await drv.read(1, PATTERN_POINTS))
    finally:
        await drv.close()
    assert got == {key: p.value for key, p in TEST_PATTERN.items()}
    for key, p in TEST_PATTERN.items():
        assert type(got[key]) is type(p.value), key
    assert drv.statistics.requests == requests


async def test_small_request_limit_still_reads_everything(sim):
    drv = ModbusTcpDriver(channel(sim.port, max_registers=4, max_gap=100))
    try:
        got = values(await drv.read(1, PATTERN_POINTS))
    finally:
        await drv.close()
    assert got == {key: p.value for key, p in TEST_PATTERN.items()}
    assert drv.statistics.requests == 9  # 0-3, 5-8, 9-12, 13-16, 19-22, 23-26, 27-30, 31-34, 38


async def test_samples_come_back_in_the_order_asked(driver):
    points = tuple(reversed(PATTERN_POINTS))
    samples = await driver.read(1, points)
    assert [s.key for s in samples] == [k for k, _ in points]


async def test_holding_map_matches_the_snapshot(sim, driver):
    raw = values(await driver.read(1, HOLDING_POINTS))
    snap = sim.snapshot()
    for key, value in raw.items():
        expected = snap[key]
        if key in SCALE:
            assert value * SCALE[key] == pytest.approx(expected, abs=1e-9), key
        else:
            assert value == expected, key
    # Plausible for a box at rest: the driver decoded the right registers with the right types.
    assert 0.2 <= raw["inlet_pressure"] <= 0.4
    assert 2.5 <= raw["outlet_pressure"] <= 3.5
    assert raw["setpoint"] == 300
    assert raw["slam_shut_closed"] is False


async def test_live_physics_stays_plausible():
    server = RegulatorSimServer(tick_s=0.01, seed=3)
    await server.start()
    drv = ModbusTcpDriver(channel(server.port))
    try:
        readings = []
        for _ in range(5):
            async with asyncio.timeout(5):
                await server.wait_ticks(2)
            readings.append(values(await drv.read(1, HOLDING_POINTS)))
    finally:
        await drv.close()
        await server.stop()
    assert len({r["outlet_pressure"] for r in readings}) > 1  # the values move
    for raw in readings:
        assert 0.2 <= raw["inlet_pressure"] <= 0.4
        assert 2.5 <= raw["outlet_pressure"] <= 3.5
        assert 5 <= raw["temperature"] * 0.1 <= 25
        assert 0 <= raw["flow"] * 0.01 <= 300
        assert 2 <= raw["filter_dp"] * 0.01 <= 20


async def test_bits_coils_and_discrete_inputs(sim, driver):
    sim.box.set_door(True)
    sim.step(0)
    points = (("door_bit", dict(HOLDING_POINTS)["door_open"]), ("door", DOOR_INPUT), ("reset", SLAM_RESET))
    assert values(await driver.read(1, points)) == {"door_bit": True, "door": True, "reset": False}


async def test_modbus_exception_marks_only_the_points_of_that_request(driver):
    points = (
        ("inlet", ModbusPoint(table="holding", address=0, type="float32")),
        ("missing", ModbusPoint(table="holding", address=50)),  # outside the served block
        ("missing2", ModbusPoint(table="holding", address=52)),  # same request as "missing"
        ("pattern", PATTERN_POINTS[0][1]),
    )
    samples = {s.key: s for s in await driver.read(1, points)}
    assert samples["missing"] == Sample("missing", None, "modbus_exception_2")
    assert samples["missing2"] == Sample("missing2", None, "modbus_exception_2")
    assert samples["inlet"].error is None and isinstance(samples["inlet"].value, float)
    assert samples["pattern"] == Sample("pattern", TEST_PATTERN["i16_be"].value)
    assert driver.statistics.exceptions == 1
    assert driver.statistics.comm_errors == 0


async def test_unknown_unit_id_is_a_device_error_not_a_comm_error(driver):
    # pymodbus answers an unknown unit with exception 4 (see PEERS.md); the link stays up.
    samples = await driver.read(7, HOLDING_POINTS[:1])
    assert samples[0].error == "modbus_exception_4"
    assert values(await driver.read(1, HOLDING_POINTS[:1]))


async def test_reading_nothing_sends_nothing(driver):
    assert await driver.read(1, ()) == []
    assert driver.statistics.requests == 0


async def test_plan_is_cached_per_points_tuple(driver):
    assert driver.plan(1, HOLDING_POINTS) is driver.plan(1, HOLDING_POINTS)
    as_list = list(HOLDING_POINTS)  # mutable: planned afresh every time
    assert driver.plan(1, as_list) is not driver.plan(1, as_list)
    assert driver.plan(1, as_list) == driver.plan(1, HOLDING_POINTS)


async def test_concurrent_reads_share_one_connection(driver):
    results = await asyncio.gather(*(driver.read(1, HOLDING_POINTS) for _ in range(5)))
    assert all(len(values(r)) == len(HOLDING_POINTS) for r in results)
    assert driver.statistics.connects == 1


async def test_connect_refused_raises_comm_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        drv = ModbusTcpDriver(channel(sock.getsockname()[1], timeout_s=0.5))
        with pytest.raises(CommError):
            await drv.connect()
        with pytest.raises(CommError):
            await drv.read(1, HOLDING_POINTS)
    assert drv.statistics.comm_errors == 2
    await drv.close()


async def test_stopped_server_raises_comm_error_within_timeout(sim, driver):
    assert values(await driver.read(1, HOLDING_POINTS))
    await sim.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CommError):
        await driver.read(1, HOLDING_POINTS)
    assert loop.time() - started < driver.channel.timeout_s + 0.25


async def test_reconnects_after_the_server_restarts_on_the_same_port(sim, driver):
    assert values(await driver.read(1, HOLDING_POINTS))
    port = sim.port
    await sim.stop()
    with pytest.raises(CommError):
        await driver.read(1, HOLDING_POINTS)
    assert await sim.start(port=port) == port  # the same box, back on its port
    assert values(await driver.read(1, HOLDING_POINTS))
    assert driver.statistics.connects == 2


async def test_silent_server_times_out_then_recovers():
    server = RegulatorSimServer(tick_s=FROZEN, scenario="comm_loss", scenario_after_s=1.0, comm_loss_s=5.0)
    await server.start()
    drv = ModbusTcpDriver(channel(server.port, timeout_s=0.2))
    try:
        assert values(await drv.read(1, HOLDING_POINTS))
        server.step(1.5)  # into the comm-loss window
        with pytest.raises(CommError, match="did not answer"):
            await drv.read(1, HOLDING_POINTS)
        server.step(5.0)  # link restored
        assert values(await drv.read(1, HOLDING_POINTS))
    finally:
        await drv.close()
        await server.stop()
    assert drv.statistics.connects == 2  # the timed-out connection was replaced


async def test_write_setpoint_reads_back(sim, driver):
    await driver.write(1, SETPOINT, 320)
    assert values(await driver.read(1, (("setpoint", SETPOINT),))) == {"setpoint": 320}
    assert sim.box.state().setpoint == pytest.approx(3.2)
    assert sim.snapshot()["setpoint"] == pytest.approx(3.2)


async def test_write_errors(driver):
    with pytest.raises(DeviceError, match="modbus_exception_3"):
        await driver.write(1, SETPOINT, 900)  # 9 kPa: the box refuses it
    with pytest.raises(DeviceError, match="modbus_exception_2"):
        await driver.write(1, ModbusPoint(table="holding", address=0, type="float32"), 1.0)  # read-only
    with pytest.raises(DeviceError, match="read-only table"):
        await driver.write(1, PATTERN_POINTS[0][1], 1)
    with pytest.raises(DeviceError, match="read-only table"):
        await driver.write(1, DOOR_INPUT, True)
    with pytest.raises(DeviceError, match="single bit"):
        await driver.write(1, dict(HOLDING_POINTS)["door_open"], True)
    with pytest.raises(CodecError):
        await driver.write(1, SETPOINT, 3.2)  # not scaled to raw: refused before anything is sent
    with pytest.raises(CodecError):
        await driver.write(1, SLAM_RESET, 2)


async def test_multi_register_write_is_one_request(driver):
    # Function 16 on the box's read-only float: the device refuses it as one request.
    # (Multi-register writes that succeed are proven against libmodbus in tests/peers.)
    before = driver.statistics.requests
    with pytest.raises(DeviceError, match="modbus_exception_2"):
        await driver.write(1, ModbusPoint(table="holding", address=2, type="float32"), 1.5)
    assert driver.statistics.requests == before + 1


async def test_slam_shut_reset_through_the_coil():
    server = RegulatorSimServer(tick_s=FROZEN, scenario="overpressure", scenario_after_s=0.0)
    await server.start()
    drv = ModbusTcpDriver(channel(server.port))
    status = (("closed", dict(HOLDING_POINTS)["slam_shut_closed"]), ("outlet", HOLDING_POINTS[1][1]))
    try:
        while not server.box.state().slam_shut_closed:
            server.step(0.1)
        assert values(await drv.read(1, status))["closed"] is True
        while server.box.state().outlet_pressure >= SLAM_SHUT_TRIP_KPA:
            server.step(0.1)
        await drv.write(1, SLAM_RESET, True)
        got = values(await drv.read(1, status))
        assert got["closed"] is False
        assert not math.isnan(got["outlet"])
    finally:
        await drv.close()
        await server.stop()

"""The simulator's register image and Modbus server, checked with a plain pymodbus client
(not our driver) and hand-written register vectors."""

from __future__ import annotations

import asyncio
import re
import sys

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gasiot_sim import register_map as rm
from gasiot_sim.modbus_server import RegulatorSimServer, run_regulator
from gasiot_sim.regulator import SLAM_SHUT_TRIP_KPA, RegulatorState
from gasiot_sim.test_pattern import (
    BITS_ADDRESS,
    BITS_REGISTER,
    GAP_FILL,
    PATTERN_COUNT,
    TEST_PATTERN,
    pattern_registers,
)

FROZEN = 3600.0

STATE = RegulatorState(
    time_s=0.0,
    inlet_pressure=0.35,
    outlet_pressure=3.0,
    temperature=-5.3,
    filter_dp=12.34,
    box_methane=25.5,
    flow=1000.0,
    setpoint=3.2,
    slam_shut_closed=True,
    relief_valve_open=False,
    door_open=True,
)
STATE_REGISTERS = [
    0x3EB3, 0x3333,  # 0.35 as float32 0x3EB33333
    0x4040, 0x0000,  # 3.0 as float32 0x40400000
    0xFFCB,  # -53
    1234,
    255,
    0b101,  # slam-shut closed, door open
    0x0001, 0x86A0,  # 100000
    320,
]  # fmt: skip


def test_holding_registers_vector():
    assert rm.holding_registers(STATE) == STATE_REGISTERS


def test_served_values_decode_the_image():
    served = rm.served_values(STATE_REGISTERS)
    assert served["inlet_pressure"] == pytest.approx(0.35, abs=1e-7)
    assert served["outlet_pressure"] == 3.0
    assert served["temperature"] == -5.3
    assert served["filter_dp"] == 12.34
    assert served["box_methane"] == 25.5
    assert served["flow"] == 1000.0
    assert served["setpoint"] == 3.2
    assert served["slam_shut_closed"] is True
    assert served["relief_valve_open"] is False
    assert served["door_open"] is True


def test_pattern_registers_vectors():
    regs = pattern_registers()
    assert len(regs) == PATTERN_COUNT
    assert regs[0:4] == [0xFB2E, 0x2EFB, 0xC822, 0x22C8]
    assert regs[4] == GAP_FILL
    assert regs[5:13] == [0xF8A4, 0x32EB, 0x32EB, 0xF8A4, 0xA4F8, 0xEB32, 0xEB32, 0xA4F8]
    assert regs[13:17] == [0xB2D0, 0x5E00, 0x5E00, 0xB2D0]
    assert regs[17:19] == [GAP_FILL, GAP_FILL]
    assert regs[19:27] == [0xC146, 0x0000, 0x0000, 0xC146, 0x46C1, 0x0000, 0x0000, 0x46C1]
    assert regs[27:35] == [0x40FE, 0x240C, 0x9FBE, 0x76C9, 0xC976, 0xBE9F, 0x0C24, 0xFE40]
    assert regs[35:38] == [GAP_FILL] * 3
    assert regs[BITS_ADDRESS] == BITS_REGISTER


def test_pattern_bits_agree_with_the_bits_register():
    bools = {k: p for k, p in TEST_PATTERN.items() if p.type == "bool"}
    assert {"bit0", "bit5", "bit9"} <= bools.keys()
    assert {p.value for p in bools.values()} == {True, False}
    for point in bools.values():
        assert point.address == BITS_ADDRESS
        assert bool(BITS_REGISTER >> point.bit & 1) is point.value


@pytest.fixture
async def sim():
    server = RegulatorSimServer(tick_s=FROZEN, seed=7)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(sim):
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0, reconnect_delay=0)
    assert await c.connect()
    yield c
    c.close()


async def test_serves_holding_input_coil_and_discrete(sim, client):
    holding = await client.read_holding_registers(0, count=rm.HOLDING_COUNT, device_id=rm.UNIT_ID)
    assert holding.registers == rm.holding_registers(sim.box.state())
    pattern = await client.read_input_registers(0, count=PATTERN_COUNT, device_id=rm.UNIT_ID)
    assert pattern.registers == pattern_registers()
    coils = await client.read_coils(0, count=1, device_id=rm.UNIT_ID)
    assert coils.bits[0] is False
    sim.box.set_door(True)
    sim.step(0)
    discrete = await client.read_discrete_inputs(0, count=1, device_id=rm.UNIT_ID)
    assert discrete.bits[0] is True
    status = await client.read_holding_registers(7, count=1, device_id=rm.UNIT_ID)
    assert status.registers[0] & 0b100


async def test_outside_the_map_is_illegal_address(client):
    response = await client.read_holding_registers(rm.HOLDING_COUNT, count=1, device_id=rm.UNIT_ID)
    assert response.isError() and response.exception_code == 2
    response = await client.read_input_registers(PATTERN_COUNT, count=1, device_id=rm.UNIT_ID)
    assert response.isError() and response.exception_code == 2


async def test_setpoint_write_is_range_checked(sim, client):
    assert not (await client.write_register(rm.SETPOINT_ADDRESS, 250, device_id=rm.UNIT_ID)).isError()
    assert sim.box.state().setpoint == 2.5
    assert (await client.read_holding_registers(10, count=1, device_id=rm.UNIT_ID)).registers == [250]
    response = await client.write_register(rm.SETPOINT_ADDRESS, 600, device_id=rm.UNIT_ID)
    assert response.isError() and response.exception_code == 3
    assert sim.box.state().setpoint == 2.5
    response = await client.write_register(5, 1, device_id=rm.UNIT_ID)  # measured values are read-only
    assert response.isError()


async def test_slam_shut_reset_coil_only_below_trip_level():
    server = RegulatorSimServer(tick_s=FROZEN, scenario="overpressure", scenario_after_s=0)
    await server.start()
    c = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=1, retries=0, reconnect_delay=0)
    try:
        assert await c.connect()
        while not server.box.state().slam_shut_closed:
            server.step(0.05)
        assert server.box.state().outlet_pressure >= SLAM_SHUT_TRIP_KPA
        assert not (await c.write_coil(rm.SLAM_RESET_COIL, True, device_id=rm.UNIT_ID)).isError()
        assert server.snapshot()["slam_shut_closed"] is True  # refused: still at trip level
        while server.box.state().outlet_pressure >= SLAM_SHUT_TRIP_KPA:
            server.step(0.05)
        assert not (await c.write_coil(rm.SLAM_RESET_COIL, True, device_id=rm.UNIT_ID)).isError()
        assert server.snapshot()["slam_shut_closed"] is False
        status = await c.read_holding_registers(7, count=1, device_id=rm.UNIT_ID)
        assert status.registers[0] & 1 == 0
        assert (await c.read_coils(0, count=1, device_id=rm.UNIT_ID)).bits[0] is False  # a command
    finally:
        c.close()
        await server.stop()


async def test_several_boxes_one_port_each():
    servers = [RegulatorSimServer(tick_s=FROZEN, seed=seed) for seed in (1, 2, 3)]
    ports = [await s.start() for s in servers]
    try:
        assert len(set(ports)) == 3 and all(p > 0 for p in ports)
        for server, port in zip(servers, ports, strict=True):
            c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
            assert await c.connect()
            regs = (await c.read_holding_registers(0, count=rm.HOLDING_COUNT, device_id=1)).registers
            c.close()
            assert rm.served_values(regs) == server.snapshot()
        assert len({s.snapshot()["filter_dp"] for s in servers}) == 3  # seeds give distinct boxes
    finally:
        for s in servers:
            await s.stop()


async def test_ticker_advances_the_physics():
    server = RegulatorSimServer(tick_s=0.01)
    await server.start()
    try:
        first = server.snapshot()
        async with asyncio.timeout(5):
            await server.wait_ticks(3)
        assert server.ticks >= 3
        assert server.box.time_s > 0
        assert server.snapshot() != first
    finally:
        await server.stop()


async def test_start_twice_is_an_error(sim):
    with pytest.raises(RuntimeError):
        await sim.start()


async def test_run_regulator_until_cancelled():
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_regulator("127.0.0.1", 0, scenario="normal", seed=1, on_ready=ready.set_result))
    async with asyncio.timeout(5):
        port = await ready
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0, reconnect_delay=0)
    assert await c.connect()
    assert len((await c.read_holding_registers(0, count=11, device_id=1)).registers) == 11
    c.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await c.connect()  # nothing listens any more


async def test_command_line_prints_the_bound_port():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot_sim.modbus_server", "--port", "0", "--scenario", "leak",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        c = AsyncModbusTcpClient("127.0.0.1", port=int(match[1]), timeout=1, retries=0, reconnect_delay=0)
        assert await c.connect()
        c.close()
    finally:
        proc.terminate()
        await proc.wait()

"""The simulator checked by an independent master: mbpoll (libmodbus based, not pymodbus)."""

from __future__ import annotations

import asyncio
import re

import pytest
from _require import require_tool

from gasiot_sim import register_map as rm
from gasiot_sim.modbus_server import RegulatorSimServer
from gasiot_sim.test_pattern import PATTERN_COUNT, TEST_PATTERN, pattern_registers

pytestmark = pytest.mark.peer

_LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$", re.MULTILINE)


@pytest.fixture
async def sim():
    server = RegulatorSimServer(tick_s=3600.0, seed=11)  # frozen: what mbpoll sees is comparable
    await server.start()
    yield server
    await server.stop()


async def mbpoll(port: int, *args: str) -> dict[int, str]:
    """Run mbpoll once against the simulator; return {reference: printed value}."""
    exe = require_tool("mbpoll")
    proc = await asyncio.create_subprocess_exec(
        exe, "-m", "tcp", "-p", str(port), "-a", str(rm.UNIT_ID), "-0", "-1", "-o", "2", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    assert proc.returncode == 0, (out.decode(), err.decode())
    return {int(ref): value for ref, value in _LINE.findall(out.decode())}


async def test_mbpoll_reads_the_holding_map(sim):
    printed = await mbpoll(sim.port, "-t", "4:hex", "-r", "0", "-c", str(rm.HOLDING_COUNT), "127.0.0.1")
    expected = rm.holding_registers(sim.box.state())
    assert printed == {i: f"0x{reg:04X}" for i, reg in enumerate(expected)}


async def test_mbpoll_reads_the_test_pattern(sim):
    printed = await mbpoll(sim.port, "-t", "3:hex", "-r", "0", "-c", str(PATTERN_COUNT), "127.0.0.1")
    assert printed == {i: f"0x{reg:04X}" for i, reg in enumerate(pattern_registers())}


@pytest.mark.parametrize(
    ("key", "type_flag", "big_word_flag"),
    [
        ("f32_abcd", "3:float", ["-B"]),
        ("f32_cdab", "3:float", []),  # mbpoll's default is little-endian word order
        ("i32_abcd", "3:int", ["-B"]),
        ("i32_cdab", "3:int", []),
    ],
)
async def test_mbpoll_decodes_pattern_values_like_we_do(sim, key, type_flag, big_word_flag):
    point = TEST_PATTERN[key]
    printed = await mbpoll(sim.port, "-t", type_flag, *big_word_flag, "-r", str(point.address), "-c", "1", "127.0.0.1")
    assert float(printed[point.address]) == point.value


async def test_mbpoll_sees_the_live_physics_decoded(sim):
    printed = await mbpoll(sim.port, "-t", "4:float", "-B", "-r", "0", "-c", "2", "127.0.0.1")
    snap = sim.snapshot()
    assert float(printed[0]) == pytest.approx(snap["inlet_pressure"], rel=1e-5)
    assert float(printed[2]) == pytest.approx(snap["outlet_pressure"], rel=1e-5)


async def test_mbpoll_writes_the_setpoint(sim):
    await mbpoll(sim.port, "-t", "4", "-r", str(rm.SETPOINT_ADDRESS), "127.0.0.1", "280")
    assert sim.box.state().setpoint == pytest.approx(2.8)
    assert sim.snapshot()["setpoint"] == pytest.approx(2.8)


async def test_mbpoll_reads_coil_and_discrete_input(sim):
    sim.box.set_door(True)
    sim.step(0)
    assert await mbpoll(sim.port, "-t", "1", "-r", "0", "-c", "1", "127.0.0.1") == {0: "1"}
    assert await mbpoll(sim.port, "-t", "0", "-r", "0", "-c", "1", "127.0.0.1") == {0: "0"}

"""The simulated RTU bus checked by an independent master: mbpoll (libmodbus based, not pymodbus),
over a socat pty pair, exactly as a technician would poll a real RS-485 line."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _require import require_tool

from gasiot_sim import register_map as rm
from gasiot_sim.pty_pair import PtyPair
from gasiot_sim.rtu_bus import RtuBusSim
from gasiot_sim.test_pattern import PATTERN_COUNT, TEST_PATTERN, pattern_registers

pytestmark = pytest.mark.peer

_LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$", re.MULTILINE)
UNITS = {1: 5, 2: 6, 7: 7}  # unit id -> seed


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[tuple[RtuBusSim, str]]:
    require_tool("socat")
    async with PtyPair(tmp_path) as pair:
        bus = RtuBusSim(units=UNITS, tick_s=3600.0)  # frozen: what mbpoll sees is comparable
        bus.step(60.0)  # the boxes drift apart, so each unit's registers are its own
        await bus.start(pair.a)
        try:
            yield bus, pair.b
        finally:
            await bus.stop()


async def mbpoll(port: str, unit: int, *args: str, write: str | None = None, ok: bool = True) -> dict[int, str]:
    """Run mbpoll once in RTU mode (19200 8N1), reading or (``write``) writing; return
    {reference: printed value}."""
    exe = require_tool("mbpoll")
    proc = await asyncio.create_subprocess_exec(
        exe, "-m", "rtu", "-b", "19200", "-P", "none", "-a", str(unit), "-0", "-1", "-o", "0.5", *args, port,
        *([write] if write is not None else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    if ok:
        assert proc.returncode == 0, (out.decode(), err.decode())
    return {int(ref): value for ref, value in _LINE.findall(out.decode())}


async def test_mbpoll_reads_each_units_holding_map(line):
    bus, port = line
    for unit in UNITS:
        printed = await mbpoll(port, unit, "-t", "4:hex", "-r", "0", "-c", str(rm.HOLDING_COUNT))
        assert printed == {i: f"0x{reg:04X}" for i, reg in enumerate(bus.holding_registers(unit))}
    assert bus.holding_registers(1) != bus.holding_registers(2)


async def test_mbpoll_reads_the_test_pattern(line):
    _, port = line
    printed = await mbpoll(port, 7, "-t", "3:hex", "-r", "0", "-c", str(PATTERN_COUNT))
    assert printed == {i: f"0x{reg:04X}" for i, reg in enumerate(pattern_registers())}


async def test_mbpoll_decodes_the_live_values_like_the_register_map(line):
    bus, port = line
    printed = await mbpoll(port, 2, "-t", "4:float", "-B", "-r", "0", "-c", "2")
    snap = bus.snapshot(2)
    assert float(printed[0]) == pytest.approx(snap["inlet_pressure"], rel=1e-5)
    assert float(printed[2]) == pytest.approx(snap["outlet_pressure"], rel=1e-5)
    point = TEST_PATTERN["f32_abcd"]
    printed = await mbpoll(port, 2, "-t", "3:float", "-B", "-r", str(point.address), "-c", "1")
    assert float(printed[point.address]) == point.value


async def test_mbpoll_writes_one_units_setpoint(line):
    bus, port = line
    await mbpoll(port, 7, "-t", "4", "-r", str(rm.SETPOINT_ADDRESS), write="280")
    assert bus.snapshot(7)["setpoint"] == pytest.approx(2.8)
    assert bus.snapshot(1)["setpoint"] == pytest.approx(3.0)


async def test_a_silent_unit_times_out_for_mbpoll_too_and_the_others_answer(line):
    bus, port = line
    bus.set_silent(2, True)
    assert await mbpoll(port, 2, "-t", "4:hex", "-r", "0", "-c", "1", ok=False) == {}
    printed = await mbpoll(port, 1, "-t", "4:hex", "-r", "0", "-c", "1")
    assert printed == {0: f"0x{bus.holding_registers(1)[0]:04X}"}

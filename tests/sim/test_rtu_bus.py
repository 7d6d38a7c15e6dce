"""The RTU bus simulator and the socat pty pair, checked with a plain pymodbus client (not our driver)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from peers._require import require_tool
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from gasiot_sim import register_map as rm
from gasiot_sim.pty_pair import PtyPair
from gasiot_sim.rtu_bus import RtuBusSim
from gasiot_sim.test_pattern import PATTERN_COUNT, pattern_registers

FROZEN = 3600.0


@pytest.fixture
async def pty_pair(tmp_path: Path) -> AsyncIterator[PtyPair]:
    require_tool("socat")  # skips locally, fails in CI (GASIOT_REQUIRE_PEERS=1) when missing
    async with PtyPair(tmp_path) as pair:
        yield pair


@pytest.fixture
async def bus(pty_pair: PtyPair) -> AsyncIterator[RtuBusSim]:
    sim = RtuBusSim(units={4: 1, 9: 2}, tick_s=FROZEN)
    sim.step(60.0)
    await sim.start(pty_pair.a)
    yield sim
    await sim.stop()


@pytest.fixture
async def client(pty_pair: PtyPair, bus: RtuBusSim) -> AsyncIterator[AsyncModbusSerialClient]:
    c = AsyncModbusSerialClient(pty_pair.b, baudrate=19200, timeout=0.3, retries=0, reconnect_delay=0)
    assert await c.connect()
    yield c
    c.close()


async def test_pty_pair_links_both_ends_and_removes_them(tmp_path: Path, pty_pair: PtyPair) -> None:
    assert Path(pty_pair.a).resolve().parent == Path("/dev/pts")
    a = os.open(pty_pair.a, os.O_RDWR | os.O_NOCTTY)
    b = os.open(pty_pair.b, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(b, b"\x01\x03")
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_reader(a, got.set)
        try:
            async with asyncio.timeout(5):
                await got.wait()
        finally:
            loop.remove_reader(a)
        assert os.read(a, 16) == b"\x01\x03"
    finally:
        os.close(a)
        os.close(b)
    await pty_pair.stop()
    assert not Path(pty_pair.a).exists()
    assert not Path(pty_pair.b).exists()


async def test_each_unit_serves_its_own_box(bus: RtuBusSim, client: AsyncModbusSerialClient) -> None:
    for unit in (4, 9):
        holding = await client.read_holding_registers(0, count=rm.HOLDING_COUNT, device_id=unit)
        assert holding.registers == bus.holding_registers(unit)
        pattern = await client.read_input_registers(0, count=PATTERN_COUNT, device_id=unit)
        assert pattern.registers == pattern_registers()
    assert bus.holding_registers(4) != bus.holding_registers(9)
    assert list(bus.journal) == [(4, 3), (4, 4), (9, 3), (9, 4)]


async def test_an_absent_unit_does_not_answer(client: AsyncModbusSerialClient) -> None:
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=1, device_id=5)
    assert (await client.read_holding_registers(0, count=1, device_id=4)).registers


async def test_a_silent_unit_neither_answers_nor_acts_until_it_is_back(
    bus: RtuBusSim, client: AsyncModbusSerialClient
) -> None:
    bus.set_silent(9, True)
    assert bus.silent_units == {9}
    with pytest.raises(ModbusIOException):
        await client.write_register(rm.SETPOINT_ADDRESS, 250, device_id=9)
    assert bus.snapshot(9)["setpoint"] == 3.0  # deaf: the write did not reach the box
    await client.write_register(rm.SETPOINT_ADDRESS, 250, device_id=4)
    assert bus.snapshot(4)["setpoint"] == 2.5
    bus.set_silent(9, False)
    await client.write_register(rm.SETPOINT_ADDRESS, 260, device_id=9)
    assert bus.snapshot(9)["setpoint"] == 2.6
    assert [unit for unit, _ in bus.journal] == [9, 4, 9]


async def test_ticker_moves_every_box(pty_pair: PtyPair) -> None:
    sim = RtuBusSim(units={1: 1, 2: 2}, tick_s=0.01)
    await sim.start(pty_pair.a)
    try:
        async with asyncio.timeout(5):
            await sim.wait_ticks(3)
    finally:
        await sim.stop()
    assert all(device.box.state().time_s > 0 for device in sim.devices.values())


def test_unit_ids_are_checked() -> None:
    with pytest.raises(ValueError, match=r"1\.\.247"):
        RtuBusSim(units={0: 1})
    with pytest.raises(ValueError, match="at least one"):
        RtuBusSim(units={})


async def test_command_line_serves_a_pty_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    require_tool("socat")  # skips locally, fails in CI (GASIOT_REQUIRE_PEERS=1) when missing
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot_sim.rtu_bus", "--dir", str(tmp_path), "--units", "3,8", "--tcp-port", "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode()
        expected = r"rtu bus units \[3, 8\] on serial (\S+) \(19200 8N1\), rtu-over-tcp 127\.0\.0\.1:\d+\n"
        match = re.fullmatch(expected, line)
        assert match, line
        c = AsyncModbusSerialClient(match[1], baudrate=19200, timeout=1, retries=0, reconnect_delay=0)
        assert await c.connect()
        try:
            assert len((await c.read_holding_registers(0, count=2, device_id=8)).registers) == 2
        finally:
            c.close()
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()
    assert proc.returncode == 0
    assert list(tmp_path.iterdir()) == []  # socat stopped, links removed

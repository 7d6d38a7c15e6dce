"""Our RTU driver against an RTU slave nobody on this project wrote: libmodbus (libmodbus_rtu_server.c)
on one end of a socat pty pair."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _require import require_pkg_config, require_tool
from test_peer_libmodbus import EXPECTED

from drivers.base import CommError, DeviceError, Sample
from drivers.modbus import ModbusPoint
from drivers.modbus.config import ModbusRtuChannel
from drivers.modbus.rtu import ModbusRtuDriver
from gasiot_sim.pty_pair import PtyPair

pytestmark = pytest.mark.peer

SOURCE = Path(__file__).with_name("libmodbus_rtu_server.c")
UNIT = 17


@pytest.fixture(scope="session")
def rtu_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = require_tool("gcc")
    flags = require_pkg_config("libmodbus")
    binary = tmp_path_factory.mktemp("libmodbus_rtu") / "libmodbus_rtu_server"
    result = subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE), *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return binary


@pytest.fixture
async def driver(tmp_path: Path, rtu_binary: Path) -> AsyncIterator[ModbusRtuDriver]:
    require_tool("socat")
    async with PtyPair(tmp_path) as pair:
        proc = await asyncio.create_subprocess_exec(
            str(rtu_binary), pair.a, str(UNIT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(5):
                ready = await proc.stdout.readline()
            assert ready == b"listening\n", await proc.stderr.read() if proc.stderr else b""
            drv = ModbusRtuDriver(ModbusRtuChannel(port=pair.b, baudrate=19200, timeout_s=0.3))
            yield drv
            await drv.close()
        finally:
            proc.terminate()
            await proc.wait()


async def test_driver_decodes_the_libmodbus_pattern_over_rtu(driver):
    points = tuple((key, point) for key, (point, _) in EXPECTED.items())
    samples = await driver.read(UNIT, points)
    assert samples == [Sample(key, value) for key, (_, value) in EXPECTED.items()]
    assert driver.statistics.requests == 4  # one per table


async def test_libmodbus_exceptions_mark_only_their_request(driver):
    points = (
        ("u16", EXPECTED["u16"][0]),
        ("beyond", ModbusPoint(table="holding", address=40)),  # the map has 32 holding registers
    )
    samples = await driver.read(UNIT, points)
    assert samples == [Sample("u16", 12345), Sample("beyond", None, "modbus_exception_2")]
    with pytest.raises(DeviceError, match="modbus_exception_2"):
        await driver.write(UNIT, ModbusPoint(table="holding", address=40), 1)


async def test_write_then_read_back(driver):
    point = ModbusPoint(table="holding", address=20, type="int32", word_order="little")
    await driver.write(UNIT, point, -70000)
    assert await driver.read(UNIT, (("v", point),)) == [Sample("v", -70000)]


async def test_another_unit_id_gets_no_answer_and_the_line_stays_usable(driver):
    # libmodbus skips the answer it expects to overhear from the other unit for 100 ms (see the C
    # file); our 0.3 s timeout outlasts that, so the next request finds it listening again.
    with pytest.raises(CommError, match="did not answer"):
        await driver.read(UNIT + 1, (("u16", EXPECTED["u16"][0]),))
    assert await driver.read(UNIT, (("u16", EXPECTED["u16"][0]),)) == [Sample("u16", 12345)]
    assert driver.statistics.connects == 1
    assert driver.statistics.units[UNIT + 1].timeouts == 1

"""Our driver against a Modbus server nobody on this project wrote: libmodbus (libmodbus_server.c)."""

from __future__ import annotations

import select
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _require import require_pkg_config, require_tool

from drivers.base import Sample
from drivers.modbus import ModbusPoint, ModbusTcpChannel, ModbusTcpDriver

pytestmark = pytest.mark.peer

SOURCE = Path(__file__).with_name("libmodbus_server.c")
PORT_TAKEN = 3  # exit status of libmodbus_server when its port was grabbed meanwhile


@pytest.fixture(scope="session")
def libmodbus_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = require_tool("gcc")
    flags = require_pkg_config("libmodbus")
    binary = tmp_path_factory.mktemp("libmodbus") / "libmodbus_server"
    result = subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE), *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return binary


def _free_port() -> int:
    # libmodbus cannot bind port 0 and report it, so borrow a free port from the kernel.  Another
    # process may take it before libmodbus binds: the server then exits with PORT_TAKEN and we retry.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return proc.stdout.readline().strip() if readable else ""


@pytest.fixture(scope="session")
def libmodbus_port(libmodbus_binary: Path) -> Iterator[int]:
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [str(libmodbus_binary), str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if _first_line(proc, timeout_s=5) == "listening":
            break
        proc.kill()
        proc.wait()
        if proc.returncode != PORT_TAKEN:
            pytest.fail(f"libmodbus_server did not start: {proc.stderr.read() if proc.stderr else ''}")
    else:
        pytest.fail("libmodbus_server found no free port in 5 attempts")
    yield port
    proc.terminate()
    proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
async def driver(libmodbus_port: int) -> AsyncIterator[ModbusTcpDriver]:
    drv = ModbusTcpDriver(ModbusTcpChannel(host="127.0.0.1", port=libmodbus_port, timeout_s=1.0))
    yield drv
    await drv.close()


def h(address: int, type_: str, order: str = "ABCD", **kw: object) -> ModbusPoint:
    byte_order = "big" if order in ("ABCD", "CDAB") else "little"
    word_order = "big" if order in ("ABCD", "BADC") else "little"
    return ModbusPoint(
        table=kw.pop("table", "holding"), address=address, type=type_, byte_order=byte_order,
        word_order=word_order, **kw,
    )  # fmt: skip


EXPECTED = {  # key: (point, value) — the pattern in libmodbus_server.c
    "f32_abcd": (h(0, "float32", "ABCD"), 1.5),
    "f32_cdab": (h(2, "float32", "CDAB"), 1.5),
    "f32_badc": (h(4, "float32", "BADC"), 1.5),
    "f32_dcba": (h(6, "float32", "DCBA"), 1.5),
    "i32": (h(8, "int32"), -2),
    "u16": (h(10, "uint16"), 12345),
    "i16": (h(11, "int16"), -123),
    "f64": (h(12, "float64"), -2.5),
    "in_u32": (h(0, "uint32", table="input"), 0x12345678),
    "in_bit0": (h(2, "bool", table="input", bit=0), True),
    "in_bit1": (h(2, "bool", table="input", bit=1), False),
    "in_bit2": (h(2, "bool", table="input", bit=2), True),
    "coil0": (ModbusPoint(table="coil", address=0, type="bool"), True),
    "coil1": (ModbusPoint(table="coil", address=1, type="bool"), False),
    "coil3": (ModbusPoint(table="coil", address=3, type="bool"), True),
    "di0": (ModbusPoint(table="discrete", address=0, type="bool"), False),
    "di1": (ModbusPoint(table="discrete", address=1, type="bool"), True),
}


async def test_driver_decodes_the_libmodbus_pattern(driver: ModbusTcpDriver) -> None:
    points = tuple((key, point) for key, (point, _) in EXPECTED.items())
    samples = await driver.read(1, points)
    assert samples == [Sample(key, value) for key, (_, value) in EXPECTED.items()]
    assert driver.statistics.requests == 4  # one per table


async def test_libmodbus_exception_marks_only_that_request(driver: ModbusTcpDriver) -> None:
    points = (("ok", h(10, "uint16")), ("beyond", h(40, "uint16")))
    assert await driver.read(1, points) == [
        Sample("ok", 12345),
        Sample("beyond", None, "modbus_exception_2"),
    ]


WRITES = [  # (point, value, raw registers libmodbus must end up holding)
    (h(16, "float32", "CDAB"), 1.5, [0x0000, 0x3FC0]),
    (h(18, "int32", "DCBA"), -123456789, [0xEB32, 0xA4F8]),
    (h(20, "uint16", "BADC"), 51234, [0x22C8]),
    (h(21, "uint32", "ABCD"), 3_000_000_000, [0xB2D0, 0x5E00]),
    (h(24, "float64", "BADC"), 123456.789, [0xFE40, 0x0C24, 0xBE9F, 0xC976]),
]


@pytest.mark.parametrize(("point", "value", "raw"), WRITES, ids=[f"{p.type}@{p.address}" for p, _, _ in WRITES])
async def test_driver_writes_land_as_expected_in_libmodbus(
    driver: ModbusTcpDriver, point: ModbusPoint, value: float, raw: list[int]
) -> None:
    await driver.write(1, point, value)
    raw_points = tuple((f"r{i}", h(point.address + i, "uint16")) for i in range(point.width))
    assert [s.value for s in await driver.read(1, raw_points)] == raw
    assert await driver.read(1, (("v", point),)) == [Sample("v", value)]


async def test_driver_writes_a_coil(driver: ModbusTcpDriver) -> None:
    coil = ModbusPoint(table="coil", address=5, type="bool")
    for value in (True, False):
        await driver.write(1, coil, value)
        assert await driver.read(1, (("c", coil),)) == [Sample("c", value)]

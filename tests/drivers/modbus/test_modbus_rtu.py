"""ModbusRtuDriver / ModbusRtuOverTcpDriver against the simulated RTU bus, over a real socat pty pair
and a real TCP socket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from peers._require import require_tool

from drivers.base import CommError, DeviceError, Sample
from drivers.modbus import ModbusPoint
from drivers.modbus.config import ModbusRtuChannel, ModbusRtuOverTcpChannel
from drivers.modbus.rtu import ModbusRtuDriver, ModbusRtuOverTcpDriver, NoAnswerError
from gasiot_sim.pty_pair import PtyPair
from gasiot_sim.rtu_bus import RtuBusSim
from gasiot_sim.test_pattern import TEST_PATTERN
from support.wait import eventually

FROZEN = 3600.0  # the ticker never moves the physics during a test
UNITS = {1: 11, 2: 22, 3: 33}  # unit id -> seed
TIMEOUT_S = 0.25

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
DIVISOR = {"temperature": 10, "filter_dp": 100, "box_methane": 10, "flow": 100, "setpoint": 100}
SETPOINT = dict(HOLDING_POINTS)["setpoint"]
SLAM_RESET = ModbusPoint(table="coil", address=0, type="bool")
DOOR_INPUT = ModbusPoint(table="discrete", address=0, type="bool")
PATTERN_POINTS = tuple(
    (key, ModbusPoint(table="input", address=p.address, type=p.type, bit=p.bit, byte_order=p.byte_order,
                      word_order=p.word_order))
    for key, p in TEST_PATTERN.items()
)  # fmt: skip
# Two requests (holding, then input): a silent unit must not be asked twice per read.
TWO_REQUESTS = (*HOLDING_POINTS[:2], PATTERN_POINTS[0])


def values(samples: list[Sample]) -> dict[str, object]:
    assert all(s.error is None for s in samples), samples
    return {s.key: s.value for s in samples}


def engineering(raw: dict[str, object]) -> dict[str, object]:
    return {key: value / DIVISOR[key] if key in DIVISOR else value for key, value in raw.items()}


@pytest.fixture
async def pty_pair(tmp_path: Path) -> AsyncIterator[PtyPair]:
    require_tool("socat")  # skips locally, fails in CI (GASIOT_REQUIRE_PEERS=1) when missing
    async with PtyPair(tmp_path) as pair:
        yield pair


def _bus() -> RtuBusSim:
    sim = RtuBusSim(units=UNITS, tick_s=FROZEN)
    sim.step(120.0)  # let the seeds diverge, so a unit mix-up shows as wrong values
    return sim


@pytest.fixture
async def bus(pty_pair: PtyPair) -> AsyncIterator[RtuBusSim]:
    sim = _bus()
    await sim.start(pty_pair.a)
    yield sim
    await sim.stop()


@pytest.fixture
async def driver(pty_pair: PtyPair, bus: RtuBusSim) -> AsyncIterator[ModbusRtuDriver]:
    drv = ModbusRtuDriver(ModbusRtuChannel(port=pty_pair.b, baudrate=19200, timeout_s=TIMEOUT_S))
    yield drv
    await drv.close()


# ---------------------------------------------------------------------- values


async def test_every_unit_serves_its_own_snapshot(bus, driver):
    seen = {}
    for unit in UNITS:
        seen[unit] = engineering(values(await driver.read(unit, HOLDING_POINTS)))
        assert seen[unit] == bus.snapshot(unit)
    assert len({got["inlet_pressure"] for got in seen.values()}) == len(UNITS)  # really three boxes
    assert driver.statistics.requests == len(UNITS)  # one coalesced request per read
    assert driver.statistics.connects == 1


async def test_test_pattern_of_every_unit(driver):
    expected = {key: p.value for key, p in TEST_PATTERN.items()}
    for unit in UNITS:
        assert values(await driver.read(unit, PATTERN_POINTS)) == expected


async def test_bits_coils_and_discrete_inputs(bus, driver):
    bus.devices[3].box.set_door(True)
    bus.devices[3].refresh()
    points = (("door_bit", dict(HOLDING_POINTS)["door_open"]), ("door", DOOR_INPUT), ("reset", SLAM_RESET))
    assert values(await driver.read(3, points)) == {"door_bit": True, "door": True, "reset": False}
    assert values(await driver.read(1, points)) == {"door_bit": False, "door": False, "reset": False}


async def test_write_reaches_only_its_unit_and_exceptions_stay_per_request(bus, driver):
    await driver.write(2, SETPOINT, 250)
    assert bus.snapshot(2)["setpoint"] == 2.5
    assert bus.snapshot(1)["setpoint"] == 3.0
    with pytest.raises(DeviceError, match="modbus_exception_3"):
        await driver.write(2, SETPOINT, 9999)  # outside 1..5 kPa
    samples = await driver.read(2, (*HOLDING_POINTS[:1], ("missing", ModbusPoint(table="holding", address=50))))
    assert samples[1] == Sample("missing", None, "modbus_exception_2")
    assert samples[0].error is None
    assert driver.statistics.exceptions == 2
    assert driver.statistics.timeouts == 0


async def test_bad_unit_ids_are_refused_before_the_wire(driver):
    with pytest.raises(ValueError, match="broadcast"):
        await driver.read(0, HOLDING_POINTS)
    with pytest.raises(ValueError, match=r"1\.\.247"):
        await driver.write(248, SETPOINT, 250)
    assert driver.statistics.requests == 0


# ---------------------------------------------------------------------- a silent unit


async def test_a_silent_unit_costs_one_timeout_per_attempt_and_the_bus_stays_up(bus, driver):
    bus.set_silent(2, True)
    polls = 5
    for _ in range(polls):
        for unit in (1, 3):
            values(await driver.read(unit, TWO_REQUESTS))
        with pytest.raises(NoAnswerError, match=r"unit 2 .* did not answer"):
            await driver.read(2, TWO_REQUESTS)
    units = driver.statistics.units
    # The silent unit: exactly one request (and one timeout) per attempt, never a retry.
    assert (units[2].requests, units[2].timeouts, units[2].answers) == (polls, polls, 0)
    # The healthy units: every request of every poll answered.
    for unit in (1, 3):
        assert (units[unit].requests, units[unit].answers, units[unit].timeouts) == (2 * polls, 2 * polls, 0)
    assert driver.statistics.connects == 1  # the port was never closed
    assert [frame for frame in bus.journal if frame[0] == 2] == [(2, 3)] * polls

    bus.set_silent(2, False)  # the unit comes back: no reopen needed
    assert engineering(values(await driver.read(2, HOLDING_POINTS))) == bus.snapshot(2)
    assert driver.statistics.connects == 1


async def test_concurrent_pollers_the_silent_one_blocks_the_line_one_timeout_per_attempt(bus, driver):
    bus.set_silent(2, True)
    healthy_polls = 6
    silent_attempts = 0
    done = asyncio.Event()

    async def healthy(unit: int) -> None:
        for _ in range(healthy_polls):
            values(await driver.read(unit, HOLDING_POINTS))

    async def silent() -> None:
        nonlocal silent_attempts
        while not done.is_set():
            silent_attempts += 1
            with pytest.raises(CommError):
                await driver.read(2, TWO_REQUESTS)

    prober = asyncio.create_task(silent())
    await asyncio.gather(healthy(1), healthy(3))
    done.set()
    await prober
    units = driver.statistics.units
    assert units[1].answers == units[3].answers == healthy_polls
    assert units[2].requests == units[2].timeouts == silent_attempts
    # With FIFO turns each silent attempt holds the line once, between healthy polls: the
    # healthy pollers lose at most one timeout per attempt, never more.
    frames = list(bus.journal)
    assert all(not (a[0] == b[0] == 2) for a, b in itertools.pairwise(frames))
    assert silent_attempts <= healthy_polls + 1


# ---------------------------------------------------------------------- bus order


async def test_a_write_goes_out_before_polls_already_queued(bus, driver):
    drv = ModbusRtuDriver(driver.channel.model_copy(update={"timeout_s": 1.0}))  # a wide window
    one_point = HOLDING_POINTS[:1]
    bus.set_silent(3, True)
    try:
        blocker = asyncio.create_task(drv.read(3, one_point))  # holds the line for a whole timeout
        await eventually(lambda: drv.bus.busy, timeout=1, what="the blocker holds the line")
        polls = [asyncio.create_task(drv.read(1, one_point)) for _ in range(3)]
        await eventually(lambda: drv.bus.queued == 3, timeout=1, what="three polls queued")
        write = asyncio.create_task(drv.write(1, SETPOINT, 260))
        await eventually(lambda: drv.bus.queued == 4, timeout=1, what="the write queued")
        assert drv.bus.busy  # still inside the blocker's timeout: nothing has moved yet
        await asyncio.gather(write, *polls)
        with pytest.raises(CommError):
            await blocker
    finally:
        await drv.close()
    read_holding, write_register = 3, 6
    assert list(bus.journal)[-5:] == [(3, read_holding), (1, write_register)] + [(1, read_holding)] * 3
    assert bus.snapshot(1)["setpoint"] == 2.6


# ---------------------------------------------------------------------- the port itself


async def test_a_dead_port_is_a_comm_error_and_the_driver_reopens_it(tmp_path, pty_pair, bus, driver):
    values(await driver.read(1, HOLDING_POINTS))
    await bus.stop()
    await pty_pair.stop()  # the cable is pulled: the pty disappears
    with pytest.raises(CommError) as failed:
        await driver.read(1, HOLDING_POINTS)
    assert not isinstance(failed.value, NoAnswerError)  # the port failed, not the unit
    assert driver.statistics.timeouts == 0
    with pytest.raises(CommError, match="cannot open"):
        await driver.read(1, HOLDING_POINTS)
    async with PtyPair(tmp_path) as again:  # plugged back at the same path
        await bus.start(again.a)
        try:
            assert engineering(values(await driver.read(1, HOLDING_POINTS))) == bus.snapshot(1)
        finally:
            await bus.stop()
    assert driver.statistics.connects == 2


async def test_missing_port_raises_comm_error(tmp_path):
    drv = ModbusRtuDriver(ModbusRtuChannel(port=str(tmp_path / "ttyUSB9"), timeout_s=0.2))
    with pytest.raises(CommError, match="cannot open"):
        await drv.connect()
    await drv.close()
    assert drv.statistics.comm_errors == 1


# ---------------------------------------------------------------------- RTU over TCP


@pytest.fixture
async def tcp_bus() -> AsyncIterator[RtuBusSim]:
    sim = _bus()
    await sim.start_tcp()
    yield sim
    await sim.stop()


@pytest.fixture
async def tcp_driver(tcp_bus: RtuBusSim) -> AsyncIterator[ModbusRtuOverTcpDriver]:
    assert tcp_bus.tcp_port is not None
    drv = ModbusRtuOverTcpDriver(ModbusRtuOverTcpChannel(host="127.0.0.1", port=tcp_bus.tcp_port, timeout_s=TIMEOUT_S))
    yield drv
    await drv.close()


async def test_rtu_over_tcp_reads_every_unit_and_writes(tcp_bus, tcp_driver):
    for unit in UNITS:
        assert engineering(values(await tcp_driver.read(unit, HOLDING_POINTS))) == tcp_bus.snapshot(unit)
    expected = {key: p.value for key, p in TEST_PATTERN.items()}
    assert values(await tcp_driver.read(2, PATTERN_POINTS)) == expected
    await tcp_driver.write(3, SETPOINT, 275)
    assert tcp_bus.snapshot(3)["setpoint"] == 2.75
    assert tcp_driver.statistics.connects == 1


async def test_rtu_over_tcp_silent_unit_keeps_the_connection_while_others_answer(tcp_bus, tcp_driver):
    tcp_bus.set_silent(1, True)
    for _ in range(4):
        with pytest.raises(CommError):
            await tcp_driver.read(1, TWO_REQUESTS)
        values(await tcp_driver.read(2, HOLDING_POINTS))
    assert tcp_driver.statistics.connects == 1
    assert tcp_driver.statistics.units[1].timeouts == 4


async def test_rtu_over_tcp_reopens_after_three_unanswered_requests_in_a_row(tcp_bus, tcp_driver):
    # Nobody on the line answers: the serial server itself may be gone (a half-open socket).
    for unit in UNITS:
        tcp_bus.set_silent(unit, True)
    for unit in UNITS:
        with pytest.raises(CommError):
            await tcp_driver.read(unit, HOLDING_POINTS)
    tcp_bus.set_silent(2, False)
    values(await tcp_driver.read(2, HOLDING_POINTS))
    assert tcp_driver.statistics.connects == 2

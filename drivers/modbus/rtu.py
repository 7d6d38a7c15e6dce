"""Modbus RTU drivers: on a serial line (RS-485, pyserial through pymodbus) and RTU frames over TCP.

Every unit id on the line shares one port and one :class:`~drivers.modbus.bus.BusQueue`: one
transaction (request + answer) at a time, writes before polls, the inter-frame silence kept
between frames.  What the caller sees:

- a unit that does not answer in time: :class:`NoAnswerError` (a CommError) for that call only.
  The port stays open, its input is flushed and the next transaction (for any unit) goes out at
  once, so one silent slave costs the others exactly one timeout per request sent to it.  Backing
  off the silent unit is the caller's job (the edge probes it at a slower rate).
- the port itself fails (adapter unplugged, serial server resets the socket): CommError; the port
  is closed and reopened by the next call.
- a Modbus exception answer: only that request's points are bad (read) or DeviceError (write).
- an answer that does not belong to the request (another unit or function, e.g. a late frame):
  NoAnswerError, input flushed.  RTU has no transaction id: a late answer from the *same* unit and
  function that arrives after the next request went out cannot be told apart, so ``timeout_s``
  must cover the slowest device on the line.

pymodbus's own retries and reconnect are off: the caller owns retry and backoff.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.transport.serialtransport import SerialTransport

from drivers.base import CommError, DeviceError, Driver, NoAnswer, Sample, ScalarValue
from drivers.modbus.bus import BusQueue, Priority
from drivers.modbus.config import BIT_TABLES, ModbusPoint, ModbusRtuChannel, ModbusRtuOverTcpChannel
from drivers.modbus.ops import (
    READ_FUNCTION,
    LinkWatch,
    ModbusStatistics,
    PlanCache,
    open_client,
    response_samples,
    send_read,
    send_write,
    write_function,
    write_payload,
)
from drivers.modbus.planner import Member, ReadRequest

_log = logging.getLogger(__name__)

_MAX_ADU_BYTES = 256  # longest RTU frame
Send = Callable[[ModbusBaseClient], Awaitable[ModbusPDU]]


class NoAnswerError(NoAnswer):
    """One unit did not answer (or answered something else); the line itself is fine.

    Back off that unit; closing the driver would not help the unit and would cost every other
    unit on the line a reopen.  A plain CommError means the port itself failed.
    """


@dataclass(slots=True)
class UnitStatistics:
    """Counters of one unit id on the line."""

    requests: int = 0
    answers: int = 0  # any answer, Modbus exceptions included
    timeouts: int = 0
    exceptions: int = 0


@dataclass(slots=True)
class RtuStatistics(ModbusStatistics):
    """Line counters (``comm_errors`` includes timeouts) plus one :class:`UnitStatistics` per unit."""

    timeouts: int = 0
    units: dict[int, UnitStatistics] = field(default_factory=dict)

    def unit(self, unit: int) -> UnitStatistics:
        return self.units.setdefault(unit, UnitStatistics())


def _read_wire_bytes(request: ReadRequest) -> int:
    """Bytes of the request frame plus the longest answer frame."""
    data = (request.count + 7) // 8 if request.table in BIT_TABLES else 2 * request.count
    return 8 + 5 + data


def _write_wire_bytes(payload: bool | list[int]) -> int:
    request = 8 if isinstance(payload, bool) or len(payload) == 1 else 9 + 2 * len(payload)
    return request + 8


def _check_unit(unit: int) -> None:
    if not 1 <= unit <= 247:
        raise ValueError(f"unit id {unit} is not 1..247 (0 is broadcast: nobody answers it)")


class _RtuLine(ABC):
    """What both RTU drivers share: the bus queue, the port's lifecycle and one transaction."""

    # Unanswered requests in a row (no unit answered in between) after which the link itself is
    # presumed dead and reopened.  None: never (a serial port does not go half-open; a TCP
    # connection to a serial server can).
    _reopen_after_silence: int | None = None

    def __init__(
        self,
        *,
        endpoint: str,
        timeout_s: float,
        char_s: float,
        gap_s: float,
        max_registers: int,
        max_bits: int,
        max_gap: int,
    ) -> None:
        self.statistics = RtuStatistics()
        self.bus = BusQueue(gap_s=gap_s)
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._char_s = char_s  # 0 when the line timing is not ours (RTU over TCP)
        # pymodbus's own response timeout stays above ours, so ours always fires first.
        self._client_timeout_s = timeout_s + 2 * _MAX_ADU_BYTES * char_s + 1.0
        self._plans = PlanCache(max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
        # Created on first use: pymodbus clients need a running event loop.
        self._client: ModbusBaseClient | None = None
        self._usable = False  # False: reopen before the next transaction
        self._link = LinkWatch()  # told by pymodbus (via trace_connect) when the port closes
        self._up: bool | None = None  # last logged line state
        self._answering: dict[int, bool] = {}  # last logged state per unit
        self._unanswered = 0  # requests in a row that no unit answered

    @abstractmethod
    def _new_client(self) -> ModbusBaseClient:
        """A pymodbus client for this line, retries and reconnect off, ``trace_connect`` hooked."""

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the port (no-op when open).  Raises CommError on failure."""
        async with self.bus.turn(Priority.POLL):
            await self._open_client()

    async def close(self) -> None:
        """Close the port.  Not a bus transaction: closing must not wait for a stuck request."""
        self._usable = False
        self._link.lose()  # an in-flight request fails now instead of at its timeout
        if self._client is not None:
            self._client.close()

    async def _open_client(self) -> ModbusBaseClient:
        client = self._client
        if client is not None and self._usable and client.connected:
            return client
        if client is None:
            client = self._client = self._new_client()
        else:
            client.close()  # drop a broken port before opening it again
        self._link = LinkWatch()
        if not await open_client(client, self._timeout_s):
            self.statistics.comm_errors += 1
            self._set_up(False, "cannot open")
            raise CommError(f"cannot open {self._endpoint}")
        self.statistics.connects += 1
        self._usable = True
        self._unanswered = 0
        self._set_up(True, "open")
        return client

    def _on_connection_change(self, connected: bool) -> None:
        if not connected:
            self._link.lose()

    def _broken(self, why: str) -> None:
        self.statistics.comm_errors += 1
        self._usable = False
        if self._client is not None:
            self._client.close()
        self._set_up(False, why)

    def _set_up(self, up: bool, why: str) -> None:
        if up != self._up:
            level = logging.INFO if up else logging.WARNING
            _log.log(level, "modbus rtu %s %s: %s", self._endpoint, "up" if up else "down", why)
        self._up = up

    def _set_answering(self, unit: int, answering: bool, why: str) -> None:
        before = self._answering.get(unit)
        if (before is not None and before != answering) or (before is None and not answering):
            level = logging.INFO if answering else logging.WARNING
            _log.log(level, "modbus rtu %s unit %s %s", self._endpoint, unit, why)
        self._answering[unit] = answering

    # ------------------------------------------------------------------ transactions

    def plan(self, unit: int, points: Sequence[Member]) -> list[ReadRequest]:
        """The read requests for ``points``; cached when ``points`` is a tuple (immutable)."""
        return self._plans.plan(unit, points)

    async def read(self, unit: int, points: Sequence[Member]) -> list[Sample]:
        """One Sample per point, in the order given.

        Each planned request is its own bus transaction (a write may go out between two of
        them).  Raises NoAnswerError when the unit does not answer (the rest of the read is not
        attempted), CommError when the port fails; a Modbus exception marks only the points of
        that request.
        """
        if not points:
            return []
        _check_unit(unit)
        results: dict[str, Sample] = {}
        for request in self.plan(unit, points):
            send = partial(send_read, unit=unit, request=request)
            response = await self._transact(
                unit, READ_FUNCTION[request.table], Priority.POLL, send, _read_wire_bytes(request)
            )
            results.update((s.key, s) for s in response_samples(request, response, self.statistics))
        return [results[key] for key, _ in points]

    async def write(self, unit: int, point: ModbusPoint, value: ScalarValue) -> None:
        """Write one value ahead of any queued poll: coil -> function 5, holding -> 6 or 16.

        Raises DeviceError for read-only points and Modbus exception answers, CodecError
        (a ValueError) when the value does not fit the type, NoAnswerError when the unit does not
        answer, CommError when the port fails.
        """
        _check_unit(unit)
        payload = write_payload(point, value)
        send = partial(send_write, unit=unit, address=point.address, payload=payload)
        response = await self._transact(unit, write_function(payload), Priority.WRITE, send, _write_wire_bytes(payload))
        if isinstance(response, ExceptionResponse):
            raise DeviceError(f"modbus_exception_{response.exception_code}")

    async def _transact(self, unit: int, function: int, priority: Priority, send: Send, wire_bytes: int) -> ModbusPDU:
        """One request and its answer, holding the line; every failure becomes CommError."""
        counters = self.statistics.unit(unit)
        async with self.bus.turn(priority):
            client = await self._open_client()
            self.statistics.requests += 1
            counters.requests += 1
            timeout_s = self._timeout_s + wire_bytes * self._char_s
            try:
                async with asyncio.timeout(timeout_s):
                    response = await self._link.run(partial(send, client))
            except TimeoutError as err:
                self._no_answer(client, unit, counters)
                raise NoAnswerError(f"unit {unit} on {self._endpoint} did not answer within {timeout_s:.3g} s") from err
            except (ConnectionException, ModbusIOException) as err:
                self._broken(str(err))
                raise CommError(f"{self._endpoint}: {err}") from err
            if response.dev_id != unit or response.function_code & 0x7F != function:
                self.statistics.comm_errors += 1
                self._flush(client)
                raise NoAnswerError(
                    f"{self._endpoint}: answer from unit {response.dev_id} function {response.function_code} "
                    f"while waiting for unit {unit} function {function}"
                )
            self._unanswered = 0
            counters.answers += 1
            if isinstance(response, ExceptionResponse):
                self.statistics.exceptions += 1
                counters.exceptions += 1
            self._set_answering(unit, True, "answers again")
            return response

    def _no_answer(self, client: ModbusBaseClient, unit: int, counters: UnitStatistics) -> None:
        self.statistics.timeouts += 1
        self.statistics.comm_errors += 1
        counters.timeouts += 1
        self._flush(client)
        self._set_answering(unit, False, "does not answer")
        self._unanswered += 1
        limit = self._reopen_after_silence
        if limit is not None and self._unanswered >= limit:
            self._broken(f"{self._unanswered} requests in a row unanswered by any unit")

    def _flush(self, client: ModbusBaseClient) -> None:
        """Drop received bytes, so a late answer is not taken for the next request's."""
        client.ctx.recv_buffer = b""


class ModbusRtuDriver(_RtuLine):
    """:class:`drivers.base.Driver` for :class:`ModbusPoint` over Modbus RTU on a serial port."""

    def __init__(self, channel: ModbusRtuChannel) -> None:
        super().__init__(
            endpoint=channel.port,
            timeout_s=channel.timeout_s,
            char_s=channel.char_s,
            gap_s=channel.inter_frame_s,
            max_registers=channel.max_registers,
            max_bits=channel.max_bits,
            max_gap=channel.max_gap,
        )
        self.channel = channel

    def _new_client(self) -> ModbusBaseClient:
        ch = self.channel
        return AsyncModbusSerialClient(
            ch.port,
            framer=FramerType.RTU,
            baudrate=ch.baudrate,
            bytesize=ch.bytesize,
            parity=ch.parity,
            stopbits=ch.stopbits,
            name=ch.port,
            timeout=self._client_timeout_s,
            retries=0,
            reconnect_delay=0,  # 0 disables pymodbus's background reopen task
            reconnect_delay_max=0,
            trace_connect=self._on_connection_change,
        )

    def _flush(self, client: ModbusBaseClient) -> None:
        super()._flush(client)
        transport = client.ctx.transport
        if isinstance(transport, SerialTransport) and transport.sync_serial is not None:
            transport.sync_serial.reset_input_buffer()  # bytes the OS holds but pymodbus has not read


class ModbusRtuOverTcpDriver(_RtuLine):
    """:class:`drivers.base.Driver` for :class:`ModbusPoint`: RTU frames over TCP to a serial server."""

    _reopen_after_silence = 3

    def __init__(self, channel: ModbusRtuOverTcpChannel) -> None:
        super().__init__(
            endpoint=f"{channel.host}:{channel.port}",
            timeout_s=channel.timeout_s,
            char_s=0.0,
            gap_s=0.0,
            max_registers=channel.max_registers,
            max_bits=channel.max_bits,
            max_gap=channel.max_gap,
        )
        self.channel = channel

    def _new_client(self) -> ModbusBaseClient:
        ch = self.channel
        return AsyncModbusTcpClient(
            ch.host,
            port=ch.port,
            framer=FramerType.RTU,
            name=self._endpoint,
            timeout=self._client_timeout_s,
            retries=0,
            reconnect_delay=0,
            reconnect_delay_max=0,
            trace_connect=self._on_connection_change,
        )


if TYPE_CHECKING:
    # Static proof, checked by mypy, that both classes satisfy the Driver protocol.
    def _rtu_is_a_driver(driver: ModbusRtuDriver) -> Driver[ModbusPoint]:
        return driver

    def _rtu_tcp_is_a_driver(driver: ModbusRtuOverTcpDriver) -> Driver[ModbusPoint]:
        return driver

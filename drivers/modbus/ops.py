"""What every Modbus transport (TCP, RTU, RTU over TCP) does the same way: cache read plans, send a
read or write through a pymodbus client, turn an answer into samples, and check a write.

The transports differ only in how a request reaches the device and what a failure means for the
link; those parts stay in each driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from drivers.base import DeviceError, Sample, ScalarValue
from drivers.modbus.codec import CodecError, encode
from drivers.modbus.config import BIT_TABLES, ModbusPoint
from drivers.modbus.planner import Member, ReadRequest, plan_reads

# Plans are cached per points tuple; a bound keeps a caller that builds new tuples every poll from
# growing the cache without limit.
_log = logging.getLogger(__name__)

_PLAN_CACHE_SIZE = 256

READ_FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}

WritePayload = bool | list[int]


@dataclass(slots=True)
class ModbusStatistics:
    """Counters since the driver was created."""

    requests: int = 0  # requests sent (reads and writes)
    exceptions: int = 0  # Modbus exception responses
    comm_errors: int = 0  # failed connects, timeouts and dropped connections
    bad_responses: int = 0  # answers that do not fit the request (function, count): not believed
    connects: int = 0  # successful connects


class PlanCache:
    """Read plans per (unit, points tuple); a tuple is immutable, so its plan is computed once."""

    def __init__(self, *, max_registers: int, max_bits: int, max_gap: int) -> None:
        self._limits = {"max_registers": max_registers, "max_bits": max_bits, "max_gap": max_gap}
        self._plans: dict[tuple[int, int], tuple[tuple[Member, ...], list[ReadRequest]]] = {}

    def plan(self, unit: int, points: Sequence[Member]) -> list[ReadRequest]:
        """The read requests for ``points``; cached when ``points`` is a tuple."""
        if not isinstance(points, tuple):
            return plan_reads(points, **self._limits)
        cache_key = (unit, id(points))
        cached = self._plans.get(cache_key)
        if cached is not None and cached[0] is points:
            return cached[1]
        requests = plan_reads(points, **self._limits)
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            del self._plans[next(iter(self._plans))]
        # Holding the tuple keeps its id from being reused by another object.
        self._plans[cache_key] = (points, requests)
        return requests


async def open_client(client: ModbusBaseClient, timeout_s: float) -> bool:
    """Connect (TCP) or open (serial) within ``timeout_s``; False when it did not work."""
    try:
        async with asyncio.timeout(timeout_s):
            return bool(await client.connect())
    except TimeoutError:
        return False


def send_read(client: ModbusBaseClient, unit: int, request: ReadRequest) -> Awaitable[ModbusPDU]:
    start, count = request.start, request.count
    if request.table == "holding":
        return client.read_holding_registers(start, count=count, device_id=unit)
    if request.table == "input":
        return client.read_input_registers(start, count=count, device_id=unit)
    if request.table == "coil":
        return client.read_coils(start, count=count, device_id=unit)
    return client.read_discrete_inputs(start, count=count, device_id=unit)


def send_write(client: ModbusBaseClient, unit: int, address: int, payload: WritePayload) -> Awaitable[ModbusPDU]:
    if isinstance(payload, bool):
        return client.write_coil(address, payload, device_id=unit)
    if len(payload) == 1:
        return client.write_register(address, payload[0], device_id=unit)
    return client.write_registers(address, payload, device_id=unit)


class LinkWatch:
    """The state of one connection (or open port): ``run`` awaits a request and fails it at once
    (ConnectionException) when ``lose`` is called meanwhile.

    pymodbus lets a request whose connection dropped wait for its full timeout; cancelling the
    request when the link is lost turns a dead link into an immediate error.  One task per request
    (racing it against an event's wait task cost about 8 µs more per request: #9).
    """

    def __init__(self) -> None:
        self.lost = False
        self._inflight: asyncio.Future[ModbusPDU] | None = None

    def lose(self) -> None:
        self.lost = True
        if self._inflight is not None:
            self._inflight.cancel()

    async def run(self, call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        if self.lost:
            raise ConnectionException("connection closed by peer")
        request = asyncio.ensure_future(call())
        self._inflight = request
        try:
            return await request
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Our own cancellation (timeout, shutdown) propagates; the link's becomes an error.
            if self.lost and request.cancelled() and (current is None or not current.cancelling()):
                raise ConnectionException("connection closed by peer") from None
            raise
        finally:
            self._inflight = None
            if not request.done():
                request.cancel()


def write_function(payload: WritePayload) -> int:
    """The function code :func:`send_write` uses for ``payload``."""
    if isinstance(payload, bool):
        return 5
    return 6 if len(payload) == 1 else 16


def write_payload(point: ModbusPoint, value: ScalarValue) -> WritePayload:
    """What to write for ``value``: coil -> bool (function 5), holding -> registers (6 or 16).

    Raises DeviceError for read-only points and register bits, CodecError (a ValueError) when the
    value does not fit the type.
    """
    if point.table == "coil":
        if not isinstance(value, bool) and value not in (0, 1):
            raise CodecError(f"a coil takes a bool, not {value!r}")
        return bool(value)
    if point.table == "holding" and point.bit is None:
        return encode(value, point.type, point.byte_order, point.word_order)
    if point.table == "holding":
        # Writing one bit means read-modify-write of the whole register: not atomic, refused.
        raise DeviceError("a single bit of a holding register cannot be written")
    raise DeviceError(f"read-only table: {point.table}")


def response_samples(request: ReadRequest, response: ModbusPDU, statistics: ModbusStatistics) -> list[Sample]:
    """The samples of ``request``'s members from the device's answer (an exception marks them all).

    An answer that does not fit the request — another function code, more or fewer registers
    than asked — is not believed: it may be meant for another request (a confused serial gateway)
    and its values would be wrong without any sign of it.  Its points get ``bad_response``.
    """
    if isinstance(response, ExceptionResponse):
        error = f"modbus_exception_{response.exception_code}"
        return [Sample(key, None, error) for key, _ in request.members]
    if (why := response_mismatch(request, response)) is not None:
        statistics.bad_responses += 1
        # Per poll this would flood the log; the count and the points' quality carry it.
        _log.debug("answer to %s %d+%d not believed: %s", request.table, request.start, request.count, why)
        return [Sample(key, None, "bad_response") for key, _ in request.members]
    words: Sequence[bool] | Sequence[int] = response.bits if request.table in BIT_TABLES else response.registers
    return decode_response(request, words)


def response_mismatch(request: ReadRequest, response: ModbusPDU) -> str | None:
    """Why a (non-exception) answer does not fit ``request``, or None when it does."""
    function = READ_FUNCTION[request.table]
    if response.function_code != function:
        return f"function {response.function_code} answers a function {function} request"
    if request.table in BIT_TABLES:
        # Bits travel in whole bytes: up to 7 padding bits after the last one asked for.
        got, want_max = len(response.bits), (request.count + 7) // 8 * 8
        if not request.count <= got <= want_max:
            return f"{got} bits answer a request for {request.count}"
    elif len(response.registers) != request.count:
        return f"{len(response.registers)} registers answer a request for {request.count}"
    return None


def decode_response(request: ReadRequest, words: Sequence[bool] | Sequence[int]) -> list[Sample]:
    """The samples of every member of ``request`` from the words the device answered with."""
    if request.decode_all is not None:
        return list(map(Sample, request.keys, request.decode_all(words)))
    out = []
    for key, first, past, bit, decoder in request.layout:
        if decoder is not None:
            out.append(Sample(key, decoder(words[first:past])))
        elif bit is not None:
            out.append(Sample(key, bool((int(words[first]) >> bit) & 1)))
        else:
            out.append(Sample(key, bool(words[first])))
    return out

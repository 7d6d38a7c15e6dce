"""Modbus TCP driver: one pymodbus client per endpoint, shared by every unit id behind it.

The driver makes exactly one attempt per request.  pymodbus's own retries and automatic
reconnect are switched off because the caller (the running-driver wrapper) owns timeouts,
backoff and availability; a hidden reconnect loop would fight that policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from drivers.base import CommError, DeviceError, Driver, Sample, ScalarValue
from drivers.modbus.config import ModbusPoint, ModbusTcpChannel
from drivers.modbus.ops import (
    LinkWatch,
    ModbusStatistics,
    PlanCache,
    decode_response,
    open_client,
    response_samples,
    send_read,
    send_write,
    write_payload,
)
from drivers.modbus.planner import Member, ReadRequest

_log = logging.getLogger(__name__)

__all__ = ["ModbusStatistics", "ModbusTcpDriver", "decode_response"]


class ModbusTcpDriver:
    """:class:`drivers.base.Driver` for :class:`ModbusPoint` over Modbus TCP."""

    def __init__(self, channel: ModbusTcpChannel) -> None:
        self.channel = channel
        self.statistics = ModbusStatistics()
        self._endpoint = f"{channel.host}:{channel.port}"
        # Created on first connect: pymodbus clients need a running event loop.
        self._client: AsyncModbusTcpClient | None = None
        # One request at a time on the connection, so a request's timeout never includes time
        # spent queueing behind another unit's poll.
        self._lock = asyncio.Lock()
        self._usable = False  # False: reconnect before the next request
        # Told by pymodbus when the peer drops the socket; pymodbus itself would let an in-flight
        # request wait for its full timeout, so the watch fails it at once.
        self._link = LinkWatch()
        self._up: bool | None = None  # last logged state, so only changes are logged
        self._plans = PlanCache(max_registers=channel.max_registers, max_bits=channel.max_bits, max_gap=channel.max_gap)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the connection (no-op when already open).  Raises CommError on failure."""
        async with self._lock:
            await self._connected_client()

    async def close(self) -> None:
        """Close the connection.  Not under the lock: closing must not wait for a stuck request."""
        self._usable = False
        if self._client is not None:
            self._client.close()

    async def _connected_client(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is not None and self._usable and client.connected:
            return client
        if client is None:
            client = self._client = AsyncModbusTcpClient(
                self.channel.host,
                port=self.channel.port,
                name=self._endpoint,
                timeout=self.channel.timeout_s,
                retries=0,
                reconnect_delay=0,  # 0 disables pymodbus's background reconnect task
                reconnect_delay_max=0,
                trace_connect=self._on_connection_change,
            )
        else:
            client.close()  # drop a half-dead socket before dialling again
        self._link = LinkWatch()
        if not await open_client(client, self.channel.timeout_s):
            self.statistics.comm_errors += 1
            self._set_up(False, "connect failed")
            raise CommError(f"cannot connect to {self._endpoint}")
        self.statistics.connects += 1
        self._usable = True
        self._set_up(True, "connected")
        return client

    def _on_connection_change(self, connected: bool) -> None:
        if not connected:
            self._link.lose()

    def _set_up(self, up: bool, why: str) -> None:
        if up != self._up:
            level = logging.INFO if up else logging.WARNING
            _log.log(level, "modbus %s %s: %s", self._endpoint, "up" if up else "down", why)
        self._up = up

    # ------------------------------------------------------------------ read

    def plan(self, unit: int, points: Sequence[Member]) -> list[ReadRequest]:
        """The read requests for ``points``; cached when ``points`` is a tuple (immutable)."""
        return self._plans.plan(unit, points)

    async def read(self, unit: int, points: Sequence[Member]) -> list[Sample]:
        """One Sample per point, in the order given.

        Raises CommError when the endpoint does not answer; a Modbus exception answer marks
        only the points of that request (``error="modbus_exception_<code>"``).
        """
        if not points:
            return []
        requests = self.plan(unit, points)
        results: dict[str, Sample] = {}
        async with self._lock:
            client = await self._connected_client()
            for request in requests:
                response = await self._execute(partial(send_read, client, unit, request))
                results.update((s.key, s) for s in self._samples(request, response))
        return [results[key] for key, _ in points]

    def _samples(self, request: ReadRequest, response: ModbusPDU) -> list[Sample]:
        if isinstance(response, ExceptionResponse):
            self.statistics.exceptions += 1
        return response_samples(request, response, self.statistics)

    # ------------------------------------------------------------------ write

    async def write(self, unit: int, point: ModbusPoint, value: ScalarValue) -> None:
        """Write one value: coil -> function 5, holding -> function 6 (one register) or 16.

        Raises DeviceError for read-only points and Modbus exception answers, CodecError
        (a ValueError) when the value does not fit the type, CommError on transport failure.
        """
        payload = write_payload(point, value)
        async with self._lock:
            client = await self._connected_client()
            response = await self._execute(partial(send_write, client, unit, point.address, payload))
        if isinstance(response, ExceptionResponse):
            self.statistics.exceptions += 1
            raise DeviceError(f"modbus_exception_{response.exception_code}")

    # ------------------------------------------------------------------ transport

    async def _execute(self, call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """Send one request under the channel timeout; any transport failure becomes CommError."""
        client = self._client
        if client is None or not client.connected:
            # The peer closed the socket since the last request; pymodbus would silently redial.
            self._broken("connection lost")
            raise CommError(f"connection to {self._endpoint} lost")
        self.statistics.requests += 1
        try:
            async with asyncio.timeout(self.channel.timeout_s):
                return await self._link.run(call)
        except TimeoutError as err:
            self._broken("timeout")
            raise CommError(f"{self._endpoint} did not answer within {self.channel.timeout_s} s") from err
        except (ConnectionException, ModbusIOException) as err:
            self._broken(str(err))
            raise CommError(f"{self._endpoint}: {err}") from err

    def _broken(self, why: str) -> None:
        # A late answer could otherwise be taken for the next request's: start a fresh connection.
        self.statistics.comm_errors += 1
        self._usable = False
        if self._client is not None:
            self._client.close()
        self._set_up(False, why)


if TYPE_CHECKING:
    # Static proof, checked by mypy, that the class satisfies the Driver protocol.
    def _is_a_driver(driver: ModbusTcpDriver) -> Driver[ModbusPoint]:
        return driver

"""Serial line protocol driver: reads frames from a serial port, routes them to devices by an
address field, and reports silence.  The port is read with the event loop's reader callbacks
(non-blocking file descriptor), so no thread is needed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import serial

from drivers.backoff import Backoff
from drivers.base import DeviceError, PushListener, Sample, ScalarValue, Subscription
from drivers.serial_line.config import SerialLineChannel, SerialLinePoint
from drivers.serial_line.parser import Fields, Parser, parser_for

log = logging.getLogger(__name__)

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class SerialLineDriver:
    """Implements PushDriver[SerialLinePoint]."""

    def __init__(self, channel: SerialLineChannel) -> None:
        self.channel = channel
        self.parser: Parser = parser_for(channel.protocol)
        self.unrouted = 0
        self.port_open = asyncio.Event()  # set while the port is open (tests and diagnostics wait on it)

    async def run(self, subscriptions: Sequence[Subscription[Any]], listener: PushListener) -> None:
        ch = self.channel
        routes: dict[int | None, Subscription[Any]] = {}
        for sub in subscriptions:
            routes[sub.unit if ch.address_field else None] = sub
        backoff = Backoff(ch.reopen_initial_s, ch.reopen_max_s)
        while True:
            try:
                port = self._open()
            except (serial.SerialException, OSError) as err:
                if backoff.failures == 0:
                    listener.on_link(None, False, f"cannot open {ch.port}: {err}")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self.port_open.set()
            try:
                await self._serve(port, routes, listener)
            except (serial.SerialException, OSError) as err:
                log.warning("serial %s lost: %s", ch.port, err)
                listener.on_link(None, False, f"serial port error: {err}")
            finally:
                self.port_open.clear()
                port.close()

    def _open(self) -> serial.Serial:
        ch = self.channel
        return serial.Serial(
            ch.port,
            baudrate=ch.baudrate,
            bytesize=ch.bytesize,
            parity=_PARITY[ch.parity],
            stopbits=ch.stopbits,
            timeout=0,
            write_timeout=0,
        )

    async def _serve(
        self, port: serial.Serial, routes: dict[int | None, Subscription[Any]], listener: PushListener
    ) -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

        def readable() -> None:
            try:
                data = port.read(4096)
            except (serial.SerialException, OSError) as err:
                chunks.put_nowait(err)
                return
            if data:
                chunks.put_nowait(data)

        last_seen = {unit: time.monotonic() for unit in routes}
        silent: set[int | None] = set()
        loop.add_reader(port.fileno(), readable)
        requester = asyncio.create_task(self._request_loop(port)) if self.channel.request else None
        try:
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        chunk = await chunks.get()
                except TimeoutError:
                    chunk = b""
                if isinstance(chunk, BaseException):
                    raise chunk
                now = time.monotonic()
                for frame in self.parser.feed(chunk) if chunk else []:
                    unit = self._unit_of(frame)
                    sub = routes.get(unit)
                    if sub is None:
                        self.unrouted += 1
                        continue
                    last_seen[unit] = now
                    silent.discard(unit)
                    listener.on_samples(sub.device, [_sample(key, point, frame) for key, point in sub.points])
                for unit, seen in last_seen.items():
                    if unit not in silent and now - seen > self.channel.silence_timeout_s:
                        silent.add(unit)
                        listener.on_link(routes[unit].device, False, f"silent for {self.channel.silence_timeout_s:g}s")
        finally:
            loop.remove_reader(port.fileno())
            if requester is not None:
                requester.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await requester

    async def _request_loop(self, port: serial.Serial) -> None:
        request = bytes.fromhex(self.channel.request or "")
        while True:
            port.write(request)
            await asyncio.sleep(self.channel.request_interval_s)  # the polling period

    def _unit_of(self, frame: Fields) -> int | None:
        if self.channel.address_field is None:
            return None
        try:
            return int(frame[self.channel.address_field])
        except (KeyError, ValueError):
            return -1

    async def write(self, unit: int, point: SerialLinePoint, value: ScalarValue) -> None:
        raise DeviceError("serial line points are read-only")


def _sample(key: str, point: SerialLinePoint, frame: Fields) -> Sample:
    if point.field not in frame:
        return Sample(key, None, "missing_in_frame")
    return Sample(key, frame[point.field])

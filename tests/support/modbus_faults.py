"""A Modbus TCP server of our own that answers each request the way a test scripts it: correctly,
or with one of the ways real devices and broken serial gateways get it wrong (a wrong transaction
or unit id, a byte count that disagrees with the data, a truncated frame, random bytes, silence,
a closed socket, a duplicated or stale answer, a slow dribble).

Register ``a`` answers ``value(a, generation)`` where ``generation`` counts the requests the server
has received, so an answer meant for an earlier request carries different values than the current
one: a driver that pairs a stale answer with a new request shows up as a wrong value.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from dataclasses import dataclass, field

BEHAVIOURS = (
    "good",
    "exception",
    "wrong_tid",
    "wrong_pid",
    "wrong_unit",
    "wrong_function",
    "fewer_registers",
    "more_registers",
    "byte_count_lies",
    "odd_byte_count",
    "length_too_big",
    "length_too_small",
    "truncated",
    "random",
    "silent",
    "close",
    "slow",
    "twice",
    "stale",
)


def value(address: int, generation: int) -> int:
    return (address * 7919 + generation * 31) & 0xFFFF


@dataclass
class Script:
    """What the server does with each coming request; ``good`` once the queue is empty."""

    steps: deque[tuple[str, bytes]] = field(default_factory=deque)

    def push(self, behaviour: str, noise: bytes = b"") -> None:
        self.steps.append((behaviour, noise))

    def next(self) -> tuple[str, bytes]:
        return self.steps.popleft() if self.steps else ("good", b"")


class FaultyModbusServer:
    def __init__(self) -> None:
        self.script = Script()
        self.generation = 0  # requests received so far
        self.requests_seen: list[tuple[int, int, int, int]] = []  # (tid, unit, function, count)
        self._server: asyncio.Server | None = None
        self._last_answer: bytes | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        # Closing a connection ends its handler (EOF); wait for them so none is cancelled mid-read.
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, pid, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.generation += 1
                function = pdu[0]
                start, count = struct.unpack(">HH", pdu[1:5])
                self.requests_seen.append((tid, unit, function, count))
                behaviour, noise = self.script.next()
                if not await self._answer(writer, behaviour, noise, tid, pid, unit, function, start, count):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _registers(self, start: int, count: int) -> bytes:
        return b"".join(struct.pack(">H", value(start + i, self.generation)) for i in range(count))

    @staticmethod
    def _frame(tid: int, pid: int, unit: int, pdu: bytes, length: int | None = None) -> bytes:
        return struct.pack(">HHHB", tid, pid, len(pdu) + 1 if length is None else length, unit) + pdu

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        behaviour: str,
        noise: bytes,
        tid: int,
        pid: int,
        unit: int,
        function: int,
        start: int,
        count: int,
    ) -> bool:
        """Write the scripted answer; False closes the connection."""
        data = self._registers(start, count)
        good_pdu = bytes([function, len(data)]) + data
        good = self._frame(tid, pid, unit, good_pdu)
        out: bytes | None
        if behaviour == "good":
            out = good
        elif behaviour == "exception":
            out = self._frame(tid, pid, unit, bytes([function | 0x80, (noise[0] if noise else 2) or 2]))
        elif behaviour == "wrong_tid":
            out = self._frame((tid + 1) & 0xFFFF, pid, unit, good_pdu)
        elif behaviour == "wrong_pid":
            out = self._frame(tid, 1, unit, good_pdu)
        elif behaviour == "wrong_unit":
            out = self._frame(tid, pid, (unit + 1) & 0xFF, good_pdu)
        elif behaviour == "wrong_function":
            out = self._frame(tid, pid, unit, bytes([3 if function == 4 else 4, len(data)]) + data)
        elif behaviour == "fewer_registers":
            out = self._frame(tid, pid, unit, bytes([function, len(data) - 2]) + data[:-2])
        elif behaviour == "more_registers":
            out = self._frame(tid, pid, unit, bytes([function, len(data) + 2]) + data + b"\x12\x34")
        elif behaviour == "byte_count_lies":
            out = self._frame(tid, pid, unit, bytes([function, len(data) + 4]) + data)
        elif behaviour == "odd_byte_count":
            out = self._frame(tid, pid, unit, bytes([function, len(data) - 1]) + data[:-1])
        elif behaviour == "length_too_big":
            out = self._frame(tid, pid, unit, good_pdu, length=len(good_pdu) + 9)
        elif behaviour == "length_too_small":
            out = self._frame(tid, pid, unit, good_pdu, length=len(good_pdu) - 3)
        elif behaviour == "truncated":
            out = good[: max(1, min(len(good) - 1, noise[0] if noise else 5))]
        elif behaviour == "random":
            out = noise or b"\x00"
        elif behaviour == "silent":
            out = None
        elif behaviour == "close":
            return False
        elif behaviour == "slow":
            for i in range(0, len(good), 3):
                writer.write(good[i : i + 3])
                await writer.drain()
                await asyncio.sleep(0.002)  # a slow serial gateway; the frame still arrives in time
            self._last_answer = good
            return True
        elif behaviour == "twice":
            out = good + good
        elif behaviour == "stale":
            out = self._last_answer  # the previous request's answer (its tid and older values)
        else:
            raise ValueError(behaviour)
        if behaviour in ("good", "twice"):
            self._last_answer = good
        if out:
            writer.write(out)
            await writer.drain()
        return True

"""Several regulator boxes on one Modbus RTU line, served by pymodbus on a serial port (a pty from
pty_pair.py) and/or on a TCP port with RTU framing (what a serial device server speaks).

Each unit id is its own :class:`RegulatorBox` with the register map of the TCP simulator
(firmware-sim/README.md).  Like a real RS-485 line, a unit id nobody has does not answer, and a unit
put in ``silent_units`` neither answers nor acts on what it hears (a dead slave on the bus); unit 0
(broadcast) gets no answer either.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gasiot_sim import register_map as rm
from gasiot_sim.box_device import BoxDevice
from gasiot_sim.pty_pair import PtyPair
from gasiot_sim.regulator import RegulatorBox
from gasiot_sim.ticker import Ticker

_log = logging.getLogger(__name__)

_JOURNAL_SIZE = 10_000


class RtuBusSim:
    """Regulator boxes sharing one RTU line.  ``units`` maps unit id -> physics seed.

    ``journal`` lists ``(unit, function code)`` of every request the line carried, in order
    (silent units' requests included), so tests can check what a master sent and when.
    """

    def __init__(
        self,
        *,
        units: Mapping[int, int],
        tick_s: float = 0.2,
        baudrate: int = 19200,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
    ) -> None:
        if not units:
            raise ValueError("a bus needs at least one unit")
        bad = [unit for unit in units if not 1 <= unit <= 247]
        if bad:
            raise ValueError(f"RTU unit ids are 1..247, not {bad}")
        self.devices = {
            unit: BoxDevice(RegulatorBox(seed=seed), unit_id=unit, name=f"rtu bus unit {unit}")
            for unit, seed in sorted(units.items())
        }
        self.baudrate, self.bytesize, self.parity, self.stopbits = baudrate, bytesize, parity, stopbits
        self.journal: deque[tuple[int, int]] = deque(maxlen=_JOURNAL_SIZE)
        self._silent: set[int] = set()
        self._ticker = Ticker(self.step, tick_s, name="rtu-bus-tick")
        self._servers: list[ModbusBaseServer] = []
        self.serial_port: str | None = None
        self.tcp_port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port_path: str) -> None:
        """Serve the line on serial port ``port_path`` (e.g. one end of a :class:`PtyPair`)."""
        if self.serial_port is not None:
            raise RuntimeError("already serving a serial port")
        server = ModbusSerialServer(
            self._sim_devices(),
            framer=FramerType.RTU,
            port=port_path,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        await server.serve_forever(background=True)
        self._servers.append(server)
        self.serial_port = port_path
        self._ticker.start()
        _log.info("rtu bus units %s on %s", sorted(self.devices), port_path)

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Also (or only) serve the line over TCP with RTU framing; returns the bound port."""
        if self.tcp_port is not None:
            raise RuntimeError("already serving TCP")
        server = ModbusTcpServer(
            self._sim_devices(),
            framer=FramerType.RTU,
            address=(host, port),
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        await server.serve_forever(background=True)
        self._servers.append(server)
        listener = server.transport
        if not isinstance(listener, asyncio.Server) or not listener.sockets:
            await self.stop()
            raise RuntimeError("pymodbus did not expose its listening socket")
        self.tcp_port = int(listener.sockets[0].getsockname()[1])
        self._ticker.start()
        _log.info("rtu bus units %s on tcp %s:%s", sorted(self.devices), host, self.tcp_port)
        return self.tcp_port

    async def stop(self) -> None:
        """Stop serving (serial and TCP).  The physics state is kept."""
        await self._ticker.stop()
        servers, self._servers = self._servers, []
        for server in servers:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
        self.serial_port = self.tcp_port = None

    async def __aenter__(self) -> RtuBusSim:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ state

    @property
    def silent_units(self) -> frozenset[int]:
        return frozenset(self._silent)

    def set_silent(self, unit: int, silent: bool) -> None:
        """Make ``unit`` stop (True) or resume (False) answering; takes effect from the next request."""
        device = self.devices[unit]
        if silent == (unit in self._silent):
            return
        if silent:
            self._silent.add(unit)
        else:
            self._silent.discard(unit)
        device.deaf = silent
        _log.warning("rtu bus unit %s %s", unit, "silent" if silent else "answering again")

    def snapshot(self, unit: int) -> dict[str, rm.ServedValue]:
        """Unit ``unit``'s holding-register values as currently served, in engineering units."""
        return self.devices[unit].snapshot()

    def holding_registers(self, unit: int) -> list[int]:
        """Unit ``unit``'s holding registers 0..10 as currently served."""
        return list(self.devices[unit].holding)

    def step(self, dt_s: float) -> None:
        """Advance every box by ``dt_s`` (also what the ticker does every ``tick_s``)."""
        for device in self.devices.values():
            device.step(dt_s)

    @property
    def ticks(self) -> int:
        return self._ticker.ticks

    async def wait_ticks(self, count: int = 1) -> None:
        await self._ticker.wait_ticks(count)

    # ------------------------------------------------------------------ pymodbus glue

    def _sim_devices(self) -> list[SimDevice]:
        # pymodbus's device 0 takes every unit id not listed.  Without it pymodbus 3.16 answers an
        # unknown unit with exception 4 (ignore_missing_devices does not cover SimDevice); with it
        # the request lands here and _trace_packet drops the answer, as a real line would.
        nobody = SimDevice(id=0, simdata=[SimData(0, values=[0], datatype=DataType.REGISTERS)])
        return [*(device.sim_device() for device in self.devices.values()), nobody]

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.journal.append((pdu.dev_id, pdu.function_code))
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # An RTU frame starts with the unit id; a silent unit's answer never leaves.
        if sending and data and self._mute(data[0]):
            return b""
        return data

    def _mute(self, unit: int) -> bool:
        device = self.devices.get(unit)
        return device is None or unit in self._silent or device.comm_lost


async def run_bus(directory: Path, units: Mapping[int, int], *, tcp_port: int | None = None) -> None:
    """Serve ``units`` on a new pty pair in ``directory`` (masters open ``directory/ttyB``) until
    cancelled; with ``tcp_port``, also over TCP with RTU framing."""
    async with PtyPair(directory) as pair, RtuBusSim(units=units) as bus:
        await bus.start(pair.a)
        where = [f"serial {pair.b} (19200 8N1)"]
        if tcp_port is not None:
            where.append(f"rtu-over-tcp 127.0.0.1:{await bus.start_tcp(port=tcp_port)}")
        sys.stdout.write(f"rtu bus units {sorted(units)} on {', '.join(where)}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()  # forever: the caller cancels


async def _until_signalled(directory: Path, units: Mapping[int, int], tcp_port: int | None) -> None:
    # SIGTERM (and SIGINT when run in the background) must still stop socat and remove the links.
    task = asyncio.create_task(run_bus(directory, units, tcp_port=tcp_port))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gasiot_sim.rtu_bus", description=__doc__)
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the pty links ttyA/ttyB go"
    )
    parser.add_argument("--units", default="1,2,3", help="comma-separated unit ids (seed = unit id)")
    parser.add_argument("--tcp-port", type=int, default=None, help="also serve RTU over TCP (0 = any free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    units = {int(u): int(u) for u in args.units.split(",")}
    asyncio.run(_until_signalled(args.dir, units, args.tcp_port))


if __name__ == "__main__":
    main()

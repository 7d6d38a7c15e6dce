"""Serve a simulated regulator box over Modbus TCP (pymodbus server, one port per box).

The register image is ours (see register_map.py and test_pattern.py); pymodbus's datastore is
refreshed from it on every request through the device ``action`` hook, so a read always sees the
latest tick and a write reaches the physics before it is acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gasiot_sim import register_map as rm
from gasiot_sim.regulator import SCENARIOS, RegulatorBox, Scenario
from gasiot_sim.test_pattern import pattern_registers

_log = logging.getLogger(__name__)

_READ_COILS, _READ_DISCRETE, _READ_HOLDING = 1, 2, 3
_WRITE_COIL, _WRITE_REGISTER, _WRITE_COILS, _WRITE_REGISTERS = 5, 6, 15, 16
_MAX_TICK_GAP_S = 1.0  # after a stall (debugger, suspended laptop) do not jump the physics far ahead


class RegulatorSimServer:
    """One simulated box on one TCP port.  ``start`` then ``stop``; restartable on the same port."""

    def __init__(
        self,
        *,
        scenario: Scenario = "normal",
        seed: int = 0,
        tick_s: float = 0.2,
        scenario_after_s: float = 5.0,
        comm_loss_s: float = 10.0,
    ) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.box = RegulatorBox(
            seed=seed, scenario=scenario, scenario_after_s=scenario_after_s, comm_loss_s=comm_loss_s
        )
        self.tick_s = tick_s
        self._holding = rm.holding_registers(self.box.state())
        self._server: ModbusTcpServer | None = None
        self._listener: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._comm_lost = False
        self._ticked = asyncio.Condition()
        self.ticks = 0  # physics ticks done by the ticker task
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = ModbusTcpServer(self._device(), address=(host, port), trace_packet=self._trace_packet)
        await server.serve_forever(background=True)
        # pymodbus keeps the asyncio.Server it listens with as its transport.
        listener = server.transport
        if not isinstance(listener, asyncio.Server) or not listener.sockets:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
            raise RuntimeError("pymodbus did not expose its listening socket")
        self._server, self._listener = server, listener
        self.port = int(listener.sockets[0].getsockname()[1])
        self._ticker = asyncio.create_task(self._tick_forever(), name=f"regulator-tick:{self.port}")
        _log.info("regulator simulator listening on %s:%s (%s)", host, self.port, self.box.scenario)
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop every connection.  The physics state is kept."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            # shutdown() also closes the open client connections; it is unannotated in pymodbus.
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None
        _log.info("regulator simulator on port %s stopped", self.port)

    async def __aenter__(self) -> RegulatorSimServer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, rm.ServedValue]:
        """The holding-register values as currently served, in engineering units."""
        return rm.served_values(self._holding)

    def step(self, dt_s: float) -> None:
        """Advance the physics by ``dt_s`` and refresh the register image (also used by the ticker)."""
        self.box.step(dt_s)
        self._refresh()

    def _refresh(self) -> None:
        self._holding = rm.holding_registers(self.box.state())
        lost = self.box.comm_lost
        if lost != self._comm_lost:
            _log.warning("regulator simulator port %s: link %s", self.port, "lost" if lost else "restored")
            self._comm_lost = lost

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            self.step(min(now - last, _MAX_TICK_GAP_S))
            last = now
            self.ticks += 1
            async with self._ticked:
                self._ticked.notify_all()

    async def wait_ticks(self, count: int = 1) -> None:
        """Return after the ticker has advanced the physics ``count`` more times (for tests/demos)."""
        target = self.ticks + count
        async with self._ticked:
            await self._ticked.wait_for(lambda: self.ticks >= target)

    # ------------------------------------------------------------------ pymodbus glue

    def _device(self) -> SimDevice:
        holding = [
            SimData(0, values=self._holding[: rm.SETPOINT_ADDRESS], datatype=DataType.REGISTERS, readonly=True),
            SimData(rm.SETPOINT_ADDRESS, values=self._holding[rm.SETPOINT_ADDRESS], datatype=DataType.REGISTERS),
        ]
        return SimDevice(
            id=rm.UNIT_ID,
            # Separate tables (coils, discrete inputs, holding, input), addressed per bit.
            simdata=(
                [SimData(rm.SLAM_RESET_COIL, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(rm.DOOR_DISCRETE_INPUT, values=[False] * 16, datatype=DataType.BITS, readonly=True)],
                holding,
                [SimData(0, values=pattern_registers(), datatype=DataType.REGISTERS, readonly=True)],
            ),
            action=self._action,
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # comm_loss: requests are consumed but no answer leaves, like a dead cellular link.
        if sending and self._comm_lost:
            return b""
        return data

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus hook, called before every datastore access with the block's live registers."""
        if set_values is not None:
            return self._write(function_code, address, set_values)
        if function_code == _READ_HOLDING:
            registers[start_address : start_address + len(self._holding)] = self._holding
        elif function_code == _READ_COILS:
            registers[0] = 0  # slam_shut_reset is a command: it always reads back 0
        elif function_code == _READ_DISCRETE:
            registers[0] = int(self.box.state().door_open) << rm.DOOR_DISCRETE_INPUT
        return None

    def _write(self, function_code: int, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        if function_code in (_WRITE_COIL, _WRITE_COILS):
            index = rm.SLAM_RESET_COIL - address
            if 0 <= index < len(values) and values[index]:
                # Refused silently above the trip level; the status bit shows the valve still closed.
                if self.box.reset_slam_shut():
                    _log.info("regulator simulator port %s: slam-shut reset", self.port)
                self._refresh()
            return None
        if function_code in (_WRITE_REGISTER, _WRITE_REGISTERS):
            index = rm.SETPOINT_ADDRESS - address
            if 0 <= index < len(values):
                try:
                    self.box.set_setpoint(int(values[index]) / 100)
                except ValueError:
                    return ExcCodes.ILLEGAL_VALUE
                self._refresh()
        return None


async def run_regulator(
    host: str,
    port: int,
    *,
    scenario: Scenario = "normal",
    seed: int = 0,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve one box until cancelled; ``on_ready(bound_port)`` is called once it listens."""
    server = RegulatorSimServer(scenario=scenario, seed=seed)
    bound = await server.start(host, port)
    try:
        if on_ready is not None:
            on_ready(bound)
        await asyncio.Event().wait()  # forever: the caller cancels
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gasiot_sim.modbus_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="normal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(bound: int) -> None:
        sys.stdout.write(f"listening on {args.host}:{bound}\n")
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_regulator(args.host, args.port, scenario=args.scenario, seed=args.seed, on_ready=ready))


if __name__ == "__main__":
    main()

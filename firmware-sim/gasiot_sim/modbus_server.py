"""Serve a simulated regulator box over Modbus TCP (pymodbus server, one port per box).

The register image is ours (see register_map.py and test_pattern.py); box_device.py connects it
to pymodbus's datastore.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable

from pymodbus.server import ModbusTcpServer

from gasiot_sim import register_map as rm
from gasiot_sim.box_device import BoxDevice
from gasiot_sim.regulator import SCENARIOS, RegulatorBox, Scenario
from gasiot_sim.ticker import Ticker

_log = logging.getLogger(__name__)


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
        self.device = BoxDevice(self.box, unit_id=rm.UNIT_ID)
        self._ticker = Ticker(self.step, tick_s)
        self._server: ModbusTcpServer | None = None
        self._listener: asyncio.Server | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = ModbusTcpServer(self.device.sim_device(), address=(host, port), trace_packet=self._trace_packet)
        await server.serve_forever(background=True)
        # pymodbus keeps the asyncio.Server it listens with as its transport.
        listener = server.transport
        if not isinstance(listener, asyncio.Server) or not listener.sockets:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in pymodbus
            raise RuntimeError("pymodbus did not expose its listening socket")
        self._server, self._listener = server, listener
        self.port = int(listener.sockets[0].getsockname()[1])
        self.device.name = self._ticker.name = f"regulator simulator port {self.port}"
        self._ticker.start()
        _log.info("regulator simulator listening on %s:%s (%s)", host, self.port, self.box.scenario)
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop every connection.  The physics state is kept."""
        await self._ticker.stop()
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

    @property
    def ticks(self) -> int:
        """Physics ticks done by the ticker task."""
        return self._ticker.ticks

    def snapshot(self) -> dict[str, rm.ServedValue]:
        """The holding-register values as currently served, in engineering units."""
        return self.device.snapshot()

    def step(self, dt_s: float) -> None:
        """Advance the physics by ``dt_s`` and refresh the register image (also used by the ticker)."""
        self.device.step(dt_s)

    async def wait_ticks(self, count: int = 1) -> None:
        """Return after the ticker has advanced the physics ``count`` more times (for tests/demos)."""
        await self._ticker.wait_ticks(count)

    # ------------------------------------------------------------------ pymodbus glue

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # comm_loss: requests are consumed but no answer leaves, like a dead cellular link.
        if sending and self.device.comm_lost:
            return b""
        return data


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

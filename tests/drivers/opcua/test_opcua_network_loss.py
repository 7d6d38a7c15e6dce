"""A silent network loss (the link stops carrying bytes, no socket closes, like a dead cellular
link): the driver's watchdog notices, reports the link down once, and recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib

from opcua_kit import Recorder, running

from drivers.base import Subscription
from drivers.opcua import OpcUaChannel, OpcUaDriver, OpcUaPoint
from gasiot_sim.scada_opcua import ScadaSimServer
from support.wait import eventually


class Blackhole:
    """A TCP relay to the server that can stop forwarding without closing anything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_w, server_w]
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not self.frozen:  # frozen: bytes vanish, both ends keep waiting
                    writer.write(data)
                    await writer.drain()
        writer.close()


async def test_silent_link_loss_is_detected_and_recovered(sim: ScadaSimServer, recorder: Recorder) -> None:
    assert sim.port is not None
    relay = Blackhole(sim.port)
    await relay.start()
    channel = OpcUaChannel(
        endpoint=f"opc.tcp://127.0.0.1:{relay.port}/gasiot/scada",
        timeout_s=1.0,  # also the watchdog period
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
    )
    drv = OpcUaDriver(channel)
    sub = Subscription("gs1", 1, (("flow", OpcUaPoint(node=sim.node_id("Metering.Flow"), sampling_interval_ms=100)),))
    try:
        async with running(drv, [sub], recorder):
            await eventually(lambda: recorder.ups == 1 and bool(recorder.samples["flow"]), timeout=10)
            relay.frozen = True
            await eventually(lambda: recorder.downs == 1, timeout=10, what="the watchdog noticing")
            failures = drv.statistics.connect_failures
            await eventually(lambda: drv.statistics.connect_failures >= failures + 2, timeout=10, what="retries")
            assert recorder.downs == 1  # reported once, however many attempts fail
            relay.frozen = False
            await eventually(lambda: recorder.ups == 2, timeout=15, what="recovery")
            await sim.tick(60.0)
            flow = sim.snapshot()["Metering.Flow"]
            await eventually(lambda: recorder.has("flow", lambda s: s.value == flow), timeout=5, what="values again")
    finally:
        await relay.close()
    assert [up for _, up, _ in recorder.links] == [True, False, True]
    assert drv.statistics.subscriptions_created == 2

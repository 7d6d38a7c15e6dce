"""Modbus polling benchmark: the gateway polling N simulated regulator boxes, beside a bare
pymodbus client loop polling the same registers of the same servers on the same schedule, in the
same run.

    python scripts/bench/modbus_poll.py [--devices 40] [--interval 0.05] [--seconds 8]

The simulators run in a separate process, so the CPU time measured here is the client side only.
Reports: requests/s achieved by each, the gateway's rate as a ratio of the bare client's
(target ≥ 0.8), and CPU seconds per 10,000 points for each.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from pymodbus.client import AsyncModbusTcpClient

REPO = Path(__file__).resolve().parents[2]
POINTS_PER_DEVICE = 10
REGISTERS = 11  # holding 0..10 of the regulator register map


def serve(ports: Any, n: int, ready: Any) -> None:
    from gasiot_sim.modbus_server import RegulatorSimServer

    async def main() -> None:
        sims = [RegulatorSimServer(seed=i, tick_s=0.5) for i in range(n)]
        for s in sims:
            ports.append(await s.start())
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def bare(ports: list[int], interval: float, seconds: float, registers: int = REGISTERS) -> int:
    """One pymodbus client per device, reading on a fixed grid like the gateway does."""
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, retries=0, reconnect_delay=0) for p in ports]
    for c in clients:
        await c.connect()
    counts = [0] * len(clients)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def poll(i: int) -> None:
        start = loop.time()
        k = 0
        while loop.time() < end:
            rr = await clients[i].read_holding_registers(0, count=registers, device_id=1)
            if not rr.isError():
                counts[i] += 1
            k += 1
            due = start + k * interval
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            else:
                k = int((now - start) / interval)

    await asyncio.gather(*(poll(i) for i in range(len(clients))))
    for c in clients:
        c.close()
    return sum(counts)


async def gateway(ports: list[int], interval: float, seconds: float, tmp: Path) -> int:
    from edge.config import load_station
    from edge.runtime import Gateway
    from gascore.crypto import generate_signer

    repo = REPO
    template = yaml.safe_load((repo / "configs" / "stations" / "demo-station.yaml").read_text(encoding="utf-8"))
    points = template["devices"][0]["points"]
    data = {
        "gateway": {"id": "gw-bench", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
        "models": [str(repo / "configs" / "models")],
        "sync": {"backoff_initial_s": 30, "backoff_max_s": 60},
        "channels": [
            {"id": f"c{i}", "driver": "modbus_tcp", "host": "127.0.0.1", "port": p} for i, p in enumerate(ports)
        ],
        "devices": [
            {"id": f"d{i}", "model": "regulator_box", "channel": f"c{i}", "poll_interval_s": interval, "points": points}
            for i in range(len(ports))
        ],
    }
    (tmp / "station.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    gw = Gateway.build(load_station(tmp / "station.yaml"), signer=generate_signer("ed25519"))
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop, flush_timeout_s=0.1))
    await asyncio.sleep(seconds)  # the measurement window
    stop.set()
    await task
    return sum(s.responses for s in gw.statuses.values())


def measure(label: str, coro_factory: Any) -> tuple[float, float]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    requests = asyncio.run(coro_factory())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    rate = requests / wall
    cpu_per_10k = cpu / max(1, requests * POINTS_PER_DEVICE) * 10_000
    print(
        f"{label:10s}: {requests:7d} requests in {wall:5.1f}s = {rate:8.0f} req/s "
        f"({rate * POINTS_PER_DEVICE:8.0f} points/s), {cpu_per_10k:6.3f} CPU s per 10,000 points"
    )
    return rate, cpu_per_10k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    manager = mp.Manager()
    ports = manager.list()
    ready = manager.Event()
    server = mp.Process(target=serve, args=(ports, args.devices, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(60):
            raise SystemExit("simulators did not start")
        port_list = list(ports)
        configured = args.devices * POINTS_PER_DEVICE / args.interval
        print(
            f"{args.devices} devices × {POINTS_PER_DEVICE} points every {args.interval}s = "
            f"{configured:.0f} points/s configured; simulators in pid {server.pid}"
        )
        bare_rate, bare_cpu = measure("bare", lambda: bare(port_list, args.interval, args.seconds))
        with tempfile.TemporaryDirectory() as tmp:
            gw_rate, gw_cpu = measure("gateway", lambda: gateway(port_list, args.interval, args.seconds, Path(tmp)))
        print(
            f"ratio     : {gw_rate / bare_rate:.2f} of the bare client's request rate (target ≥ 0.8); "
            f"CPU per point {gw_cpu / bare_cpu:.2f}× the bare client's"
        )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()

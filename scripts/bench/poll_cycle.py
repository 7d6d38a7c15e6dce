"""One poll cycle, in process: gasiot's DevicePoller.poll_once (the Modbus driver, processing,
rules, the group commit into the real SQLite store) beside a bare pymodbus read of the same 20
registers, one after the other on one connection each, against the libmodbus fleet server.

    python -m scripts.bench.poll_cycle [--cycles 3000] [--rounds 3] [--registers 20]

No scheduling, no sync, no other devices: CPU microseconds per cycle (process time), so that a
change to the poll path can be compared before/after far more precisely than with the fleet
scenario (scripts/bench/modbus_fleet.py), whose figures move by ±10 % between runs here.  Prints
each round and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from edge.config import load_station  # noqa: E402
from edge.runtime import Gateway  # noqa: E402
from gascore.crypto import generate_signer  # noqa: E402
from scripts.bench import _common as common  # noqa: E402


async def measure(cycles: int, rounds: int, registers: int) -> dict[str, list[float]]:
    with common.FleetServer(2, registers) as server, tempfile.TemporaryDirectory() as tmp:
        station_file = common.write_station(
            Path(tmp) / "station.yaml",
            gateway_id="gw-poll-cycle",
            cloud_url="http://127.0.0.1:9",  # never contacted: nothing syncs here
            ports=server.ports[:1],
            registers=registers,
            interval_s=1.0,
        )
        gateway = Gateway.build(load_station(station_file), signer=generate_signer())
        poller = gateway.pollers[0]
        client = AsyncModbusTcpClient("127.0.0.1", port=server.ports[1])
        await client.connect()
        try:
            for _ in range(200):  # connections, plan caches, the store's first pages
                await poller.poll_once()
                await client.read_holding_registers(0, count=registers, device_id=1)
            results: dict[str, list[float]] = {"bare": [], "gasiot": []}
            for _ in range(rounds):
                started = time.process_time()
                for _ in range(cycles):
                    await client.read_holding_registers(0, count=registers, device_id=1)
                results["bare"].append((time.process_time() - started) / cycles * 1e6)
                started = time.process_time()
                for _ in range(cycles):
                    await poller.poll_once()
                gateway.group.flush()
                results["gasiot"].append((time.process_time() - started) / cycles * 1e6)
            return results
        finally:
            client.close()
            gateway.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=3000, help="poll cycles per round and subject")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--registers", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(measure(args.cycles, args.rounds, args.registers))
    for subject, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        median = statistics.median(values)
        print(f"{subject:7} CPU µs per {args.registers}-register cycle: {rounds} (median {median:.0f})")
    ratio = statistics.median(results["gasiot"]) / statistics.median(results["bare"])
    print(f"gasiot / bare: {ratio:.2f}")


if __name__ == "__main__":
    main()

"""Simulated smart gas meters that publish JSON readings over MQTT (QoS 1), the way NB-IoT/4G
meters report through a utility's broker.

Payload on ``gas/<meter id>/up``::

    {"ts": 1764130000123, "volume": 1234.567, "flow": 0.42, "valve": 1, "pressure": 2.1,
     "battery": 87.5, "rssi": -71, "alarm": 0}

Scenarios: ``normal``; ``micro_leak`` (a small constant flow that never stops: alarm 2);
``large_flow`` (flow jumps far above the meter's rating: alarm 1, the valve self-closes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt

Scenario = Literal["normal", "micro_leak", "large_flow"]


@dataclass
class Meter:
    meter_id: str
    seed: int = 0
    scenario: Scenario = "normal"
    volume: float = 1000.0
    valve_open: bool = True
    battery: float = 90.0
    t: float = 0.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - simulation, not security
        self.volume += self.seed * 10.0

    def step(self, dt_s: float) -> dict[str, Any]:
        self.t += dt_s
        alarm = 0
        cooking = max(0.0, math.sin(self.t / 30.0)) * 0.6 + self.rng.uniform(0, 0.05)
        flow = cooking
        if self.scenario == "micro_leak":
            flow = cooking + 0.008
            alarm = 2
        elif self.scenario == "large_flow" and self.t > 3:
            flow = 12.0
            alarm = 1
            self.valve_open = False  # self-closing valve trips
        if not self.valve_open:
            flow = 0.0
        self.volume += flow * dt_s / 3600.0
        self.battery = max(0.0, self.battery - dt_s * 1e-5)
        return {
            "ts": time.time_ns() // 1_000_000,
            "volume": round(self.volume, 4),
            "flow": round(flow, 4),
            "valve": 1 if self.valve_open else 0,
            "pressure": round(2.0 + self.rng.uniform(-0.05, 0.05), 3),
            "battery": round(self.battery, 2),
            "rssi": -70 - self.rng.randint(0, 15),
            "alarm": alarm,
        }


async def publish_meters(
    host: str,
    port: int,
    meters: list[Meter],
    *,
    interval_s: float = 1.0,
    count: int | None = None,
    topic: str = "gas/{device}/up",
) -> list[dict[str, Any]]:
    """Publish every meter every ``interval_s`` (``count`` rounds, or forever).  Returns what was
    published (meter id added as ``_meter``), for tests to compare against."""
    sent: list[dict[str, Any]] = []
    async with aiomqtt.Client(host, port, identifier=f"meter-sim-{id(meters)}") as client:
        rounds = 0
        while count is None or rounds < count:
            for meter in meters:
                payload = meter.step(interval_s)
                await client.publish(topic.replace("{device}", meter.meter_id), json.dumps(payload), qos=1)
                sent.append({**payload, "_meter": meter.meter_id})
            rounds += 1
            if count is None or rounds < count:
                await asyncio.sleep(interval_s)  # the meters' reporting period
    return sent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Simulated smart gas meters publishing over MQTT")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--meters", type=int, default=3)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--scenario", default="normal", choices=["normal", "micro_leak", "large_flow"])
    args = ap.parse_args(argv)
    meters = [Meter(f"meter-{i + 1}", seed=i, scenario=args.scenario) for i in range(args.meters)]
    asyncio.run(publish_meters(args.host, args.port, meters, interval_s=args.interval))


if __name__ == "__main__":
    main()

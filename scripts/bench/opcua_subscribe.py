"""OPC-UA subscription throughput: values/s delivered into the gateway's store, beside a bare
asyncua client subscription counting the same notifications, in the same run.

    python scripts/bench/opcua_subscribe.py [--nodes 200] [--rate 20] [--seconds 8]

An asyncua server in a separate process changes ``nodes`` Double variables ``rate`` times a
second; both clients subscribe to all of them with a 50 ms publishing interval.
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

REPO = Path(__file__).resolve().parents[2]


def serve(nodes: int, rate: float, info: Any, ready: Any) -> None:
    from asyncua import Server, ua

    async def main() -> None:
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/bench")
        ns = await server.register_namespace("urn:gasiot:bench")
        folder = await server.nodes.objects.add_folder(ns, "Bench")
        variables = [await folder.add_variable(ua.NodeId(f"v{i}", ns), f"v{i}", 0.0) for i in range(nodes)]
        async with server:
            port = server.bserver._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            info["endpoint"] = f"opc.tcp://127.0.0.1:{port}/bench"
            info["ns"] = ns
            ready.set()
            k = 0
            while True:
                k += 1
                for i, var in enumerate(variables):
                    await var.write_value(float(k * 1000 + i))
                await asyncio.sleep(1 / rate)

    asyncio.run(main())


async def bare(endpoint: str, ns: int, nodes: int, seconds: float) -> int:
    from asyncua import Client, ua

    count = 0

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            nonlocal count
            count += 1

    async with Client(endpoint) as client:
        sub = await client.create_subscription(50, Handler())
        await sub.subscribe_data_change([client.get_node(ua.NodeId(f"v{i}", ns)) for i in range(nodes)])
        start = count
        await asyncio.sleep(seconds)  # the measurement window
        return count - start


async def gateway(endpoint: str, ns: int, nodes: int, seconds: float, tmp: Path) -> int:
    from edge.config import load_station
    from edge.runtime import Gateway
    from gascore.crypto import generate_signer

    models = tmp / "models"
    models.mkdir()
    props = [{"id": f"v{i}", "name": {"zh": f"v{i}", "en": f"v{i}"}, "type": "float"} for i in range(nodes)]
    (models / "bench.yaml").write_text(
        yaml.safe_dump({"id": "bench", "version": 1, "name": {"zh": "b", "en": "b"}, "properties": props})
    )
    data = {
        "gateway": {"id": "gw-bench", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
        "models": [str(models)],
        "sync": {"backoff_initial_s": 30, "backoff_max_s": 60},
        "channels": [{"id": "scada", "driver": "opcua", "endpoint": endpoint}],
        "devices": [
            {
                "id": "bench",
                "model": "bench",
                "channel": "scada",
                "max_silent_s": 0.001,
                "points": {f"v{i}": {"node": f"ns={ns};s=v{i}", "sampling_interval_ms": 50} for i in range(nodes)},
            }
        ],
    }
    (tmp / "station.yaml").write_text(yaml.safe_dump(data))
    gw = Gateway.build(load_station(tmp / "station.yaml"), signer=generate_signer("ed25519"))
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop, flush_timeout_s=0.1))
    status = gw.statuses["bench"]
    while status.samples < nodes:  # noqa: ASYNC110 - wait for the initial values (not measured)
        await asyncio.sleep(0.05)
    start = gw.store.counters().get("telemetry_appended_total", 0)
    await asyncio.sleep(seconds)  # the measurement window
    stored = gw.store.counters().get("telemetry_appended_total", 0) - start
    stop.set()
    await task
    return stored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    manager = mp.Manager()
    info, ready = manager.dict(), manager.Event()
    server = mp.Process(target=serve, args=(args.nodes, args.rate, info, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(60):
            raise SystemExit("server did not start")
        endpoint, ns = info["endpoint"], info["ns"]
        print(f"{args.nodes} nodes changing {args.rate:g}×/s = {args.nodes * args.rate:.0f} changes/s offered")
        results = {}
        for label, factory in (
            ("bare", lambda: bare(endpoint, ns, args.nodes, args.seconds)),
            ("gateway", None),
        ):
            cpu0 = time.process_time()
            if factory is None:
                with tempfile.TemporaryDirectory() as tmp:
                    n = asyncio.run(gateway(endpoint, ns, args.nodes, args.seconds, Path(tmp)))
            else:
                n = asyncio.run(factory())
            cpu = time.process_time() - cpu0
            results[label] = n / args.seconds
            print(
                f"{label:8s}: {n / args.seconds:8.0f} values/s delivered "
                f"({'into the store' if factory is None else 'to the handler'}), {cpu:5.2f} CPU s in total"
            )
        print(f"ratio   : {results['gateway'] / results['bare']:.2f} of the bare subscription's rate")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()

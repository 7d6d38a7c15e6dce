"""Two gasiot gateways side by side, polling the same kind of fleet at the same time: a paired
before/after comparison of CPU per point that the machine's drift does not blur.

    python -m scripts.bench.ab_fleet [--a REV|DIR] [--b REV|DIR] [--a-window-ms N] [--b-window-ms N]
        [--devices 100] [--registers 20] [--interval 1] [--warmup 5] [--seconds 30] [--rounds 3]

This shared 2-core machine changes speed by tens of percent within minutes (the bare client's cost
moved from 2.8 to 5.3 CPU s per million points between two runs of modbus_fleet.py ten minutes
apart), so a change of 10 % in the gateway's cost is invisible when "before" and "after" run one
after the other.  Here A and B run at the same moment, each its own `gasiot edge run` process
with its own ``--devices`` boxes on one libmodbus fleet server, both syncing to one cloud process;
each round measures both over the same window, so whatever the machine does, it does to both.

``--a``/``--b``: a git revision of this repository (checked out into a temporary worktree) or a
directory holding a gasiot checkout; default: this working tree.  ``--a-window-ms``/``--b-window-ms``
set ``store.commit_window_ms`` (default: the product default).  Prints each round's CPU seconds
per million readings committed at the edge for A and B, and B / A; then the median ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from scripts.bench import _common as common  # noqa: E402


@dataclass
class Side:
    name: str
    tree: Path
    window_ms: int | None
    station: Path | None = None
    proc: subprocess.Popen[bytes] | None = None


@contextlib.contextmanager
def checkout(spec: str | None, tmp: Path, name: str) -> Iterator[Path]:
    """The tree of ``spec``: this working tree, a directory, or a git revision in a worktree."""
    if spec is None:
        yield REPO
        return
    if Path(spec).is_dir():
        yield Path(spec).resolve()
        return
    tree = tmp / f"tree-{name}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), spec], cwd=REPO, check=True, capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False, capture_output=True)


async def wait_for_readings(db: Path, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while common.edge_readings(db) == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no reading committed within 90 s of the start")
        await asyncio.sleep(0.05)  # polling an outside process for its first commit


def sample(sides: list[Side]) -> dict[str, tuple[float, int]]:
    """(CPU seconds, readings committed) of each side now."""
    out = {}
    for side in sides:
        assert side.proc is not None and side.station is not None
        out[side.name] = (common.cpu_s(side.proc.pid), common.edge_readings(common.edge_db(side.station)))
    return out


async def one_round(args: argparse.Namespace, sides: list[Side], tmp: Path, n: int) -> dict[str, float]:
    (tmp / f"cloud-{n}").mkdir()
    fleet = common.FleetServer(2 * args.devices, args.registers)
    with fleet as server, common.cloud_process(tmp / f"cloud-{n}") as cloud:
        for k, side in enumerate(sides):
            side.station = common.write_station(
                tmp / f"round-{n}-{side.name}" / "station.yaml",
                gateway_id=f"gw-ab-{side.name.lower()}-{n}",
                cloud_url=cloud.url,
                ports=server.ports[k * args.devices : (k + 1) * args.devices],
                registers=args.registers,
                interval_s=args.interval,
                commit_window_ms=side.window_ms,
            )
            cloud.enroll(side.station)
        try:
            for side in sides:
                assert side.station is not None
                with (side.station.parent / "edge.log").open("w") as log:
                    command = common.gasiot_edge_command(side.station)
                    side.proc = common.spawn(command, cwd=side.tree, stdout=log, stderr=log)
            for side in sides:
                assert side.station is not None and side.proc is not None
                await wait_for_readings(common.edge_db(side.station), side.proc, side.name)
            await asyncio.sleep(args.warmup)
            before = sample(sides)
            await asyncio.sleep(args.seconds)
            after = sample(sides)
            peak = {side.name: common.memory_mb(side.proc.pid)[1] for side in sides if side.proc is not None}
        finally:
            for side in sides:
                if side.proc is not None:
                    common.stop_process(side.proc, 30)
                    side.proc = None
    out: dict[str, float] = {}
    for side in sides:
        cpu = after[side.name][0] - before[side.name][0]
        readings = after[side.name][1] - before[side.name][1]
        if readings <= 0:
            raise RuntimeError(f"{side.name}: committed nothing in the window")
        out[side.name] = cpu / readings * 1e6
        out[f"{side.name}_readings"] = readings
        out[f"{side.name}_peak_mb"] = peak[side.name]
    return out


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="gasiot-ab-") as tmp_name:
        tmp = Path(tmp_name)
        with checkout(args.a, tmp, "a") as tree_a, checkout(args.b, tmp, "b") as tree_b:
            sides = [Side("A", tree_a, args.a_window_ms), Side("B", tree_b, args.b_window_ms)]
            print(f"A: {args.a or 'working tree'} (commit window {args.a_window_ms or 'default'})")
            print(f"B: {args.b or 'working tree'} (commit window {args.b_window_ms or 'default'})")
            print(f"{args.devices} boxes × {args.registers} registers each, every {args.interval:g} s, side by side")
            ratios = []
            for n in range(args.rounds):
                result = await one_round(args, sides, tmp, n)
                ratio = result["B"] / result["A"]
                ratios.append(ratio)
                print(
                    f"round {n + 1}: A {result['A']:.1f}, B {result['B']:.1f} CPU s per 1 M readings"
                    f" ({result['A_readings']:,.0f} / {result['B_readings']:,.0f} readings); B / A {ratio:.3f};"
                    f" peak RSS A {result['A_peak_mb']:.1f}, B {result['B_peak_mb']:.1f} MiB",
                    flush=True,
                )
            print(f"B / A, median of {len(ratios)} rounds: {statistics.median(ratios):.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", help="git revision or directory (default: this working tree)")
    parser.add_argument("--b", help="git revision or directory (default: this working tree)")
    parser.add_argument("--a-window-ms", type=int, default=None, help="A's store.commit_window_ms")
    parser.add_argument("--b-window-ms", type=int, default=None, help="B's store.commit_window_ms")
    parser.add_argument("--devices", type=int, default=100, help="boxes per gateway")
    parser.add_argument("--registers", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval in seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window of each round")
    parser.add_argument("--rounds", type=int, default=3)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

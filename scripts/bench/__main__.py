"""The benchmark suite (issue #9): every scenario as its own process, one table, docs/performance.md.

    python -m scripts.bench all [--quick] [--no-tb] [--no-write]
    python -m scripts.bench modbus|pipeline|drain|ingest|alarms|footprint [--quick] [--no-tb]

Each scenario is one of the scripts beside this file, run with ``--json``; every figure it reports
is measured in the same run as its reference (a bare-library baseline, the ThingsBoard IoT Gateway
on the same workload, or the target's own yardstick).  ``all`` writes docs/performance.md: the
table, the raw figures, the machine, the versions, the date and the exact command; a hand-written
analysis below the ``<!-- analysis -->`` line of that file is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from scripts.bench import _common as common  # noqa: E402

DOC = REPO / "docs" / "performance.md"
MARKER = "<!-- analysis -->"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    module: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout_s: float
    takes_no_tb: bool = False


SCENARIOS = [
    Scenario(
        "modbus",
        "(1) Modbus polling, 100 boxes × 20 registers",
        "scripts.bench.modbus_fleet",
        ("--seconds", "30", "--warmup", "5"),
        ("--quick",),
        1200,
        takes_no_tb=True,
    ),
    Scenario(
        "pipeline",
        "(2) Edge pipeline",
        "scripts.bench.edge_pipeline",
        ("--rounds", "3"),
        ("--cycles", "100", "--rounds", "2"),
        600,
    ),
    Scenario(
        "drain",
        "(3) Store-and-forward drain",
        "scripts.bench.store_forward",
        ("--backlog", "1000000"),
        ("--quick",),
        1200,
    ),
    Scenario(
        "ingest",
        "(4) Cloud ingest",
        "scripts.bench.cloud_ingest",
        ("--seconds", "60"),
        ("--gateways", "20", "--seconds", "20"),
        900,
    ),
    Scenario(
        "alarms",
        "(5) Alarm latency under backlog",
        "scripts.bench.alarm_latency",
        ("--trials", "200", "--backlog", "500000"),
        ("--trials", "30", "--backlog", "100000"),
        900,
    ),
    Scenario(
        "footprint",
        "(6) Footprint",
        "scripts.bench.footprint",
        ("--settle", "20", "--trials", "3"),
        ("--quick",),
        900,
        takes_no_tb=True,
    ),
]


@dataclass
class Row:
    scenario: str
    figure: str
    value: str  # the measured figure(s), with units
    reference: str  # what it is measured against, in the same run
    ratio: float | None
    target: str
    met: bool | None

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        verdict = {True: "met", False: "**missed**", None: ""}[self.met]
        return [self.scenario, self.figure, self.value, self.reference, ratio, self.target, verdict]


def run_scenario(s: Scenario, quick: bool, no_tb: bool) -> tuple[list[str], dict[str, Any] | None, str]:
    command = [sys.executable, "-m", s.module, *(s.quick if quick else s.full), "--json"]
    if no_tb and s.takes_no_tb:
        command.append("--no-tb")
    print(f"== {s.title}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        run = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=s.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return command, None, f"timed out after {s.timeout_s:.0f} s"
    print(f"   {time.monotonic() - started:.0f} s, exit {run.returncode}", file=sys.stderr, flush=True)
    start = run.stdout.find("{")
    if run.returncode != 0 or start < 0:
        return command, None, f"exit {run.returncode}: {run.stdout[-500:]}"
    report, _ = json.JSONDecoder().raw_decode(run.stdout[start:])
    return command, report, ""


# ---- a report → rows of the table --------------------------------------------------------------


def _at_least(x: float | None, limit: float) -> bool | None:
    return None if x is None else x >= limit


def _at_most(x: float | None, limit: float) -> bool | None:
    return None if x is None else x <= limit


def rows_modbus(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    by = {(x["interval_s"], x["subject"]): x for x in r["runs"]}
    for interval, s in r["summary"].items():
        i = float(interval.rstrip("s"))
        gas, bare, tb = by.get((i, "gasiot")), by.get((i, "bare")), by.get((i, "thingsboard"))
        label = f"(1) Modbus @ {interval}"
        if gas and bare:
            rows.append(
                Row(
                    label,
                    "request rate",
                    f"{gas['requests_per_s']:,.0f} vs {bare['requests_per_s']:,.0f} req/s",
                    "bare pymodbus client",
                    s["rate_vs_bare"],
                    "≥ 0.8",
                    _at_least(s["rate_vs_bare"], 0.8),
                )
            )
            rows.append(
                Row(
                    label,
                    "CPU per point",
                    f"{gas['cpu_s_per_million_points']:.1f} vs {bare['cpu_s_per_million_points']:.1f} CPU s / 1M",
                    "bare pymodbus client",
                    s["cpu_per_point_vs_bare"],
                    "",
                    None,
                )
            )
        if gas and tb and tb["points"]:
            rows.append(
                Row(
                    label,
                    "CPU per point",
                    f"{gas['cpu_s_per_million_points']:.1f} vs {tb['cpu_s_per_million_points']:.1f} CPU s / 1M",
                    "ThingsBoard gateway",
                    s["cpu_per_point_vs_tb"],
                    "≤ 0.1",
                    _at_most(s["cpu_per_point_vs_tb"], 0.1),
                )
            )
            rows.append(
                Row(
                    label,
                    "peak RSS",
                    f"{gas['peak_rss_mb']:.0f} vs {tb['peak_rss_mb']:.0f} MiB",
                    "ThingsBoard gateway",
                    s["peak_rss_vs_tb"],
                    "≤ 0.5",
                    _at_most(s["peak_rss_vs_tb"], 0.5),
                )
            )
        for subject, run in (("gasiot", gas), ("ThingsBoard", tb)):
            if run and run["points"]:
                upstream = "the cloud" if subject == "gasiot" else "the broker"
                rows.append(
                    Row(
                        label,
                        f"{subject}: samples delivered",
                        f"{run['delivered']:,} of {run['expected']:,} at {upstream}",
                        "samples expected in the window",
                        run["delivered_share"],
                        "",
                        None,
                    )
                )
    if r.get("thingsboard_error"):
        rows.append(Row("(1) Modbus", "ThingsBoard", "not run", r["thingsboard_error"][:120], None, "", None))
    return rows


def rows_pipeline(r: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "(2) Edge pipeline",
            "decode → process → append",
            f"{r['pipeline_readings_per_s']:,.0f} vs {r['bare_rows_per_s']:,.0f} rows/s",
            f"bare sqlite3 executemany ({r['synchronous']})",
            r["ratio"],
            "≥ 0.5",
            _at_least(r["ratio"], 0.5),
        )
    ]


def rows_drain(r: dict[str, Any]) -> list[Row]:
    g, b = r["gasiot"], r["bare"]
    return [
        Row(
            "(3) Drain",
            f"{r['backlog']:,} readings to the cloud",
            f"{g['drain_s']:.1f} s vs {b['drain_s']:.1f} s",
            "bare aiohttp upload + executemany",
            r["ratio_rate_vs_bare"],
            f"≤ {r['target_s']:.0f} s",
            g["complete"] and g["drain_s"] <= r["target_s"],
        )
    ]


def rows_ingest(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    bare = {(x["name"].split()[0], x["processes"], x["threads"]): x["per_s"] for x in r["rates"] if "bare" in x["name"]}
    for x in r["rates"]:
        if "bare" in x["name"] or "HTTP" in x["name"]:
            continue
        engine = x["name"].split()[0]
        base = bare.get((engine, x["processes"], x["threads"]))
        ratio = x["per_s"] / base if base else None
        layout = f"{x['processes']}×{x['threads']}"
        rows.append(
            Row(
                "(4) Cloud ingest",
                f"{engine} {layout}",
                f"{x['per_s']:,.0f} vs {base or 0:,.0f} readings/s",
                "bare executemany" if engine == "sqlite" else "bare COPY",
                ratio,
                "≥ 0.5",
                _at_least(ratio, 0.5),
            )
        )
        if engine == "postgresql" and x["processes"] == 2 and x["threads"] == 1:
            rows.append(
                Row(
                    "(4) Cloud ingest",
                    "postgresql, 2 processes",
                    f"{x['per_s']:,.0f} readings/s",
                    "target 100,000 readings/s",
                    x["per_s"] / 100_000,
                    "≥ 1.0",
                    _at_least(x["per_s"] / 100_000, 1.0),
                )
            )
    return rows


def rows_alarms(r: dict[str, Any]) -> list[Row]:
    budget = r["poll_s"] * 1000 + 50
    return [
        Row(
            "(5) Alarm latency",
            "edge p99, change → committed",
            f"p99 {r['edge_p99_ms']:.0f} ms (p50 {r['edge_p50_ms']:.0f}), {r['trials']} trials",
            f"poll interval + 50 ms = {budget:.0f} ms",
            r["edge_p99_ms"] / budget,
            "≤ 1.0",
            _at_most(r["edge_p99_ms"] / budget, 1.0),
        ),
        Row(
            "(5) Alarm latency",
            "cloud, under a backlog",
            f"{r['cloud_s']:.2f} s with {r['backlog']:,} readings queued",
            "target 2 s",
            r["cloud_s"] / 2.0,
            "≤ 1.0",
            _at_most(r["cloud_s"] / 2.0, 1.0),
        ),
    ]


def rows_footprint(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    gas = r["results"]["gasiot"]
    for ref, label in (("bare", "bare pymodbus client"), ("thingsboard", "ThingsBoard gateway")):
        other = r["results"].get(ref)
        ratios = r["ratios"].get(f"vs_{ref}")
        if other is None or ratios is None:
            continue
        rows += [
            Row(
                "(6) Footprint",
                "RSS idle (1 point)",
                f"{gas['idle_rss_mb']:.0f} vs {other['idle_rss_mb']:.0f} MiB",
                label,
                ratios["idle_rss"],
                "≤ 0.5" if ref == "thingsboard" else "",
                _at_most(ratios["idle_rss"], 0.5) if ref == "thingsboard" else None,
            ),
            Row(
                "(6) Footprint",
                f"RSS at {r['loaded_points']:,} points",
                f"{gas['loaded_rss_mb']:.0f} vs {other['loaded_rss_mb']:.0f} MiB",
                label,
                ratios["loaded_rss"],
                "≤ 0.5" if ref == "thingsboard" else "",
                _at_most(ratios["loaded_rss"], 0.5) if ref == "thingsboard" else None,
            ),
            Row(
                "(6) Footprint",
                "start-up to first reading",
                f"{gas['startup_s']:.2f} vs {other['startup_s']:.2f} s",
                label,
                ratios["startup"],
                "",
                None,
            ),
        ]
    return rows


TO_ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "modbus": rows_modbus,
    "pipeline": rows_pipeline,
    "drain": rows_drain,
    "ingest": rows_ingest,
    "alarms": rows_alarms,
    "footprint": rows_footprint,
}

HEADER = ["scenario", "figure", "measured", "reference (same run)", "ratio", "target", ""]


def text_table(rows: list[Row]) -> str:
    cells = [HEADER, *(r.cells() for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))).rstrip() for c in cells)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": common.cpu_model(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def write_doc(
    command: str,
    quick: bool,
    started: datetime,
    elapsed_s: float,
    before: dict[str, Any],
    after: dict[str, Any],
    rows: list[Row],
    reports: dict[str, Any],
    errors: dict[str, str],
) -> None:
    versions = common.library_versions(
        *("pymodbus", "aiohttp", "asyncua", "cryptography", "gmalglib", "pydantic", "psycopg", "aiomqtt", "cbor2")
    )
    tb = {}
    with_tb = reports.get("modbus", {}).get("versions", {})
    tb = {k.removeprefix("thingsboard venv: "): v for k, v in with_tb.items() if k.startswith("thingsboard venv")}
    mosquitto = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    libmodbus = subprocess.run(
        ["pkg-config", "--modversion", "libmodbus"], capture_output=True, text=True, check=False
    ).stdout.strip()
    analysis = ""
    if DOC.exists() and f"\n{MARKER}\n" in (old := DOC.read_text(encoding="utf-8")):
        analysis = old.rsplit(f"\n{MARKER}\n", 1)[1]  # the line itself, not its mention in the header
    lines = [
        "# Performance",
        "",
        "Generated by `python -m scripts.bench all` (scripts/bench/__main__.py) — do not edit above the",
        f"`{MARKER}` line; the analysis below it is kept when the file is regenerated.",
        "",
        f"- **Command:** `{command}`" + (" (quick: short windows, smaller backlogs)" if quick else ""),
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC, {elapsed_s / 60:.0f} min",
        f"- **Machine:** {before['cpus']} CPUs ({before['cpu_model']}), {before['memory_gib']} GiB, "
        f"Linux {before['kernel']}; load average {before['loadavg'][0]:.2f} before, {after['loadavg'][0]:.2f} after. "
        "A shared 2-core machine: other work ran at the same time, so absolute figures are noisy — "
        "read the ratios, each measured against its reference in the same run.",
        f"- **Python:** {before['python']}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; libmodbus {libmodbus}; {mosquitto}",
    ]
    if tb:
        lines.append(
            "- **ThingsBoard IoT Gateway:** " + ", ".join(f"{k} {v}" for k, v in tb.items()) + " (its own venv)"
        )
    lines += ["", "## Results", "", markdown_table(rows), ""]
    if errors:
        lines += ["Scenarios that did not report:", ""]
        lines += [f"- {name}: {err}" for name, err in errors.items()]
        lines.append("")
    lines += ["## Raw figures", ""]
    for name, report in reports.items():
        slim = {k: v for k, v in report.items() if k not in ("versions",)}
        if name == "drain":
            slim["gasiot"] = {k: v for k, v in report["gasiot"].items() if k != "profile"}
        lines += [f"<details><summary>{name}</summary>", "", "```json", json.dumps(slim, indent=1), "```", "</details>"]
        lines.append("")
    lines.append(MARKER)
    DOC.write_text("\n".join(lines) + "\n" + analysis, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["all", *(s.name for s in SCENARIOS)])
    parser.add_argument("--quick", action="store_true", help="short windows and small backlogs (a few minutes)")
    parser.add_argument("--no-tb", action="store_true", help="leave out the ThingsBoard IoT Gateway")
    parser.add_argument("--no-write", action="store_true", help="`all` without writing docs/performance.md")
    args = parser.parse_args()
    command = "python -m scripts.bench " + shlex.join(sys.argv[1:])
    started, t0, before = datetime.now(UTC), time.monotonic(), machine()
    chosen = [s for s in SCENARIOS if args.scenario in ("all", s.name)]
    rows: list[Row] = []
    reports: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for s in chosen:
        _, report, error = run_scenario(s, args.quick, args.no_tb)
        if report is None:
            errors[s.name] = error
            rows.append(Row(s.title, "did not report", error[:100], "", None, "", None))
            continue
        reports[s.name] = report
        rows += TO_ROWS[s.name](report)
    print(text_table(rows))
    for name, err in errors.items():
        print(f"{name}: {err}", file=sys.stderr)
    if args.scenario == "all" and not args.no_write:
        write_doc(command, args.quick, started, time.monotonic() - t0, before, machine(), rows, reports, errors)
        print(f"wrote {DOC.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()

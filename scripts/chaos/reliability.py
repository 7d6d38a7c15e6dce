"""Regenerate docs/reliability.md: run the fault, bad-input and attack tests (with the long-run
fault counts unless --quick) and write what they injected and found.

    .venv/bin/python scripts/chaos/reliability.py          # 200 SIGKILLs …, about 5 minutes
    .venv/bin/python scripts/chaos/reliability.py --quick  # the CI counts

Every figure comes from this run: the fault tests record runs, faults, readings lost and
duplicates (tests/support/reliability.py); the bad-input and attack groups report how many
test cases ran and passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAULTS = [
    "tests/e2e/test_crash_safety.py",
    "tests/e2e/test_cloud_crash.py",
    "tests/e2e/test_network_faults.py",
    "tests/edge/test_clock.py",
    "tests/e2e/test_cloud_outage.py",
    "tests/edge/test_sync.py",
    "tests/edge/test_store.py",
    "tests/e2e/test_disk_full.py",
    "tests/edge/test_store_torn_copies.py",
    "tests/e2e/test_store_damage.py",
    "tests/cloud/test_ingest_postgres_multiprocess.py",
]
GROUPS = {
    (
        "Bad input (malformed batches, parsers fuzzed with hypothesis, devices answering garbage, OPC-UA values"
        " off the wire, control values, mutated station files and thing models, the API fuzzed by schemathesis)"
    ): [
        "tests/cloud/test_ingest_malformed.py",
        "tests/drivers/serial_line",
        "tests/edge/test_config_errors.py",
        "tests/cloud/test_openapi_fuzz.py",
        "tests/gascore/test_contract.py",
        "tests/drivers/modbus/test_modbus_faulty_device.py",
        "tests/drivers/opcua/test_opcua_variant_fuzz.py",
        "tests/edge/test_control_values.py",
        "tests/edge/test_config_fuzz.py",
        "tests/gascore/test_contract_fuzz.py",
    ],
    "Attacks (forged/replayed/revoked batches, tampered or expired commands, roles × routes, TLS, secrets)": [
        "tests/cloud/test_ingest_security.py",
        "tests/e2e/test_downlink.py",
        "tests/cloud/test_api.py",
        "tests/cloud/test_identity.py",
        "tests/security",
    ],
}


def run_pytest(paths: list[str], env: dict[str, str]) -> tuple[int, int, int]:
    """(passed, failed, skipped) of one pytest run."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *paths],
            cwd=ROOT,
            env=env,
            check=False,
        )
        suite = ET.parse(junit).getroot()
        node = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert node is not None
        tests, failures, errors, skipped = (int(node.get(k, "0")) for k in ("tests", "failures", "errors", "skipped"))
        return tests - failures - errors - skipped, failures + errors, skipped


def soak_section(record: Path) -> list[str]:
    """The long soak's figures (scripts/chaos/soak.py writes them; an hour is too long to rerun here)."""
    if not record.exists():
        return ["## Long soak", "", "Not recorded yet: run `.venv/bin/python scripts/chaos/soak.py`.", ""]
    r = json.loads(record.read_text(encoding="utf-8"))
    return [
        "## Long soak",
        "",
        f"Recorded by `.venv/bin/python {r['command']}` on {r['date']} (commit {r['commit']}, {r['machine']}); "
        "it writes `docs/soak.json`, which this section shows.",
        "",
        "| duration | points polled | failed polls | readings reported | cloud kills | readings lost | duplicates "
        "| gateway RSS | RSS slope (2nd half) | open fds | fd slope |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['minutes']} min | {r['points_polled']:,} ({r['points_per_s']:,}/s) | {r['failed_polls']} "
        f"| {r['readings']:,} | {r['cloud_flaps']} | {r['lost']} | {r['duplicates']} "
        f"| {r['rss_mib'][0]} → {r['rss_mib'][1]} MiB | {r['rss_slope_mib_per_h']:+.2f} MiB/h "
        f"({r['rss_slope_second_half_mib_per_h']:+.2f}) | {r['fds'][0]} → {r['fds'][1]} "
        f"| {r['fd_slope_per_h']:+.2f}/h |",
        "",
        "Readings are reported by exception (an unchanged value within its deadband and silent interval is not "
        "sent), so fewer readings than points polled reach the cloud; lost = reported − stored in the cloud − "
        "still buffered.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI counts (20 SIGKILLs) instead of the long run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    records = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    env = {
        **os.environ,
        "GASIOT_RELIABILITY_OUT": str(records),
        "GASIOT_CHAOS_KILLS": "20" if args.quick else "200",
    }
    fault_counts = run_pytest(FAULTS, env)
    groups = {name: run_pytest(paths, env) for name, paths in GROUPS.items()}
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines() if line.strip()]
    records.unlink()
    command = "scripts/chaos/reliability.py" + (" --quick" if args.quick else "")
    lines = [
        "# Reliability and security figures",
        "",
        f"Generated by `.venv/bin/python {command}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. Every figure below "
        "comes from that run; rerun the command to check it.",
        "",
        "## Faults",
        "",
        "| scenario | runs | faults injected | readings lost | duplicates | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['runs']} | {r['faults']} | {r['lost']} | {r['duplicates']} | {r['note']} |"
        )
    passed, failed, skipped = fault_counts
    lines += [
        "",
        f"Fault tests: {passed} passed, {failed} failed, {skipped} skipped ({', '.join(f'`{p}`' for p in FAULTS)}).",
        "",
        "## Bad input and attacks",
        "",
        "| group | test cases | passed | failed | skipped |",
        "|---|---|---|---|---|",
    ]
    for name, (ok, bad, skip) in groups.items():
        lines.append(f"| {name} | {ok + bad + skip} | {ok} | {bad} | {skip} |")
    lines += [
        "",
        "Each bad-input case asserts a clear 4xx (or a counted, quarantined frame) and no crash; each attack",
        "case asserts the refusal. Test files: "
        + "; ".join(f"{name.split(' (')[0]}: " + ", ".join(f"`{p}`" for p in paths) for name, paths in GROUPS.items()),
        "",
    ]
    lines += soak_section(ROOT / "docs" / "soak.json")
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")
    if failed or any(bad for _, bad, _ in groups.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

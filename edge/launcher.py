"""gasiot-launch: runs the gateway from a release directory and carries out upgrades with
automatic roll-back (S-7.2.1e).  Standard library only, so it keeps working whatever release
is installed; systemd runs it (``configs/systemd/gasiot-edge.service``)::

    <root>/releases/<version>/      one virtual environment per installed version
    <root>/current -> releases/<v>  what runs
    <root>/upgrade.json             the upgrade in progress (the gateway writes it; this file's
                                    code decides)

An upgrade: the running gateway verifies and stages the new release, writes ``upgrade.json``
(state ``trial``: from, to, deadline), points ``current`` at the new release and exits with
``EXIT_UPGRADE``.  The launcher starts the new release.  Once it reports healthy
(``<root>/health.json`` names its version: it has committed poll cycles for a while), the upgrade
is ``committed``.  If instead it exits ``MAX_TRIAL_FAILURES`` times or misses the deadline, the
launcher points ``current`` back at the old release (``rolled_back``) and starts that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EXIT_UPGRADE = 75  # EX_TEMPFAIL: "run me again" — the new release is in place
MAX_TRIAL_FAILURES = 2
RESTART_DELAY_S = 1.0
ROOT_ENV = "GASIOT_RELEASES"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def switch(root: Path, version: str) -> None:
    """Point ``current`` at a release, atomically (a new symlink renamed over the old one)."""
    target = root / "releases" / version
    if not (target / "bin").is_dir():
        raise FileNotFoundError(f"release {version} is not installed in {target}")
    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("releases") / version)
    tmp.replace(root / "current")


def current_version(root: Path) -> str:
    return (root / "current").readlink().name


def _log(message: str) -> None:
    print(f"gasiot-launch: {message}", file=sys.stderr, flush=True)  # noqa: T201 - journald reads stderr


def settle(root: Path, exit_code: int | None) -> None:
    """Decide about an upgrade in trial after the gateway exited (``exit_code``) or while it runs
    (``None``): commit it when healthy, roll it back after repeated failures or the deadline."""
    state_path = root / "upgrade.json"
    state = read_json(state_path)
    if state.get("state") != "trial":
        return
    health = read_json(root / "health.json")
    if health.get("version") == state["to"]:
        state.update(state="committed", committed_at=time.time())
        write_json(state_path, state)
        _log(f"upgrade {state['from']} -> {state['to']} committed")
        return
    if exit_code is not None and exit_code not in (0, EXIT_UPGRADE):
        state["failures"] = int(state.get("failures", 0)) + 1
    if state.get("failures", 0) >= MAX_TRIAL_FAILURES or time.time() > float(state["deadline"]):
        switch(root, state["from"])
        state.update(state="rolled_back", rolled_back_at=time.time())
        _log(f"upgrade {state['from']} -> {state['to']} rolled back ({state.get('failures', 0)} failures)")
    write_json(state_path, state)


def run(root: Path, args: list[str]) -> int:
    """Keep the gateway running from ``current``; returns only on SIGTERM/SIGINT (with its code)."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, lambda s, f: child.send_signal(s) if child and child.poll() is None else None)
    env = {**os.environ, ROOT_ENV: str(root)}
    while True:
        settle(root, None)
        version = current_version(root)
        _log(f"starting release {version}")
        child = subprocess.Popen([str(root / "current" / "bin" / "gasiot"), *args], env=env)  # noqa: S603
        while True:
            try:
                code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                settle(root, None)  # commit as soon as the new release reports healthy
        if stopping:
            return code
        settle(root, code)
        if code == EXIT_UPGRADE:
            continue
        _log(f"release {version} exited with {code}; restarting")
        time.sleep(RESTART_DELAY_S)  # a crash loop must not spin the CPU


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print("usage: gasiot-launch ROOT GASIOT-ARGS…  (e.g. /opt/gasiot edge run /etc/gasiot/station.yaml)")  # noqa: T201
        sys.exit(2)
    sys.exit(run(Path(sys.argv[1]).resolve(), sys.argv[2:]))


if __name__ == "__main__":
    main()

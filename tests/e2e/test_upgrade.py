"""Release upgrades with two (three) real packages: wheels of gasiot built from this source tree
as versions 0.1.0 (installed), 0.1.1 (good) and 0.1.2 (broken: it exits at once).  The gateway
runs under gasiot-launch; the cloud pushes 0.1.1 (a second admin confirms), the gateway fetches
and checks it, installs it, switches, reports healthy, and the cloud sees it committed.  Then
0.1.2: it fails to start twice, the launcher rolls back to 0.1.1, and the cloud hears about it
from the release that runs again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from cloud.appkeys import FIRMWARE
from edge.upgrade import _install
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import REPO_ROOT, station_dict
from support.wait import eventually

pytestmark = pytest.mark.slow

SOURCES = ("gasiot", "gascore", "edge", "cloud", "drivers", "firmware-sim", "pyproject.toml", "README.md")


def build_wheel(tmp: Path, version: str, *, broken: bool = False) -> Path:
    src = tmp / f"src-{version}"
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, src / name)
    pyproject = src / "pyproject.toml"
    pyproject.write_text(
        re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1, flags=re.M)
    )
    if broken:  # a release that cannot start: its entry point exits at once
        cli = src / "gasiot" / "cli.py"
        cli.write_text(cli.read_text() + "\n\ndef main() -> None:  # noqa: F811\n    raise SystemExit(3)\n")
    out = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob(f"gasiot-{version}-*.whl")
    return wheel


async def push_release(http: aiohttp.ClientSession, cloud, wheel: Path, version: str) -> None:
    url = f"{cloud.url}/v1/firmware?version={version}&filename={wheel.name}"
    async with http.post(url, data=wheel.read_bytes(), headers=cloud.auth()) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{cloud.url}/v1/gateways/gw-up/firmware/{version}/push", headers=cloud.auth()) as r:
        assert r.status == 201, await r.text()
        command = await r.json()
    assert command["status"] == "awaiting_confirmation"
    second = cloud.auth(cloud.token("admin"))
    async with http.post(f"{cloud.url}/v1/gateways/gw-up/commands/{command['id']}/confirm", headers=second) as r:
        assert r.status == 200, await r.text()


async def test_upgrade_commit_and_roll_back_with_real_packages(tmp_path: Path) -> None:
    wheels = await asyncio.gather(
        asyncio.to_thread(build_wheel, tmp_path, "0.1.0"),
        asyncio.to_thread(build_wheel, tmp_path, "0.1.1"),
        asyncio.to_thread(build_wheel, tmp_path, "0.1.2", broken=True),
    )
    root = tmp_path / "opt-gasiot"
    await asyncio.to_thread(_install, root / "releases" / "0.1.0", wheels[0], wheels[0].name, "0.1.0")
    (root / "current").symlink_to(Path("releases") / "0.1.0")
    sim = RegulatorSimServer(seed=3, tick_s=0.2)
    port = await sim.start()
    launcher: asyncio.subprocess.Process | None = None
    log_file = (tmp_path / "launcher.log").open("wb")
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=[port],
                gateway_id="gw-up",
                poll_interval_s=0.2,
                sync={"command_poll_s": 0.5, "max_batch_age_s": 0.05},
            )
            station_file = tmp_path / "station.yaml"
            await enrolled_station(cloud, station_file, data)
            env = {**os.environ, "GASIOT_UPGRADE_HEALTHY_AFTER_S": "1"}
            launcher = await asyncio.create_subprocess_exec(
                sys.executable,
                str(REPO_ROOT / "edge" / "launcher.py"),
                str(root),
                "edge",
                "run",
                str(station_file),
                env=env,
                cwd=tmp_path,  # like systemd's WorkingDirectory: nothing of the source tree on sys.path
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
            )

            def release_state(version: str) -> str | None:
                found = [r["state"] for r in cloud.app[FIRMWARE].states("gw-up") if r["version"] == version]
                return found[0] if found else None

            await eventually(
                lambda: int(cloud.rows("SELECT count(*) FROM readings")[0][0]) > 0, timeout=60, what="0.1.0 syncing"
            )
            async with aiohttp.ClientSession() as http:
                await push_release(http, cloud, wheels[1], "0.1.1")
                await eventually(lambda: release_state("0.1.1") == "committed", timeout=120, what="0.1.1 committed")
                assert (root / "current").readlink() == Path("releases") / "0.1.1"
                await eventually(
                    lambda: json.loads((root / "upgrade.json").read_text())["state"] == "committed",
                    what="the launcher commits the trial",
                )

                await push_release(http, cloud, wheels[2], "0.1.2")
                await eventually(lambda: release_state("0.1.2") == "rolled_back", timeout=120, what="0.1.2 rolled back")
                assert (root / "current").readlink() == Path("releases") / "0.1.1"
                state = json.loads((root / "upgrade.json").read_text())
                assert (state["state"], state["to"], state["failures"]) == ("rolled_back", "0.1.2", 2)
                before = int(cloud.rows("SELECT count(*) FROM readings")[0][0])
                await eventually(
                    lambda: int(cloud.rows("SELECT count(*) FROM readings")[0][0]) > before, what="0.1.1 syncing again"
                )
    finally:
        if launcher is not None and launcher.returncode is None:
            launcher.terminate()
            await asyncio.wait_for(launcher.wait(), 60)
        await sim.stop()
        log_file.close()
        log = (tmp_path / "launcher.log").read_text(errors="replace")
        print(log[-4000:])

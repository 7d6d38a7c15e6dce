"""Installing a new gateway release (S-7.2.1e): the package arrives by a signed ``firmware.apply``
command (its SHA-256 inside the signature), is fetched from the cloud and checked, installed into
its own release directory, and handed to ``gasiot-launch`` (edge/launcher.py) for the switch,
the health check and, if needed, the roll-back.

A package is a wheel of gasiot.  It is installed with ``--no-deps``; the release shares the
running release's dependencies through a ``.pth`` file (releases are application updates; a
dependency change ships as a new base image).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from edge.launcher import EXIT_UPGRADE, read_json, switch, write_json

log = logging.getLogger(__name__)

TRIAL_DEADLINE_S = 300.0
SHARED_DEPS = "_gasiot_shared_deps.pth"
HEALTHY_AFTER_S = float(os.environ.get("GASIOT_UPGRADE_HEALTHY_AFTER_S", "10"))  # tests shorten it

__all__ = ["EXIT_UPGRADE", "UpgradeError", "begin", "report_healthy_if_due", "running_version", "stage"]


class UpgradeError(Exception):
    """The package cannot be installed; nothing was switched."""


def running_version() -> str:
    return metadata.version("gasiot")


def _site_packages(python: Path) -> Path:
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Path(out.stdout.strip())


def stage(root: Path, version: str, package: bytes, sha256: str, filename: str) -> Path:
    """Verify and install a release; returns its directory.  Blocking (run it in a thread)."""
    if hashlib.sha256(package).hexdigest() != sha256:
        raise UpgradeError("the package does not match the SHA-256 in the signed command")
    if not filename.endswith(".whl") or "/" in filename or filename.startswith("."):
        raise UpgradeError(f"{filename!r}: a package is a gasiot wheel (*.whl)")
    if version == running_version():
        raise UpgradeError(f"release {version} is already running")
    release = root / "releases" / version
    if release.exists():
        shutil.rmtree(release)  # a half-installed earlier attempt
    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    wheel = incoming / filename
    wheel.write_bytes(package)
    try:
        _install(release, wheel, filename, version)
    except (subprocess.SubprocessError, OSError) as err:
        shutil.rmtree(release, ignore_errors=True)
        raise UpgradeError(f"installing release {version} failed: {err}") from err
    except UpgradeError:
        shutil.rmtree(release, ignore_errors=True)
        raise
    finally:
        wheel.unlink(missing_ok=True)
    log.info("release %s installed in %s", version, release)
    return release


def _install(release: Path, wheel: Path, filename: str, version: str) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(release)], check=True, capture_output=True, timeout=300)  # noqa: S603
    python = release / "bin" / "python"
    # The dependencies of the release that runs now, shared (the same place it takes them from).
    deps = Path(sysconfig.get_paths()["purelib"])
    shared = deps / SHARED_DEPS
    if shared.exists():
        deps = Path(shared.read_text(encoding="utf-8").strip())
    (_site_packages(python) / SHARED_DEPS).write_text(f"{deps}\n", encoding="utf-8")
    result = subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise UpgradeError(f"pip could not install {filename}: {result.stderr.strip()[-500:]}")
    installed = subprocess.run(  # noqa: S603
        [str(python), "-I", "-c", "from importlib import metadata; print(metadata.version('gasiot'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if installed.stdout.strip() != version:
        raise UpgradeError(f"the package installs gasiot {installed.stdout.strip()!r}, not {version!r}")


def begin(root: Path, version: str, *, deadline_s: float = TRIAL_DEADLINE_S) -> None:
    """Put the new release on trial: the launcher starts it when this gateway exits."""
    old = running_version()
    write_json(
        root / "upgrade.json",
        {"state": "trial", "from": old, "to": version, "failures": 0, "deadline": time.time() + deadline_s},
    )
    switch(root, version)
    log.warning("upgrade %s -> %s: switching; the launcher starts the new release", old, version)


def report_healthy_if_due(root: Path, uptime_s: float, commits: int) -> bool:
    """A release on trial tells the launcher it is healthy: it has run ``HEALTHY_AFTER_S`` and
    committed poll cycles.  Returns True when it wrote the report."""
    state = read_json(root / "upgrade.json")
    version = running_version()
    if state.get("state") != "trial" or state.get("to") != version:
        return False
    if uptime_s < HEALTHY_AFTER_S or commits == 0:
        return False
    if read_json(root / "health.json").get("version") == version:
        return False
    write_json(root / "health.json", {"version": version, "at": time.time(), "commits": commits})
    log.info("release %s reports healthy to the launcher", version)
    return True


def unreported_outcome(root: Path) -> dict[str, Any] | None:
    """A trial that ended while no gateway could say so (the launcher rolled it back): returned
    once, then marked reported."""
    state = read_json(root / "upgrade.json")
    if state.get("state") != "rolled_back" or state.get("reported"):
        return None
    state["reported"] = True
    write_json(root / "upgrade.json", state)
    return state

"""Station configuration pushed from the cloud (A-4.1.5-cloudedge, O-8.1.3, S-7.2.1c): a signed
``config.apply`` command carries the whole station file, its version and SHA-256.

The gateway checks the digest, validates the file exactly as ``gasiot edge check`` would (and
refuses one that changes the gateway id or data directory: buffered data must not be orphaned),
keeps the current file as a backup, replaces the station file atomically and reloads in-process
(``edge.runtime.serve``).  If the gateway cannot start on the new file, the backup is put back and
the old configuration runs again.  Every outcome is an event on the events lane
(``config.applied``, ``config.rejected``, ``config.rolled_back``) naming the version, so the
cloud knows what each gateway runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import Station, load_station
from edge.secret_files import SecretFileError, require_private_secrets
from gascore.yamldoc import ConfigError

log = logging.getLogger(__name__)

STATE_FILE = "config_state.json"


class ConfigRejected(Exception):
    """The pushed configuration cannot be used; the message lists why (nothing was changed)."""


@dataclass(frozen=True, slots=True)
class Staged:
    version: int
    sha256: str
    backup: Path


def _state_path(station: Station) -> Path:
    return station.data_dir / STATE_FILE


def read_state(station: Station) -> dict[str, Any]:
    try:
        data = json.loads(_state_path(station).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(station: Station, state: dict[str, Any]) -> None:
    path = _state_path(station)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def stage(station: Station, version: int, sha256: str, text: str) -> Staged:
    """Validate ``text`` as the new station file and put it in place (the old one kept).
    Raises ConfigRejected; on success the caller reloads."""
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha256:
        raise ConfigRejected("the configuration does not match its SHA-256 (altered or truncated)")
    current = read_state(station).get("version")
    if isinstance(current, int) and version <= current:
        raise ConfigRejected(f"version {version} is not newer than the running version {current}")
    station_file = Path(station.source).resolve()
    candidate = station_file.with_name(f".{station_file.name}.v{version}.candidate")
    candidate.write_text(text, encoding="utf-8")
    candidate.chmod(station_file.stat().st_mode & 0o777)
    try:
        _check_candidate(station, candidate)
    except ConfigError as err:
        candidate.unlink(missing_ok=True)
        problems = "; ".join(str(p).replace(str(candidate), f"v{version}") for p in err.problems[:20])
        raise ConfigRejected(problems) from err
    except (SecretFileError, ConfigRejected) as err:
        candidate.unlink(missing_ok=True)
        raise ConfigRejected(str(err)) from err
    backup = station_file.with_name(f"{station_file.name}.bak-v{current if current is not None else 'local'}")
    backup.write_bytes(station_file.read_bytes())
    candidate.replace(station_file)
    _write_state(
        station, {**read_state(station), "pending": {"version": version, "sha256": sha256, "backup": str(backup)}}
    )
    log.info("configuration v%d staged (previous kept as %s); reloading", version, backup.name)
    return Staged(version, sha256, backup)


def _check_candidate(station: Station, candidate: Path) -> None:
    new = load_station(candidate)
    require_private_secrets(new)
    if new.config.gateway.id != station.config.gateway.id:
        raise ConfigRejected(f"gateway.id changes from {station.config.gateway.id} to {new.config.gateway.id}")
    if new.data_dir != station.data_dir:
        raise ConfigRejected("gateway.data_dir changes: buffered data would be left behind")


def pending(station: Station) -> dict[str, Any] | None:
    value = read_state(station).get("pending")
    return value if isinstance(value, dict) else None


def mark_applied(station: Station) -> dict[str, Any] | None:
    """After the gateway started on the new file: the pending version becomes the running one."""
    state = read_state(station)
    staged = state.pop("pending", None)
    if not isinstance(staged, dict):
        return None
    state["version"] = staged["version"]
    state["sha256"] = staged["sha256"]
    _write_state(station, state)
    return staged


def roll_back(station: Station) -> dict[str, Any] | None:
    """The gateway could not start on the new file: put the backup back."""
    state = read_state(station)
    staged = state.pop("pending", None)
    if not isinstance(staged, dict):
        return None
    backup = Path(staged["backup"])
    if backup.exists():
        backup.replace(Path(station.source).resolve())
    _write_state(station, state)
    log.error("configuration v%s rolled back to %s", staged.get("version"), backup.name)
    return staged

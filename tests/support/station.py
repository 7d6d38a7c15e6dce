"""Write station files for tests (the same schema a technician writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "configs" / "models"
FIXTURE_MODELS = REPO_ROOT / "tests" / "fixtures" / "models"

REGULATOR_POINTS: dict[str, Any] = yaml.safe_load(
    (REPO_ROOT / "configs" / "stations" / "demo-station.yaml").read_text(encoding="utf-8")
)["devices"][0]["points"]


def station_dict(
    *,
    cloud_url: str,
    data_dir: Path,
    ports: list[int],
    gateway_id: str = "gw-test",
    poll_interval_s: float = 0.2,
    points: dict[str, Any] | None = None,
    model: str = "regulator_box",
    store: dict[str, Any] | None = None,
    sync: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "gateway": {"id": gateway_id, "cloud_url": cloud_url, "data_dir": str(data_dir)},
        "models": [str(MODELS), str(FIXTURE_MODELS)],
        "store": store or {},
        "sync": {"max_batch_age_s": 0.2, "backoff_initial_s": 0.05, "backoff_max_s": 0.5, **(sync or {})},
        "channels": [
            {"id": f"link{i}", "driver": "modbus_tcp", "host": "127.0.0.1", "port": p, "timeout_s": 0.5}
            for i, p in enumerate(ports)
        ],
        "devices": [
            {
                "id": f"dev{i}",
                "model": model,
                "channel": f"link{i}",
                "unit_id": 1,
                "poll_interval_s": poll_interval_s,
                "points": points or REGULATOR_POINTS,
            }
            for i in range(len(ports))
        ],
    }


def write_station(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path

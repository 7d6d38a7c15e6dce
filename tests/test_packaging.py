"""The wheel ships every package: the list in pyproject.toml names each directory with an
__init__.py (a missing subpackage only shows once installed from the wheel, on a gateway)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top in ("gasiot", "gascore", "edge", "cloud", "drivers"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "firmware-sim" / "gasiot_sim").rglob("__init__.py"):
        found.add(".".join(("gasiot_sim", *init.parent.relative_to(ROOT / "firmware-sim" / "gasiot_sim").parts)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; stale: {sorted(listed - found)}"

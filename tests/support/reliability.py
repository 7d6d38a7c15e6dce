"""Figures for docs/reliability.md: a fault test records what it did and what it found when
GASIOT_RELIABILITY_OUT names a file (scripts/chaos/reliability.py sets it and writes the page)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def record(
    scenario: str,
    *,
    runs: int,
    faults: int,
    lost: int,
    duplicates: int,
    bad_inputs: int = 0,
    crashes: int = 0,
    note: str = "",
) -> None:
    target = os.environ.get("GASIOT_RELIABILITY_OUT")
    if not target:
        return
    line = {
        "scenario": scenario,
        "runs": runs,
        "faults": faults,
        "lost": lost,
        "duplicates": duplicates,
        "bad_inputs": bad_inputs,
        "crashes": crashes,
        "note": note,
    }
    with Path(target).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")

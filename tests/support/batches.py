"""A frame builder that records the batches the store forms, and a way to compare wire rows with
each value's exact type (tests of edge/store.py and edge/recent_rows.py)."""

from __future__ import annotations

from typing import Any

from gascore.records import Lane


class Recorder:
    """A ``FrameBuilder``: records each batch it is asked to build, returns a recognisable frame."""

    def __init__(self) -> None:
        self.batches: list[tuple[Lane, int, str, list[list[Any]]]] = []

    def __call__(self, lane: Lane, seq: int, prev: str, rows: list[list[Any]]) -> tuple[bytes, str]:
        self.batches.append((lane, seq, prev, rows))
        return f"{lane.value}-{seq}-{len(rows)}".encode(), f"{seq:064x}"


def typed(rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Rows with each value's exact type, so True is not taken for 1 nor 2 for 2.0."""
    return [(d, p, ts, type(v).__name__, v, str(q)) for d, p, ts, v, q in rows]

"""Gas analytics for the central team (A-4.1.5-network, A-4.1.5-user, O-8.1.2): pipeline balance
(供销差), meter anomalies and a data-quality report.  Pure functions over time series, so they are
tested with exact numbers; the HTTP layer (``cloud/routes_analytics.py``) fetches the series.

Series are ``[(ts_ms, value)]`` of good readings, sorted.  Flow rates are in m³/h (or Nm³/h).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

Series = Sequence[tuple[int, float]]

P_STD_KPA = 101.325
T_STD_K = 273.15
HOUR_MS = 3_600_000


def to_standard(volume_m3: float, pressure_kpa_abs: float, temperature_c: float) -> float:
    """Actual cubic metres at (p, T) → normal cubic metres (0 °C, 101.325 kPa), ideal gas (the
    compressibility of town gas at distribution pressures is within 0.3 % of 1)."""
    return volume_m3 * (pressure_kpa_abs / P_STD_KPA) * (T_STD_K / (temperature_c + T_STD_K))


@dataclass(frozen=True, slots=True)
class Window:
    start_ms: int
    end_ms: int
    volume: float | None  # None: not enough data in the window
    coverage: float  # share of the window covered by samples no further apart than max_gap


def integrate(series: Series, start_ms: int, end_ms: int, *, max_gap_ms: int) -> Window:
    """Volume through a meter over [start, end) from its flow rate (trapezoids; a gap longer than
    ``max_gap_ms`` is not bridged and counts as missing)."""
    points = [(t, v) for t, v in series if start_ms - max_gap_ms <= t <= end_ms + max_gap_ms]
    volume, covered = 0.0, 0
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t1 - t0 > max_gap_ms or t1 <= start_ms or t0 >= end_ms:
            continue
        a, b = max(t0, start_ms), min(t1, end_ms)
        if b <= a:
            continue
        # the rate at a and b, on the line between the samples
        slope = (v1 - v0) / (t1 - t0)
        va, vb = v0 + slope * (a - t0), v0 + slope * (b - t0)
        volume += (va + vb) / 2 * (b - a) / HOUR_MS
        covered += b - a
    coverage = covered / (end_ms - start_ms)
    return Window(start_ms, end_ms, volume, coverage)


@dataclass(frozen=True, slots=True)
class BalanceWindow:
    start_ms: int
    end_ms: int
    inflow: float | None
    outflow: float | None
    loss_rate: float | None  # (in - out) / in; None when a meter lacks data
    complete: bool
    alarm: bool


def balance(
    inflows: Sequence[Series],
    outflows: Sequence[Series],
    start_ms: int,
    end_ms: int,
    *,
    window_ms: int = HOUR_MS,
    max_gap_ms: int = 5 * 60_000,
    min_coverage: float = 0.9,
    alarm_rate: float = 0.05,
) -> list[BalanceWindow]:
    """Supply vs sales over aligned windows.  A window where any meter covers less than
    ``min_coverage`` is reported incomplete with no loss rate (a missing meter is not a loss)."""
    out = []
    for w0 in range(start_ms - start_ms % window_ms, end_ms, window_ms):
        w1 = w0 + window_ms
        ins = [integrate(s, w0, w1, max_gap_ms=max_gap_ms) for s in inflows]
        outs = [integrate(s, w0, w1, max_gap_ms=max_gap_ms) for s in outflows]
        complete = all(w.coverage >= min_coverage for w in (*ins, *outs))
        inflow = sum(w.volume or 0.0 for w in ins) if complete else None
        outflow = sum(w.volume or 0.0 for w in outs) if complete else None
        rate = (inflow - outflow) / inflow if complete and inflow and outflow is not None else None
        out.append(BalanceWindow(w0, w1, inflow, outflow, rate, complete, rate is not None and rate > alarm_rate))
    return out


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str  # large_flow, micro_flow, long_use, no_use
    start_ms: int
    end_ms: int
    detail: str


def meter_anomalies(
    series: Series,
    *,
    rated_flow: float,
    micro_flow: float = 0.02,
    micro_min_ms: int = 6 * HOUR_MS,
    long_use_ms: int = 8 * HOUR_MS,
    no_use_ms: int = 30 * 24 * HOUR_MS,
    end_ms: int | None = None,
) -> list[Anomaly]:
    """A household or commercial meter's flow (m³/h):

    * ``large_flow`` — above the sum of the rated flows of its appliances (a broken pipe);
    * ``micro_flow`` — small but never zero for ``micro_min_ms`` (a leak behind the meter);
    * ``long_use`` — uninterrupted use beyond ``long_use_ms`` (a burner left on);
    * ``no_use`` — no flow for ``no_use_ms`` (an empty flat, or a bypassed meter).
    """
    found: list[Anomaly] = []
    if not series:
        return found

    def runs(predicate: object) -> list[tuple[int, int]]:
        spans, begin, last = [], None, None
        for t, v in series:
            if predicate(v):  # type: ignore[operator]
                begin = t if begin is None else begin
                last = t
            elif begin is not None:
                spans.append((begin, t))
                begin = None
        if begin is not None:
            spans.append((begin, end_ms if end_ms is not None else (last or begin)))
        return spans

    for a, b in runs(lambda v: v > rated_flow):
        peak = max(v for t, v in series if a <= t <= b)
        found.append(Anomaly("large_flow", a, b, f"peak {peak:.3f} m³/h > rated {rated_flow:.3f} m³/h"))
    for a, b in runs(lambda v: 0 < v <= micro_flow):
        if b - a >= micro_min_ms:
            found.append(Anomaly("micro_flow", a, b, f"≤ {micro_flow} m³/h for {(b - a) / HOUR_MS:.1f} h"))
    for a, b in runs(lambda v: v > micro_flow):
        if b - a >= long_use_ms:
            found.append(Anomaly("long_use", a, b, f"in use for {(b - a) / HOUR_MS:.1f} h"))
    for a, b in runs(lambda v: v <= 0):
        if b - a >= no_use_ms:
            found.append(Anomaly("no_use", a, b, f"no flow for {(b - a) / (24 * HOUR_MS):.1f} days"))
    return sorted(found, key=lambda x: x.start_ms)


@dataclass(frozen=True, slots=True)
class PointQuality:
    device: str
    point: str
    completeness: float  # share of buckets with at least one good reading
    bad_share: float  # share of readings not good
    stale: bool  # no reading for more than ``stale_ms`` before the end


def data_quality(
    readings: Sequence[tuple[str, str, int, str]],
    start_ms: int,
    end_ms: int,
    *,
    bucket_ms: int = HOUR_MS,
    stale_ms: int = HOUR_MS,
) -> list[PointQuality]:
    """Per (device, point): completeness, share of bad readings, staleness, from
    ``(device, point, ts_ms, quality)``."""
    buckets = max(1, math.ceil((end_ms - start_ms) / bucket_ms))
    per: dict[tuple[str, str], tuple[set[int], int, int, int]] = {}
    for device, point, ts, quality in readings:
        if not start_ms <= ts < end_ms:
            continue
        good_buckets, total, bad, newest = per.get((device, point), (set(), 0, 0, 0))
        total += 1
        if quality == "good":
            good_buckets.add((ts - start_ms) // bucket_ms)
        else:
            bad += 1
        per[(device, point)] = (good_buckets, total, bad, max(newest, ts))
    return [
        PointQuality(device, point, len(good) / buckets, bad / total, end_ms - newest > stale_ms)
        for (device, point), (good, total, bad, newest) in sorted(per.items())
    ]

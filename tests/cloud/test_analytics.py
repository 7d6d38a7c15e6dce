"""Gas analytics with exact numbers: volume from flow rates, standard conditions, the balance of
a segment with a missing meter, the four meter anomalies, data quality."""

from __future__ import annotations

import pytest

from cloud.analytics import HOUR_MS, balance, data_quality, integrate, meter_anomalies, to_standard

MIN = 60_000


def steady(rate: float, start: int, end: int, step: int = MIN) -> list[tuple[int, float]]:
    return [(t, rate) for t in range(start, end + 1, step)]


def test_integrate_and_gaps() -> None:
    w = integrate(steady(120.0, 0, HOUR_MS), 0, HOUR_MS, max_gap_ms=5 * MIN)
    assert w.volume == pytest.approx(120.0) and w.coverage == pytest.approx(1.0)
    ramp = [(0, 0.0), (HOUR_MS, 100.0)]
    assert integrate(ramp, 0, HOUR_MS, max_gap_ms=HOUR_MS).volume == pytest.approx(50.0)
    holey = [p for p in steady(60.0, 0, HOUR_MS) if not 10 * MIN < p[0] < 40 * MIN]
    w = integrate(holey, 0, HOUR_MS, max_gap_ms=5 * MIN)
    assert w.coverage == pytest.approx(0.5) and w.volume == pytest.approx(30.0)


def test_standard_conditions() -> None:
    # 100 m³ at 300 kPa absolute and 15 °C
    assert to_standard(100.0, 300.0, 15.0) == pytest.approx(100 * 300 / 101.325 * 273.15 / 288.15)


def test_balance_with_a_loss_and_a_missing_meter() -> None:
    t0 = 10 * HOUR_MS
    inflow = steady(1000.0, t0, t0 + 3 * HOUR_MS)
    out_a = steady(600.0, t0, t0 + 3 * HOUR_MS)
    # meter B silent during the second hour
    out_b = [
        p for p in steady(340.0, t0, t0 + 3 * HOUR_MS) if not t0 + HOUR_MS + 5 * MIN < p[0] < t0 + 2 * HOUR_MS - 5 * MIN
    ]
    windows = balance([inflow], [out_a, out_b], t0, t0 + 3 * HOUR_MS, alarm_rate=0.05)
    assert [w.complete for w in windows] == [True, False, True]
    first = windows[0]
    assert (first.inflow, first.outflow) == (pytest.approx(1000.0), pytest.approx(940.0))
    assert first.loss_rate == pytest.approx(0.06) and first.alarm
    assert windows[1].loss_rate is None and not windows[1].alarm  # a missing meter is not a loss


def test_meter_anomalies() -> None:
    h = HOUR_MS
    series = (
        steady(0.0, 0, 2 * h, 10 * MIN)
        + steady(0.01, 2 * h + 10 * MIN, 9 * h, 10 * MIN)  # 7 h of micro flow
        + steady(3.5, 9 * h + 10 * MIN, 9 * h + 30 * MIN, 10 * MIN)  # above the rated 2.5
        + steady(0.8, 9 * h + 40 * MIN, 19 * h, 10 * MIN)  # ~9.5 h of continuous use
        + steady(0.0, 19 * h + 10 * MIN, 20 * h, 10 * MIN)
    )
    kinds = [a.kind for a in meter_anomalies(series, rated_flow=2.5, long_use_ms=8 * h)]
    assert kinds == ["micro_flow", "large_flow", "long_use"]
    idle = steady(0.0, 0, 40 * 24 * h, h)
    (no_use,) = meter_anomalies(idle, rated_flow=2.5)
    assert no_use.kind == "no_use" and "40.0 days" in no_use.detail


def test_data_quality() -> None:
    h = HOUR_MS
    rows = [("box", "p", t, "good") for t in range(0, 2 * h, 10 * MIN)]
    rows += [("box", "p", 3 * h + MIN, "bad/comm_failure")]
    rows += [("box", "t", t, "good") for t in range(0, 4 * h, 10 * MIN)]
    report = {(q.device, q.point): q for q in data_quality(rows, 0, 4 * h)}
    assert report[("box", "p")].completeness == pytest.approx(0.5)
    assert report[("box", "p")].bad_share == pytest.approx(1 / 13)
    assert report[("box", "p")].stale is False  # a reading (bad) 59 min before the end
    assert report[("box", "t")].completeness == 1.0 and report[("box", "t")].bad_share == 0.0


async def test_over_http(batches, http) -> None:
    from gascore.contract import GENESIS_DIGEST
    from gascore.records import Reading

    cloud = batches.cloud
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
    rows = [Reading("gate", "flow", t, 1000.0) for t in range(t0, t0 + HOUR_MS + 1, MIN)]
    rows += [Reading("town", "flow", t, 930.0) for t in range(t0, t0 + HOUR_MS + 1, MIN)]
    rows += [Reading("flat", "flow", t0 + i * 10 * MIN, 0.01) for i in range(40)]
    assert (await batches.post(batches.frame(1, GENESIS_DIGEST, [r.to_wire() for r in rows]))).status == 200
    viewer = cloud.auth(cloud.token("viewer"))
    body = {
        "from": t0,
        "to": t0 + HOUR_MS,
        "inflows": [{"gateway_id": "gw-sec", "device": "gate", "point": "flow"}],
        "outflows": [{"gateway_id": "gw-sec", "device": "town", "point": "flow"}],
    }
    async with http.post(f"{cloud.url}/v1/analytics/balance", json=body, headers=viewer) as r:
        (window,) = (await r.json())["windows"]
    assert window["loss_rate"] == pytest.approx(0.07) and window["alarm"] is True
    url = f"{cloud.url}/v1/gateways/gw-sec/devices/flat/anomalies?rated_flow=2&from={t0}&to={t0 + 7 * HOUR_MS}"
    async with http.get(url, headers=viewer) as r:
        assert [a["kind"] for a in (await r.json())["anomalies"]] == ["micro_flow"]
    async with http.get(f"{cloud.url}/v1/gateways/gw-sec/quality?from={t0}&to={t0 + HOUR_MS}", headers=viewer) as r:
        points = {(p["device"], p["point"]): p for p in (await r.json())["points"]}
    assert points[("gate", "flow")]["completeness"] == 1.0
    maintainer = cloud.auth(cloud.token("maintainer"))
    plan = {"gateway_id": "gw-sec", "device_id": "gate", "interval_days": 365, "last_ms": t0 - 400 * 86_400_000}
    async with http.post(f"{cloud.url}/v1/calibration/instruments", json=plan, headers=maintainer) as r:
        assert r.status == 201
    async with http.get(f"{cloud.url}/v1/calibration", headers=viewer) as r:
        assert (await r.json())["instruments"][0]["status"] == "overdue"
    import time

    recent = int(time.time() * 1000) - 10 * 86_400_000
    record = {
        "gateway_id": "gw-sec",
        "device_id": "gate",
        "calibrated_ms": recent,
        "certificate": "JL-2026-0042",
        "result": "pass",
    }
    async with http.post(f"{cloud.url}/v1/calibration/records", json=record, headers=maintainer) as r:
        assert r.status == 201
    async with http.get(f"{cloud.url}/v1/calibration", headers=viewer) as r:
        (instrument,) = (await r.json())["instruments"]
    assert (instrument["certificate"], instrument["status"], instrument["last_ms"]) == ("JL-2026-0042", "ok", recent)

"""Calibration plans (O-8.4d): instruments with an interval, calibration records with the
certificate number, and each instrument's status — ``ok``, ``due_soon`` (within 30 days) or
``overdue``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloud.sqldb import Dialect, SqlDb

DAY_MS = 86_400_000
DUE_SOON_DAYS = 30

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS cal_instruments(gateway_id TEXT NOT NULL, device_id TEXT NOT NULL,
            interval_days INTEGER NOT NULL, last_ms INTEGER, certificate TEXT, PRIMARY KEY (gateway_id, device_id));
        CREATE TABLE IF NOT EXISTS cal_records(gateway_id TEXT NOT NULL, device_id TEXT NOT NULL,
            calibrated_ms INTEGER NOT NULL, certificate TEXT NOT NULL, result TEXT NOT NULL, recorded_by TEXT NOT NULL);
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS cal_instruments(gateway_id TEXT NOT NULL, device_id TEXT NOT NULL,
            interval_days INTEGER NOT NULL, last_ms BIGINT, certificate TEXT, PRIMARY KEY (gateway_id, device_id));
        CREATE TABLE IF NOT EXISTS cal_records(gateway_id TEXT NOT NULL, device_id TEXT NOT NULL,
            calibrated_ms BIGINT NOT NULL, certificate TEXT NOT NULL, result TEXT NOT NULL, recorded_by TEXT NOT NULL);
    """,
}


class CalibrationError(ValueError):
    pass


class Calibration:
    def __init__(self, db: SqlDb, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock
        db.script(DDL)

    def plan(self, gateway_id: str, device_id: str, interval_days: int, last_ms: int | None = None) -> None:
        if not 1 <= interval_days <= 3650:
            raise CalibrationError("interval_days: 1 to 3650")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO cal_instruments(gateway_id, device_id, interval_days, last_ms) VALUES (?,?,?,?)"
                " ON CONFLICT (gateway_id, device_id) DO UPDATE SET interval_days = excluded.interval_days,"
                " last_ms = coalesce(excluded.last_ms, cal_instruments.last_ms)",
                (gateway_id, device_id, interval_days, last_ms),
            )

    def record(
        self, gateway_id: str, device_id: str, calibrated_ms: int, certificate: str, result: str, by: str
    ) -> None:
        if result not in ("pass", "adjusted", "fail"):
            raise CalibrationError("result: pass, adjusted or fail")
        if not certificate.strip():
            raise CalibrationError("certificate: the calibration certificate number")
        with self.db.transaction() as tx:
            if (
                tx.one("SELECT 1 FROM cal_instruments WHERE gateway_id = ? AND device_id = ?", (gateway_id, device_id))
                is None
            ):
                raise CalibrationError(f"{gateway_id}/{device_id} has no calibration plan")
            tx.execute(
                "INSERT INTO cal_records(gateway_id, device_id, calibrated_ms, certificate, result, recorded_by)"
                " VALUES (?,?,?,?,?,?)",
                (gateway_id, device_id, calibrated_ms, certificate, result, by),
            )
            if result != "fail":  # a failed calibration does not restart the interval
                tx.execute(
                    "UPDATE cal_instruments SET last_ms = ?, certificate = ? WHERE gateway_id = ? AND device_id = ?"
                    " AND (last_ms IS NULL OR last_ms < ?)",
                    (calibrated_ms, certificate, gateway_id, device_id, calibrated_ms),
                )

    def status(self, visible: Callable[[str], bool] = lambda g: True) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for gw, dev, interval, last, cert in self.db.query(
            "SELECT gateway_id, device_id, interval_days, last_ms, certificate FROM cal_instruments"
            " ORDER BY gateway_id, device_id"
        ):
            if not visible(gw):
                continue
            due = None if last is None else int(last) + int(interval) * DAY_MS
            if due is None or due < now:
                state = "overdue"
            elif due - now <= DUE_SOON_DAYS * DAY_MS:
                state = "due_soon"
            else:
                state = "ok"
            out.append(
                {
                    "gateway_id": gw,
                    "device_id": dev,
                    "interval_days": interval,
                    "last_ms": last,
                    "certificate": cert,
                    "due_ms": due,
                    "status": state,
                }
            )
        return out

    def records(self, gateway_id: str, device_id: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT calibrated_ms, certificate, result, recorded_by FROM cal_records WHERE gateway_id = ?"
            " AND device_id = ? ORDER BY calibrated_ms",
            (gateway_id, device_id),
        )
        return [dict(zip(("calibrated_ms", "certificate", "result", "recorded_by"), r, strict=True)) for r in rows]

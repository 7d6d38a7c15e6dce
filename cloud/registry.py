"""The registry (A-4.1.5-reg, A-4.2.5, O-8.2.3): organisations → stations → gateways → devices,
versioned thing models, monitoring points (监测点) bound to a device property for a time
interval, tags, and the lifecycle of gateways and devices.

A monitoring point is the place that is measured ("gate station 1, outlet pressure"); the device
doing it may be swapped.  Each binding has ``valid_from``/``valid_to``, so the point's history
reads the old device before the swap and the new one after.

Devices register themselves: a gateway announces each device it serves (``device.announce``
events); one whose model the registry knows becomes an active device at the gateway's station,
anything else waits for a maintainer's approval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.sqldb import Dialect, SqlDb, Tx
from gascore.records import Event
from gascore.thingmodel import ThingModelFile

STATION_TYPES = ("gate", "regulating", "gasification", "lpg", "cng", "distribution", "regulator_box", "other")
LIFECYCLE = ("provisioned", "active", "suspended", "retired")
_TRANSITIONS = {
    "provisioned": {"active", "retired"},
    "active": {"suspended", "retired"},
    "suspended": {"active", "retired"},
    "retired": set(),
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS orgs(id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS stations(id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id),
            name TEXT NOT NULL, type TEXT NOT NULL, lat REAL, lon REAL, address TEXT, created_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS gateway_placement(gateway_id TEXT PRIMARY KEY,
            station_id TEXT NOT NULL REFERENCES stations(id), lifecycle TEXT NOT NULL, created_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS models(id TEXT NOT NULL, version INTEGER NOT NULL, name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL, document TEXT NOT NULL, uploaded_ms INTEGER NOT NULL, uploaded_by TEXT NOT NULL,
            PRIMARY KEY (id, version));
        CREATE TABLE IF NOT EXISTS devices(gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, model_id TEXT NOT NULL,
            model_version INTEGER, serial TEXT, lifecycle TEXT NOT NULL, station_id TEXT, lat REAL, lon REAL,
            contact_name TEXT, contact_phone TEXT, address TEXT, created_ms INTEGER NOT NULL,
            PRIMARY KEY (gateway_id, device_id));
        CREATE TABLE IF NOT EXISTS points(id TEXT PRIMARY KEY, station_id TEXT NOT NULL REFERENCES stations(id),
            name TEXT NOT NULL, unit TEXT, created_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS point_bindings(point_id TEXT NOT NULL REFERENCES points(id),
            gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, property TEXT NOT NULL,
            valid_from_ms INTEGER NOT NULL, valid_to_ms INTEGER);
        CREATE TABLE IF NOT EXISTS tags(kind TEXT NOT NULL, ref TEXT NOT NULL, tag TEXT NOT NULL,
            PRIMARY KEY (kind, ref, tag));
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS orgs(id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS stations(id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id),
            name TEXT NOT NULL, type TEXT NOT NULL, lat DOUBLE PRECISION, lon DOUBLE PRECISION, address TEXT,
            created_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS gateway_placement(gateway_id TEXT PRIMARY KEY,
            station_id TEXT NOT NULL REFERENCES stations(id), lifecycle TEXT NOT NULL, created_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS models(id TEXT NOT NULL, version INTEGER NOT NULL, name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL, document TEXT NOT NULL, uploaded_ms BIGINT NOT NULL, uploaded_by TEXT NOT NULL,
            PRIMARY KEY (id, version));
        CREATE TABLE IF NOT EXISTS devices(gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, model_id TEXT NOT NULL,
            model_version INTEGER, serial TEXT, lifecycle TEXT NOT NULL, station_id TEXT, lat DOUBLE PRECISION,
            lon DOUBLE PRECISION, contact_name TEXT, contact_phone TEXT, address TEXT, created_ms BIGINT NOT NULL,
            PRIMARY KEY (gateway_id, device_id));
        CREATE TABLE IF NOT EXISTS points(id TEXT PRIMARY KEY, station_id TEXT NOT NULL REFERENCES stations(id),
            name TEXT NOT NULL, unit TEXT, created_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS point_bindings(point_id TEXT NOT NULL REFERENCES points(id),
            gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, property TEXT NOT NULL,
            valid_from_ms BIGINT NOT NULL, valid_to_ms BIGINT);
        CREATE TABLE IF NOT EXISTS tags(kind TEXT NOT NULL, ref TEXT NOT NULL, tag TEXT NOT NULL,
            PRIMARY KEY (kind, ref, tag));
    """,
}


_DEVICE_LIFECYCLE = "SELECT lifecycle FROM devices WHERE gateway_id = ? AND device_id = ?"


class RegistryError(Exception):
    """A registry request that cannot be done (unknown parent, bad id, forbidden transition…)."""


@dataclass(frozen=True, slots=True)
class Placement:
    gateway_id: str
    station_id: str
    org_id: str
    lifecycle: str


def check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise RegistryError(f"{kind}: 1-64 characters of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    return value


class Registry:
    def __init__(self, db: SqlDb, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock
        db.script(DDL)

    # ---- organisations and stations ----------------------------------------------------------

    def add_org(self, org_id: str, name: str) -> None:
        check_id("org id", org_id)
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM orgs WHERE id = ?", (org_id,)):
                raise RegistryError(f"organisation {org_id!r} exists")
            tx.execute("INSERT INTO orgs(id, name, created_ms) VALUES (?,?,?)", (org_id, name or org_id, self.clock()))

    def add_station(
        self,
        station_id: str,
        org_id: str,
        name: str,
        type_: str,
        lat: float | None = None,
        lon: float | None = None,
        address: str | None = None,
    ) -> None:
        check_id("station id", station_id)
        if type_ not in STATION_TYPES:
            raise RegistryError(f"station type {type_!r}: one of {', '.join(STATION_TYPES)}")
        _check_coordinates(lat, lon)
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM orgs WHERE id = ?", (org_id,)) is None:
                raise RegistryError(f"no organisation {org_id!r}")
            if tx.one("SELECT 1 FROM stations WHERE id = ?", (station_id,)):
                raise RegistryError(f"station {station_id!r} exists")
            tx.execute(
                "INSERT INTO stations(id, org_id, name, type, lat, lon, address, created_ms) VALUES (?,?,?,?,?,?,?,?)",
                (station_id, org_id, name or station_id, type_, lat, lon, address, self.clock()),
            )

    def stations(self, *, visible: Callable[[str, str], bool] = lambda s, o: True) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT id, org_id, name, type, lat, lon, address FROM stations ORDER BY id")
        keys = ("id", "org_id", "name", "type", "lat", "lon", "address")
        return [dict(zip(keys, r, strict=True)) for r in rows if visible(r[0], r[1])]

    def station_org(self, station_id: str) -> str | None:
        row = self.db.one("SELECT org_id FROM stations WHERE id = ?", (station_id,))
        return str(row[0]) if row else None

    def stations_near(self, lat: float, lon: float, radius_km: float) -> list[dict[str, Any]]:
        """Stations within ``radius_km`` (A-4.1.5-geo), nearest first."""
        import math

        out = []
        for st in self.stations():
            if st["lat"] is None or st["lon"] is None:
                continue
            phi1, phi2 = math.radians(lat), math.radians(st["lat"])
            dphi, dlmb = phi2 - phi1, math.radians(st["lon"] - lon)
            a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
            km = 2 * 6371.0 * math.asin(math.sqrt(a))
            if km <= radius_km:
                out.append({**st, "distance_km": round(km, 3)})
        return sorted(out, key=lambda s: s["distance_km"])

    # ---- gateways -----------------------------------------------------------------------------

    def provision_gateway(self, gateway_id: str, station_id: str) -> None:
        check_id("gateway id", gateway_id)
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM stations WHERE id = ?", (station_id,)) is None:
                raise RegistryError(f"no station {station_id!r}")
            if tx.one("SELECT 1 FROM gateway_placement WHERE gateway_id = ?", (gateway_id,)):
                raise RegistryError(f"gateway {gateway_id!r} is already provisioned")
            tx.execute(
                "INSERT INTO gateway_placement(gateway_id, station_id, lifecycle, created_ms) VALUES (?,?,?,?)",
                (gateway_id, station_id, "provisioned", self.clock()),
            )

    def placement(self, gateway_id: str) -> Placement | None:
        row = self.db.one(
            "SELECT g.gateway_id, g.station_id, s.org_id, g.lifecycle FROM gateway_placement g"
            " JOIN stations s ON s.id = g.station_id WHERE g.gateway_id = ?",
            (gateway_id,),
        )
        return Placement(*row) if row else None

    def set_gateway_lifecycle(self, gateway_id: str, lifecycle: str) -> str:
        """Returns the previous state; raises RegistryError on a transition the lifecycle forbids."""
        with self.db.transaction() as tx:
            row = tx.one("SELECT lifecycle FROM gateway_placement WHERE gateway_id = ?", (gateway_id,))
            if row is None:
                raise RegistryError(f"gateway {gateway_id!r} is not provisioned")
            _check_transition(f"gateway {gateway_id}", str(row[0]), lifecycle)
            tx.execute("UPDATE gateway_placement SET lifecycle = ? WHERE gateway_id = ?", (lifecycle, gateway_id))
        return str(row[0])

    # ---- thing models -------------------------------------------------------------------------

    def upload_model(self, document: dict[str, Any], uploaded_by: str) -> tuple[str, int]:
        """A thing model (the YAML a model file holds, parsed); versions are immutable."""
        try:
            model = ThingModelFile.model_validate(document)
        except ValueError as err:
            raise RegistryError(f"not a valid thing model: {err}") from err
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM models WHERE id = ? AND version = ?", (model.id, model.version)):
                raise RegistryError(f"model {model.id} v{model.version} exists; upload a new version")
            tx.execute(
                "INSERT INTO models(id, version, name_zh, name_en, document, uploaded_ms, uploaded_by)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    model.id,
                    model.version,
                    model.name.zh,
                    model.name.en,
                    json.dumps(document, ensure_ascii=False, sort_keys=True),
                    self.clock(),
                    uploaded_by,
                ),
            )
        return model.id, model.version

    def models(self) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT id, version, name_zh, name_en, uploaded_ms FROM models ORDER BY id, version")
        keys = ("id", "version", "name_zh", "name_en", "uploaded_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def latest_model_version(self, model_id: str) -> int | None:
        row = self.db.one("SELECT max(version) FROM models WHERE id = ?", (model_id,))
        return int(row[0]) if row and row[0] is not None else None

    # ---- devices ------------------------------------------------------------------------------

    def announce(self, gateway_id: str, device_id: str, model_id: str, version: int | None, serial: str | None) -> str:
        """A gateway reports a device it serves: active when the model is known and the gateway is
        placed, else held as ``provisioned`` for approval.  Returns the device's lifecycle."""
        placement = self.placement(gateway_id)
        known = self.latest_model_version(model_id) is not None
        lifecycle = "active" if known and placement is not None else "provisioned"
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT lifecycle FROM devices WHERE gateway_id = ? AND device_id = ?", (gateway_id, device_id)
            )
            if row is not None:
                tx.execute(
                    "UPDATE devices SET model_id = ?, model_version = ?, serial = coalesce(?, serial)"
                    " WHERE gateway_id = ? AND device_id = ?",
                    (model_id, version, serial, gateway_id, device_id),
                )
                return str(row[0])
            tx.execute(
                "INSERT INTO devices(gateway_id, device_id, model_id, model_version, serial, lifecycle, station_id,"
                " created_ms) VALUES (?,?,?,?,?,?,?,?)",
                (
                    gateway_id,
                    device_id,
                    model_id,
                    version,
                    serial,
                    lifecycle,
                    placement.station_id if placement else None,
                    self.clock(),
                ),
            )
        return lifecycle

    def set_device_lifecycle(self, gateway_id: str, device_id: str, lifecycle: str) -> str:
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT lifecycle FROM devices WHERE gateway_id = ? AND device_id = ?", (gateway_id, device_id)
            )
            if row is None:
                raise RegistryError(f"no device {device_id!r} on gateway {gateway_id!r}")
            _check_transition(f"device {device_id}", str(row[0]), lifecycle)
            tx.execute(
                "UPDATE devices SET lifecycle = ? WHERE gateway_id = ? AND device_id = ?",
                (lifecycle, gateway_id, device_id),
            )
        return str(row[0])

    def set_device_details(self, gateway_id: str, device_id: str, details: dict[str, Any]) -> None:
        allowed = {"lat", "lon", "contact_name", "contact_phone", "address", "serial"}
        unknown = set(details) - allowed
        if unknown:
            raise RegistryError(f"unknown device field(s): {', '.join(sorted(unknown))}")
        _check_coordinates(details.get("lat"), details.get("lon"))
        with self.db.transaction() as tx:
            for key, value in details.items():
                tx.execute(
                    f"UPDATE devices SET {key} = ? WHERE gateway_id = ? AND device_id = ?",  # noqa: S608 - allow-listed
                    (value, gateway_id, device_id),
                )

    def devices(
        self, *, gateway_id: str | None = None, station_id: str | None = None, lifecycle: str | None = None
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT gateway_id, device_id, model_id, model_version, serial, lifecycle, station_id, lat, lon,"
            " contact_name, contact_phone, address FROM devices WHERE 1=1"
        )
        args: list[Any] = []
        for column, value in (("gateway_id", gateway_id), ("station_id", station_id), ("lifecycle", lifecycle)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        keys = (
            "gateway_id",
            "device_id",
            "model_id",
            "model_version",
            "serial",
            "lifecycle",
            "station_id",
            "lat",
            "lon",
            "contact_name",
            "contact_phone",
            "address",
        )
        return [dict(zip(keys, r, strict=True)) for r in self.db.query(sql + " ORDER BY gateway_id, device_id", args)]

    # ---- monitoring points --------------------------------------------------------------------

    def add_point(self, point_id: str, station_id: str, name: str, unit: str | None = None) -> None:
        check_id("point id", point_id)
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM stations WHERE id = ?", (station_id,)) is None:
                raise RegistryError(f"no station {station_id!r}")
            if tx.one("SELECT 1 FROM points WHERE id = ?", (point_id,)):
                raise RegistryError(f"point {point_id!r} exists")
            tx.execute(
                "INSERT INTO points(id, station_id, name, unit, created_ms) VALUES (?,?,?,?,?)",
                (point_id, station_id, name, unit, self.clock()),
            )

    def bind_point(self, point_id: str, gateway_id: str, device_id: str, prop: str, from_ms: int) -> None:
        """From ``from_ms`` on, the point reads ``device.prop``; the binding before it ends there."""
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM points WHERE id = ?", (point_id,)) is None:
                raise RegistryError(f"no point {point_id!r}")
            current = tx.one(
                "SELECT valid_from_ms FROM point_bindings WHERE point_id = ? AND valid_to_ms IS NULL", (point_id,)
            )
            if current is not None and int(current[0]) >= from_ms:
                raise RegistryError(f"point {point_id} has a binding from {current[0]}; a new one must start later")
            tx.execute(
                "UPDATE point_bindings SET valid_to_ms = ? WHERE point_id = ? AND valid_to_ms IS NULL",
                (from_ms, point_id),
            )
            tx.execute(
                "INSERT INTO point_bindings(point_id, gateway_id, device_id, property, valid_from_ms)"
                " VALUES (?,?,?,?,?)",
                (point_id, gateway_id, device_id, prop, from_ms),
            )

    def bindings(self, point_id: str) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT gateway_id, device_id, property, valid_from_ms, valid_to_ms FROM point_bindings"
            " WHERE point_id = ? ORDER BY valid_from_ms",
            (point_id,),
        )
        keys = ("gateway_id", "device_id", "property", "valid_from_ms", "valid_to_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def point(self, point_id: str) -> dict[str, Any] | None:
        row = self.db.one(
            "SELECT p.id, p.station_id, s.org_id, p.name, p.unit FROM points p JOIN stations s ON s.id = p.station_id"
            " WHERE p.id = ?",
            (point_id,),
        )
        return dict(zip(("id", "station_id", "org_id", "name", "unit"), row, strict=True)) if row else None

    # ---- tags ---------------------------------------------------------------------------------

    def tag(self, kind: str, ref: str, tags: Iterable[str]) -> None:
        if kind not in ("station", "gateway", "device", "point"):
            raise RegistryError("tags go on a station, gateway, device or point")
        with self.db.transaction() as tx:
            for tag in tags:
                _insert_ignore(tx, "INSERT INTO tags(kind, ref, tag) VALUES (?,?,?)", (kind, ref, tag))

    def tagged(self, kind: str, tag: str) -> list[str]:
        return [
            str(r[0])
            for r in self.db.query("SELECT ref FROM tags WHERE kind = ? AND tag = ? ORDER BY ref", (kind, tag))
        ]


def _insert_ignore(tx: Tx, sql: str, args: tuple[Any, ...]) -> None:
    tx.execute(sql + " ON CONFLICT DO NOTHING", args)


def _check_transition(what: str, old: str, new: str) -> None:
    if new not in LIFECYCLE:
        raise RegistryError(f"lifecycle: one of {', '.join(LIFECYCLE)}")
    if new not in _TRANSITIONS[old]:
        raise RegistryError(f"{what} is {old}; it cannot become {new}")


def _check_coordinates(lat: Any, lon: Any) -> None:
    if (lat is None) != (lon is None):
        raise RegistryError("give both lat and lon, or neither")
    if lat is not None and (not isinstance(lat, int | float) or not -90 <= lat <= 90):
        raise RegistryError("lat: degrees between -90 and 90")
    if lon is not None and (not isinstance(lon, int | float) or not -180 <= lon <= 180):
        raise RegistryError("lon: degrees between -180 and 180")


def announced_devices(registry: Registry) -> Callable[[str, Sequence[Event]], None]:
    """An ingest observer: ``device.announce`` events register the devices a gateway serves."""

    def observe(gateway_id: str, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind != "device.announce":
                continue
            model, version, serial = event.data.get("model"), event.data.get("model_version"), event.data.get("serial")
            if not isinstance(model, str):
                continue
            registry.announce(
                gateway_id,
                event.device,
                model,
                version if isinstance(version, int) else None,
                serial if isinstance(serial, str) else None,
            )

    return observe

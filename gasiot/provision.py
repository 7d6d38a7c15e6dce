"""`gasiot provision`: the operator's registry commands over the cloud API, one at a time or in
bulk from CSV (a progress bar, and a per-row report of what failed and why; good rows are kept).

CSV columns (a header row names them; order free)::

    kind,id,org_id,station_id,name,type,lat,lon,address
    org,north,,,北区,,,,
    station,gs-01,north,,1号门站,gate,31.23,121.47,
    gateway,gw-0001,,gs-01,,,,,                 # provisioned; prints its one-time enrollment token
"""

from __future__ import annotations

import csv
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_ENV = "GASIOT_TOKEN"  # noqa: S105 - the name of an environment variable
KINDS = ("org", "station", "gateway")


class ProvisionError(Exception):
    """The cloud refused a request (the message is its answer) or could not be reached."""


@dataclass
class Api:
    base: str
    token: str
    ca_file: Path | None = None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the operator's own cloud URL
            self.base.rstrip("/") + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
                return dict(json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read()).get("detail", err.reason)
            except ValueError:
                detail = err.reason
            raise ProvisionError(f"HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise ProvisionError(f"cannot reach {self.base}: {getattr(err, 'reason', err)}") from None


def api_from(cloud: str, token: str | None, ca_file: Path | None) -> Api:
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ProvisionError(f"give --token or set {TOKEN_ENV} (a session or API token with registry.write)")
    return Api(cloud, token, ca_file)


def add_org(api: Api, org_id: str, name: str) -> str:
    api.call("POST", "/v1/orgs", {"id": org_id, "name": name or org_id})
    return f"organisation {org_id}"


def add_station(api: Api, row: dict[str, str]) -> str:
    body: dict[str, Any] = {"id": row["id"], "org_id": row.get("org_id", ""), "name": row.get("name") or row["id"]}
    body["type"] = row.get("type") or "other"
    for key in ("lat", "lon"):
        if row.get(key):
            try:
                body[key] = float(row[key])
            except ValueError:
                raise ProvisionError(f"{key}: {row[key]!r} is not a number") from None
    if row.get("address"):
        body["address"] = row["address"]
    api.call("POST", "/v1/stations", body)
    return f"station {row['id']}"


def add_gateway(api: Api, gateway_id: str, station_id: str, ttl_s: int = 7 * 86400) -> str:
    api.call("POST", f"/v1/gateways/{gateway_id}/placement", {"station_id": station_id})
    token = api.call("POST", "/v1/enrollment-tokens", {"gateway_id": gateway_id, "ttl_s": ttl_s})["token"]
    return f"gateway {gateway_id} at {station_id}; enrollment token (shown once): {token}"


def apply_row(api: Api, row: dict[str, str]) -> str:
    kind = (row.get("kind") or "").strip()
    if not row.get("id"):
        raise ProvisionError("id is empty")
    if kind == "org":
        return add_org(api, row["id"], row.get("name", ""))
    if kind == "station":
        return add_station(api, row)
    if kind == "gateway":
        if not row.get("station_id"):
            raise ProvisionError("a gateway needs station_id")
        return add_gateway(api, row["id"], row["station_id"])
    raise ProvisionError(f"kind {kind!r}: one of {', '.join(KINDS)}")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number in the file, row) for every data row; blank rows and #-comments skipped."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        for cells in reader:
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                if "kind" not in header or "id" not in header:
                    raise ProvisionError(f"{path}:{reader.line_num}: the header must name at least kind and id")
                continue
            yield reader.line_num, {k: v.strip() for k, v in zip(header, cells, strict=False)}

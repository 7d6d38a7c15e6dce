"""Data exchange with other systems (A-4.1.6-exchange, S-7.4d): CSV export of chosen properties
(scope-checked, every export in the audit log) and import of external time series — weather,
upstream custody-transfer volumes — as properties of a *virtual source*, stored like any
gateway's readings so queries, balance and trends use them unchanged.

A virtual source is a gateway record that can never sign a batch (``alg = "external"``): its
data arrives only through the import, as its own lane with gap-free sequence numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

from aiohttp import web

from cloud.appkeys import REPO, now_ms
from cloud.http import BadRequest, Route, audit, gateway_or_404, required_param, time_range, who
from cloud.repository import GatewayRecord
from gascore.contract import PROTOCOL_VERSION, BatchHeader
from gascore.records import Lane, Quality, Reading

EXTERNAL_ALG = "external"
MAX_IMPORT_ROWS = 200_000


async def export_csv(request: web.Request) -> web.StreamResponse:
    gw = gateway_or_404(request)
    device, point = request.match_info["device"], required_param(request, "point")
    from_ms, to_ms, limit = time_range(request)
    rows = request.app[REPO].series(gw.gateway_id, device, point, from_ms, to_ms, limit)
    audit(
        request,
        "export.readings",
        target=f"gateway:{gw.gateway_id}",
        device=device,
        point=point,
        rows=len(rows),
        from_ms=from_ms,
        to_ms=to_ms,
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ts_ms", "gateway_id", "device", "point", "value", "quality"])
    for r in rows:
        writer.writerow([r["ts_ms"], gw.gateway_id, device, point, r["value"], r["quality"]])
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{gw.gateway_id}-{device}-{point}.csv"'},
    )


def _virtual_source(request: web.Request, source: str) -> GatewayRecord:
    repo = request.app[REPO]
    gw = repo.gateway(source)
    if gw is None:
        if not who(request).everywhere:
            raise BadRequest("only a principal scoped '*' creates a new virtual source")
        gw = GatewayRecord(source, EXTERNAL_ALG, b"", "external", "active", now_ms())
        repo.register_gateway(gw)
    elif gw.alg != EXTERNAL_ALG:
        raise BadRequest(f"{source} is a gateway, not a virtual source: its data comes only from the gateway")
    return gateway_or_404(request, source)


def parse_series_csv(text: str) -> list[tuple[int, Any]]:
    """``ts_ms,value`` rows (a header row is allowed); values numbers or text."""
    rows: list[tuple[int, Any]] = []
    for line_no, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not cells or not "".join(cells).strip():
            continue
        if line_no == 1 and not cells[0].strip().isdigit():
            continue  # a header
        if len(cells) < 2:
            raise BadRequest(f"line {line_no}: expected ts_ms,value")
        try:
            ts = int(cells[0])
        except ValueError:
            raise BadRequest(f"line {line_no}: ts_ms {cells[0]!r} is not an integer") from None
        raw = cells[1].strip()
        try:
            value: Any = float(raw) if raw else None
        except ValueError:
            value = raw
        rows.append((ts, value))
        if len(rows) > MAX_IMPORT_ROWS:
            raise BadRequest(f"at most {MAX_IMPORT_ROWS} rows per import")
    if not rows:
        raise BadRequest("no rows")
    return rows


async def import_series(request: web.Request) -> web.Response:
    source = request.match_info["source"]
    if not source.startswith("ext-"):
        raise BadRequest("a virtual source's id starts with 'ext-' (e.g. ext-weather)")
    device, point = required_param(request, "device"), required_param(request, "point")
    rows = parse_series_csv(await request.text())
    gw = _virtual_source(request, source)
    repo = request.app[REPO]
    readings = [
        Reading(device, point, ts, value, Quality.GOOD if value is not None else Quality.BAD_SENSOR_FAULT)
        for ts, value in rows
    ]
    lane = repo.lane(gw.gateway_id, Lane.TELEMETRY)
    digest = hashlib.sha256(f"{gw.gateway_id}|{lane.last_seq + 1}|{now_ms()}".encode()).hexdigest()
    header = BatchHeader(
        v=PROTOCOL_VERSION,
        gateway_id=gw.gateway_id,
        lane=Lane.TELEMETRY,
        seq=lane.last_seq + 1,
        prev_digest=lane.last_digest,
        created_ms=now_ms(),
        count=len(readings),
        codec="json",
        key_id="external",
        sig_alg=EXTERNAL_ALG,
        body_digest=digest,
    )
    skipped = repo.store_batch(header, digest, readings, now_ms())
    audit(
        request,
        "import.series",
        target=f"source:{source}",
        device=device,
        point=point,
        rows=len(readings),
        skipped=skipped,
    )
    return web.json_response({"source": source, "stored": len(readings) - skipped, "skipped": skipped}, status=201)


EXCHANGE_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/gateways/{gateway_id}/devices/{device}/export.csv",
        export_csv,
        "data.read",
        "Export one property as CSV (audited)",
        ("point", "from", "to", "limit"),
    ),
    Route(
        "POST",
        "/v1/sources/{source}/series",
        import_series,
        "registry.write",
        "Import an external time series (ts_ms,value CSV) into a virtual source",
        ("device", "point"),
        body="text",
    ),
)

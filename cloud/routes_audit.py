"""The audit log for auditors: query, export (itself audited) and chain verification."""

from __future__ import annotations

import json

from aiohttp import web

from cloud.appkeys import AUDIT
from cloud.http import Route, audit, int_param


async def list_audit(request: web.Request) -> web.Response:
    q = request.query
    entries = request.app[AUDIT].entries(
        after_seq=int_param(request, "after", 0, 0, 2**62),
        limit=int_param(request, "limit", 1000, 1, 10_000),
        actor=q.get("actor"),
        action_prefix=q.get("action"),
        from_ms=int_param(request, "from", 0, 0, 2**53) if "from" in q else None,
        to_ms=int_param(request, "to", 0, 0, 2**53) if "to" in q else None,
    )
    return web.json_response({"entries": [e.as_dict() for e in entries]})


async def export_audit(request: web.Request) -> web.StreamResponse:
    """JSON lines, with each entry's chain fields, so the export can be verified offline."""
    audit(request, "export.audit", target="audit")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    after = 0
    while True:
        batch = request.app[AUDIT].entries(after_seq=after, limit=5000)
        for entry in batch:
            line = {**entry.as_dict(), "prev_hash": entry.prev_hash}
            await response.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
        if len(batch) < 5000:
            break
        after = batch[-1].seq
    await response.write_eof()
    return response


async def verify_audit(request: web.Request) -> web.Response:
    result = request.app[AUDIT].verify()
    return web.json_response(
        {
            "ok": result.ok,
            "entries": result.entries,
            "head_seq": result.head_seq,
            "head_hash": result.head_hash,
            "problem": result.problem,
        }
    )


AUDIT_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/audit",
        list_audit,
        "audit.read",
        "Audit entries",
        ("after", "limit", "actor", "action", "from", "to"),
    ),
    Route("GET", "/v1/audit/export", export_audit, "audit.read", "The whole audit log as JSON lines (audited)"),
    Route("GET", "/v1/audit/verify", verify_audit, "audit.read", "Verify the SM3 chain; the head to write down"),
)

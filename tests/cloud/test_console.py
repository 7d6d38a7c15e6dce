"""The web console's server side over real HTTP: the page and its assets are public and carry
strict security headers; nothing else under /console; the wheel ships every asset; ``/v1/auth/me``;
the trend route downsamples on the server; the live stream sends a snapshot then changes, is
scope-checked, ends when the session does, and never holds up a shutdown.  (The console itself,
in a browser: test_console_browser.py.)"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from cloud import routes_console_api
from cloud.appkeys import IDENTITY, LIVE, REGISTRY
from cloud.repository import GatewayRecord
from cloud.routes_console import assets
from gascore.contract import GENESIS_DIGEST
from gascore.crypto import generate_signer
from gascore.records import Quality, Reading
from support.cloud import running_cloud
from support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "cloud" / "console" / "static"
PASSWORD = "Kx9!pipeline-Valve"


@pytest.fixture
def signer():  # one algorithm is enough here (the ingest tests cover both)
    return generate_signer("ed25519")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def place(cloud, gateway_id: str = "gw-sec", station: str = "st-a") -> None:
    registry = cloud.app[REGISTRY]
    if not any(o for o in registry.stations() if o["org_id"] == "north"):
        registry.add_org("north", "北区")
    registry.add_station(station, "north", f"{station} 站", "regulator_box", 31.2, 121.4)
    registry.provision_gateway(gateway_id, station)


async def post_readings(batches, seq: int, prev: str, readings: list[Reading]) -> str:
    frame = batches.frame(seq, prev, [r.to_wire() for r in readings])
    reply = await batches.post(frame)
    assert reply.status == 200, reply.body
    return frame.header.digest()


# ---- page, assets, headers ----------------------------------------------------------------


async def test_page_and_assets_are_public_with_strict_headers(cloud, http) -> None:
    async with http.get(f"{cloud.url}/console", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/console/"
    async with http.get(f"{cloud.url}/console/") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
        headers = r.headers
    csp = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Every file the page names exists, and nothing inline could need 'unsafe-inline'.
    for name in re.findall(r"/console/static/([\w.-]+)", page):
        assert name in assets(), name
    assert "<script>" not in page and " style=" not in page and not re.search(r"\son[a-z]+=", page)
    for name, asset in assets().items():
        async with http.get(f"{cloud.url}/console/static/{name}") as r:
            assert r.status == 200, name
            assert r.headers["Content-Type"].startswith(asset.content_type.split(";")[0])
            assert r.headers["Content-Security-Policy"] == csp
            etag = r.headers["ETag"]
        async with http.get(f"{cloud.url}/console/static/{name}", headers={"If-None-Match": etag}) as r:
            assert r.status == 304
    assert {"app.js", "api.js", "console.css", "index.html"} <= set(assets())


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2F..%2Fapp.py", "%2e%2e%2fapp.js", "app.py", "README.md", "..", ".hidden.js", "APP.JS"]
)
async def test_nothing_else_is_served(cloud, http, name: str) -> None:
    async with http.get(URL(f"{cloud.url}/console/static/{name}", encoded=True)) as r:  # sent as written
        assert r.status == 404


def test_the_wheel_ships_every_asset() -> None:
    """Every file of the static directory matches the package data of cloud.console."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "cloud.console" in config["packages"]
    patterns = config["package-data"]["cloud.console"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files), files
    assert sorted(assets()) == sorted(p.name for p in STATIC.iterdir())


def test_scripts_never_touch_the_session_outside_session_storage() -> None:
    """The session token is kept in sessionStorage; localStorage holds the language only."""
    for path in STATIC.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        assert "innerHTML" not in text and "eval(" not in text, path.name
        for line in text.splitlines():
            if "localStorage" in line and "sessionStorage" not in line:
                assert "LANG_KEY" in line or line.lstrip().startswith("//"), f"{path.name}: {line}"


async def test_me(cloud, http) -> None:
    token = cloud.token("viewer", "station:st-a")
    async with http.get(f"{cloud.url}/v1/auth/me", headers=cloud.auth(token)) as r:
        me = await r.json()
    assert me["role"] == "viewer" and me["scopes"] == ["station:st-a"] and "data.read" in me["permissions"]
    assert "command.create" not in me["permissions"]
    async with http.get(f"{cloud.url}/v1/auth/me") as r:
        assert r.status == 401


async def test_gateways_name_their_station(batches) -> None:
    cloud = batches.cloud
    place(cloud)
    listed = await batches.get("/v1/gateways")
    assert [(g["gateway_id"], g["station_id"], g["lifecycle"]) for g in listed["gateways"]] == [
        ("gw-sec", "st-a", "provisioned")
    ]
    assert (await batches.get("/v1/gateways/gw-sec"))["station_id"] == "st-a"


# ---- trend --------------------------------------------------------------------------------


async def test_trend_is_downsampled_on_the_server(batches) -> None:
    t0 = 1_700_000_000_000
    readings = [Reading("box", "p", t0 + i * 1000, float(i)) for i in range(100)]
    readings += [
        Reading("box", "p", t0 + 100_000, None, Quality.BAD_COMM_FAILURE),
        Reading("box", "p", t0 + 101_000, 500.0, Quality.BAD_OUT_OF_RANGE),
        Reading("box", "s", t0, "text"),
    ]
    await post_readings(batches, 1, GENESIS_DIGEST, readings)
    path = f"/v1/gateways/gw-sec/devices/box/trend?point=p&from={t0}&to={t0 + 200_000}&buckets=4"
    data = await batches.get(path)
    assert data["bucket_ms"] == 50_000 and len(data["buckets"]) == 3  # the 4th bucket is empty
    first, second, third = data["buckets"]
    assert first == {"ts_ms": t0, "min": 0.0, "max": 49.0, "avg": 24.5, "count": 50, "bad": 0}
    assert (second["min"], second["max"], second["count"]) == (50.0, 99.0, 50)
    # a value out of range is still a measurement (kept); a failed read has none, but counts as bad
    assert third == {"ts_ms": t0 + 100_000, "min": 500.0, "max": 500.0, "avg": 500.0, "count": 1, "bad": 2}
    text = await batches.get(f"/v1/gateways/gw-sec/devices/box/trend?point=s&from={t0}&to={t0 + 1000}")
    assert text["buckets"] == [{"ts_ms": t0, "min": None, "max": None, "avg": None, "count": 0, "bad": 0}]
    async with batches.http.get(batches.cloud.url + path + "0000", headers=batches.cloud.auth()) as r:
        assert r.status == 400  # buckets beyond the maximum


async def test_trend_and_stream_are_scope_checked(batches) -> None:
    cloud = batches.cloud
    place(cloud)
    other = cloud.auth(cloud.token("viewer", "station:elsewhere"))
    for path in ("/v1/gateways/gw-sec/devices/box/trend?point=p", "/v1/gateways/gw-sec/stream"):
        async with batches.http.get(cloud.url + path, headers=other) as r:
            assert r.status == 404, path
        async with batches.http.get(cloud.url + path) as r:
            assert r.status == 401, path


# ---- live stream --------------------------------------------------------------------------


class Events:
    """Reads server-sent events from a response, one at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(timeout):
            name, data = "message", []
            while True:
                line = (await self.response.content.readline()).decode()
                if line == "":
                    raise EOFError("stream ended")
                line = line.rstrip("\n")
                if line == "":
                    if data:
                        return name, json.loads("\n".join(data))
                    name = "message"
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())


async def test_stream_sends_a_snapshot_then_changes(batches, monkeypatch) -> None:
    monkeypatch.setattr(routes_console_api, "HEARTBEAT_S", 0.2)
    cloud = batches.cloud
    place(cloud)
    ts = now_ms()
    prev = await post_readings(batches, 1, GENESIS_DIGEST, [Reading("box", "p", ts, 1.5), Reading("box", "q", ts, 7)])
    token = cloud.token("viewer", "station:st-a")
    async with batches.http.get(f"{cloud.url}/v1/gateways/gw-sec/stream", headers=cloud.auth(token)) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        events = Events(r)
        name, first = await events.next()
        assert name == "latest" and first["full"] is True
        assert [(x["point"], x["value"], x["quality"]) for x in first["rows"]] == [("p", 1.5, "good"), ("q", 7, "good")]
        await post_readings(batches, 2, prev, [Reading("box", "p", ts + 1000, 2.25, Quality.BAD_OUT_OF_RANGE)])
        name, change = await events.next()
        assert name == "latest" and change["full"] is False
        assert change["rows"] == [
            {"device": "box", "point": "p", "ts_ms": ts + 1000, "value": 2.25, "quality": "bad/out_of_range"}
        ]
        assert abs(change["now_ms"] - now_ms()) < 5000
    # one watcher per watched gateway, gone with its last subscriber (noticed at the next heartbeat)
    await eventually(lambda: cloud.app[LIVE].watched == [], timeout=10, what="the watcher to stop")


async def test_stream_ends_when_the_session_does(batches, monkeypatch) -> None:
    monkeypatch.setattr(routes_console_api, "HEARTBEAT_S", 0.2)
    cloud = batches.cloud
    place(cloud)
    cloud.app[IDENTITY].create_user("wang", "viewer", PASSWORD, scopes="station:st-a", created_by="test")
    async with batches.http.post(f"{cloud.url}/v1/auth/login", json={"username": "wang", "password": PASSWORD}) as r:
        session = cloud.auth((await r.json())["token"])
    async with batches.http.get(f"{cloud.url}/v1/gateways/gw-sec/stream", headers=session) as r:
        events = Events(r)
        assert (await events.next())[0] == "latest"
        async with batches.http.post(f"{cloud.url}/v1/auth/logout", headers=session) as out:
            assert out.status == 200
        assert await events.next() == ("end", {"reason": "unauthenticated"})
        with pytest.raises(EOFError):
            await events.next()


async def test_a_narrowed_scope_ends_the_stream(batches, monkeypatch) -> None:
    monkeypatch.setattr(routes_console_api, "HEARTBEAT_S", 0.2)
    cloud = batches.cloud
    place(cloud)
    identity = cloud.app[IDENTITY]
    identity.create_user("zhao", "viewer", PASSWORD, scopes="station:st-a", created_by="test")
    async with batches.http.post(f"{cloud.url}/v1/auth/login", json={"username": "zhao", "password": PASSWORD}) as r:
        session = cloud.auth((await r.json())["token"])
    async with batches.http.get(f"{cloud.url}/v1/gateways/gw-sec/stream", headers=session) as r:
        events = Events(r)
        assert (await events.next())[0] == "latest"
        identity.update_user("zhao", scopes="station:st-b")  # ends the user's sessions, so the stream
        assert await events.next() == ("end", {"reason": "unauthenticated"})


async def test_an_open_stream_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud.db") as cloud, aiohttp.ClientSession() as http:
        cloud.repo.register_gateway(GatewayRecord("gw-x", "ed25519", b"k" * 32, "00" * 8, "active", 1))
        async with http.get(f"{cloud.url}/v1/gateways/gw-x/stream", headers=cloud.auth()) as r:
            events = Events(r)
            assert (await events.next())[1]["rows"] == []
            started = time.monotonic()
            await cloud.runner.cleanup()
            assert time.monotonic() - started < 5
            assert await events.next() == ("end", {"reason": "shutdown"})

"""The web console in a real browser (headless Chromium from Debian, driven by Playwright on the
test's own event loop, against the real cloud in-process): log in with a password and a one-time
code; a value changes on the gateway page when a batch arrives; an alarm is acknowledged from the
list and turns acknowledged when the gateway reports it; a dual-control command waits for a second
person; an auditor sees the audit log and no gateway; a viewer scoped to one station sees no other.
No page may break the Content-Security-Policy or throw.

Screenshots of every page go to tests/artifacts/console/ (ignored by git); each path is printed.
Needs /usr/bin/chromium and the playwright package: skipped without them, failed when
GASIOT_REQUIRE_PEERS=1 (CI)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from peers._require import _missing

from cloud.appkeys import IDENTITY, REGISTRY
from cloud.repository import GatewayRecord
from cloud.totp import code_at
from gascore.contract import GENESIS_DIGEST
from gascore.crypto import generate_signer
from gascore.records import Event, EventLevel, Lane, Quality, Reading

pytestmark = pytest.mark.peer

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
PASSWORD = "Kx9!pipeline-Valve"
GW = "gw-sec"
TIMEOUT_MS = 15_000


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    assert path is not None
    return path


@pytest.fixture
def signer():  # one algorithm is enough for the console (the ingest tests cover both)
    return generate_signer("sm2-sm3")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = _chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    async with async_playwright() as pw:
        # Debian's Chromium, never a browser downloaded by `playwright install`.
        browser = await pw.chromium.launch(executable_path=executable)
        yield browser
        await browser.close()


class Page:
    """One user's tab, failing the test on any script error or CSP violation."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.problems: list[str] = []
        page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        page.on("console", self._console)
        page.set_default_timeout(TIMEOUT_MS)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "401" not in message.text and "404" not in message.text:
            self.problems.append(f"console: {message.text}")  # e.g. "Refused to … Content Security Policy"

    def loc(self, selector: str) -> Any:
        return self.page.locator(selector)

    async def goto(self, fragment: str) -> None:
        await self.page.goto(f"{self.base}/console/{fragment}")

    async def login(self, name: str, password: str = PASSWORD, totp: Any = None) -> None:
        from playwright.async_api import expect

        await self.goto("")
        await expect(self.loc("#login-form")).to_be_visible()
        await self.loc("#username").fill(name)
        await self.loc("#password").fill(password)
        await self.loc("#login-submit").click()
        if totp is not None:
            await expect(self.loc("#totp")).to_be_visible()
            await self.loc("#totp").fill(totp())
            await self.loc("#login-submit").click()
        await expect(self.loc("#logout")).to_be_visible()

    async def screenshot(self, name: str) -> Path:
        """Save the page (and check that it shows no "null", "undefined" or "NaN" on the way)."""
        text = await self.loc("#view").inner_text()
        assert not re.search(r"\b(null|undefined|NaN)\b", text), text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    def check(self) -> None:
        assert not self.problems, self.problems


async def new_page(browser: Any, base: str, lang: str = "zh-CN") -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, locale=lang)
    return Page(await context.new_page(), base)


class Lanes:
    """Signed batches from the enrolled gateway, seq and chain kept per lane."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches
        self.state = {Lane.TELEMETRY: (0, GENESIS_DIGEST), Lane.EVENTS: (0, GENESIS_DIGEST)}

    async def post(self, lane: Lane, records: list[Reading] | list[Event]) -> None:
        seq, prev = self.state[lane]
        frame = self.batches.frame(seq + 1, prev, [r.to_wire() for r in records], lane=lane)
        reply = await self.batches.post(frame)
        assert reply.status == 200, reply.body
        self.state[lane] = (seq + 1, frame.header.digest())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def setup_stations(cloud: Any) -> None:
    registry = cloud.app[REGISTRY]
    registry.add_org("north", "北区")
    registry.add_station("st-a", "north", "人民路调压站", "regulating", 31.2304, 121.4737)
    registry.add_station("st-b", "north", "滨江门站", "gate", 31.2397, 121.4998)
    registry.provision_gateway(GW, "st-a")
    cloud.repo.register_gateway(GatewayRecord("gw-b", "ed25519", b"k" * 32, "00" * 8, "active", 1))
    registry.provision_gateway("gw-b", "st-b")


def alarm_event(kind: str, state: str, ts: int, raised: int, **extra: Any) -> Event:
    data = {
        "alarm_id": "rbox-a.outlet_pressure.hi",
        "rule": "outlet_pressure.hi",
        "state": state,
        "priority": "high",
        "message_zh": "出口压力高",
        "message_en": "Outlet pressure high",
        "value": 0.42,
        "raised_ms": raised,
        "annunciated": True,
        **extra,
    }
    return Event("rbox-a", kind, ts, EventLevel.MAJOR, data)


async def test_login_with_totp_then_live_values_and_trend(batches, browser) -> None:
    from playwright.async_api import expect

    cloud = batches.cloud
    setup_stations(cloud)
    identity = cloud.app[IDENTITY]
    identity.create_user("zhang", "operator", PASSWORD, created_by="test")
    seed = identity.start_totp("zhang").split("secret=")[1].split("&")[0]
    step = int(time.time() // 30)
    assert identity.confirm_totp("zhang", code_at(seed, step))
    lanes = Lanes(batches)
    t = now_ms()
    history = [Reading("rbox-a", "outlet_pressure", t - (60 - i) * 60_000, 0.3 + 0.01 * (i % 7)) for i in range(60)]
    await lanes.post(
        Lane.TELEMETRY,
        [*history, Reading("rbox-a", "outlet_pressure", t, 1.5), Reading("rbox-a", "door_open", t, False)],
    )

    page = await new_page(browser, cloud.url)
    await page.goto("")
    await expect(page.loc("#login-form")).to_be_visible()
    await page.screenshot("01-login")
    await page.login("zhang", totp=lambda: code_at(seed, step + 1))  # a code not used before
    stored = await page.page.evaluate("() => [sessionStorage.getItem('gasiot.session'), JSON.stringify(localStorage)]")
    assert "gss_" in stored[0] and "gss_" not in stored[1]  # the session lives in this tab only

    # stations: the map and the list; the station's only gateway is one click away
    await expect(page.loc("#station-list tr[data-station]")).to_have_count(2)
    await expect(page.loc("#station-map .marker")).to_have_count(2)
    await page.screenshot("02-stations")
    await page.loc(f'#station-list a[data-gateway="{GW}"]').click()

    # the gateway page: live values, then a new batch changes one without reloading
    value = page.loc('tr[data-device="rbox-a"][data-point="outlet_pressure"] [data-field="value"]')
    await expect(value).to_have_text("1.5")
    await expect(page.loc("#live-state")).to_have_attribute("data-live", "on")
    await lanes.post(Lane.TELEMETRY, [Reading("rbox-a", "outlet_pressure", now_ms(), 2.25, Quality.BAD_OUT_OF_RANGE)])
    await expect(value).to_have_text("2.25")
    quality = page.loc('tr[data-device="rbox-a"][data-point="outlet_pressure"] [data-field="quality"]')
    await expect(quality).to_have_text("bad/out_of_range")

    # the trend: the server's buckets drawn as a band and a mean line; drag to zoom
    await page.loc('tr[data-device="rbox-a"][data-point="outlet_pressure"] [data-trend]').click()
    await expect(page.loc("#trend svg.chart polyline.mean")).to_have_count(1)
    await expect(page.loc("#trend svg.chart .bad")).not_to_have_count(0)  # the out-of-range reading
    await page.screenshot("03-gateway")
    box = await page.loc("#trend svg.chart .hit").bounding_box()
    before = await page.loc(".trend-status").text_content()
    await page.page.mouse.move(box["x"] + box["width"] * 0.90, box["y"] + 20)
    await page.page.mouse.down()
    await page.page.mouse.move(box["x"] + box["width"] * 0.99, box["y"] + 40, steps=5)
    await page.page.mouse.up()
    await expect(page.loc(".trend-status")).not_to_have_text(before)
    await expect(page.loc("#trend svg.chart .band")).not_to_have_count(0)
    await page.screenshot("03b-trend-zoomed")

    # English on request
    await page.loc("#lang").click()
    await expect(page.loc('#nav a[data-nav="stations"]')).to_have_text("Stations")
    page.check()


async def test_acknowledge_an_alarm_from_the_list(batches, browser) -> None:
    from playwright.async_api import expect

    cloud = batches.cloud
    setup_stations(cloud)
    cloud.app[IDENTITY].create_user("wang", "operator", PASSWORD, created_by="test")
    lanes = Lanes(batches)
    raised = now_ms() - 60_000
    await lanes.post(Lane.EVENTS, [alarm_event("alarm.raised", "active_unacked", raised, raised)])

    page = await new_page(browser, cloud.url)
    await page.login("wang")
    await page.loc('#nav a[data-nav="alarms"]').click()
    row = page.loc('#alarm-list tr[data-alarm="rbox-a.outlet_pressure.hi"]')
    await expect(row).to_have_class("prio-high")
    await expect(row.locator('[data-field="state"]')).to_have_attribute("data-state", "active_unacked")
    await page.screenshot("04-alarms")
    await row.locator("[data-ack]").click()
    await page.loc("#ack-comment").fill("已派人到场检查调压器")
    await page.screenshot("05-ack-dialog")
    await page.loc('dialog [data-role="ok"]').click()
    await expect(row.locator(".ack-sent")).to_be_visible()

    (command,) = cloud.repo.commands(GW, 10)
    assert command["type"] == "alarm.ack" and command["created_by"] == "user:wang"
    assert command["body"] == {
        "alarm_id": "rbox-a.outlet_pressure.hi",
        "by": "wang",
        "raised_ms": raised,
        "comment": "已派人到场检查调压器",
    }
    # The gateway runs it and reports: the command's result, then the alarm's new state.
    done = now_ms()
    await lanes.post(
        Lane.EVENTS,
        [
            Event(
                "_gateway",
                "command.result",
                done,
                EventLevel.INFO,
                {
                    "command_id": command["id"],
                    "type": "alarm.ack",
                    "status": "done",
                    "detail": "ok: acknowledged; now active_acked",
                    "by": "user:wang",
                },
            ),
            alarm_event("alarm.acked", "active_acked", done, raised, by="wang (cloud)", origin="cloud"),
        ],
    )
    await expect(row.locator('[data-field="state"]')).to_have_attribute("data-state", "active_acked")
    await expect(row.locator('.ack-sent [data-status="done"]')).to_be_visible()
    await expect(row).to_contain_text("wang (cloud)")
    await page.screenshot("06-alarm-acked")
    # Shelved for maintenance: an alarm.shelve command with the duration and the reason.
    await row.locator("[data-shelve]").click()
    await page.loc("#shelve-hours").fill("2")
    await page.loc("#shelve-reason").fill("调压器检修")
    await page.loc('dialog [data-role="ok"]').click()
    await expect(row.locator(".shelve-sent")).to_be_visible()
    shelve = next(c for c in cloud.repo.commands(GW, 10) if c["type"] == "alarm.shelve")
    assert shelve["body"]["reason"] == "调压器检修" and shelve["body"]["alarm_id"] == "rbox-a.outlet_pressure.hi"
    assert 1.9 * 3600_000 < shelve["body"]["until_ms"] - now_ms() <= 2 * 3600_000
    # The gateway page lists its devices' communication status and the alarm's history.
    status = {"online": False, "reason": "no answer", "polls": 120, "failures": 7, "latency_p95_ms": 41.5}
    await lanes.post(Lane.EVENTS, [Event("rbox-a", "device.status", now_ms(), EventLevel.INFO, status)])
    await row.locator(f'a[href="#/gateway/{GW}"]').click()
    device = page.loc('#device-status-list tr[data-device="rbox-a"]')
    await expect(device).to_have_attribute("data-online", "false")
    await expect(device).to_contain_text("no answer")
    history = page.loc("#alarm-history-list tbody tr")
    await expect(history).to_have_count(2)
    await expect(history.nth(0)).to_have_attribute("data-kind", "alarm.acked")
    await expect(history.nth(1)).to_have_attribute("data-kind", "alarm.raised")
    await page.screenshot("06b-alarm-history")
    page.check()


async def test_dual_control_command_waits_for_a_second_person(batches, browser) -> None:
    from playwright.async_api import expect

    cloud = batches.cloud
    setup_stations(cloud)
    for name in ("liu", "chen"):
        cloud.app[IDENTITY].create_user(name, "admin", PASSWORD, created_by="test")
    first = await new_page(browser, cloud.url)
    await first.login("liu")
    await first.goto(f"#/commands/{GW}")
    await first.loc("#command-type").select_option("service.call")
    await first.loc("#command-device").fill("rbox-a")
    await first.loc("#command-service").fill("reset_slam_shut")
    await first.loc("#command-send").click()
    await expect(first.loc("dialog .warning")).to_be_visible()  # it says a second person must confirm
    await first.screenshot("07-command-dialog")
    await first.loc('dialog [data-role="ok"]').click()
    row = first.loc("#command-list tr[data-command]").first
    await expect(row.locator('[data-field="status"] [data-status]')).to_have_attribute(
        "data-status", "awaiting_confirmation"
    )
    await expect(row.locator("[data-confirm]")).to_have_count(0)  # never its author
    await first.screenshot("08-commands-awaiting")

    second = await new_page(browser, cloud.url, "en")
    await second.login("chen")
    await second.goto(f"#/commands/{GW}")
    row2 = second.loc("#command-list tr[data-command]").first
    await row2.locator("[data-confirm]").click()
    await second.loc('dialog [data-role="ok"]').click()
    await expect(row2.locator('[data-field="status"] [data-status]')).to_have_attribute("data-status", "pending")
    (command,) = cloud.repo.commands(GW, 10)
    assert (command["status"], command["created_by"], command["confirmed_by"]) == ("pending", "user:liu", "user:chen")
    first.check()
    second.check()


async def test_auditor_sees_the_audit_log_and_no_gateway(batches, browser) -> None:
    from playwright.async_api import expect

    cloud = batches.cloud
    setup_stations(cloud)
    cloud.app[IDENTITY].create_user("sun", "auditor", PASSWORD, created_by="test")
    page = await new_page(browser, cloud.url)
    await page.login("sun")
    await expect(page.loc("#nav a")).to_have_count(1)
    await expect(page.loc('#nav a[data-nav="audit"]')).to_be_visible()
    await expect(page.loc('#audit-entries tr:has-text("auth.login")')).not_to_have_count(0)
    await page.loc("#audit-verify").click()
    await expect(page.loc("#audit-verify-result")).to_have_class("notice ok")
    await page.screenshot("09-audit")
    for fragment in (f"#/gateway/{GW}", "#/stations", "#/alarms"):
        await page.goto(fragment)
        await expect(page.loc('[data-state="forbidden"]')).to_be_visible()
    # and the API agrees, whatever a page would ask
    token = await page.page.evaluate("() => JSON.parse(sessionStorage.getItem('gasiot.session')).token")
    async with batches.http.get(f"{cloud.url}/v1/gateways/{GW}/latest", headers=cloud.auth(token)) as r:
        assert r.status == 403
    page.check()


async def test_a_viewer_scoped_to_one_station_sees_no_other(batches, browser) -> None:
    from playwright.async_api import expect

    cloud = batches.cloud
    setup_stations(cloud)
    cloud.app[IDENTITY].create_user("zhou", "viewer", PASSWORD, scopes="station:st-b", created_by="test")
    page = await new_page(browser, cloud.url)
    await page.login("zhou")
    await expect(page.loc("#station-list tr[data-station]")).to_have_count(1)
    await expect(page.loc('#station-list tr[data-station="st-b"]')).to_be_visible()
    await expect(page.loc("#station-map .marker")).to_have_count(1)
    await expect(page.loc('#station-map .marker[data-station="st-b"]')).to_be_visible()
    await expect(page.loc("#nav a")).to_have_count(2)  # stations and alarms: no commands, no audit
    await page.screenshot("10-viewer-one-station")
    await page.goto(f"#/gateway/{GW}")  # st-a's gateway, typed in by hand
    await expect(page.loc('[data-state="not-found"]')).to_be_visible()
    page.check()

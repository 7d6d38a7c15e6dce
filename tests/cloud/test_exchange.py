"""Data exchange: external series imported into a virtual source and queried like any gateway's;
a CSV export, audited; a virtual source can never post batches; a gateway's data cannot be
overwritten by an import."""

from __future__ import annotations

import csv
import io

from cloud.appkeys import AUDIT
from gascore.contract import GENESIS_DIGEST
from gascore.records import Reading

WEATHER = "ts_ms,value\n1700000000000,12.5\n1700003600000,11.0\n1700007200000,\n"


async def test_import_query_export(batches, http) -> None:
    cloud = batches.cloud
    maintainer = cloud.auth(cloud.token("maintainer"))
    url = f"{cloud.url}/v1/sources/ext-weather/series?device=shanghai&point=temperature"
    async with http.post(url, data=WEATHER.encode(), headers=maintainer) as r:
        assert r.status == 201, await r.text()
        assert await r.json() == {"source": "ext-weather", "stored": 3, "skipped": 0}
    async with http.post(url, data=WEATHER.encode(), headers=maintainer) as r:
        assert (await r.json())["skipped"] == 3  # re-importing the same rows stores nothing twice
    viewer = cloud.auth(cloud.token("viewer"))
    series = f"{cloud.url}/v1/gateways/ext-weather/devices/shanghai/series?point=temperature&from=0&to=1800000000000"
    async with http.get(series, headers=viewer) as r:
        points = (await r.json())["points"]
    assert [(p["value"], p["quality"]) for p in points] == [(12.5, "good"), (11.0, "good"), (None, "bad/sensor_fault")]
    export = (
        f"{cloud.url}/v1/gateways/ext-weather/devices/shanghai/export.csv?point=temperature&from=0&to=1800000000000"
    )
    async with http.get(export, headers=viewer) as r:
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [row["value"] for row in rows] == ["12.5", "11.0", ""]
    actions = [e.action for e in cloud.app[AUDIT].entries()]
    assert "import.series" in actions and "export.readings" in actions
    # the virtual source cannot speak the gateway protocol
    fake = batches.frame(1, GENESIS_DIGEST, [Reading("shanghai", "temperature", 1, 99.0).to_wire()])
    forged = fake.to_bytes().replace(b'"gw-sec"', b'"ext-weather"')
    async with http.post(f"{cloud.url}/v1/batches", data=forged) as r:
        assert r.status in (400, 401)


async def test_import_refuses_gateways_and_bad_rows(batches, http) -> None:
    cloud = batches.cloud
    maintainer = cloud.auth(cloud.token("maintainer"))
    async with http.post(
        f"{cloud.url}/v1/sources/gw-sec/series?device=d&point=p", data=b"1,2", headers=maintainer
    ) as r:
        assert r.status == 400 and "ext-" in (await r.json())["detail"]
    bad = b"ts_ms,value\n1700000000000,1\nnot-a-time,2\n"
    async with http.post(f"{cloud.url}/v1/sources/ext-x/series?device=d&point=p", data=bad, headers=maintainer) as r:
        assert r.status == 400 and "line 3" in (await r.json())["detail"]
    scoped = cloud.auth(cloud.token("maintainer", "org:north"))
    async with http.post(f"{cloud.url}/v1/sources/ext-new/series?device=d&point=p", data=b"1,2", headers=scoped) as r:
        assert r.status == 400 and "scoped" in (await r.json())["detail"]

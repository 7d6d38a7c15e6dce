"""The whole path over TLS: a utility CA, the cloud on HTTPS, a gateway enrolled over HTTPS that
receives its client certificate, syncing with mutual TLS; revoking the gateway refuses its very
next batch."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from cloud.app import create_app
from cloud.ca import init_ca
from cloud.repository import SqliteRepository
from cloud.server import bound_port, create_api_key
from edge.cert_renewal import renew_if_due
from edge.config import load_station
from edge.enroll import enroll
from edge.runtime import Gateway
from edge.tls_files import CA_CERT, TLS_CERT, TLS_KEY
from gascore.tls import client_context, reload_crl, server_context, write_private_pem, write_public_pem
from gasiot_sim.modbus_server import RegulatorSimServer
from support.station import station_dict, write_station
from support.wait import eventually


async def gasiot(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_mutual_tls_sync_and_revocation(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    cert, key = ca.issue_server(["localhost"], ["127.0.0.1"])
    write_public_pem(tmp_path / "server.crt", cert)
    write_private_pem(tmp_path / "server.key", key)
    ctx = server_context(tmp_path / "server.crt", tmp_path / "server.key", client_ca=ca.cert_path, crl_file=ca.crl_path)
    repo = SqliteRepository(tmp_path / "cloud.db")
    admin = create_api_key(repo, "admin", "t")
    app = create_app(repo, ca=ca, require_client_cert=True)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    url = f"https://127.0.0.1:{bound_port(site)}"
    sim = RegulatorSimServer(seed=2, tick_s=0.1)
    port = await sim.start()
    try:
        station_file = write_station(
            tmp_path / "station.yaml",
            station_dict(
                cloud_url=url, data_dir=tmp_path / "edge", ports=[port], gateway_id="gw-tls", poll_interval_s=0.1
            ),
        )
        station = load_station(station_file)
        verified = aiohttp.TCPConnector(ssl=client_context(ca_file=ca.cert_path))
        async with (
            aiohttp.ClientSession(connector=verified) as http,
            http.post(
                f"{url}/v1/enrollment-tokens",
                json={"gateway_id": "gw-tls"},
                headers={"Authorization": f"Bearer {admin}"},
            ) as r,
        ):
            token = (await r.json())["token"]
        await enroll(cloud_url=url, gateway_id="gw-tls", token=token, key_file=station.key_file, ca_file=ca.cert_path)
        for name in (TLS_KEY, TLS_CERT, CA_CERT):
            assert (station.data_dir / name).exists(), name
        assert (station.data_dir / TLS_KEY).stat().st_mode & 0o077 == 0

        gateway = Gateway.build(station)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.5))
        assert gateway.sync is not None
        await eventually(lambda: gateway.sync.stats.records_acked > 20, what="batches over mutual TLS")

        # renewal over the same mutual-TLS channel: a new certificate, and syncing goes on
        def serial() -> int:
            return x509.load_pem_x509_certificate((station.data_dir / TLS_CERT).read_bytes()).serial_number

        before = serial()
        assert not await renew_if_due(
            data_dir=station.data_dir, cloud_url=url, gateway_id="gw-tls", ssl_context=gateway.sync.ssl_context
        )  # 90 days left: not due
        assert await renew_if_due(
            data_dir=station.data_dir,
            cloud_url=url,
            gateway_id="gw-tls",
            ssl_context=gateway.sync.ssl_context,
            before=dt.timedelta(days=365),
        )
        assert serial() != before
        # The operator's way: `gasiot keys renew` (another process, while the gateway syncs).
        not_due = await gasiot("keys", "renew", str(station_file))
        assert "not due" in not_due
        renewed_once = serial()
        forced = await gasiot("keys", "renew", str(station_file), "--force")
        assert "renewed: the certificate now expires in" in forced
        assert serial() != renewed_once
        acked_before = gateway.sync.stats.records_acked
        await eventually(lambda: gateway.sync.stats.records_acked > acked_before + 20, what="sync after renewal")

        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(ca_file=ca.cert_path))) as h,
            h.get(f"{url}/v1/gateways/gw-tls", headers={"Authorization": f"Bearer {admin}"}) as r,
        ):
            cert_status = (await r.json())["certificate"]
        assert cert_status["valid"] is True and cert_status["warning"] is None and cert_status["expires_ms"] > 0

        ca.revoke_gateway("gw-tls")
        reload_crl(ctx, ca.crl_path)
        acked = gateway.sync.stats.records_acked
        await eventually(
            lambda: "403" in (gateway.sync.stats.last_error or "") or "SSL" in (gateway.sync.stats.last_error or ""),
            what="the revoked gateway refused",
        )
        assert gateway.sync.stats.records_acked <= acked + 40  # at most the batch already in flight
        stop.set()
        await task
    finally:
        await sim.stop()
        await runner.cleanup()


async def test_a_gateway_without_a_certificate_is_refused_when_mtls_is_required(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    cert, key = ca.issue_server(["localhost"], ["127.0.0.1"])
    write_public_pem(tmp_path / "server.crt", cert)
    write_private_pem(tmp_path / "server.key", key)
    ctx = server_context(tmp_path / "server.crt", tmp_path / "server.key", client_ca=ca.cert_path)
    app = create_app(SqliteRepository(tmp_path / "cloud.db"), ca=ca, require_client_cert=True)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    url = f"https://127.0.0.1:{bound_port(site)}"
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_context(ca_file=ca.cert_path))
        ) as http:
            async with http.post(f"{url}/v1/batches", data=b"x") as r:
                assert r.status == 403 and "certificate" in (await r.json())["detail"]
            async with http.get(f"{url}/healthz") as r:  # the console and APIs share the listener
                assert r.status == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz"):  # system store: unknown CA
                pass
    finally:
        await runner.cleanup()

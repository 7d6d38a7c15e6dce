"""Real TLS handshakes on 127.0.0.1 between gascore.tls contexts, with certificates from the
utility CA: what is accepted, and what each refusal says on the side that refuses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import warnings
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from security_pki import GW, CertFiles, Handshake, Pki, error_text, expired, not_yet_valid

from cloud.ca import CertificateRefused, gateway_id_of
from gascore.tls import (
    client_context,
    peer_certificate,
    reload_client_cert,
    reload_crl,
    server_context,
)

# ---- accepted ------------------------------------------------------------------------------


async def test_valid_chain_with_mutual_tls_is_accepted(pki: Pki, handshake: Handshake) -> None:
    server, client = pki.server(), pki.client()
    sctx = server_context(
        server.cert, server.key, client_ca=pki.ca.cert_path, require_client_cert=True, crl_file=pki.ca.crl_path
    )
    cctx = client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)
    outcome = await handshake(sctx, cctx)
    assert outcome.ok, (error_text(outcome.server_error), error_text(outcome.client_error))
    assert outcome.server_version == "TLSv1.3"
    assert outcome.client_cert is not None and gateway_id_of(outcome.client_cert) == GW
    assert pki.ca.client_identity(outcome.client_cert) == GW


async def test_by_ip_address_and_tls12_with_an_aead_cipher(pki: Pki, handshake: Handshake) -> None:
    server = pki.server()
    cctx = client_context(ca_file=pki.ca.cert_path)
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    outcome = await handshake(server_context(server.cert, server.key), cctx, server_hostname="127.0.0.1")
    assert outcome.ok, error_text(outcome.client_error)
    assert outcome.server_version == "TLSv1.2"
    assert outcome.server_cipher is not None
    assert outcome.server_cipher.startswith("ECDHE-ECDSA-")
    assert outcome.server_cipher.endswith(("GCM-SHA256", "GCM-SHA384", "CHACHA20-POLY1305"))


async def test_optional_client_certificate_lets_a_client_without_one_in(pki: Pki, handshake: Handshake) -> None:
    server = pki.server()
    sctx = server_context(server.cert, server.key, client_ca=pki.ca.cert_path, require_client_cert=False)
    outcome = await handshake(sctx, client_context(ca_file=pki.ca.cert_path))
    assert outcome.ok
    assert outcome.client_cert is None  # the app must then authenticate it otherwise (API key)


async def test_optional_client_certificate_still_refuses_a_revoked_one(pki: Pki, handshake: Handshake) -> None:
    """The shared listener (console and APIs: certificate optional) still checks any certificate
    a client does present, CRL included."""
    server, client = pki.server(), pki.client()
    pki.ca.revoke(client.serial)
    sctx = server_context(server.cert, server.key, client_ca=pki.ca.cert_path, crl_file=pki.ca.crl_path)
    cctx = client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)
    outcome = await handshake(sctx, cctx)
    assert "certificate verify failed: certificate revoked" in error_text(outcome.server_error)


# ---- refused by the client (the server's certificate is wrong) ---------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("not yet valid", "certificate is not yet valid"),
        ("wrong hostname", "Hostname mismatch, certificate is not valid for 'cloud.example.com'"),
    ],
)
async def test_client_refuses_a_bad_server_certificate(
    pki: Pki, foreign_pki: Pki, handshake: Handshake, case: str, expected: str
) -> None:
    hostname = "localhost"
    if case == "wrong CA":
        server = foreign_pki.server()
    elif case == "expired":
        server = pki.server(validity=expired())
    elif case == "not yet valid":
        server = pki.server(validity=not_yet_valid())
    else:
        server, hostname = pki.server(), "cloud.example.com"
    outcome = await handshake(
        server_context(server.cert, server.key), client_context(ca_file=pki.ca.cert_path), server_hostname=hostname
    )
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError), error_text(outcome.client_error)
    assert "CERTIFICATE_VERIFY_FAILED" in str(outcome.client_error)
    assert expected in str(outcome.client_error)
    assert outcome.server_error is not None  # the client aborted (alert or reset, depending on timing)


async def test_the_system_store_does_not_trust_the_utility_ca(pki: Pki, handshake: Handshake) -> None:
    server = pki.server()
    outcome = await handshake(server_context(server.cert, server.key), client_context(ca_file=None))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


# ---- refused by the server (the client's certificate is wrong or missing) ----------------


def _mtls_server(pki: Pki, server: CertFiles) -> ssl.SSLContext:
    return server_context(
        server.cert, server.key, client_ca=pki.ca.cert_path, require_client_cert=True, crl_file=pki.ca.crl_path
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", "certificate verify failed: unable to get local issuer certificate"),
        ("expired", "certificate verify failed: certificate has expired"),
        ("not yet valid", "certificate verify failed: certificate is not yet valid"),
        ("revoked", "certificate verify failed: certificate revoked"),
        ("no certificate", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    ],
)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
async def test_server_refuses_a_bad_or_missing_client_certificate(
    pki: Pki, foreign_pki: Pki, handshake: Handshake, case: str, expected: str, version: ssl.TLSVersion
) -> None:
    server = pki.server()
    client: CertFiles | None
    if case == "wrong CA":
        client = foreign_pki.client()
    elif case == "expired":
        client = pki.client(validity=expired())
    elif case == "not yet valid":
        client = pki.client(validity=not_yet_valid())
    elif case == "revoked":
        client = pki.client()
        pki.ca.revoke(client.serial, "keyCompromise")  # before the server starts: in its CRL
    else:
        client = None
    cctx = client_context(
        ca_file=pki.ca.cert_path,
        cert_file=client.cert if client else None,
        key_file=client.key if client else None,
    )
    cctx.maximum_version = version
    outcome = await handshake(_mtls_server(pki, server), cctx)
    assert outcome.server_error is not None, "server accepted the client"
    assert expected in error_text(outcome.server_error)
    assert outcome.client_cert is None
    # The client learns it was refused: at the handshake (TLS 1.2) or its first read (TLS 1.3).
    assert not outcome.ok
    assert outcome.client_read == b""


async def test_tls_1_1_is_refused(pki: Pki, handshake: Handshake) -> None:
    server = pki.server()
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=pki.ca.cert_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python warns about setting TLSv1_1 at all
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 refuses TLS 1.1 at its default level
    outcome = await handshake(server_context(server.cert, server.key), old)
    assert outcome.server_error is not None
    assert "UNSUPPORTED_PROTOCOL" in error_text(outcome.server_error)
    assert outcome.client_error is not None


# ---- revocation without a restart ------------------------------------------------------------


async def test_reload_crl_refuses_a_revoked_gateway_at_its_next_handshake(pki: Pki, handshake: Handshake) -> None:
    server = pki.server()
    sctx = _mtls_server(pki, server)  # one live context, as a running cloud has
    first, second, bystander = pki.client(), pki.client("gw-0002"), pki.client("gw-0003")

    def ctx_for(client: CertFiles) -> ssl.SSLContext:
        return client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)

    assert (await handshake(sctx, ctx_for(first))).ok
    pki.ca.revoke(first.serial)
    reload_crl(sctx, pki.ca.crl_path)
    refused = await handshake(sctx, ctx_for(first))
    assert "certificate revoked" in error_text(refused.server_error)
    # A second revocation within the same second must win over the CRL loaded just before.
    assert (await handshake(sctx, ctx_for(second))).ok
    pki.ca.revoke(second.serial)
    reload_crl(sctx, pki.ca.crl_path)
    refused = await handshake(sctx, ctx_for(second))
    assert "certificate revoked" in error_text(refused.server_error)
    assert "certificate revoked" in error_text((await handshake(sctx, ctx_for(first))).server_error)
    assert (await handshake(sctx, ctx_for(bystander))).ok


def _blocking_exchange(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[bytes, bool, ssl.SSLSession | None]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
    ):
        line = tls.recv(100)
        return line, tls.session_reused, tls.session


async def test_a_resumed_tls12_session_skips_the_crl_but_not_the_per_request_check(pki: Pki) -> None:
    """Documents the limit of handshake-time revocation (see gascore.tls): OpenSSL does not re-verify
    a resumed TLS 1.2 session.  The per-request check (client_identity) still refuses."""
    server, client = pki.server(), pki.client()
    sctx = _mtls_server(pki, server)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await writer.start_tls(sctx)
            obj = writer.get_extra_info("ssl_object")
            try:
                gateway = pki.ca.client_identity(peer_certificate(obj))
                writer.write(f"accepted {gateway}\n".encode())
            except CertificateRefused as err:
                writer.write(f"refused: {err}\n".encode())
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    cctx = client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        # ssl sessions can only be offered by blocking sockets; one thread per exchange.
        line, reused, session = await asyncio.to_thread(_blocking_exchange, port, cctx, None)
        assert (line, reused) == (f"accepted {GW}\n".encode(), False)
        pki.ca.revoke(client.serial)
        reload_crl(sctx, pki.ca.crl_path)
        line, reused, _ = await asyncio.to_thread(_blocking_exchange, port, cctx, session)
        assert reused, "the server resumed no session: update the docs in gascore.tls"
        assert line == f"refused: client certificate {client.serial} of gateway {GW} is revoked\n".encode()
        with pytest.raises(ssl.SSLError):  # and without the cached session, the handshake itself fails
            await asyncio.to_thread(_blocking_exchange, port, cctx, None)
    finally:
        srv.close()
        await srv.wait_closed()


# ---- the aiohttp wiring the cloud and the edge use -----------------------------------------

_PEER_GATEWAY = web.RequestKey("peer_gateway", str)


async def test_aiohttp_mtls_batches_refused_at_once_after_revocation(pki: Pki, tmp_path: Path) -> None:
    """The cloud's listener (TCPSite + server_context) and the edge's session (TCPConnector +
    client_context), with the per-request revocation check as a middleware: a revoked gateway's
    next batch is refused on the connection it already has open."""
    server, client = pki.server(), pki.client()
    sctx = server_context(
        server.cert, server.key, client_ca=pki.ca.cert_path, require_client_cert=True, crl_file=pki.ca.crl_path
    )

    @web.middleware
    async def gateway_cert(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        try:
            gateway = pki.ca.client_identity(peer_certificate(obj))
        except CertificateRefused as err:
            return web.json_response({"error": "certificate_refused", "detail": str(err)}, status=403)
        request[_PEER_GATEWAY] = gateway
        return await handler(request)

    async def batches(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"gateway": request[_PEER_GATEWAY]})

    app = web.Application(middlewares=[gateway_cert])
    app.router.add_post("/v1/batches", batches)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=sctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://localhost:{port}/v1/batches"
    cctx = client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cctx, limit=1)) as session:
            async with session.post(url, data=b"batch-1") as resp:
                assert resp.status == 200 and await resp.json() == {"gateway": GW}
            # Renewal while connected: the live context presents the new certificate from the
            # next connection on; the old one keeps working until revoked.
            renewed = pki.client()
            reload_client_cert(cctx, renewed.cert, renewed.key)
            pki.ca.revoke(client.serial, "superseded")
            reload_crl(sctx, pki.ca.crl_path)
            # Same keep-alive connection, still on the old certificate (a new one would present the
            # renewed certificate and get 200): only the per-request check can refuse this batch.
            async with session.post(url, data=b"batch-2") as resp:
                assert resp.status == 403
                assert f"{client.serial} of gateway {GW} is revoked" in (await resp.json())["detail"]
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cctx)) as session,
            session.post(url, data=b"batch-2") as resp,  # a new connection: the renewed certificate
        ):
            assert resp.status == 200 and await resp.json() == {"gateway": GW}
        stale = client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=stale)) as session:
            with pytest.raises(aiohttp.ClientError):  # the revoked certificate: refused at the handshake
                async with session.post(url, data=b"batch-3") as resp:
                    await resp.read()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(ca_file=None))) as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # system store: utility CA unknown
                await session.post(url, data=b"x")
    finally:
        await runner.cleanup()

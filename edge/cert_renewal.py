"""Renew the gateway's TLS client certificate before it expires, over the mutual-TLS channel it
still has (same key, new certificate; the connection pool picks it up for new connections)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from pathlib import Path

import aiohttp

from edge.tls_files import TLS_CERT, TLS_KEY
from edge.tls_files import session as session_for
from gascore.crypto import CryptoError
from gascore.tls import cert_not_after, make_csr_pem, read_private_pem, reload_client_cert, write_public_pem

log = logging.getLogger(__name__)

RENEW_BEFORE = dt.timedelta(days=30)
CHECK_EVERY_S = 6 * 3600


class RenewalError(Exception):
    """The cloud did not renew the certificate (the message says why)."""


def days_left(data_dir: Path, now: dt.datetime | None = None) -> float | None:
    cert = data_dir / TLS_CERT
    if not cert.exists():
        return None
    remaining = cert_not_after(cert) - (now or dt.datetime.now(dt.UTC))
    return remaining.total_seconds() / 86400


async def renew_if_due(
    *,
    data_dir: Path,
    cloud_url: str,
    gateway_id: str,
    ssl_context: ssl.SSLContext | None,
    before: dt.timedelta = RENEW_BEFORE,
    timeout_s: float = 30.0,
) -> bool:
    """Renew when less than ``before`` is left.  Returns True if a new certificate was installed."""
    left = days_left(data_dir)
    if ssl_context is None or left is None or left > before.total_seconds() / 86400:
        return False
    key_pem = read_private_pem(data_dir / TLS_KEY)
    csr = make_csr_pem(key_pem, gateway_id).decode()
    url = f"{cloud_url.rstrip('/')}/v1/gateways/{gateway_id}/certificate"
    try:
        async with (
            asyncio.timeout(timeout_s),
            session_for(ssl_context) as http,
            http.post(url, json={"csr": csr}) as resp,
        ):
            reply = await resp.json(content_type=None)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise RenewalError(f"cannot reach {url}: {err or type(err).__name__}") from err
    if status != 200 or not isinstance(reply, dict) or not isinstance(reply.get("certificate"), str):
        raise RenewalError(f"renewal refused (HTTP {status}): {reply}")
    write_public_pem(data_dir / TLS_CERT, reply["certificate"].encode(), overwrite=True)
    reload_client_cert(ssl_context, data_dir / TLS_CERT, data_dir / TLS_KEY)
    log.info("TLS certificate renewed (%.0f days were left): serial %s", left, reply.get("serial"))
    return True


async def keep_renewed(*, data_dir: Path, cloud_url: str, gateway_id: str, ssl_context: ssl.SSLContext | None) -> None:
    while True:
        try:
            await renew_if_due(data_dir=data_dir, cloud_url=cloud_url, gateway_id=gateway_id, ssl_context=ssl_context)
        except (RenewalError, CryptoError) as err:
            log.warning("certificate renewal failed, will retry: %s", err)
        left = days_left(data_dir)
        if left is not None and left < RENEW_BEFORE.days:
            log.warning("TLS certificate expires in %.1f days", left)
        await asyncio.sleep(CHECK_EVERY_S)  # the check period

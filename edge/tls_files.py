"""The gateway's TLS material in its data directory: ``tls.key`` (0600), ``tls.crt`` (issued by the
utility CA at enrollment) and ``ca.crt`` (the CA that signs the cloud's certificate)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from gascore.tls import client_context

TLS_KEY, TLS_CERT, CA_CERT = "tls.key", "tls.crt", "ca.crt"


def gateway_ssl_context(data_dir: Path, cloud_url: str, ca_file: Path | None = None) -> ssl.SSLContext | None:
    """For an https:// cloud: verify it against ``ca_file`` (or the enrolled ``ca.crt``, or the
    system store) and present the gateway certificate when there is one.  None for http://."""
    if not cloud_url.startswith("https://"):
        return None
    ca = ca_file or (data_dir / CA_CERT if (data_dir / CA_CERT).exists() else None)
    cert, key = data_dir / TLS_CERT, data_dir / TLS_KEY
    if cert.exists() and key.exists():
        return client_context(ca_file=ca, cert_file=cert, key_file=key)
    return client_context(ca_file=ca)


def session(ssl_context: ssl.SSLContext | None) -> aiohttp.ClientSession:
    """An HTTP session that uses the gateway's TLS settings (or the default for http://)."""
    if ssl_context is None:
        return aiohttp.ClientSession()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context))

"""Gateway identity: generate the key pair and register its public key with the cloud using a
one-time enrollment token (S-7.2.2a)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp

from edge.tls_files import CA_CERT, TLS_CERT, TLS_KEY
from edge.tls_files import session as session_for
from gascore.crypto import CryptoError, SigAlg, Verifier, generate_signer, verifier_for, write_key_file
from gascore.tls import (
    client_context,
    generate_key_pem,
    make_csr_pem,
    read_private_pem,
    write_private_pem,
    write_public_pem,
)

log = logging.getLogger(__name__)


class EnrollError(Exception):
    """Enrollment failed; the message says why and what to do."""


CLOUD_KEY_FILE = "cloud.pub"
PAYLOAD_KEY_FILE = "payload.key"  # hex SM4 key for encrypted batch bodies (mode 0600)


def load_payload_key(path: Path) -> bytes:
    try:
        return bytes.fromhex(read_private_pem(path).decode().strip())
    except FileNotFoundError as err:
        raise EnrollError(f"{path} is missing: encrypted batches need a gateway enrolled with them") from err


def save_cloud_key(path: Path, reply: dict[str, Any]) -> None:
    """Keep the cloud's public key (it signs the commands this gateway will accept)."""
    alg, public_key = reply.get("cloud_alg"), reply.get("cloud_public_key")
    if not isinstance(alg, str) or not isinstance(public_key, str):
        log.warning("the cloud sent no command-signing key: commands from it will be refused")
        return
    verifier_for(alg, bytes.fromhex(public_key))  # type: ignore[arg-type]  # refuse garbage now
    path.write_text(json.dumps({"alg": alg, "public_key": public_key}) + "\n", encoding="utf-8")


def load_cloud_verifier(path: Path) -> Verifier | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return verifier_for(raw["alg"], bytes.fromhex(raw["public_key"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, CryptoError) as err:
        raise EnrollError(f"{path}: unreadable cloud key ({err}); enroll again") from err


def _save_tls(data_dir: Path, tls_key_pending: Path, reply: dict[str, Any]) -> None:
    cert, chain = reply.get("certificate"), reply.get("ca_chain")
    if isinstance(cert, str) and isinstance(chain, str) and tls_key_pending.exists():
        tls_key_pending.rename(data_dir / TLS_KEY)
        write_public_pem(data_dir / TLS_CERT, cert.encode())
        write_public_pem(data_dir / CA_CERT, chain.encode())
        log.info("TLS client certificate %s stored in %s", reply.get("serial"), data_dir / TLS_CERT)
    else:
        tls_key_pending.unlink(missing_ok=True)  # this cloud issues no certificates


def pending_key_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".pending")


def _check_key_path(key_file: Path) -> None:
    """Fail before the token is spent if the key could not be kept afterwards."""
    if key_file.exists():
        raise EnrollError(f"{key_file} already exists: this gateway has a key; remove it only to re-enroll")
    pending = pending_key_path(key_file)
    if pending.exists():
        raise EnrollError(
            f"{pending} is left from an interrupted enrollment. If the cloud lists this gateway with the key id "
            f"`gasiot keys show {pending}` prints, rename it to {key_file.name}; otherwise delete it and enroll again"
        )
    key_file.parent.mkdir(parents=True, exist_ok=True)


async def enroll(
    *,
    cloud_url: str,
    gateway_id: str,
    token: str,
    key_file: Path,
    alg: SigAlg = "sm2-sm3",
    timeout_s: float = 15.0,
    ca_file: Path | None = None,
    payload_encryption: bool = False,
) -> str:
    """Enroll and write the private key to ``key_file`` (mode 0600).  Returns the key id.

    Over https:// the cloud is verified against ``ca_file`` (or the system store), and a TLS key
    and certificate request are sent too: a cloud with a utility CA answers with the gateway's
    client certificate, kept beside the key as tls.crt (and the CA as ca.crt)."""
    _check_key_path(key_file)
    data_dir = key_file.parent
    tls_key_pending = data_dir / (TLS_KEY + ".pending")
    csr: str | None = None
    if cloud_url.startswith("https://"):
        tls_key = generate_key_pem()
        tls_key_pending.unlink(missing_ok=True)
        write_private_pem(tls_key_pending, tls_key)
        csr = make_csr_pem(tls_key, gateway_id).decode()
    ssl_context = client_context(ca_file=ca_file) if cloud_url.startswith("https://") else None
    signer = generate_signer(alg)
    # The private key is on disk before the token is spent: if the reply is lost, the key the
    # cloud registered is not lost with it.
    pending = pending_key_path(key_file)
    write_key_file(signer, pending)
    body: dict[str, Any] = {
        "gateway_id": gateway_id,
        "token": token,
        "alg": alg,
        "public_key": signer.public_key_bytes().hex(),
    }
    if csr is not None:
        body["csr"] = csr
    if payload_encryption:
        body["payload_encryption"] = True
    url = cloud_url.rstrip("/") + "/v1/enroll"
    try:
        async with (
            session_for(ssl_context) as session,
            asyncio.timeout(timeout_s),
            session.post(url, json=body) as resp,
        ):
            reply = await resp.json(content_type=None)
            status = resp.status
    except aiohttp.ClientConnectorError as err:
        pending.unlink()  # never connected: the token was not spent
        raise EnrollError(f"cannot reach {url}: {err}") from err
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise EnrollError(
            f"no answer from {url} ({err or type(err).__name__}); the new key is kept in {pending}"
        ) from err
    if status != 201 or not isinstance(reply, dict):
        pending.unlink()
        detail = reply.get("detail", reply) if isinstance(reply, dict) else reply
        raise EnrollError(f"cloud refused enrollment (HTTP {status}): {detail}")
    pending.rename(key_file)
    save_cloud_key(data_dir / CLOUD_KEY_FILE, reply)
    _save_tls(data_dir, tls_key_pending, reply)
    if payload_encryption:
        payload_key = reply.get("payload_key")
        if not isinstance(payload_key, str) or len(bytes.fromhex(payload_key)) != 16:
            raise EnrollError("the cloud sent no payload key: it does not support encrypted batches")
        write_private_pem(data_dir / PAYLOAD_KEY_FILE, payload_key.encode(), overwrite=True)
    log.info("gateway %s enrolled, key id %s, key written to %s", gateway_id, signer.key_id, key_file)
    return signer.key_id

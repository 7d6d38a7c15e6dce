"""Gateway identity: generate the key pair and register its public key with the cloud using a
one-time enrollment token (S-7.2.2a)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp

from gascore.crypto import CryptoError, SigAlg, Verifier, generate_signer, verifier_for, write_key_file

log = logging.getLogger(__name__)


class EnrollError(Exception):
    """Enrollment failed; the message says why and what to do."""


CLOUD_KEY_FILE = "cloud.pub"


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
) -> str:
    """Enroll and write the private key to ``key_file`` (mode 0600).  Returns the key id."""
    _check_key_path(key_file)
    signer = generate_signer(alg)
    # The private key is on disk before the token is spent: if the reply is lost, the key the
    # cloud registered is not lost with it.
    pending = pending_key_path(key_file)
    write_key_file(signer, pending)
    body = {
        "gateway_id": gateway_id,
        "token": token,
        "alg": alg,
        "public_key": signer.public_key_bytes().hex(),
    }
    url = cloud_url.rstrip("/") + "/v1/enroll"
    try:
        async with (
            aiohttp.ClientSession() as session,
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
    save_cloud_key(key_file.parent / CLOUD_KEY_FILE, reply)
    log.info("gateway %s enrolled, key id %s, key written to %s", gateway_id, signer.key_id, key_file)
    return signer.key_id

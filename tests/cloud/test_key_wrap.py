"""Payload keys at rest: wrapped under the cloud's KEK (SM4-GCM), bound to their gateway, the KEK
file owner-only; keys stored in the clear by earlier versions are wrapped at start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cloud.key_wrap import KeyWrapError, PayloadKeyWrap
from cloud.repository import GatewayRecord, SqliteRepository
from gascore.crypto import KeyFileError

KEY = bytes(range(16))


def test_wrap_is_bound_to_the_gateway_and_the_kek() -> None:
    kek = PayloadKeyWrap.ephemeral()
    blob = kek.wrap("gw-1", KEY)
    assert KEY not in blob
    assert kek.unwrap("gw-1", blob) == KEY
    assert kek.wrap("gw-1", KEY) != blob  # a fresh nonce every time
    with pytest.raises(KeyWrapError, match="gw-2 does not unwrap"):
        kek.unwrap("gw-2", blob)  # moved to another gateway's row
    with pytest.raises(KeyWrapError, match="does not unwrap"):
        PayloadKeyWrap.ephemeral().unwrap("gw-1", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyWrapError):
        kek.unwrap("gw-1", tampered)
    with pytest.raises(KeyWrapError, match="not in a known wrapped form"):
        kek.unwrap("gw-1", b"\x02" + blob[1:])
    assert "kek>" in repr(kek) and kek._kek.hex() not in repr(kek)


def test_kek_file_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "cloud.payload.kek"
    first = PayloadKeyWrap.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    blob = first.wrap("gw-1", KEY)
    assert PayloadKeyWrap.load_or_create(path).unwrap("gw-1", blob) == KEY
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        PayloadKeyWrap.load_or_create(path)


def test_legacy_clear_keys_are_wrapped_once(tmp_path: Path) -> None:
    repo = SqliteRepository(tmp_path / "cloud.db")
    try:
        repo.register_gateway(GatewayRecord("gw-old", "sm2-sm3", b"pk", "kid", "active", 1, KEY))
        repo.register_gateway(GatewayRecord("gw-plain", "sm2-sm3", b"pk", "kid", "active", 1, None))
        kek = PayloadKeyWrap.ephemeral()
        assert kek.rewrap_legacy(repo) == 1
        stored = repo.gateway("gw-old")
        assert stored is not None and stored.payload_key is not None
        assert stored.payload_key != KEY and kek.unwrap("gw-old", stored.payload_key) == KEY
        assert repo.gateway("gw-plain") == replace(stored, gateway_id="gw-plain", payload_key=None)
        assert kek.rewrap_legacy(repo) == 0
    finally:
        repo.close()

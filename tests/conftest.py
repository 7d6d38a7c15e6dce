from __future__ import annotations

import pytest

from gascore.crypto import Signer, generate_signer


@pytest.fixture(params=["sm2-sm3", "ed25519"])
def signer(request: pytest.FixtureRequest) -> Signer:
    return generate_signer(request.param)


@pytest.fixture
def sm2_signer() -> Signer:
    return generate_signer("sm2-sm3")

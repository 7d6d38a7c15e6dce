"""The cloud → edge contract (N-6.1: the gateway polls, outbound only; S-7.2.1c/f: every command
is signed by the cloud and verified by the gateway before it is used).

* Poll: the gateway POSTs ``PollRequest`` JSON to ``/v1/commands/poll`` with its signature over
  the canonical bytes in the ``Gasiot-Signature`` header (hex).  ``ts_ms`` must be within
  ``POLL_MAX_SKEW_MS`` of the cloud's clock, so a captured poll cannot be replayed later.
* Reply: ``{"commands": [{"command": {...}, "signature": hex, "key_id": ...}, ...]}``; each
  command is signed with the cloud's key over its canonical JSON.  The gateway executes a
  command id at most once and reports a ``command.result`` event on the events lane.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from gascore.contract import ContractError, canonical_json
from gascore.crypto import Signer, Verifier

POLL_MAX_SKEW_MS = 5 * 60 * 1000
MAX_COMMANDS_PER_POLL = 100

# type → required body fields (values are checked by the handler on the gateway)
COMMAND_TYPES: dict[str, tuple[str, ...]] = {
    "alarm.ack": ("alarm_id", "by"),
    "alarm.shelve": ("alarm_id", "by", "until_ms"),
    # Writes and services: checked again at the edge against the thing model, confirmed by read-back.
    "point.write": ("device", "point", "value", "by"),
    "service.call": ("device", "service", "args", "by"),
    # A whole station file, validated and applied by the gateway (rolled back if it cannot start).
    "config.apply": ("version", "sha256", "yaml"),
    # A new gateway release: fetched with a FirmwareRequest, checked against sha256, put on trial.
    "firmware.apply": ("version", "sha256", "filename", "size"),
    # Read a device now; the result names what it answered.
    "device.read": ("device", "by"),
}


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    gateway_id: str
    type: str
    body: dict[str, Any]
    created_ms: int
    created_by: str
    expires_ms: int  # the gateway refuses the command after this (a delayed command is a stale one)
    nonce: str  # random per command: two commands with the same content never sign the same bytes

    def canonical(self) -> bytes:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, raw: Any) -> Command:
        try:
            cmd = cls(
                int(raw["id"]),
                str(raw["gateway_id"]),
                str(raw["type"]),
                dict(raw["body"]),
                int(raw["created_ms"]),
                str(raw["created_by"]),
                int(raw["expires_ms"]),
                str(raw["nonce"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ContractError(f"command: malformed ({err})") from err
        if set(raw) != _FIELDS:
            raise ContractError("command: unexpected fields")
        return cmd


_FIELDS = frozenset({"id", "gateway_id", "type", "body", "created_ms", "created_by", "expires_ms", "nonce"})

# Acts that need a second person's confirmation before the gateway may fetch them.
DUAL_CONTROL: frozenset[str] = frozenset({"service.call", "config.apply", "firmware.apply"})


def check_command_body(type_: str, body: dict[str, Any]) -> None:
    required = COMMAND_TYPES.get(type_)
    if required is None:
        raise ContractError(f"unknown command type {type_!r} (known: {', '.join(sorted(COMMAND_TYPES))})")
    missing = [k for k in required if k not in body]
    if missing:
        raise ContractError(f"{type_}: missing {', '.join(missing)}")


def signed_command(cmd: Command, signer: Signer) -> dict[str, Any]:
    return {"command": asdict(cmd), "signature": signer.sign(cmd.canonical()).hex(), "key_id": signer.key_id}


def verify_command(item: Any, verifier: Verifier, gateway_id: str) -> Command:
    """Raises ContractError (shape, wrong gateway) or the verifier's BadSignature."""
    if not isinstance(item, dict) or "command" not in item or not isinstance(item.get("signature"), str):
        raise ContractError("command: expected {command, signature}")
    cmd = Command.from_json(item["command"])
    try:
        signature = bytes.fromhex(item["signature"])
    except ValueError as err:
        raise ContractError("command: signature is not hex") from err
    verifier.verify(cmd.canonical(), signature)
    if cmd.gateway_id != gateway_id:
        raise ContractError(f"command {cmd.id} is for gateway {cmd.gateway_id!r}, not {gateway_id!r}")
    return cmd


_R = TypeVar("_R", bound="PollRequest | FirmwareRequest")


def _parse_signed_request(cls: type[_R], data: bytes, what: str) -> _R:
    """A gateway's signed request body: exactly the canonical JSON of its fields (so the
    signature covers every byte), each field of its declared type."""
    names = [f.name for f in fields(cls)]
    try:
        raw = json.loads(data)
    except ValueError as err:
        raise ContractError(f"{what}: malformed ({err})") from err
    if not isinstance(raw, dict) or set(raw) != set(names):
        raise ContractError(f"{what}: malformed (fields must be {', '.join(names)})")
    try:
        req = cls(**{f.name: _TYPES[f.type](raw[f.name]) for f in fields(cls)})
    except (ValueError, TypeError) as err:
        raise ContractError(f"{what}: malformed ({err})") from err
    if req.canonical() != data:
        raise ContractError(f"{what}: body is not in canonical form")
    return req


_TYPES: dict[object, type] = {"str": str, "int": int, str: str, int: int}


@dataclass(frozen=True, slots=True)
class PollRequest:
    gateway_id: str
    ts_ms: int
    after: int

    def canonical(self) -> bytes:
        return canonical_json(asdict(self))

    @classmethod
    def parse(cls, data: bytes) -> PollRequest:
        return _parse_signed_request(cls, data, "poll")


@dataclass(frozen=True, slots=True)
class FirmwareRequest:
    """A gateway fetches a release package: signed like a poll, fresh within the same skew."""

    gateway_id: str
    ts_ms: int
    version: str

    def canonical(self) -> bytes:
        return canonical_json(asdict(self))

    @classmethod
    def parse(cls, data: bytes) -> FirmwareRequest:
        return _parse_signed_request(cls, data, "firmware request")

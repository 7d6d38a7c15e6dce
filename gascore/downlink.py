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

from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class PollRequest:
    gateway_id: str
    ts_ms: int
    after: int

    def canonical(self) -> bytes:
        return canonical_json(asdict(self))

    @classmethod
    def parse(cls, data: bytes) -> PollRequest:
        import json

        try:
            raw = json.loads(data)
            req = cls(str(raw["gateway_id"]), int(raw["ts_ms"]), int(raw["after"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ContractError(f"poll: malformed ({err})") from err
        if req.canonical() != data:
            raise ContractError("poll: body is not in canonical form")
        return req


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
        import json

        try:
            raw = json.loads(data)
            req = cls(str(raw["gateway_id"]), int(raw["ts_ms"]), str(raw["version"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ContractError(f"firmware request: malformed ({err})") from err
        if req.canonical() != data:
            raise ContractError("firmware request: body is not in canonical form")
        return req

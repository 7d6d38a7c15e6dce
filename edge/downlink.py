"""Cloud → edge commands: poll the cloud (outbound only), verify each command's signature with
the cloud key from enrollment, execute each command id at most once, report the outcome as a
``command.result`` event on the events lane."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from edge.store import SqliteStore, StoreError
from edge.tls_files import session as session_for
from gascore.contract import ContractError
from gascore.crypto import CryptoError, Signer, Verifier
from gascore.downlink import Command, PollRequest, verify_command
from gascore.records import Event, EventLevel

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Gasiot-Signature"
LAST_COMMAND = "last_command_id"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # done | refused | failed
    detail: str = ""


Handler = Callable[[Command], Awaitable[Outcome]]
Emit = Callable[[list[Event]], None]


class CommandPoller:
    def __init__(
        self,
        *,
        store: SqliteStore,
        signer: Signer,
        cloud_key: Verifier | None,
        gateway_id: str,
        cloud_url: str,
        handlers: dict[str, Handler],
        emit: Emit,
        interval_s: float = 5.0,
        timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.store = store
        self.signer = signer
        self.cloud_key = cloud_key
        self.gateway_id = gateway_id
        self.url = cloud_url.rstrip("/") + "/v1/commands/poll"
        self.handlers = handlers
        self.emit = emit
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.executed = 0
        self.refused = 0
        self._failing = False
        self._executed_up_to = 0

    @property
    def last_id(self) -> int:
        # The store's mark, or the one kept here when the store could not record it (full disk):
        # a command is never carried out twice by this process either way.
        return max(self.store.counters().get(LAST_COMMAND, 0), self._executed_up_to)

    async def run(self) -> None:
        if self.cloud_key is None:
            log.warning("no cloud key (cloud.pub): commands from the cloud are not fetched; re-enroll to get one")
            return
        async with session_for(self.ssl_context) as session:
            while True:
                await self.poll_once(session)
                await asyncio.sleep(self.interval_s)  # the polling period (outbound only, N-6.1)

    async def poll_once(self, session: aiohttp.ClientSession) -> int:
        """Fetch and execute what is pending; returns how many commands were executed."""
        assert self.cloud_key is not None
        request = PollRequest(self.gateway_id, time.time_ns() // 1_000_000, self.last_id)
        body = request.canonical()
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                session.post(
                    self.url,
                    data=body,
                    headers={SIGNATURE_HEADER: self.signer.sign(body).hex(), "Content-Type": "application/json"},
                ) as resp,
            ):
                reply = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            self._failed(str(err) or type(err).__name__)
            return 0
        if status != 200 or not isinstance(reply, dict) or not isinstance(reply.get("commands"), list):
            self._failed(f"HTTP {status}: {reply}")
            return 0
        self._failing = False
        done = 0
        for item in reply["commands"]:
            try:
                command = verify_command(item, self.cloud_key, self.gateway_id)
            except (ContractError, CryptoError) as err:
                self.refused += 1
                log.error("refused a command that does not verify: %s", err)  # noqa: TRY400 - never executed
                continue
            if command.id <= self.last_id:
                continue  # executed before (at most once)
            await self._execute(command)
            done += 1
        return done

    async def _execute(self, command: Command) -> None:
        handler = self.handlers.get(command.type)
        late_ms = time.time_ns() // 1_000_000 - command.expires_ms
        if late_ms > 0:  # a command held back (or replayed) past its expiry is not carried out
            outcome = Outcome("refused", f"expired {late_ms / 1000:.0f} s ago")
        elif handler is None:
            outcome = Outcome("refused", f"this gateway does not handle {command.type!r}")
        else:
            try:
                outcome = await handler(command)
            except (ValueError, KeyError, TypeError) as err:
                outcome = Outcome("failed", str(err))
        self.executed += 1
        log.info(
            "command %d (%s by %s): %s %s", command.id, command.type, command.created_by, outcome.status, outcome.detail
        )
        event = Event(
            "_gateway",
            "command.result",
            time.time_ns() // 1_000_000,
            EventLevel.INFO,
            {
                "command_id": command.id,
                "type": command.type,
                "status": outcome.status,
                "detail": outcome.detail,
                "by": command.created_by,
            },
        )
        # The result and the "executed up to" mark commit together: a crash never runs a command twice.
        self._executed_up_to = command.id
        try:
            self.store.append([], [event], counters={LAST_COMMAND: command.id})
        except (StoreError, sqlite3.Error) as err:
            log.error("command %d: result not stored (%s)", command.id, err)  # noqa: TRY400 - the cause is the message
            return
        self.emit([])

    def _failed(self, why: str) -> None:
        if not self._failing:
            log.warning("command poll failing: %s", why)
            self._failing = True

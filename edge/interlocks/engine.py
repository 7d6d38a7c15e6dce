"""The interlock engine: a condition becomes active → write the action → expect the read-back
within its time → outcome event (done / failed / unconfirmed).  Every step is an audited event
on the events lane; nothing here waits for the cloud.

Safeguards: a rate limit per interlock, an inhibit flag, a simulation mode, and one action in
flight per interlock.  An interlock never reverses its action: re-opening a valve is a person's
decision (the slam-shut reset), and the interlock re-arms when its condition clears.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DriverError
from edge.interlocks.config import InterlockConfig, ReadBack
from edge.rules.types import ConditionChange
from gascore.records import Event, EventLevel, Reading

log = logging.getLogger(__name__)

Writer = Callable[[str, str, Any], Awaitable[None]]
"""(device, property, engineering value) → performs the write; raises DriverError/ValueError."""
Emit = Callable[[list[Event]], None]
Clock = Callable[[], int]


@dataclass
class _Pending:
    interlock: InterlockConfig
    written_ms: int
    deadline_ms: int


@dataclass
class _State:
    config: InterlockConfig
    history: deque[int] = field(default_factory=deque)  # action times, for the rate limit
    in_flight: bool = False
    pending: _Pending | None = None
    actions: int = 0


class InterlockEngine:
    def __init__(self, interlocks: Sequence[InterlockConfig], writer: Writer, emit: Emit, clock: Clock) -> None:
        self._states = {i.id: _State(i) for i in interlocks}
        self._by_condition: dict[str, list[_State]] = {}
        for st in self._states.values():
            self._by_condition.setdefault(st.config.when, []).append(st)
        self._writer = writer
        self._emit = emit
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def interlocks(self) -> list[InterlockConfig]:
        return [s.config for s in self._states.values()]

    def on_changes(self, changes: Sequence[ConditionChange]) -> list[Event]:
        """Condition changes from the rules; returns the events to store with them."""
        events: list[Event] = []
        for change in changes:
            if not change.active:
                continue
            for st in self._by_condition.get(change.condition_id, []):
                events += self._trigger(st, change)
        return events

    def _trigger(self, st: _State, change: ConditionChange) -> list[Event]:
        cfg, now = st.config, change.ts_ms
        base = {
            "interlock": cfg.id,
            "condition": cfg.when,
            "value": change.value,
            "source": cfg.source,
            "action": cfg.action.model_dump(),
        }
        if cfg.inhibit:
            return [self._event(cfg, "interlock.inhibited", now, EventLevel.WARNING, base)]
        if st.in_flight:
            return []
        window_start = now - int(cfg.rate_limit.per_s * 1000)
        while st.history and st.history[0] < window_start:
            st.history.popleft()
        if len(st.history) >= cfg.rate_limit.max_actions:
            return [self._event(cfg, "interlock.rate_limited", now, EventLevel.MAJOR, base)]
        st.history.append(now)
        if cfg.simulate:
            log.warning(
                "interlock %s (simulation): would write %s.%s = %r",
                cfg.id,
                cfg.action.device,
                cfg.action.point,
                cfg.action.value,
            )
            return [self._event(cfg, "interlock.simulated", now, EventLevel.WARNING, base)]
        st.in_flight = True
        st.actions += 1
        log.warning(
            "interlock %s: %s active, writing %s.%s = %r",
            cfg.id,
            cfg.when,
            cfg.action.device,
            cfg.action.point,
            cfg.action.value,
        )
        task = asyncio.get_running_loop().create_task(self._act(st), name=f"interlock:{cfg.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return [self._event(cfg, "interlock.triggered", now, EventLevel.CRITICAL, base)]

    async def _act(self, st: _State) -> None:
        cfg = st.config
        try:
            await self._writer(cfg.action.device, cfg.action.point, cfg.action.value)
        except (DriverError, ValueError, TimeoutError) as err:
            st.in_flight = False
            log.error("interlock %s: write failed: %s", cfg.id, err)  # noqa: TRY400 - expected, no traceback
            self._emit(
                [
                    self._event(
                        cfg,
                        "interlock.failed",
                        self._clock(),
                        EventLevel.CRITICAL,
                        {"interlock": cfg.id, "error": str(err) or type(err).__name__},
                    )
                ]
            )
            return
        now = self._clock()
        if cfg.readback is None:
            st.in_flight = False
            self._emit(
                [
                    self._event(
                        cfg,
                        "interlock.done",
                        now,
                        EventLevel.WARNING,
                        {"interlock": cfg.id, "confirmed": False, "readback": None},
                    )
                ]
            )
            return
        st.pending = _Pending(cfg, now, now + int(cfg.readback.within_s * 1000))

    def observe(self, readings: Sequence[Reading]) -> list[Event]:
        """Readings after a poll cycle: confirm pending read-backs."""
        events: list[Event] = []
        for st in self._states.values():
            pending, rb = st.pending, st.config.readback
            if pending is None or rb is None:
                continue
            for r in readings:
                if r.device == rb.device and r.point == rb.point and r.quality.is_good and _matches(r.value, rb):
                    st.pending, st.in_flight = None, False
                    events.append(
                        self._event(
                            st.config,
                            "interlock.done",
                            r.ts_ms,
                            EventLevel.WARNING,
                            {
                                "interlock": st.config.id,
                                "confirmed": True,
                                "readback_ms": r.ts_ms - pending.written_ms,
                                "readback": {"point": rb.point, "value": r.value},
                            },
                        )
                    )
                    log.warning(
                        "interlock %s: confirmed by %s.%s after %d ms",
                        st.config.id,
                        rb.device,
                        rb.point,
                        r.ts_ms - pending.written_ms,
                    )
                    break
        return events

    def tick(self, now_ms: int) -> list[Event]:
        """Read-backs that did not arrive in time."""
        events = []
        for st in self._states.values():
            pending, rb = st.pending, st.config.readback
            if pending is not None and rb is not None and now_ms >= pending.deadline_ms:
                st.pending, st.in_flight = None, False
                log.error(
                    "interlock %s: UNCONFIRMED — %s.%s did not become %r within %gs",
                    st.config.id,
                    rb.device,
                    rb.point,
                    rb.equals,
                    rb.within_s,
                )
                events.append(
                    self._event(
                        st.config,
                        "interlock.unconfirmed",
                        now_ms,
                        EventLevel.CRITICAL,
                        {
                            "interlock": st.config.id,
                            "readback": {"point": rb.point, "expected": rb.equals, "within_s": rb.within_s},
                        },
                    )
                )
        return events

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    def _event(cfg: InterlockConfig, kind: str, ts_ms: int, level: EventLevel, data: dict[str, Any]) -> Event:
        return Event(cfg.action.device, kind, ts_ms, level, data)


def _matches(value: Any, rb: ReadBack) -> bool:
    if isinstance(rb.equals, bool) or isinstance(value, bool):
        return bool(value) is bool(rb.equals) and isinstance(value, bool)
    if isinstance(value, int | float):
        return abs(float(value) - float(rb.equals)) <= rb.tolerance
    return False

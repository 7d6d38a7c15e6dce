"""ISA-18.2 alarms: condition changes from ``edge.rules`` become alarms with acknowledgement,
shelving and suppression; every transition is one event on the ``events`` lane; state lives in
the edge store's SQLite file.

* ``AlarmManager`` (manager.py): the state machine, synchronous and free of I/O.
* ``persist``: the ``alarms`` and ``alarm_requests`` tables; writes run inside the store's
  transaction, never their own.
* ``format_alarms`` (display.py): the CLI's table.

Operator actions never raise for a wrong alarm or state: they return a ``Result`` whose
``Outcome`` says what happened (``ok``, ``not_found``, ``already_acked``, ``stale``, ...).
``persist`` raises ``ValueError`` for a request that could never be applied and
``RuntimeError`` when a write is attempted outside a transaction (a wiring bug).
"""

from edge.alarms import persist
from edge.alarms.display import format_alarms
from edge.alarms.manager import DEFAULT_COMM_RULES, AlarmManager, alarm_event
from edge.alarms.model import (
    Alarm,
    AlarmState,
    EventKind,
    Origin,
    Outcome,
    Request,
    RequestKind,
    RequestResult,
    Result,
)

__all__ = [
    "DEFAULT_COMM_RULES",
    "Alarm",
    "AlarmManager",
    "AlarmState",
    "EventKind",
    "Origin",
    "Outcome",
    "Request",
    "RequestKind",
    "RequestResult",
    "Result",
    "alarm_event",
    "format_alarms",
    "persist",
]

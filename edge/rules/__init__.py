"""Local rules: thresholds, rate of change, stuck/stale values, state changes and expressions
over several properties, plus computed properties and window aggregates.  Rules turn readings
into *conditions* (a named situation that is active or not); edge.alarms turns condition changes
into ISA-18.2 alarms, edge.interlocks into local control actions.

Public API (see README.md in this folder for the YAML format):

- :class:`RuleEngine` (``build``, ``observe``, ``device_link``, ``tick``, ``restore_active``,
  ``conditions``, ``computed_points``, ``computed_properties``) and :class:`RuleOutput`;
  :func:`station_engine` loads a station's packs and builds its engine in one call;
- :class:`RulePack`, :class:`StationRules` (the station file's ``rules:`` section),
  :func:`load_pack`, :func:`load_packs`;
- :func:`parse_expression`, :class:`Expression`, :class:`ExpressionError`;
- the records in :mod:`edge.rules.types`.
"""

from edge.rules.config import RulePack, StationRules, load_pack, load_packs
from edge.rules.engine import RuleEngine, RuleOutput, station_engine
from edge.rules.expr import Expression, ExpressionError, parse_expression
from edge.rules.types import ConditionChange, Message, Priority

__all__ = [
    "ConditionChange",
    "Expression",
    "ExpressionError",
    "Message",
    "Priority",
    "RuleEngine",
    "RuleOutput",
    "RulePack",
    "StationRules",
    "load_pack",
    "load_packs",
    "parse_expression",
    "station_engine",
]

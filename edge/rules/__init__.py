"""Local rules: thresholds, rate of change, stuck/stale values, state changes and expressions
over several properties, plus computed properties and window aggregates.  Rules turn readings
into *conditions* (a named situation that is active or not); edge.alarms turns condition changes
into ISA-18.2 alarms, edge.interlocks into local control actions."""

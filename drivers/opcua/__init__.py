"""OPC-UA client driver (asyncua): configuration, session, subscriptions, status mapping, browse.

Only the configuration is imported eagerly: asyncua is large (~18 MB resident, ~0.4 s to import)
and a station without OPC-UA should not pay for it.  The other names load on first use.
``browse`` (the function) is imported from ``drivers.opcua.browse``: the package attribute of
that name is the submodule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.opcua.config import Deadband, OpcUaChannel, OpcUaPoint, parse_node_id
from gascore.lazy import lazy_attribute

if TYPE_CHECKING:
    from drivers.opcua.browse import BrowseEntry, format_browse
    from drivers.opcua.driver import OpcUaDriver, is_polled, to_variant
    from drivers.opcua.errors import SecurityError, UntrustedServerError, WriteValueError
    from drivers.opcua.monitor import OpcUaStatistics
    from drivers.opcua.security import create_self_signed, fingerprint
    from drivers.opcua.status import quality_of, sample_from

_LAZY = {
    "BrowseEntry": "browse",
    "format_browse": "browse",
    "OpcUaDriver": "driver",
    "is_polled": "driver",
    "to_variant": "driver",
    "SecurityError": "errors",
    "UntrustedServerError": "errors",
    "WriteValueError": "errors",
    "OpcUaStatistics": "monitor",
    "create_self_signed": "security",
    "fingerprint": "security",
    "quality_of": "status",
    "sample_from": "status",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)


__all__ = [
    "BrowseEntry",
    "Deadband",
    "OpcUaChannel",
    "OpcUaDriver",
    "OpcUaPoint",
    "OpcUaStatistics",
    "SecurityError",
    "UntrustedServerError",
    "WriteValueError",
    "create_self_signed",
    "fingerprint",
    "format_browse",
    "is_polled",
    "parse_node_id",
    "quality_of",
    "sample_from",
    "to_variant",
]

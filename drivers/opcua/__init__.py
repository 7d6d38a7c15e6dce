"""OPC-UA client driver (asyncua): configuration, session, subscriptions, status mapping, browse."""

from drivers.opcua.browse import BrowseEntry, browse, format_browse
from drivers.opcua.config import Deadband, OpcUaChannel, OpcUaPoint, parse_node_id
from drivers.opcua.driver import OpcUaDriver, is_polled, to_variant
from drivers.opcua.errors import SecurityError, UntrustedServerError, WriteValueError
from drivers.opcua.monitor import OpcUaStatistics
from drivers.opcua.security import create_self_signed, fingerprint
from drivers.opcua.status import quality_of, sample_from

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
    "browse",
    "create_self_signed",
    "fingerprint",
    "format_browse",
    "is_polled",
    "parse_node_id",
    "quality_of",
    "sample_from",
    "to_variant",
]

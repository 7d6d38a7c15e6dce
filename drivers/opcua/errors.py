"""Errors of the OPC-UA driver, below the common tree of :mod:`drivers.base`::

    DriverError
    ├── CommError
    │   └── SecurityError          the secure channel cannot be set up as configured (no matching
    │       │                      endpoint, unreadable or mismatched gateway certificate); retrying
    │       │                      does not help until the configuration changes
    │       └── UntrustedServerError   the server's certificate is not trusted (trust list or trust_dir)
    └── DeviceError                the server refused a request (a write, a read) with a status code
    WriteValueError (ValueError)   the value does not fit the node's data type: nothing was sent

They are CommErrors so that a caller that only knows the common tree marks the device offline
and retries later (with its capped backoff), with the message as the reason.
"""

from __future__ import annotations

from drivers.base import CommError


class SecurityError(CommError):
    """The secure channel cannot be set up with this configuration."""


class UntrustedServerError(SecurityError):
    """The server presented a certificate the channel's trust list does not accept."""

    def __init__(self, endpoint: str, fingerprint: str, why: str) -> None:
        super().__init__(f"{endpoint}: server certificate (SHA-256 {fingerprint}) {why}; refusing to connect")
        self.fingerprint = fingerprint


class WriteValueError(ValueError):
    """The value cannot be written as the node's data type (wrong kind, out of range)."""

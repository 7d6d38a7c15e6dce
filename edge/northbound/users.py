"""Roles of the northbound OPC-UA server's users (their password hashes: gascore.crypto.passwords)."""

from __future__ import annotations

import enum

from gascore.crypto.passwords import check_hash_format, hash_password, verify_password

__all__ = ["Role", "check_hash_format", "hash_password", "verify_password"]


class Role(enum.IntEnum):
    """Each role may do what the roles below it may."""

    VIEWER = 1  # browse, read, subscribe, history, alarm display (ConditionRefresh)
    OPERATOR = 2  # + acknowledge alarms, write writable properties
    ENGINEER = 3  # + call device services

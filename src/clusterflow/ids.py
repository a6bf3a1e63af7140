"""Identifiers: a type prefix and a ULID, so IDs sort by creation time and say what they name.

Operation IDs double as Temporal workflow IDs, which is why they must be globally unique and
safe to use in URLs and log lines.
"""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def operation_id() -> str:
    return new_id("op")


def cluster_id() -> str:
    return new_id("cl")


def request_id() -> str:
    return new_id("req")


def organization_id() -> str:
    return new_id("org")

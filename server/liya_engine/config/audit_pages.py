"""Paging of ``ListAuditEntries``: the page size bounds and the page token.

The token is opaque to callers: ``a1:<id>`` in URL-safe base64, the id of the
last entry served, so the next page starts below it.
"""

from __future__ import annotations

import base64
import binascii

from liya_engine.errors import FieldViolation, InvalidRequest

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
_MAX_ID = 2**63 - 1


def page_size(requested: int) -> int:
    """The number of entries to serve for ``page_size``: 0 is the default,
    more than the maximum is the maximum; ``InvalidRequest`` if negative."""
    if requested < 0:
        raise InvalidRequest(
            "page_size must not be negative",
            [FieldViolation("page_size", f"must be 0 (default) to {MAX_PAGE_SIZE}")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"a1:{before_id}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The entry id a ``next_page_token`` names; ``InvalidRequest`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, _, num = raw.partition(":")
        # ASCII digits only, and within the id column's range: anything else
        # would reach the database and fail there as an internal error.
        if tag != "a1" or not num.isascii() or not num.isdigit() or int(num) > _MAX_ID:
            raise ValueError
        return int(num)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "page_token is not valid",
            [
                FieldViolation(
                    "page_token", "must be a next_page_token from an earlier ListAuditEntries call"
                )
            ],
        ) from None

"""Which driver errors mean the database cannot serve the call right now, and
the one ``StorageUnavailable`` they become (STORAGE_UNAVAILABLE, retryable)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from liya_engine.errors import StorageUnavailable


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable or busy (worth a retry)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError)


def unavailable() -> StorageUnavailable:
    """The error a caller sees for any of those."""
    return StorageUnavailable("the configuration database is unavailable; retry shortly")

"""The in-process stand-in for ``grpc.aio.ServicerContext`` on the HTTP surface.

``CallGuard`` and the servicers use four things of a context: the caller's
metadata (``authorization``, ``x-request-id``, ``traceparent``), trailing
metadata (the request id), the time left (the caller's deadline) and
``abort`` (the mapped error status). ``HttpContext`` gives them from the
HTTP request, so HTTP calls run the very code gRPC calls run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import grpc

from liya_engine.http import transcode


class HttpAbort(grpc.aio.AbortError):
    """Raised by ``HttpContext.abort``: the call ended with this status."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Iterable[tuple[str, Any]]):
        super().__init__(details)
        self.status = transcode.status_of(code.value[0], details, trailing)


class HttpContext:
    """One HTTP call's context, as the guard and the servicers see it."""

    __slots__ = ("_deadline", "_metadata", "trailing_metadata")

    def __init__(self, headers: Iterable[tuple[str, str]], timeout: float | None) -> None:
        # gRPC metadata keys are lower case; HTTP header names are not.
        self._metadata = tuple((key.lower(), value) for key, value in headers)
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.trailing_metadata: tuple[tuple[str, Any], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self.trailing_metadata = metadata

    def time_remaining(self) -> float | None:
        """Seconds until the caller's ``X-Server-Timeout`` runs out; None without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        raise HttpAbort(code, details, trailing_metadata or ())

    def request_id(self) -> str | None:
        """The request id the guard assigned (sent back as ``X-Request-Id``)."""
        for key, value in self.trailing_metadata:
            if key == "x-request-id":
                return value
        return None

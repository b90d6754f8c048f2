"""Per-call plumbing for every RPC: identity, request id, admission
(``admission``), logging, errors, the server span and the access log.

``CallGuard`` wraps each servicer method so that servicers only translate
protos and call domain code: by the time a servicer runs, the caller is
authenticated (``current_call()``), and whatever it raises is turned into a
status by ``liya_engine.api.status`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

import liya_engine.tracing as tracing
from liya_engine import errors
from liya_engine.api import status
from liya_engine.api.admission import TenantSlots, overloaded
from liya_engine.api.queue_delay import QueueDelayShedder
from liya_engine.identity import Identity, TokenVerifier
from liya_engine.logs import request_id_var, tenant_var
from liya_engine.metrics import Metrics
from liya_engine.redact import safe_to_echo
from liya_engine.settings_limits import Limits
from liya_engine.tracing import server as server_spans

log = logging.getLogger("liya_engine.rpc")
access_log = logging.getLogger("liya_engine.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the servicer knows about the current call."""

    identity: Identity
    request_id: str


_call_var: contextvars.ContextVar[CallContext] = contextvars.ContextVar("liya_call")


def current_call() -> CallContext:
    """The authenticated context of the RPC being served."""
    return _call_var.get()


class CallGuard:
    """Authenticates, assigns a request id, maps errors, records metrics.

    Applied when the servicers are registered (``register``), not as a
    ``grpc.aio.ServerInterceptor``: an interceptor runs a chain of coroutines and
    builds a new method handler for every call, which measured about a quarter
    of the server's CPU on a cached read. Health and reflection are registered
    without it, so they stay public.

    With ``access_log``, each call ends with one INFO line on
    ``liya_engine.access``; while tracing is on (``liya_engine.tracing``), each
    call runs in a server span. Both are decided once, when the methods are
    registered: with neither, a call runs exactly the code it ran without them.

    Admission (``liya_engine.api.admission``) comes first: a call beyond
    ``limits.max_in_flight`` is answered SERVER_OVERLOADED before its token is
    even checked; a call of one of ``limited_methods`` (full paths: those that
    call a provider) beyond its tenant's ``limits.tenant_max_in_flight``,
    CONCURRENCY_LIMIT_EXCEEDED once the tenant is known.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        metrics: Metrics,
        *,
        access_log: bool = False,
        limits: Limits | None = None,
        limited_methods: frozenset[str] = frozenset(),
    ) -> None:
        self._verifier = verifier
        self._metrics = metrics
        self._access_log = access_log
        self._traced = False
        self._done = metrics.rpc_done
        self._registered: list[tuple[Callable[[Any, Any], None], Any]] = []
        limits = limits or Limits()
        self._max_in_flight = limits.max_in_flight
        self._limited = limited_methods
        self.tenant_slots = TenantSlots(limits.tenant_max_in_flight)
        # Started and stopped with the server (app), on its loop.
        self.shedder = QueueDelayShedder(
            limits.queue_delay_target_ms / 1000, lambda: metrics.calls_in_flight
        )

    def register(
        self,
        add_to_server: Callable[[Any, Any], None],
        servicer: Any,
        server: grpc.aio.Server,
    ) -> None:
        """Register ``servicer`` through its generated ``add_*_to_server``, every
        method wrapped. The generated function stays the one source of method
        names and serializers."""
        self._traced = tracing.TRACER is not None
        if self._traced or self._access_log:
            self._done = self._done_observed
        self._registered.append((add_to_server, servicer))
        for service, handlers in _captured(add_to_server, servicer).items():
            wrapped = {name: self._wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
            # A generic handler only, never grpc.aio's registered methods (see
            # ``GenericOnly``).
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, wrapped),)
            )

    def http_handlers(
        self, decoders: Callable[[str], tuple[Callable[[Any], Any], dict[str, str]] | None]
    ) -> dict[str, grpc.RpcMethodHandler]:
        """Every method registered so far, wrapped exactly as for gRPC but with
        its request decoded by ``decoders(full_method_path)`` (the HTTP/JSON
        surface: ``liya_engine.http``), by full method path.

        ``decoders`` gives, per method, the function that turns what the HTTP
        layer hands over into the request message (raising ``InvalidRequest``),
        and the extra attributes of the method's server span; None skips the
        method (it has no HTTP route). Identity, request id, metrics, access
        log, span and error mapping are this class's, as on gRPC.
        """
        out: dict[str, grpc.RpcMethodHandler] = {}
        for add_to_server, servicer in self._registered:
            for service, handlers in _captured(add_to_server, servicer).items():
                for name, handler in handlers.items():
                    method = f"/{service}/{name}"
                    decoder = decoders(method)
                    if decoder is None:
                        continue
                    decode, span_attributes = decoder
                    out[method] = self._wrap(method, handler, decode, span_attributes)
        return out

    def _wrap(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        decode: Callable[[Any], Any] | None = None,
        span_attributes: dict[str, str] | None = None,
    ) -> grpc.RpcMethodHandler:
        deserialize = decode or handler.request_deserializer
        if handler.unary_unary is not None:
            unary = self._wrap_unary(method, handler.unary_unary, deserialize)
            return grpc.unary_unary_rpc_method_handler(
                _traced_unary(method, unary, span_attributes) if self._traced else unary,
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream = self._wrap_stream(method, handler.unary_stream, deserialize)
            return grpc.unary_stream_rpc_method_handler(
                _traced_stream(method, stream, span_attributes) if self._traced else stream,
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{method}: only unary requests are served")

    def _done_observed(self, method: str, code: str, reason: str, elapsed: float) -> None:
        """``Metrics.rpc_done``, then the access line and the span's outcome."""
        self._metrics.rpc_done(method, code, reason, elapsed)
        if self._traced:
            server_spans.finished(code, reason)
        if self._access_log:
            duration_ms = round(elapsed * 1000, 1)
            access_log.info(
                "%s %s %s %.1fms",
                method,
                code,
                reason or "-",
                duration_ms,
                extra={
                    "request_id": request_id_var.get(),
                    "tenant": tenant_var.get(),
                    "method": method,
                    "code": code,
                    "reason": reason or "-",
                    "duration_ms": duration_ms,
                },
            )

    def _begin(self, context: grpc.aio.ServicerContext, limited: bool) -> str | None:
        """Set the request id and identity for this call and admit it; raise
        ServerOverloaded, InvalidToken or ConcurrencyLimitExceeded.

        Returns the tenant whose slot the call took (``limited`` methods only),
        for the caller to give back when the call ends.
        """
        metadata = dict(context.invocation_metadata() or ())
        supplied = metadata.get("x-request-id", "")
        # A caller's id is kept only if it could not be a pasted secret.
        request_id = (
            supplied if supplied and safe_to_echo(supplied, _REQUEST_ID) else os.urandom(16).hex()
        )
        request_id_var.set(request_id)
        context.set_trailing_metadata((("x-request-id", request_id),))
        # This call is already counted (rpc_started).
        if self._metrics.calls_in_flight > self._max_in_flight or self.shedder.refuse():
            raise overloaded(self._max_in_flight, self.shedder.shedding)
        auth = metadata.get("authorization")
        identity = self._verifier.verify(auth if isinstance(auth, str) else None)
        tenant_var.set(identity.tenant_id)
        _call_var.set(CallContext(identity, request_id))
        if not limited:
            return None
        self.tenant_slots.take(identity.tenant_id)
        return identity.tenant_id

    async def _fail(
        self, context: grpc.aio.ServicerContext, exc: BaseException, method: str, started: float
    ) -> None:
        """Record the failure and abort the call with its mapped status."""
        if _is_abort(exc):
            raise exc
        request_id = request_id_var.get()
        if isinstance(exc, errors.LiyaError):
            st = status.error_status(exc, request_id)
            reason = exc.reason
            log.info(
                "%s failed: %s %s",
                method,
                reason,
                exc.message,
                extra={"method": method, "reason": reason},
            )
        elif isinstance(exc, errors.DeadlineExceeded):
            st = status.deadline_status(request_id)
            reason = errors.DeadlineExceeded.reason
            log.info("%s: caller deadline exceeded", method)
        else:
            st = status.internal_status(request_id)
            reason = errors.InternalError.reason
            log.error("%s: unexpected %s", method, type(exc).__name__, exc_info=exc)
            if self._traced:
                server_spans.unexpected(exc)
        self._done(method, st.code.name, reason, time.perf_counter() - started)
        await context.abort(st.code, st.details, st.trailing_metadata)

    def _cancelled(self, method: str, started: float) -> None:
        self._done(method, "CANCELLED", "", time.perf_counter() - started)

    def _wrap_unary(self, method: str, behavior, deserialize):
        # The bodies below are written out rather than shared through a
        # context manager: this is the per-call path, and an async context
        # manager costs a generator and two extra awaits per call.
        rpc_started, rpc_done = self._metrics.rpc_started, self._done
        limited, give_back = method in self._limited, self.tenant_slots.give_back

        async def wrapped(raw: bytes, context: grpc.aio.ServicerContext):
            rpc_started(method)
            started = time.perf_counter()
            slot = None
            try:
                slot = self._begin(context, limited)
                reply = await behavior(_decode(deserialize, raw), context)
            except asyncio.CancelledError:
                self._cancelled(method, started)
                raise
            except Exception as exc:
                await self._fail(context, exc, method, started)
                raise AssertionError("unreachable: a failed call is aborted") from None
            finally:
                if slot is not None:
                    give_back(slot)
            rpc_done(method, "OK", "", time.perf_counter() - started)
            return reply

        return wrapped

    def _wrap_stream(self, method: str, behavior, deserialize):
        rpc_started, rpc_done = self._metrics.rpc_started, self._done
        limited, give_back = method in self._limited, self.tenant_slots.give_back

        async def wrapped(raw: bytes, context: grpc.aio.ServicerContext):
            rpc_started(method)
            started = time.perf_counter()
            slot = None
            try:
                slot = self._begin(context, limited)
                async for item in behavior(_decode(deserialize, raw), context):
                    yield item
            except (asyncio.CancelledError, GeneratorExit):
                # GeneratorExit: grpc stopped reading while this generator was
                # suspended at a yield (the caller went away during a send), and
                # the generator is being closed; the call ended all the same.
                self._cancelled(method, started)
                raise
            except Exception as exc:
                await self._fail(context, exc, method, started)
                raise AssertionError("unreachable: a failed call is aborted") from None
            finally:
                if slot is not None:
                    give_back(slot)
            rpc_done(method, "OK", "", time.perf_counter() - started)

        return wrapped


def _traced_unary(method: str, behavior, attributes: dict[str, str] | None = None):
    """``behavior`` (a wrapped unary method) run inside the call's server span."""

    async def traced(raw: bytes, context: grpc.aio.ServicerContext):
        with server_spans.span(method, context.invocation_metadata(), attributes):
            return await behavior(raw, context)

    return traced


def _traced_stream(method: str, behavior, attributes: dict[str, str] | None = None):
    """``behavior`` (a wrapped streaming method) run inside the call's server span."""

    async def traced(raw: bytes, context: grpc.aio.ServicerContext):
        with server_spans.span(method, context.invocation_metadata(), attributes):
            async for item in behavior(raw, context):
                yield item

    return traced


def _captured(add_to_server: Callable[[Any, Any], None], servicer: Any):
    """The generated handlers of ``servicer``, by service and method name."""
    captured = _CapturedHandlers()
    add_to_server(servicer, captured)
    return captured.services


class GenericOnly:
    """``server`` as a generated ``add_*_to_server`` function sees it: its
    handlers are added as a generic handler only, never as registered methods.

    grpc.aio's server keeps one pending request per registered method, and
    for every call it takes in it waits on all of them at once
    (``asyncio.wait``, in Python): with this service's dozen methods that
    wait cost 6% of a cached read's server CPU and 3% of a warm Complete's
    (paired rounds). The generic handler each generated function adds
    alongside finds a method by one dict lookup per service.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        pass  # served by the generic handler added with them


class _CapturedHandlers:
    """Stands in for the server while a generated ``add_*_to_server`` runs."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.services[service] = dict(handlers)


def _decode(deserialize, raw: bytes):
    """Parse the request here rather than in grpc, so a malformed body gets
    INVALID_ARGUMENT with a reason instead of grpc's UNKNOWN."""
    if deserialize is None:
        return raw
    try:
        return deserialize(raw)
    except DecodeError:
        raise errors.InvalidRequest(
            "the request body is not a valid protobuf message for this method",
            [errors.FieldViolation("request", "could not be parsed")],
        ) from None


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises this to end the call; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError)

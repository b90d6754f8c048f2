# ruff: noqa: ASYNC109
# ``timeout`` is the gRPC deadline sent to the server (which bounds the provider
# call there too), not a local asyncio timeout, so ASYNC109's advice does not apply.
"""The ``grpc.aio`` client for ``liya.engine.v1`` (``AsyncLiyaClient``).

It wraps the generated stubs with what every caller needs: a bearer token per
call, a default deadline, keepalive that matches the server's, retries
(through the gRPC service config) only where a retry is safe, and typed
exceptions (``liya_engine_client.errors``) instead of raw gRPC errors.

The token goes out as ``authorization: Bearer <token>`` call metadata rather
than as gRPC call credentials: gRPC refuses call credentials on an insecure
channel, and metadata behaves the same on secure and insecure channels. Do not
send tokens over an insecure channel outside a trusted network.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable

import grpc

from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import config_service_pb2_grpc as cpb_grpc
from liya.engine.v1 import inference_service_pb2 as ipb
from liya.engine.v1 import inference_service_pb2_grpc as ipb_grpc
from liya.engine.v1 import usage_service_pb2 as upb
from liya.engine.v1 import usage_service_pb2_grpc as upb_grpc
from liya_engine_client._common import (
    DEFAULT_TIMEOUT,
    ChannelOptions,
    ClientBase,
    MessageLike,
    TokenProvider,
    UpdateBody,
    auth_metadata,
    channel_credentials,
    channel_options,
    completion_fields,
    update_request,
    usage_request,
)
from liya_engine_client.errors import error_from_rpc


class AsyncLiyaClient(ClientBase):
    """Client for ``grpc.aio`` code.

    Args:
        target: the server address, such as ``liya-engine:50051``.
        token: the bearer JWT, or a callable (plain or async) returning it; a
            callable is asked again for every call, so it can refresh tokens.
        default_timeout: the deadline in seconds for calls that pass no
            ``timeout`` (for ``complete_stream``, the whole stream); ``None``
            means no deadline.
        secure: use TLS with the system's root certificates.
        credentials: TLS channel credentials to use instead (implies secure).
        options: extra gRPC channel options; they replace the defaults of the
            same name (keepalive, retry service config).

    The channel opens on the first call, in the event loop making it; use the
    client from that loop only, and close it (``async with`` or ``await
    client.close()``) to close the channel.
    """

    def __init__(
        self,
        target: str,
        *,
        token: TokenProvider,
        default_timeout: float | None = DEFAULT_TIMEOUT,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = None,
    ) -> None:
        super().__init__(token, default_timeout, target)
        self._options = channel_options(options)
        self._credentials = channel_credentials(secure, credentials)
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        """The ``grpc.aio`` channel, created on first use.

        A ``grpc.aio`` channel belongs to the event loop it was created in, so
        it is made lazily, inside the loop that makes the first call; the
        client itself can be built anywhere (at import time, in a sync factory).
        """
        self._check_open()
        if self._channel is None:
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=self._options
                )
            else:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
            self._stubs = (
                cpb_grpc.ConfigServiceStub(self._channel),
                ipb_grpc.InferenceServiceStub(self._channel),
                upb_grpc.UsageServiceStub(self._channel),
            )
        return self._channel

    @property
    def _config(self) -> cpb_grpc.ConfigServiceStub:
        self.channel  # noqa: B018 - opens the channel in the running loop
        return self._stubs[0]

    @property
    def _inference(self) -> ipb_grpc.InferenceServiceStub:
        self.channel  # noqa: B018 - opens the channel in the running loop
        return self._stubs[1]

    @property
    def _usage(self) -> upb_grpc.UsageServiceStub:
        self.channel  # noqa: B018 - opens the channel in the running loop
        return self._stubs[2]

    async def __aenter__(self) -> AsyncLiyaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls still running get ``grace`` seconds, then are cancelled."""
        if not self._closed:
            self._closed = True
            if self._channel is not None:
                await self._channel.close(grace)

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        self._check_open()
        token = self._token
        if callable(token):
            token = token()
            if inspect.isawaitable(token):
                token = await token
        return auth_metadata(token)

    async def _unary(self, method, request, timeout: float | None):
        metadata = await self._metadata()
        try:
            return await method(request, timeout=self._timeout(timeout), metadata=metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err

    async def update_config(
        self,
        body: UpdateBody,
        *,
        update_mask: Iterable[str] | None = None,
        etag: str | None = None,
        validate_only: bool | None = None,
        verify: bool | None = None,
        timeout: float | None = None,
    ) -> cpb.UpdateConfigResponse:
        """Apply a partial update (PATCH) to the tenant's configuration.

        ``body`` is an ``UpdateConfigRequest`` or a JSON body as in the BYOK
        guide, as a dict or a string (``provider_config``/``providerConfig``
        and ``model_config``/``modelConfig`` both work). ``update_mask``,
        ``etag``, ``validate_only`` and ``verify`` override the body's. With
        ``verify=True`` the credentials the body sets are tested with a minimal
        real call first; when one fails, nothing is written and the provider's
        typed error (such as ``ByokAuthFailed``) is raised. With
        ``validate_only=True`` as well, it is a test and nothing is written.
        Returns the masked configuration and warnings. Never retried. A body that does not fit
        the schema raises ``google.protobuf.json_format.ParseError`` before
        anything is sent.
        """
        request = update_request(
            body, update_mask=update_mask, etag=etag, validate_only=validate_only, verify=verify
        )
        return await self._unary(self._config.UpdateConfig, request, timeout)

    async def get_masked_config(self, *, timeout: float | None = None) -> cpb.MaskedConfig:
        """The tenant's configuration with keys masked (previews only), and its etag."""
        response = await self._unary(
            self._config.GetMaskedConfig, cpb.GetMaskedConfigRequest(), timeout
        )
        return response.config

    async def verify_config(
        self, intent: str = "", *, timeout: float | None = None
    ) -> cpb.VerifyConfigResponse:
        """Make a minimal real call through the provider the tenant routes to.

        Raises the same typed errors as ``complete`` when the provider refuses.
        """
        return await self._unary(
            self._config.VerifyConfig, cpb.VerifyConfigRequest(intent=intent), timeout
        )

    async def list_audit_entries(
        self, page_size: int = 0, page_token: str = "", *, timeout: float | None = None
    ) -> cpb.ListAuditEntriesResponse:
        """One page of the tenant's audit entries, newest first (server default 20, max 100)."""
        request = cpb.ListAuditEntriesRequest(page_size=page_size, page_token=page_token)
        return await self._unary(self._config.ListAuditEntries, request, timeout)

    async def iter_audit_pages(
        self, page_size: int = 0, *, timeout: float | None = None
    ) -> AsyncIterator[cpb.ListAuditEntriesResponse]:
        """Every page of audit entries in turn; ``timeout`` applies to each page's call."""
        token = ""
        while True:
            page = await self.list_audit_entries(page_size, token, timeout=timeout)
            yield page
            token = page.next_page_token
            if not token:
                return

    async def iter_audit_entries(
        self, page_size: int = 0, *, timeout: float | None = None
    ) -> AsyncIterator[cpb.AuditEntry]:
        """Every audit entry of the tenant, newest first, fetching pages as needed."""
        async for page in self.iter_audit_pages(page_size, timeout=timeout):
            for entry in page.audit_entries:
                yield entry

    async def list_daily_usage(
        self,
        start_date: str = "",
        end_date: str = "",
        page_size: int = 0,
        page_token: str = "",
        *,
        timeout: float | None = None,
    ) -> upb.ListDailyUsageResponse:
        """One page of the tenant's daily usage, newest date first, with the
        month-to-date cost and the monthly budget.

        Dates are ``YYYY-MM-DD`` (UTC, inclusive; a ``datetime.date`` works
        too); the defaults are the current month's first day and today. The
        server returns 100 rows per page unless ``page_size`` says otherwise
        (at most 1000). Retried on ``UNAVAILABLE``, like the other reads.
        """
        request = usage_request(start_date, end_date, page_size, page_token)
        return await self._unary(self._usage.ListDailyUsage, request, timeout)

    async def complete(
        self,
        intent: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> ipb.CompleteResponse:
        """Run one completion; returns the answer, finish reason and usage.

        Never retried by the client: a failed call may already have reached
        (and been billed by) the provider.
        """
        request = ipb.CompleteRequest(
            **completion_fields(intent, messages, max_tokens, temperature)
        )
        return await self._unary(self._inference.Complete, request, timeout)

    async def complete_stream(
        self,
        intent: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ipb.CompleteStreamResponse]:
        """Run one completion and yield its pieces; the last one carries the usage.

        A failure, also in the middle of the stream, raises a typed error.
        Leaving the loop early and closing the iterator (``aclose()``, or
        ``contextlib.aclosing``) cancels the call. Never retried.
        """
        request = ipb.CompleteStreamRequest(
            **completion_fields(intent, messages, max_tokens, temperature)
        )
        metadata = await self._metadata()
        call = self._inference.CompleteStream(
            request, timeout=self._timeout(timeout), metadata=metadata
        )
        try:
            async for piece in call:
                yield piece
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        finally:
            call.cancel()  # a no-op once the stream has ended

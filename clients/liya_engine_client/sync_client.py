"""The blocking client for ``liya.engine.v1`` (``LiyaClient``), on gRPC's
synchronous channel; the same methods and behaviour as ``AsyncLiyaClient``."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator

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


class LiyaClient(ClientBase):
    """Blocking client on gRPC's synchronous channel; safe to share between threads.

    The arguments are those of ``AsyncLiyaClient``, except that a token
    callable must return the token itself, not an awaitable. Close it with
    ``with`` or ``close()``.
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
        opts = channel_options(options)
        creds = channel_credentials(secure, credentials)
        self.channel: grpc.Channel = (
            grpc.secure_channel(target, creds, options=opts)
            if creds is not None
            else grpc.insecure_channel(target, options=opts)
        )
        self._config = cpb_grpc.ConfigServiceStub(self.channel)
        self._inference = ipb_grpc.InferenceServiceStub(self.channel)
        self._usage = upb_grpc.UsageServiceStub(self.channel)

    def __enter__(self) -> LiyaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel, cancelling calls still running."""
        if not self._closed:
            self._closed = True
            self.channel.close()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        self._check_open()
        token = self._token
        if callable(token):
            token = token()
            if inspect.isawaitable(token):
                if inspect.iscoroutine(token):
                    token.close()  # avoid a "never awaited" warning on top of the error
                raise TypeError("LiyaClient needs a token callable that returns a str")
        return auth_metadata(token)

    def _unary(self, method, request, timeout: float | None):
        metadata = self._metadata()
        try:
            return method(request, timeout=self._timeout(timeout), metadata=metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err

    def update_config(
        self,
        body: UpdateBody,
        *,
        update_mask: Iterable[str] | None = None,
        etag: str | None = None,
        validate_only: bool | None = None,
        verify: bool | None = None,
        timeout: float | None = None,
    ) -> cpb.UpdateConfigResponse:
        """Apply a partial update (PATCH); see ``AsyncLiyaClient.update_config``."""
        request = update_request(
            body, update_mask=update_mask, etag=etag, validate_only=validate_only, verify=verify
        )
        return self._unary(self._config.UpdateConfig, request, timeout)

    def get_masked_config(self, *, timeout: float | None = None) -> cpb.MaskedConfig:
        """The tenant's configuration with keys masked (previews only), and its etag."""
        return self._unary(
            self._config.GetMaskedConfig, cpb.GetMaskedConfigRequest(), timeout
        ).config

    def verify_config(
        self, intent: str = "", *, timeout: float | None = None
    ) -> cpb.VerifyConfigResponse:
        """Make a minimal real call through the provider the tenant routes to."""
        return self._unary(
            self._config.VerifyConfig, cpb.VerifyConfigRequest(intent=intent), timeout
        )

    def list_audit_entries(
        self, page_size: int = 0, page_token: str = "", *, timeout: float | None = None
    ) -> cpb.ListAuditEntriesResponse:
        """One page of the tenant's audit entries, newest first."""
        request = cpb.ListAuditEntriesRequest(page_size=page_size, page_token=page_token)
        return self._unary(self._config.ListAuditEntries, request, timeout)

    def iter_audit_pages(
        self, page_size: int = 0, *, timeout: float | None = None
    ) -> Iterator[cpb.ListAuditEntriesResponse]:
        """Every page of audit entries in turn; ``timeout`` applies to each page's call."""
        token = ""
        while True:
            page = self.list_audit_entries(page_size, token, timeout=timeout)
            yield page
            token = page.next_page_token
            if not token:
                return

    def iter_audit_entries(
        self, page_size: int = 0, *, timeout: float | None = None
    ) -> Iterator[cpb.AuditEntry]:
        """Every audit entry of the tenant, newest first, fetching pages as needed."""
        for page in self.iter_audit_pages(page_size, timeout=timeout):
            yield from page.audit_entries

    def list_daily_usage(
        self,
        start_date: str = "",
        end_date: str = "",
        page_size: int = 0,
        page_token: str = "",
        *,
        timeout: float | None = None,
    ) -> upb.ListDailyUsageResponse:
        """One page of daily usage; see ``AsyncLiyaClient.list_daily_usage``."""
        request = usage_request(start_date, end_date, page_size, page_token)
        return self._unary(self._usage.ListDailyUsage, request, timeout)

    def complete(
        self,
        intent: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> ipb.CompleteResponse:
        """Run one completion; see ``AsyncLiyaClient.complete``. Never retried."""
        request = ipb.CompleteRequest(
            **completion_fields(intent, messages, max_tokens, temperature)
        )
        return self._unary(self._inference.Complete, request, timeout)

    def complete_stream(
        self,
        intent: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> Iterator[ipb.CompleteStreamResponse]:
        """Run one completion and yield its pieces; the last one carries the usage.

        Closing the generator early (``close()``, or leaving a ``with
        contextlib.closing(...)`` block) cancels the call. Never retried.
        """
        request = ipb.CompleteStreamRequest(
            **completion_fields(intent, messages, max_tokens, temperature)
        )
        metadata = self._metadata()
        call = self._inference.CompleteStream(
            request, timeout=self._timeout(timeout), metadata=metadata
        )
        try:
            yield from call
        except grpc.RpcError as err:
            raise error_from_rpc(err) from err
        finally:
            call.cancel()

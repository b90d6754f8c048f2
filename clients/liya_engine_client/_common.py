"""What the async and sync clients share: channel options, the retry policy,
request building, the bearer token and their common base class."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format

from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya.engine.v1 import usage_service_pb2 as upb

TokenProvider: TypeAlias = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A static token, or a callable (sync or async) asked for a fresh token on every call."""

MessageLike: TypeAlias = ipb.ChatMessage | Mapping[str, str] | tuple[str, str]
"""A chat message as a ``ChatMessage``, a ``{"role": ..., "content": ...}`` dict
or a ``(role, content)`` pair."""

UpdateBody: TypeAlias = cpb.UpdateConfigRequest | Mapping[str, Any] | str
"""An UpdateConfig request, or its JSON body as a dict or a string (the guide's
bodies work verbatim)."""

DEFAULT_TIMEOUT = 30.0

# The server sends keepalive pings every 60s and accepts client pings no more
# often than every 10s (more often earns a GOAWAY "too_many_pings"). 30s keeps
# idle connections through NATs and load balancers that drop quiet flows after
# a minute or more, with margin on the server's limit.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 20_000

_CONFIG_SERVICE = "liya.engine.v1.ConfigService"
_USAGE_SERVICE = "liya.engine.v1.UsageService"

# Retried only where a second attempt cannot do anything twice: reads, and
# VerifyConfig (a one-token probe with no side effect on the tenant). Never
# UpdateConfig or Complete/CompleteStream: an UNAVAILABLE from those may come
# after the provider was already called (and billed) or a write committed.
RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [
                {"service": _CONFIG_SERVICE, "method": "GetMaskedConfig"},
                {"service": _CONFIG_SERVICE, "method": "ListAuditEntries"},
                {"service": _CONFIG_SERVICE, "method": "VerifyConfig"},
                {"service": _USAGE_SERVICE, "method": "ListDailyUsage"},
            ],
            "retryPolicy": RETRY_POLICY,
        }
    ],
    # Stops retrying once many calls of this channel fail, so an outage does not
    # triple the load on a server that is trying to come back.
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


ChannelOptions = Sequence[tuple[str, Any]] | Mapping[str, Any] | None


def channel_options(extra: ChannelOptions = None) -> list[tuple[str, Any]]:
    """The client's channel options; entries of ``extra`` replace defaults of the same name."""
    options: dict[str, Any] = {
        "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
        "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
        "grpc.keepalive_permit_without_calls": 1,
        # Keep pinging an idle connection (the server permits it): the default
        # of 2 pings without data would stop keepalive after one minute idle.
        "grpc.http2.max_pings_without_data": 0,
        "grpc.enable_retries": 1,
        "grpc.service_config": json.dumps(SERVICE_CONFIG),
        # Our retry policy must not be replaced by one found in DNS TXT records.
        "grpc.service_config_disable_resolution": 1,
    }
    if extra:
        options.update(dict(extra.items() if isinstance(extra, Mapping) else extra))
    return list(options.items())


def channel_credentials(
    secure: bool, credentials: grpc.ChannelCredentials | None
) -> grpc.ChannelCredentials | None:
    """The credentials to build a secure channel with, or None for an insecure one."""
    if credentials is not None:
        return credentials
    if secure:
        return grpc.ssl_channel_credentials()
    return None


def auth_metadata(token: object) -> tuple[tuple[str, str], ...]:
    """The ``authorization`` metadata for a token (with or without its ``Bearer`` prefix)."""
    if not isinstance(token, str):
        raise TypeError(f"the token provider returned {type(token).__name__}, not str")
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise ValueError("the token provider returned an empty token")
    return (("authorization", f"Bearer {token}"),)


def update_request(
    body: UpdateBody,
    *,
    update_mask: Iterable[str] | None,
    etag: str | None,
    validate_only: bool | None,
    verify: bool | None = None,
) -> cpb.UpdateConfigRequest:
    """An UpdateConfigRequest from a request or a JSON body, plus keyword overrides."""
    request = cpb.UpdateConfigRequest()
    if isinstance(body, cpb.UpdateConfigRequest):
        request.CopyFrom(body)  # never modify the caller's message
    elif isinstance(body, str):
        json_format.Parse(body, request)
    elif isinstance(body, Mapping):
        json_format.ParseDict(body, request)
    else:
        raise TypeError(
            f"update_config takes an UpdateConfigRequest, a dict or a JSON string, "
            f"not {type(body).__name__}"
        )
    if update_mask is not None:
        if isinstance(update_mask, str):
            update_mask = [update_mask]
        request.update_mask.paths[:] = list(update_mask)
    if etag is not None:
        request.etag = etag
    if validate_only is not None:
        request.validate_only = validate_only
    if verify is not None:
        request.verify = verify
    return request


def usage_request(
    start_date: str, end_date: str, page_size: int, page_token: str
) -> upb.ListDailyUsageRequest:
    """A ListDailyUsageRequest; dates as ``YYYY-MM-DD`` strings or ``datetime.date``."""
    return upb.ListDailyUsageRequest(
        start_date=str(start_date or ""),
        end_date=str(end_date or ""),
        page_size=page_size,
        page_token=page_token,
    )


def chat_messages(messages: Iterable[MessageLike]) -> list[ipb.ChatMessage]:
    """ChatMessages from messages, ``{"role", "content"}`` dicts or ``(role, content)`` pairs."""
    if isinstance(messages, str | bytes):
        raise TypeError("messages must be a list of messages, not a string")
    out = []
    for message in messages:
        if isinstance(message, ipb.ChatMessage):
            out.append(message)
        elif isinstance(message, Mapping):
            out.append(ipb.ChatMessage(role=message["role"], content=message["content"]))
        else:
            role, content = message
            out.append(ipb.ChatMessage(role=role, content=content))
    return out


def completion_fields(
    intent: str,
    messages: Iterable[MessageLike],
    max_tokens: int | None,
    temperature: float | None,
) -> dict[str, Any]:
    """The shared fields of CompleteRequest and CompleteStreamRequest."""
    fields: dict[str, Any] = {"intent": intent, "messages": chat_messages(messages)}
    # Unset stays unset: the service then picks max_tokens to fit the cost limit.
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    if temperature is not None:
        fields["temperature"] = temperature
    return fields


class ClientBase:
    """Token, default deadline and open/closed state, shared by both clients."""

    def __init__(self, token: TokenProvider, default_timeout: float | None, target: str) -> None:
        if not (isinstance(token, str) or callable(token)):
            raise TypeError("token must be a string or a callable returning one")
        self.target = target
        self.default_timeout = default_timeout
        self._token = token
        self._closed = False

    def _timeout(self, timeout: float | None) -> float | None:
        return self.default_timeout if timeout is None else timeout

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Liya Engine client is closed")

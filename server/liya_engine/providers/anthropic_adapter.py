"""Anthropic messages through the official SDK (``anthropic.AsyncAnthropic``)."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import httpx2

from liya_engine.errors import MalformedAnswer
from liya_engine.logs import CredentialHeaderFilter
from liya_engine.providers import answer_checks as check
from liya_engine.providers.base import Credentials, ProviderRequest, ProviderResult
from liya_engine.providers.sdk_clients import NO_TENANT_KEY, PooledAdapter, StreamState

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


# The key travels in each request's headers, which this logger prints at DEBUG.
logging.getLogger(anthropic._base_client.__name__).addFilter(CredentialHeaderFilter())


def normalise_anthropic_finish(reason: str | None) -> str:
    """Anthropic stop_reason as ``stop``/``length``/``content_filter``."""
    return _FINISH_REASONS.get(reason or "end_turn", "stop")


def anthropic_params(request: ProviderRequest) -> dict[str, Any]:
    """Messages API arguments: system messages go to ``system``, joined in order."""
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ],
    }
    if system:
        params["system"] = system
    if request.temperature is not None:
        # The SDK's typed signature no longer has temperature; the API still
        # accepts it for the models that support it.
        params["extra_body"] = {"temperature": request.temperature}
    return params


class AnthropicAdapter(PooledAdapter[anthropic.AsyncAnthropic]):
    """``ProviderAdapter`` for Anthropic.

    ``AnthropicAdapter(max_clients=1024, http_client=None, connect_timeout=10.0)``;
    ``creds.base_url`` is the Anthropic base URL from settings.
    """

    name = "anthropic"

    def _new_client(
        self, base_url: str, api_version: str | None, http_client: httpx2.AsyncClient
    ) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=NO_TENANT_KEY,
            base_url=base_url,
            max_retries=0,
            http_client=http_client,
            # The SDK's own OpenTelemetry support would send the current trace
            # to Anthropic and record spans (with request content, if the
            # environment asks) on any provider an operator installs. The
            # service's own spans say what it may; the SDK's say nothing.
            open_telemetry={"traces": False, "propagation": False},
        )

    async def _create(
        self, client: anthropic.AsyncAnthropic, creds: Credentials, request: ProviderRequest
    ) -> Any:
        return await client.messages.create(
            **anthropic_params(request),
            timeout=self._sdk_timeout(request),
            extra_headers=self.key_headers(creds),
        )

    def _to_result(self, raw: Any, request: ProviderRequest) -> ProviderResult:
        name = self.name
        with check.reading(name):
            blocks = raw.content
            if not isinstance(blocks, list):
                raise MalformedAnswer(name)
            text = "".join(
                check.text(name, block.text)
                for block in blocks
                if getattr(block, "type", "") == "text"
            )
            usage = raw.usage
            return ProviderResult(
                text=check.answer_text(name, text),
                finish_reason=normalise_anthropic_finish(check.name(name, raw.stop_reason)),
                input_tokens=check.token_count(name, usage.input_tokens) or 0,
                output_tokens=check.token_count(name, usage.output_tokens) or 0,
                model=check.name(name, raw.model) or request.model,
            )

    async def _open_stream(
        self, client: anthropic.AsyncAnthropic, creds: Credentials, request: ProviderRequest
    ) -> Any:
        # The SDK's low-level post and its own stream class (SSE decoding,
        # ``error`` events, timeouts), events left as decoded JSON (``object``):
        # as for OpenAI, a typed event built per chunk was most of a chunk's cost.
        params = anthropic_params(request)
        body = {**params.pop("extra_body", {}), **params, "stream": True}
        return await client.post(
            "/v1/messages",
            body=body,
            cast_to=object,
            options={"timeout": self._sdk_timeout(request), "headers": self.key_headers(creds)},
            stream=True,
            stream_cls=anthropic.AsyncStream[object],
        )

    def _on_event(self, state: StreamState, event: Any) -> str:
        # ``event`` is one event as decoded JSON; every value is checked here.
        name = self.name
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str):  # an event that is not an object (``data: null``)
            raise MalformedAnswer(name)
        if kind == "message_start":
            message = _object(name, event["message"])
            model = check.name(name, message.get("model"))
            if model:
                state.model = model
            usage = message.get("usage")
            if usage is not None:
                usage = _object(name, usage)
                state.input_tokens = check.token_count(name, usage["input_tokens"])
                state.output_tokens = check.token_count(name, usage["output_tokens"])
        elif kind == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict) or not isinstance(delta.get("type"), str):
                raise MalformedAnswer(name)  # no delta at all
            if delta["type"] == "text_delta":
                return check.answer_text(name, delta["text"])
        elif kind == "message_delta":
            stop = check.name(name, _object(name, event["delta"]).get("stop_reason"))
            if stop:
                state.finish_reason = normalise_anthropic_finish(stop)
                state.finished = True
            usage = event["usage"]
            if usage is not None:
                usage = _object(name, usage)
                state.output_tokens = check.token_count(name, usage["output_tokens"])
                input_tokens = check.token_count(name, usage.get("input_tokens"))
                if input_tokens is not None:
                    state.input_tokens = input_tokens
        elif kind == "message_stop":
            state.finished = True
        return ""


def _object(provider: str, value: Any) -> dict[str, Any]:
    """A part of an event that must be an object."""
    if not isinstance(value, dict):
        raise MalformedAnswer(provider)
    return value

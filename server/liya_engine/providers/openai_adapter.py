"""OpenAI chat completions through the official SDK (``openai.AsyncOpenAI``)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai

from liya_engine.errors import MalformedAnswer
from liya_engine.providers import answer_checks as check
from liya_engine.providers.base import Credentials, ProviderRequest, ProviderResult
from liya_engine.providers.sdk_clients import NO_TENANT_KEY, PooledAdapter, StreamState

_FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


def normalise_openai_finish(reason: str | None) -> str:
    """OpenAI/Azure finish_reason as ``stop``/``length``/``content_filter``.

    Tool and function calls are not requested by this service; if a model ends
    that way anyway, the turn did end normally, so it reads as ``stop``.
    """
    return _FINISH_REASONS.get(reason or "stop", "stop")


def chat_messages(request: ProviderRequest) -> list[dict[str, str]]:
    """The request's messages in the chat completions wire format."""
    return [{"role": m.role, "content": m.content} for m in request.messages]


class OpenAIAdapter(PooledAdapter[openai.AsyncOpenAI]):
    """``ProviderAdapter`` for OpenAI.

    ``OpenAIAdapter(max_clients=1024, http_client=None, connect_timeout=10.0)``;
    ``creds.base_url`` is the OpenAI base URL from settings (``…/v1``).
    """

    name = "openai"

    def _new_client(
        self, base_url: str, api_version: str | None, http_client: httpx2.AsyncClient
    ) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            api_key=NO_TENANT_KEY,
            base_url=base_url,
            max_retries=0,
            http_client=http_client,
        )
        _forget_ambient_account(client)
        return client

    def _token_limit(self, creds: Credentials, request: ProviderRequest) -> dict[str, int]:
        # max_tokens is refused by reasoning models; max_completion_tokens is
        # accepted by every current chat model.
        return {"max_completion_tokens": request.max_tokens}

    def _stream_options(self, creds: Credentials) -> dict[str, Any] | None:
        return {"include_usage": True}

    def _params(self, creds: Credentials, request: ProviderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": chat_messages(request),
            "timeout": self._sdk_timeout(request),
            "extra_headers": self.key_headers(creds),
            **self._token_limit(creds, request),
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    async def _create(
        self, client: openai.AsyncOpenAI, creds: Credentials, request: ProviderRequest
    ) -> Any:
        # The SDK's low-level post: same auth, URL (Azure maps it to the
        # deployment), timeout and error classes as chat.completions.create,
        # without its typed request transform and response models, which cost
        # about a third of the SDK's CPU per call on this path.
        params = self._params(creds, request)
        options = {"timeout": params.pop("timeout"), "headers": params.pop("extra_headers")}
        response = await client.post(
            "/chat/completions",
            body=params,
            cast_to=httpx2.Response,
            options=options,
        )
        with check.reading(self.name):
            return json.loads(response.content)

    def _to_result(self, raw: Any, request: ProviderRequest) -> ProviderResult:
        name = self.name
        with check.reading(name):
            body = check.mapping(name, raw)
            choices = body["choices"]
            if not isinstance(choices, list) or not choices:
                raise MalformedAnswer(name)
            choice = check.mapping(name, choices[0])
            usage = check.mapping(name, body.get("usage"))
            return ProviderResult(
                text=check.answer_text(name, check.mapping(name, choice["message"]).get("content")),
                finish_reason=normalise_openai_finish(
                    check.name(name, choice.get("finish_reason"))
                ),
                input_tokens=check.token_count(name, usage.get("prompt_tokens")) or 0,
                output_tokens=check.token_count(name, usage.get("completion_tokens")) or 0,
                model=check.name(name, body.get("model")) or request.model,
            )

    async def _open_stream(
        self, client: openai.AsyncOpenAI, creds: Credentials, request: ProviderRequest
    ) -> Any:
        # The SDK's low-level post, as in ``_create``, and its own stream class
        # (SSE decoding, errors sent inside the stream, timeouts) with chunks
        # left as the decoded JSON (``object``): a typed chunk built per event
        # was a quarter of the server's CPU per relayed chunk.
        params = self._params(creds, request)
        options = {"timeout": params.pop("timeout"), "headers": params.pop("extra_headers")}
        params["stream"] = True
        stream_options = self._stream_options(creds)
        if stream_options is not None:
            params["stream_options"] = stream_options
        return await client.post(
            "/chat/completions",
            body=params,
            cast_to=object,
            options=options,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )

    def _on_event(self, state: StreamState, event: Any) -> str:
        # ``event`` is one chunk as decoded JSON; every value is checked here.
        name = self.name
        if not isinstance(event, dict):  # not an object (``data: null``, a number)
            raise MalformedAnswer(name)
        model = check.name(name, event.get("model"))
        if model:
            state.model = model
        usage = event.get("usage")
        if usage is not None:
            usage = check.mapping(name, usage)
            state.input_tokens = check.token_count(name, usage["prompt_tokens"])
            state.output_tokens = check.token_count(name, usage["completion_tokens"])
        choices = event.get("choices")
        if choices is None:
            return ""
        if not isinstance(choices, list):
            raise MalformedAnswer(name)
        text = ""
        for choice in choices:
            choice = check.mapping(name, choice)  # None: {}, then no delta: malformed
            finish = check.name(name, choice.get("finish_reason"))
            if finish:
                state.finish_reason = normalise_openai_finish(finish)
                state.finished = True
            delta = choice["delta"]
            if delta is not None:
                text += check.answer_text(name, check.mapping(name, delta).get("content"))
        return text


def _forget_ambient_account(client: openai.AsyncOpenAI) -> None:
    # The SDK fills these from OPENAI_ORG_ID/OPENAI_PROJECT_ID/OPENAI_ADMIN_KEY;
    # the platform's own account must never travel with a tenant's key.
    client.organization = None
    client.project = None
    client.admin_api_key = None

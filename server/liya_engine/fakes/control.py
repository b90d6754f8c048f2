"""The fake providers' control routes: how a test or a person steers the fake.

    POST /_control/fail      {"provider": "openai"|"anthropic"|"azure"|"all",
                              "kind": ..., "times": 1 | null, ...options}
    POST /_control/reset
    POST /_control/keys      {"provider": ..., "keys": [...] | null}
    POST /_control/models    {"provider": ..., "models": [...] | null}
    POST /_control/deployments {"deployments": {"prod-chat": "gpt-4o-2024-08-06"} | null}
    GET  /_control/requests  [?provider=...]
    GET  /_control/health

The kinds and their options are ``failures.FAILURE_KINDS``'; the ``malformed``
kind's ``shape`` is one of ``malformed.SHAPES``. A body the fake
cannot act on (none, not JSON, a missing or unknown kind) gets a 400 whose
JSON names the problem and lists the kinds and providers.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from liya_engine.fakes.failures import FAILURE_KINDS, parse_fail_request
from liya_engine.fakes.malformed import SHAPES

if TYPE_CHECKING:
    from liya_engine.fakes.server import FakeProviders

PROVIDER_CHOICES: tuple[str, ...] = ("openai", "anthropic", "azure", "all")


def add_routes(app: web.Application, fake: FakeProviders) -> None:
    """Route ``/_control/*`` of ``app`` to ``fake``."""

    def bound(handler):
        return functools.partial(handler, fake)

    app.router.add_post("/_control/fail", bound(_fail))
    app.router.add_post("/_control/reset", bound(_reset))
    app.router.add_post("/_control/keys", bound(_keys))
    app.router.add_post("/_control/models", bound(_models))
    app.router.add_post("/_control/deployments", bound(_deployments))
    app.router.add_get("/_control/requests", bound(_requests))
    app.router.add_get("/_control/health", bound(_health))


async def _fail(fake: FakeProviders, request: web.Request) -> web.Response:
    try:
        provider, kind, times, opts = parse_fail_request(await _json_object(request))
        fake.fail(provider, kind, times, **opts)
    except ValueError as exc:
        return _refused(str(exc))
    return web.json_response({"ok": True})


async def _reset(fake: FakeProviders, request: web.Request) -> web.Response:
    fake.reset()
    return web.json_response({"ok": True})


async def _keys(fake: FakeProviders, request: web.Request) -> web.Response:
    return await _set_names(request, "keys", fake.set_keys)


async def _models(fake: FakeProviders, request: web.Request) -> web.Response:
    return await _set_names(request, "models", fake.set_models)


async def _deployments(fake: FakeProviders, request: web.Request) -> web.Response:
    """``{"deployments": {name: model} | null}``: what each Azure deployment runs."""
    try:
        value = (await _json_object(request)).get("deployments")
        if value is not None and not (
            isinstance(value, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise ValueError("deployments must be an object of deployment -> model names, or null")
    except ValueError as exc:
        return _refused(str(exc))
    fake.set_deployments(value)
    return web.json_response({"ok": True})


async def _set_names(request: web.Request, field: str, setter) -> web.Response:
    """``{"provider": ..., field: [names]}``: what a provider accepts from now on."""
    try:
        payload = await _json_object(request)
        setter(payload.get("provider", "all"), _names(payload, field))
    except ValueError as exc:
        return _refused(str(exc))
    return web.json_response({"ok": True})


async def _requests(fake: FakeProviders, request: web.Request) -> web.Response:
    provider = request.query.get("provider")
    chosen = fake.requests_for(provider) if provider else fake.requests
    return web.json_response([r.to_json() for r in chosen])


async def _health(fake: FakeProviders, request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object; ``ValueError`` saying what is wrong."""
    raw = await request.text()
    if not raw.strip():
        raise ValueError("the body is empty: send a JSON object")
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    return payload


def _names(payload: dict[str, Any], field: str) -> list[str] | None:
    value = payload.get(field)
    if value is not None and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"{field} must be a list of strings or null")
    return value


def _refused(error: str) -> web.Response:
    """400 for a control request the fake cannot act on, with what it accepts."""
    return web.json_response(
        {
            "error": error,
            "kinds": list(FAILURE_KINDS),
            "providers": list(PROVIDER_CHOICES),
            "malformed_shapes": list(SHAPES),
        },
        status=400,
    )

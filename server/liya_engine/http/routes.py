"""The HTTP routes of the served methods, read from their ``google.api.http``
annotations: the protos are the one list of routes.

Each method of a served service that carries an ``HttpRule`` becomes a
``Route``. Path templates may hold literal segments, a custom verb
(``/dashboard/account/config:verify``) and single-segment variables
(``{name}``, bound to the request field of that name); anything richer
(``{name=**}``, ``additional_bindings``) is refused at start, so a route is
never served differently from what its annotation says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor

_VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    """One annotated method: its HTTP method and path, how the request is sent."""

    http_method: str  # GET, POST, PATCH, ...
    template: str  # the annotation's path template (aiohttp's router reads it as is)
    method: str  # the gRPC method path, /liya.engine.v1.InferenceService/CompleteStream
    input_type: Descriptor
    body: str  # "*" (the whole request), "" (none: query parameters), or a field
    path_fields: tuple[str, ...]  # request fields bound by path variables
    server_streaming: bool


class UnsupportedRule(ValueError):
    """An annotation this surface cannot serve as written."""


def route_of(method: MethodDescriptor) -> Route | None:
    """The route of ``method``, or None when it has no ``google.api.http`` rule."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    name = f"/{method.containing_service.full_name}/{method.name}"
    if rule.additional_bindings:
        raise UnsupportedRule(f"{name}: additional_bindings are not served")
    pattern = rule.WhichOneof("pattern")
    if pattern not in _VERBS:
        raise UnsupportedRule(f"{name}: the {pattern!r} pattern is not served")
    template = getattr(rule, pattern)
    path_fields = tuple(_VARIABLE.findall(template))
    leftover = _VARIABLE.sub("", template)
    if "{" in leftover or "}" in leftover or "*" in leftover:
        raise UnsupportedRule(f"{name}: only {{field}} path variables are served: {template}")
    for field in (*path_fields, *([rule.body] if rule.body not in ("", "*") else [])):
        if field not in method.input_type.fields_by_name:
            raise UnsupportedRule(f"{name}: {field!r} is not a field of the request")
    if rule.body not in ("", "*"):
        body_field = method.input_type.fields_by_name[rule.body]
        if body_field.message_type is None or body_field.is_repeated:
            raise UnsupportedRule(f"{name}: body {rule.body!r} must be a singular message field")
    return Route(
        http_method=pattern.upper(),
        template=template,
        method=name,
        input_type=method.input_type,
        body=rule.body,
        path_fields=path_fields,
        server_streaming=method.server_streaming,
    )


def route_for(method: str) -> Route | None:
    """The route of the served method ``method`` (``/package.Service/Method``),
    read from protobuf's default pool, where the generated modules put it."""
    service, _, name = method.lstrip("/").rpartition("/")
    return route_of(descriptor_pool.Default().FindMethodByName(f"{service}.{name}"))


def check_unique(routes: Iterable[Route]) -> None:
    """Refuse two methods annotated with the same HTTP method and path."""
    seen: dict[tuple[str, str], str] = {}
    for route in routes:
        key = (route.http_method, route.template)
        if key in seen:
            raise UnsupportedRule(
                f"{route.method} and {seen[key]} both claim {route.http_method} {route.template}"
            )
        seen[key] = route.method

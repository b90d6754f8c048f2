"""HTTP requests into request messages, messages and statuses into JSON.

Bodies and query parameters are protobuf JSON (``google.protobuf.json_format``,
which accepts both ``provider_config`` and ``providerConfig``); a field the
request message does not have is an ``InvalidRequest`` naming it, never
dropped. Answers are canonical protobuf JSON (lowerCamelCase names, as every
protobuf JSON parser reads them). Errors are the AIP-193 body built from the
same ``google.rpc.Status`` the gRPC surface sends, with the HTTP status of
``google.rpc.Code``'s documented mapping.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from liya_engine import errors
from liya_engine.http.routes import Route
from liya_engine.redact import safe_to_echo, scrub

#: ``google.rpc.Code`` -> HTTP status, as ``google/rpc/code.proto`` documents it.
HTTP_STATUS = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}

_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]*)" at "([^"]*)"')
_AT_PATH = re.compile(r" at ([A-Za-z_][\w.]*?)\.?$")
_PARSING = re.compile(r"Failed to parse (\S+) field")
_TIMEOUT = re.compile(r"^\d{1,9}(?:\.\d{1,9})?$")

#: Header with the caller's deadline in seconds (Google's JSON APIs use it too).
TIMEOUT_HEADER = "X-Server-Timeout"


@dataclass(slots=True)
class HttpRequest:
    """What the HTTP layer read from a request, decoded inside the call guard
    so that a bad request is counted, logged and answered like any error."""

    body: bytes | None  # None: larger than the limit
    query: Iterable[tuple[str, str]] = ()
    path_params: dict[str, str] = field(default_factory=dict)
    timeout: str | None = None  # the X-Server-Timeout header as sent


def deadline_seconds(raw: str | None) -> float | None:
    """The X-Server-Timeout value in seconds; None when absent or malformed
    (a malformed one is reported by the request's decoder)."""
    if raw is None or not _TIMEOUT.fullmatch(raw.strip()):
        return None
    return float(raw)


def decoder(route: Route, max_bytes: int) -> Callable[[HttpRequest], Message]:
    """The function that turns an ``HttpRequest`` for ``route`` into its request
    message, or raises ``InvalidRequest`` saying which field is wrong."""
    cls = message_factory.GetMessageClass(route.input_type)

    def decode(http: HttpRequest) -> Message:
        if http.timeout is not None and deadline_seconds(http.timeout) is None:
            raise _invalid(TIMEOUT_HEADER, "a number of seconds, such as 30 or 2.5")
        if http.body is None:
            raise _invalid(
                "body", f"larger than {max_bytes} bytes (LIYA_MAX_RECEIVE_MESSAGE_BYTES)"
            )
        message = cls()
        query = list(http.query)
        if route.body == "*":
            if query:
                raise _invalid(
                    _echo(query[0][0]),
                    "query parameters are not read here: send every field in the JSON body",
                )
            _parse_body(http.body, message)
        else:
            if http.body.strip() and not route.body:
                raise _invalid("body", f"{route.http_method} {route.template} takes no body")
            _parse_dict(_query_dict(query, route.input_type), message)
            if route.body:  # the body is that one (message) field of the request
                _parse_body(http.body, getattr(message, route.body))
        for name in route.path_fields:
            _parse_dict({name: http.path_params[name]}, message)
        return message

    return decode


def _parse_body(body: bytes, message: Message) -> None:
    if not body.strip():
        return  # no body: the empty request, as gRPC's empty message
    try:
        json_format.Parse(body, message)
    except json_format.ParseError as exc:
        raise _from_parse_error(str(exc)) from None
    except UnicodeDecodeError:
        raise _invalid("body", "not UTF-8 text") from None


def _parse_dict(values: dict[str, Any], message: Message) -> None:
    try:
        json_format.ParseDict(values, message)
    except json_format.ParseError as exc:
        raise _from_parse_error(str(exc)) from None


def _query_dict(query: list[tuple[str, str]], descriptor: Descriptor) -> dict[str, Any]:
    """Query parameters as the JSON object they stand for: ``a.b=1`` sets
    field ``b`` of message field ``a``; a repeated field takes every value."""
    out: dict[str, Any] = {}
    for key, value in query:
        node, message = out, descriptor
        parts = key.split(".")
        for i, part in enumerate(parts):
            found = _field(message, part)
            if found is None:
                raise _invalid(_echo(".".join(parts[: i + 1])), "unknown field")
            last = i == len(parts) - 1
            if last:
                _set_leaf(node, found, part, value, key)
            elif found.message_type is None or _is_repeated(found):
                raise _invalid(_echo(key), "not a field that query parameters can reach")
            else:
                node = node.setdefault(part, {})
                message = found.message_type
    return out


def _set_leaf(node: dict, found: FieldDescriptor, part: str, value: str, key: str) -> None:
    if found.message_type is not None and found.message_type.GetOptions().map_entry:
        raise _invalid(_echo(key), "map fields cannot be set by query parameters")
    parsed: Any = value
    if found.type == FieldDescriptor.TYPE_BOOL:
        parsed = {"true": True, "false": False}.get(value, value)
    if _is_repeated(found):
        node.setdefault(part, []).append(parsed)
    else:
        node[part] = parsed


def _is_repeated(found: FieldDescriptor) -> bool:
    return found.is_repeated


def _field(message: Descriptor, name: str) -> FieldDescriptor | None:
    found = message.fields_by_name.get(name)
    if found is None:
        found = next((f for f in message.fields if f.json_name == name), None)
    return found


def _from_parse_error(text: str) -> errors.InvalidRequest:
    """``InvalidRequest`` for a json_format error: the field it names and what
    is wrong, never the value (it may be a key pasted into the wrong field)."""
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown:
        where = unknown.group(2).partition(".")[2]
        path = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
        return _invalid(
            _echo(path),
            "unknown field (the request has no such field; names are accepted as "
            "in the protos, provider_config, or in lowerCamelCase, providerConfig)",
        )
    if text.startswith("Failed to load JSON"):
        return _invalid("body", "not valid JSON")
    at = _AT_PATH.search(text.splitlines()[0])
    if at:
        path = at.group(1).partition(".")[2]
    else:
        path = ".".join(_PARSING.findall(text))
    return _invalid(_echo(path) if path else "body", "not a valid value for this field's type")


def _echo(path: str) -> str:
    return path if safe_to_echo(path, _FIELD_PATH) else "(a field whose name is not shown)"


def _invalid(path: str, description: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(
        f"invalid request: {path}: {description}", [errors.FieldViolation(path, description)]
    )


# -- answers ---------------------------------------------------------------------


def to_json(message: Message) -> str:
    """A message as one line of canonical protobuf JSON."""
    return json_format.MessageToJson(message, indent=None)


def status_of(code: int, details: str | None, trailing: Iterable[tuple[str, Any]]) -> Any:
    """The ``google.rpc.Status`` an aborted call carries in its trailing metadata."""
    for key, value in trailing:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=code, message=scrub(details or ""))


def error_body(status: Any) -> dict[str, Any]:
    """The AIP-193 body: ``code`` is the HTTP status, ``status`` the code's name,
    ``details`` the status details as protobuf JSON with ``@type``."""
    return {
        "error": {
            "code": HTTP_STATUS.get(status.code, 500),
            "message": status.message,
            "status": code_pb2.Code.Name(status.code),
            "details": [json_format.MessageToDict(detail) for detail in status.details],
        }
    }


def error_json(status: Any, http_status: int | None = None) -> str:
    """``error_body`` as compact JSON; ``http_status`` overrides the mapped
    status where the HTTP layer answers with its own (405)."""
    body = error_body(status)
    if http_status is not None:
        body["error"]["code"] = http_status
    return json.dumps(body, separators=(",", ":"))


def retry_after(status: Any) -> str | None:
    """RetryInfo's delay as a ``Retry-After`` value: whole seconds, rounded up."""
    detail: any_pb2.Any
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            return str(math.ceil(delay))
    return None

"""Routes come from the google.api.http annotations alone: any annotated
method registered with the call guard is served, with path variables bound
to request fields; annotations the surface cannot serve as written stop the
start. The services here are built at test time, so nothing but the
annotation can have told the router about them (as for a new RPC such as
UsageService/ListDailyUsage)."""

from __future__ import annotations

import itertools
import json

import aiohttp
import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2 as d
from google.protobuf import descriptor_pool, message_factory

from helpers import JWT_SECRET, token
from liya_engine.api.calls import CallGuard, current_call
from liya_engine.http import transcode
from liya_engine.http.routes import UnsupportedRule, check_unique, route_for
from liya_engine.http.server import HttpSurface
from liya_engine.identity import TokenVerifier
from liya_engine.metrics import Metrics
from liya_engine.settings import Settings

_files = itertools.count()
STRING, MESSAGE = d.FieldDescriptorProto.TYPE_STRING, d.FieldDescriptorProto.TYPE_MESSAGE
OPTIONAL = d.FieldDescriptorProto.LABEL_OPTIONAL


def service(**rules: dict) -> str:
    """A service in protobuf's default pool with one method per rule
    (``HttpRule`` fields as a dict); returns its package."""
    package = f"liyatest.routes{next(_files)}.v1"
    f = d.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/test.proto",
        package=package,
        dependency=["google/api/annotations.proto"],
        syntax="proto3",
    )
    inner = f.message_type.add(name="Filter")
    inner.field.add(name="tag", number=1, type=STRING, label=OPTIONAL)
    req = f.message_type.add(name="Req")
    req.field.add(name="day", number=1, type=STRING, label=OPTIONAL)
    req.field.add(name="note", number=2, type=STRING, label=OPTIONAL)
    req.field.add(
        name="filter", number=3, type=MESSAGE, label=OPTIONAL, type_name=f".{package}.Filter"
    )
    f.message_type.add(name="Resp").field.add(name="echo", number=1, type=STRING, label=OPTIONAL)
    svc = f.service.add(name="Svc")
    for name, rule in rules.items():
        method = svc.method.add(
            name=name, input_type=f".{package}.Req", output_type=f".{package}.Resp"
        )
        if not rule:
            continue  # no annotation: no route
        http = method.options.Extensions[annotations_pb2.http]
        for key, value in rule.items():
            if key == "additional_bindings":
                http.additional_bindings.add(get=value)
            else:
                setattr(http, key, value)
    descriptor_pool.Default().AddSerializedFile(f.SerializeToString())
    return package


def test_a_path_variable_binds_its_field_and_the_rest_comes_from_the_query():
    package = service(Get={"get": "/days/{day}"})
    route = route_for(f"/{package}.Svc/Get")
    assert (route.http_method, route.template, route.path_fields) == (
        "GET",
        "/days/{day}",
        ("day",),
    )
    decode = transcode.decoder(route, 1024)
    request = decode(
        transcode.HttpRequest(b"", [("note", "n1"), ("filter.tag", "t1")], {"day": "2026-12-01"})
    )
    assert (request.day, request.note, request.filter.tag) == ("2026-12-01", "n1", "t1")


def test_a_body_naming_one_field_fills_that_field():
    package = service(Put={"put": "/days/{day}/filter", "body": "filter"})
    decode = transcode.decoder(route_for(f"/{package}.Svc/Put"), 1024)
    request = decode(transcode.HttpRequest(b'{"tag": "t2"}', [("note", "n2")], {"day": "d"}))
    assert (request.day, request.note, request.filter.tag) == ("d", "n2", "t2")


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"get": "/days/{day=**}"}, "only {field} path variables"),
        ({"get": "/days/{nope}"}, "'nope' is not a field of the request"),
        ({"post": "/days", "body": "note"}, "must be a singular message field"),
        ({"get": "/a", "additional_bindings": "/b"}, "additional_bindings"),
    ],
)
def test_annotations_it_cannot_serve_as_written_stop_the_start(rule, says):
    package = service(Bad=rule)
    with pytest.raises(UnsupportedRule, match="Bad: ") as raised:
        route_for(f"/{package}.Svc/Bad")
    assert says in str(raised.value)


def test_two_methods_on_one_route_stop_the_start():
    package = service(One={"get": "/same"}, Two={"get": "/same"})
    routes = [route_for(f"/{package}.Svc/One"), route_for(f"/{package}.Svc/Two")]
    with pytest.raises(UnsupportedRule, match="both claim GET /same"):
        check_unique(routes)


async def test_a_new_annotated_service_is_served_through_the_guard_with_no_other_change():
    package = service(ListDaily={"get": "/dashboard/account/usage-test/{day}"}, NoRoute={})
    pool = descriptor_pool.Default()
    req_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Req"))
    resp_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Resp"))

    class Servicer:
        async def ListDaily(self, request, context):
            tenant = current_call().identity.tenant_id
            return resp_cls(echo=f"{tenant} {request.day} {request.note}")

        async def NoRoute(self, request, context):
            return resp_cls()

    def add_to_server(servicer, server) -> None:  # as a generated add_*_to_server does
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, name),
                request_deserializer=req_cls.FromString,
                response_serializer=resp_cls.SerializeToString,
            )
            for name in ("ListDaily", "NoRoute")
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(f"{package}.Svc", handlers),)
        )
        server.add_registered_method_handlers(f"{package}.Svc", handlers)

    settings = Settings.from_env({"LIYA_JWT_HS256_SECRET": JWT_SECRET})
    guard = CallGuard(TokenVerifier(settings), Metrics())
    grpc_server = grpc.aio.server()
    guard.register(add_to_server, Servicer(), grpc_server)
    surface = HttpSurface(guard, max_bytes=1024, shutdown_grace=1)
    assert [(r.method, r.template) for r in surface.routes] == [
        (f"/{package}.Svc/ListDaily", "/dashboard/account/usage-test/{day}")
    ]
    port = await surface.start("127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"http://127.0.0.1:{port}/dashboard/account/usage-test/2026-12-01?note=hi",
                headers={"Authorization": f"Bearer {token('acme')}"},
            ) as r:
                assert r.status == 200
                assert json.loads(await r.text()) == {"echo": "acme 2026-12-01 hi"}
            async with session.get(
                f"http://127.0.0.1:{port}/dashboard/account/usage-test/2026-12-01"
            ) as r:
                assert r.status == 401
    finally:
        await surface.stop()
        await grpc_server.stop(0)

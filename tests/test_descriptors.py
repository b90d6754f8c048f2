"""`make descriptors` is all a caller in another language needs: the
descriptor set holds every API file with its imports, the error detail
messages and the comments, and a process with none of our generated code
calls the real server from it with dynamic messages. The file options for
other languages are pinned here (buf breaking leaves them to this test)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from guide_bodies import BODIES
from helpers import token

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "server" / "liya_engine" / "data" / "liya-engine.binpb"

FILE_OPTIONS = {
    "csharp_namespace": "Liya.Engine.V1",
    "go_package": "liyaengine.ai/go/liya/engine/v1;enginev1",
    "java_multiple_files": True,
    "java_package": "ai.liyaengine.engine.v1",
    "objc_class_prefix": "LEX",
    "php_namespace": "Liya\\Engine\\V1",
    "ruby_package": "Liya::Engine::V1",
}


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory) -> Path:
    """What `make descriptors` writes (the same command, to a fresh path)."""
    out = tmp_path_factory.mktemp("descriptors") / "liya-engine.binpb"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_polyglot.py"), "--descriptor-set", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def files_of(path: Path) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    return {f.name: f for f in fds.file}


def api_files() -> set[str]:
    protos = ROOT / "protos"
    return {
        p.relative_to(protos).as_posix()
        for p in protos.rglob("*.proto")
        if "baseline" not in p.relative_to(protos).parts
    }


def test_the_set_holds_every_file_its_imports_and_the_error_details(descriptor_set):
    files = files_of(descriptor_set)
    assert api_files() <= set(files)
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= set(files)
    for proto in files.values():  # imports included: the set is closed
        assert set(proto.dependency) <= set(files), proto.name
    # The server's packaged copy (reflection) is the same artifact.
    assert PACKAGED.read_bytes() == descriptor_set.read_bytes()


def test_comments_are_in_the_source_info(descriptor_set):
    config = files_of(descriptor_set)["liya/engine/v1/config_service.proto"]
    service = next(i for i, s in enumerate(config.service) if s.name == "ConfigService")
    method = next(
        i for i, m in enumerate(config.service[service].method) if m.name == "UpdateConfig"
    )
    # path: service = 6, method = 2 (FileDescriptorProto / ServiceDescriptorProto numbers)
    by_path = {tuple(loc.path): loc for loc in config.source_code_info.location}
    assert "Applies a partial update (PATCH semantics)" in (
        by_path[(6, service, 2, method)].leading_comments
    )
    reasons = files_of(descriptor_set)["liya/engine/v1/error_reason.proto"]
    enum_locations = {tuple(loc.path): loc for loc in reasons.source_code_info.location}
    for index, value in enumerate(reasons.enum_type[0].value):
        if value.number == 0:
            continue
        doc = enum_locations[(5, 0, 2, index)].leading_comments
        # Each reason says its code, when it happens, what to do, its metadata.
        assert "gRPC code: " in doc, value.name
        assert "What to do:" in doc, value.name
        assert "Metadata:" in doc, value.name


def test_every_api_file_sets_the_options_of_each_language(descriptor_set):
    for name, proto in files_of(descriptor_set).items():
        if not name.startswith("liya/"):
            continue
        options = {f.name: v for f, v in proto.options.ListFields()}
        stem = Path(name).stem.title().replace("_", "")
        assert options == {**FILE_OPTIONS, "java_outer_classname": f"{stem}Proto"}, name


# Runs in a fresh interpreter that never imports the generated modules: only
# protobuf, grpc and the descriptor set.
DYNAMIC_CALLER = r"""
import json, sys
import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

path, target, token, body = sys.argv[1:5]
pool = descriptor_pool.DescriptorPool()
for proto in descriptor_pb2.FileDescriptorSet.FromString(open(path, "rb").read()).file:
    pool.Add(proto)

def message(name):
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

def call(channel, service, method, request_json):
    desc = pool.FindServiceByName(service).methods_by_name[method]
    request = json_format.Parse(request_json, message(desc.input_type.full_name)())
    stub = channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=message(desc.output_type.full_name).FromString,
    )
    return stub(request, metadata=[("authorization", "Bearer " + token)], timeout=20)

out = {}
with grpc.insecure_channel(target) as channel:
    reply = call(channel, "liya.engine.v1.ConfigService", "UpdateConfig", body)
    out["updated"] = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    try:
        call(channel, "liya.engine.v1.InferenceService", "Complete",
             '{"intent": "general_chat", "messages": [{"role": "user", "content": "hi"}]}')
    except grpc.RpcError as err:
        raw = dict(err.trailing_metadata())["grpc-status-details-bin"]
        status = message("google.rpc.Status").FromString(raw)
        out["code"] = status.code
        for detail in status.details:
            name = detail.type_url.rsplit("/", 1)[1]
            out.setdefault("details", {})[name] = json_format.MessageToDict(
                message(name).FromString(detail.value))
    reasons = pool.FindEnumTypeByName("liya.engine.v1.ErrorReason")
    out["reasons"] = [v.name for v in reasons.values]
out["imported_ours"] = sorted(m for m in sys.modules if m.startswith(("liya", "liya_engine")))
print(json.dumps(out))
"""


async def test_a_caller_with_only_the_descriptor_set_calls_the_server(servers, descriptor_set):
    running, _ = await servers.start()
    body = BODIES["model_config"]  # mixed-case, parsed by protobuf JSON
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DYNAMIC_CALLER,
        str(descriptor_set),
        f"127.0.0.1:{running.port}",
        token("polyglot", sub="dyn@example"),
        body,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",  # nothing of the repository on sys.path
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["imported_ours"] == []
    model_config = result["updated"]["config"]["model_config"]
    assert model_config["strategy"] == "cost-optimised"
    assert model_config["cost_limit_usd_per_request"] == 0.05
    # Nothing configured for providers (the default managed mode has no
    # platform credentials here): the error reads with the set's own types.
    assert result["code"] == 9  # FAILED_PRECONDITION
    info = result["details"]["google.rpc.ErrorInfo"]
    assert info["reason"] == "BYOK_NOT_CONFIGURED"
    assert info["domain"] == "liyaengine.ai"
    assert info["reason"] in result["reasons"]

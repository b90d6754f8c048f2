"""Bad requests with very many mistakes answer INVALID_ARGUMENT that every
client can read with gRPC's default limits (8 KiB of metadata): at most 20
field violations, the last saying how many more there were. Each mistake
names a long field (200 characters), as a hostile or buggy caller would."""

from __future__ import annotations

import re

import grpc
import pytest
from google.protobuf import field_mask_pb2

import liya_engine_client as lc
from helpers import auth, details_of, token
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import config_service_pb2_grpc, inference_service_pb2_grpc
from liya.engine.v1 import inference_service_pb2 as ipb

TENANT = "many-mistakes"


def unknown_intents(n: int = 60) -> cpb.UpdateConfigRequest:
    request = cpb.UpdateConfigRequest()
    for i in range(n):
        request.model_config.overrides[f"no_such_intent_{i:03d}_" + "x" * 200] = "gpt-4o"
    return request


def bad_messages(n: int = 256) -> ipb.CompleteRequest:
    return ipb.CompleteRequest(
        intent="general_chat",
        messages=[ipb.ChatMessage(role=f"narrator_{i}_" + "r" * 200, content="") for i in range(n)],
    )


def unknown_paths(n: int = 1000) -> cpb.UpdateConfigRequest:
    paths = [f"provider_config.no_such_field_{i:04d}_" + "p" * 200 for i in range(n)]
    return cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(mode="byok"),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


CASES = {
    "unknown_intents": ("UpdateConfig", unknown_intents, 60, "INVALID_CONFIG"),
    "bad_messages": ("Complete", bad_messages, 256, "INVALID_REQUEST"),
    "unknown_paths": ("UpdateConfig", unknown_paths, 1000, "INVALID_CONFIG"),
}


def _assert_capped(violations: list[tuple[str, str]], made: int) -> None:
    assert 1 <= len(violations) <= 20
    if made > len(violations):
        assert len(violations) == 20
        hidden = re.search(r"\(\.\.\. and (\d+) more violations? not shown\)$", violations[-1][1])
        assert hidden, violations[-1]
        assert int(hidden.group(1)) >= 1


@pytest.mark.parametrize("case", list(CASES))
async def test_a_raw_channel_with_default_limits_reads_the_error(servers, case):
    running, _ = await servers.start()
    method, build, made, reason = CASES[case]
    # No channel options at all: gRPC's defaults, as any language's plain stub has them.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = (
            inference_service_pb2_grpc.InferenceServiceStub(channel)
            if method == "Complete"
            else config_service_pb2_grpc.ConfigServiceStub(channel)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, method)(build(), metadata=auth(TENANT), timeout=10)
    d = details_of(caught.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    _assert_capped(d.violations, made)


@pytest.mark.parametrize("case", list(CASES))
async def test_the_python_client_reads_the_error(servers, case):
    running, _ = await servers.start()
    method, build, made, reason = CASES[case]
    async with lc.AsyncLiyaClient(
        f"127.0.0.1:{running.port}", token=token(TENANT), default_timeout=10
    ) as client:
        request = build()
        if method == "Complete":
            call = client.complete(request.intent, [(m.role, m.content) for m in request.messages])
        else:
            call = client.update_config(request)
        expected = lc.InvalidRequest if reason == "INVALID_REQUEST" else lc.InvalidConfig
        with pytest.raises(expected) as caught:
            await call
    err = caught.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    _assert_capped([(v.field, v.description) for v in err.violations], made)

"""Every RPC but health and reflection needs a valid bearer JWT; each way of
getting it wrong answers UNAUTHENTICATED with reason INVALID_TOKEN."""

from __future__ import annotations

import base64
import json
import time
import warnings

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import JWT_SECRET, details_of, token
from liya.engine.v1 import config_service_pb2 as cpb


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(**extra) -> dict:
    return {"tenant_id": "acme", "sub": "alice", "exp": int(time.time()) + 600, **extra}


def _hs512_with_the_secret() -> str:
    # The service's own secret under an algorithm it does not accept. PyJWT
    # warns that the test secret is short for HS512; that is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(_claims(), JWT_SECRET, algorithm="HS512")


def _rsa_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem


BAD_HEADERS = {
    "missing": None,
    "wrong scheme": "Basic YWxpY2U6c2VjcmV0",
    "empty bearer": "Bearer ",
    "garbage": "Bearer not-a-jwt",
    "bad signature": "Bearer "
    + jwt.encode(_claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
    "expired": "Bearer "
    + jwt.encode(_claims(exp=int(time.time()) - 3600), JWT_SECRET, algorithm="HS256"),
    "no exp": "Bearer "
    + jwt.encode({"tenant_id": "acme", "sub": "a"}, JWT_SECRET, algorithm="HS256"),
    "alg none": "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".",
    "missing tenant": "Bearer "
    + jwt.encode({"sub": "a", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256"),
    "bad tenant": "Bearer "
    + jwt.encode(_claims(tenant_id="../etc"), JWT_SECRET, algorithm="HS256"),
    "tenant not a string": "Bearer "
    + jwt.encode(_claims(tenant_id=42), JWT_SECRET, algorithm="HS256"),
    "HS512 with the secret": "Bearer " + _hs512_with_the_secret(),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
async def test_bad_tokens_are_unauthenticated(stubs, name):
    header = BAD_HEADERS[name]
    metadata = (("authorization", header),) if header is not None else ()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=metadata)
    d = details_of(err.value)
    assert d.code == grpc.StatusCode.UNAUTHENTICATED, (name, d)
    assert d.reason == "INVALID_TOKEN"
    assert d.error_infos == 1
    assert d.metadata["request_id"]


async def test_each_rpc_needs_a_token(stubs):
    from liya.engine.v1 import inference_service_pb2 as ipb

    calls = [
        stubs.config.UpdateConfig(cpb.UpdateConfigRequest()),
        stubs.config.VerifyConfig(cpb.VerifyConfigRequest()),
        stubs.config.ListAuditEntries(cpb.ListAuditEntriesRequest()),
        stubs.inference.Complete(ipb.CompleteRequest(intent="general_chat")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert details_of(err.value).reason == "INVALID_TOKEN"
    stream = stubs.inference.CompleteStream(ipb.CompleteStreamRequest(intent="general_chat"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stream:
            pass
    assert details_of(err.value).reason == "INVALID_TOKEN"


async def test_health_and_reflection_need_no_token(stubs):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(stubs.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for resp in refl.ServerReflectionInfo(requests()):
        names |= {s.name for s in resp.list_services_response.service}
    assert {
        "liya.engine.v1.ConfigService",
        "liya.engine.v1.InferenceService",
        "grpc.health.v1.Health",
    } <= names


async def test_valid_token_reaches_the_service_with_a_request_id(stubs):
    call = stubs.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(),
        metadata=(("authorization", f"Bearer {token('acme')}"), ("x-request-id", "req-0123456789")),
    )
    reply = await call
    assert reply.config.mode == "managed"
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-request-id"] == "req-0123456789"


async def test_rs256_server_rejects_hs256_token_signed_with_public_key(servers, tmp_path):
    """HS/RS confusion: the public key used as an HMAC secret must not verify."""
    key, pem = _rsa_pair()
    pem_file = tmp_path / "jwt.pem"
    pem_file.write_bytes(pem)
    _, s = await servers.start(
        LIYA_JWT_HS256_SECRET="",
        LIYA_JWT_PUBLIC_KEY_FILE=str(pem_file),
        LIYA_JWT_ALGORITHMS="RS256",
    )
    good = jwt.encode(_claims(), key, algorithm="RS256")
    reply = await s.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(), metadata=(("authorization", f"Bearer {good}"),)
    )
    assert reply.config.mode == "managed"
    header = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(_claims())
    import hashlib
    import hmac

    sig = (
        base64.urlsafe_b64encode(hmac.new(pem, header.encode(), hashlib.sha256).digest())
        .decode()
        .rstrip("=")
    )
    forged = f"{header}.{sig}"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for bad in (forged, jwt.encode(_claims(), ec_key, algorithm="ES256")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.config.GetMaskedConfig(
                cpb.GetMaskedConfigRequest(), metadata=(("authorization", f"Bearer {bad}"),)
            )
        assert details_of(err.value).reason == "INVALID_TOKEN"


async def test_issuer_and_audience_checked_when_configured(servers):
    _, s = await servers.start(
        LIYA_JWT_ISSUER="https://issuer.example", LIYA_JWT_AUDIENCE="liya-engine"
    )
    ok = jwt.encode(
        _claims(iss="https://issuer.example", aud="liya-engine"), JWT_SECRET, algorithm="HS256"
    )
    await s.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(), metadata=(("authorization", f"Bearer {ok}"),)
    )
    for claims, message in (
        (_claims(iss="https://other", aud="liya-engine"), "token issuer is not accepted"),
        (_claims(iss="https://issuer.example", aud="other"), "token audience is not accepted"),
        (_claims(), "token lacks the required claim 'iss'"),
    ):
        bad = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.config.GetMaskedConfig(
                cpb.GetMaskedConfigRequest(), metadata=(("authorization", f"Bearer {bad}"),)
            )
        d = details_of(err.value)
        assert (d.code, d.reason, d.message) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_TOKEN",
            message,
        )


async def test_small_clock_skew_is_tolerated(stubs):
    skewed = jwt.encode(_claims(exp=int(time.time()) - 5), JWT_SECRET, algorithm="HS256")
    reply = await stubs.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(), metadata=(("authorization", f"Bearer {skewed}"),)
    )
    assert reply.config.etag == "v0"


async def test_a_verified_token_stops_working_when_it_expires(servers):
    import asyncio

    _, s = await servers.start(LIYA_JWT_LEEWAY_SECONDS="0")
    short = jwt.encode(_claims(exp=int(time.time()) + 2), JWT_SECRET, algorithm="HS256")
    md = (("authorization", f"Bearer {short}"),)
    await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)
    await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)  # cached
    await asyncio.sleep(2.5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)
    d = details_of(err.value)
    assert (d.reason, d.message) == ("INVALID_TOKEN", "token has expired")


async def test_a_malformed_body_is_invalid_argument_not_unknown(stubs):
    call = stubs.channel.unary_unary(
        "/liya.engine.v1.InferenceService/Complete",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"\x0a\x02\xff\xfe", metadata=(("authorization", f"Bearer {token('acme')}"),))
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")

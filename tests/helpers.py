"""Shared test helpers: settings for a test server, tokens, error details."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import config_service_pb2_grpc, inference_service_pb2_grpc
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.identity import mint_token
from liya_engine.settings import Settings

JWT_SECRET = "test-secret-" + "x" * 40


def head_revision() -> str:
    """The one head of the migration scripts (several heads would raise)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from liya_engine.storage.migrations import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def master_key_line(key_id: str = "test-1") -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def test_env(db_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "LIYA_LISTEN_ADDRESS": "127.0.0.1:0",
        "LIYA_DATABASE_URL": db_url,
        "LIYA_MASTER_KEYS": master_key_line(),
        "LIYA_JWT_HS256_SECRET": JWT_SECRET,
        "LIYA_ALLOW_INSECURE_ENDPOINTS": "true",
        "LIYA_SHUTDOWN_GRACE_SECONDS": "1",
    }
    env.update(overrides)
    return env


test_env.__test__ = False  # a helper, not a test, despite its name


def token(tenant: str, sub: str | None = None, settings: Settings | None = None) -> str:
    settings = settings or Settings.from_env({"LIYA_JWT_HS256_SECRET": JWT_SECRET})
    return mint_token(settings, tenant=tenant, sub=sub)


def auth(tenant: str, sub: str | None = None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token(tenant, sub)}"),)


@dataclass
class Stubs:
    channel: grpc.aio.Channel
    config: config_service_pb2_grpc.ConfigServiceStub
    inference: inference_service_pb2_grpc.InferenceServiceStub


def stubs_for(port: int) -> Stubs:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Stubs(
        channel,
        config_service_pb2_grpc.ConfigServiceStub(channel),
        inference_service_pb2_grpc.InferenceServiceStub(channel),
    )


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    violations: list[tuple[str, str]]
    retry_delay: float | None
    error_infos: int


def details_of(err: grpc.aio.AioRpcError) -> ErrorDetails:
    """Decode the rich status of a failed call."""
    status = rpc_status.from_call(err)
    reason, meta, violations, retry, infos = "", {}, [], None, 0
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, meta = info.reason, dict(info.metadata)
                infos += 1
                assert info.domain == "liyaengine.ai"
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                detail.Unpack(br)
                violations = [(v.field, v.description) for v in br.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                ri = error_details_pb2.RetryInfo()
                detail.Unpack(ri)
                retry = ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
    return ErrorDetails(err.code(), err.details() or "", reason, meta, violations, retry, infos)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(db_url: str, **extra: str) -> dict[str, str]:
    """The environment for ``liya-engine serve`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIYA_")}
    env.update(test_env(db_url))
    env.update(extra)
    return env


async def wait_serving(port: int, proc, timeout: float = 30) -> None:
    """Wait until the server process on ``port`` reports SERVING."""
    import asyncio

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            assert proc.poll() is None if hasattr(proc, "poll") else proc.returncode is None, (
                "server process exited"
            )
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("server did not become SERVING")
            await asyncio.sleep(0.1)


BIN = Path(sys.executable).parent


@contextlib.asynccontextmanager
async def served_process(tmp_path: Path, *args: str, **env: str):
    """``liya-engine serve ARGS`` in its own process on a free port, with a
    SQLite file under ``tmp_path``; yields (process, port, log file)."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    full_env = process_env(
        f"sqlite+aiosqlite:///{tmp_path / 'srv.db'}", LIYA_LISTEN_ADDRESS=f"127.0.0.1:{port}", **env
    )
    with log.open("w") as log_file:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(
            [BIN / "liya-engine", "serve", *args], env=full_env, stderr=log_file
        )
    try:
        await wait_serving(port, proc)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def byok_openai(key: str, model: str = "", etag: str = "") -> cpb.UpdateConfigRequest:
    """An UpdateConfig request that sets an OpenAI key in byok mode."""
    openai = cpb.OpenAIConfig(api_key=key)
    if model:
        openai.default_model = model
    return cpb.UpdateConfigRequest(
        etag=etag, provider_config=cpb.ProviderConfig(mode="byok", openai=openai)
    )


def hello(intent: str = "general_chat", text: str = "hi") -> ipb.CompleteRequest:
    """A one-message completion request."""
    return ipb.CompleteRequest(intent=intent, messages=[ipb.ChatMessage(role="user", content=text)])


def canary_key(prefix: str = "sk-") -> str:
    """A distinctive key to search for in places it must never appear."""
    return prefix + "CANARY" + secrets.token_hex(20)


async def until(
    check: Callable[[], Awaitable[bool]],
    within: float = 10.0,
    message: str = "condition not reached in time",
) -> None:
    """Wait for a condition the server reaches asynchronously (a cancelled
    call's slot coming back after the cancel reaches it)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)

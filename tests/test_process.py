"""The server as operators run it: ``liya-engine serve`` in its own process."""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import weakref
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import (
    BIN,
    auth,
    byok_openai,
    details_of,
    free_port,
    hello,
    process_env,
    served_process,
    stubs_for,
)
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.app import GC_THRESHOLDS, settle_heap
from liya_engine.fakes.providers import bind_refused_port


def _env(tmp_path, **extra) -> dict[str, str]:
    return process_env(f"sqlite+aiosqlite:///{tmp_path / 'srv.db'}", **extra)


def _serve_refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``liya-engine serve`` with settings it should refuse: it exits by itself."""
    return subprocess.run(
        [BIN / "liya-engine", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_to_start_without_a_master_key(tmp_path):
    env = _env(tmp_path, LIYA_MASTER_KEYS="", LIYA_LISTEN_ADDRESS=f"127.0.0.1:{free_port()}")
    proc = _serve_refused(env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "liya-engine: error: no master key: set LIYA_MASTER_KEYS or LIYA_MASTER_KEYS_FILE "
        "(generate one with `liya-engine keys generate`)"
    ]


def test_bad_setting_is_named(tmp_path):
    proc = _serve_refused(_env(tmp_path, LIYA_MASTER_KEYS="k1:not-base64!"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "liya-engine: error: LIYA_MASTER_KEYS: key 'k1' is not valid base64"
    ]


def test_an_unknown_event_loop_is_refused(tmp_path):
    proc = _serve_refused(_env(tmp_path, LIYA_EVENT_LOOP="trio"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "liya-engine: error: LIYA_EVENT_LOOP must be uvloop or asyncio"
    ]


@pytest.mark.parametrize("event_loop", ["", "uvloop", "asyncio"])
async def test_sigterm_drains_in_flight_calls_and_reports_not_serving(tmp_path, fake, event_loop):
    async with served_process(
        tmp_path,
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
        LIYA_SHUTDOWN_GRACE_SECONDS="10",
        LIYA_EVENT_LOOP=event_loop,
    ) as (proc, port, log):
        started = log.read_text()
        assert f"(event loop: {event_loop or 'uvloop'})" in started
        assert "garbage collector: froze" in started
        s = stubs_for(port)
        await s.config.UpdateConfig(byok_openai("sk-" + "a" * 40), metadata=auth("t1"))
        fake.fail("openai", "slow", delay=1.5)
        watch = health_pb2_grpc.HealthStub(s.channel).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        call = asyncio.ensure_future(s.inference.Complete(hello(), metadata=auth("t1")))
        await fake.wait_for(lambda f: len(f.requests) == 1)
        proc.send_signal(signal.SIGTERM)
        update = await watch.read()
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        reply = await call  # the in-flight call finishes normally
        assert reply.message.content
        assert await asyncio.to_thread(proc.wait, 20) == 0
        await s.channel.close()


async def test_unreachable_upstream_is_unavailable_not_unknown(tmp_path):
    refused = bind_refused_port()
    async with served_process(tmp_path, LIYA_OPENAI_BASE_URL=f"http://127.0.0.1:{refused}/v1") as (
        _,
        port,
        log,
    ):
        s = stubs_for(port)
        await s.config.UpdateConfig(byok_openai("sk-" + "b" * 40), metadata=auth("t"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.inference.Complete(hello(), metadata=auth("t"))
        d = details_of(err.value)
        assert d.code == grpc.StatusCode.UNAVAILABLE
        assert d.reason == "BYOK_ENDPOINT_UNREACHABLE"
        await s.channel.close()
    assert "Traceback" not in log.read_text()


async def test_workers_share_the_port_and_stop_together(tmp_path, fake):
    async with served_process(
        tmp_path, "--workers", "2", LIYA_OPENAI_BASE_URL=fake.openai_base_url
    ) as (proc, port, _):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        await asyncio.sleep(1)  # let the second worker bind too
        first = stubs_for(port)
        await first.config.UpdateConfig(byok_openai("sk-" + "w" * 40), metadata=auth("t"))
        await first.channel.close()
        for _ in range(8):  # new connections spread over the workers
            s = stubs_for(port)
            reply = await s.inference.Complete(hello(), metadata=auth("t"))
            assert reply.usage.provider == "openai"
            await s.channel.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        # The parent waits for (reaps) every worker before it exits itself.
        for pid in children:
            assert not Path(f"/proc/{pid}").exists()


async def test_liveness_stays_serving_while_the_database_is_down(servers, postgres_url):
    """Readiness follows the database; liveness does not (restarts would not help)."""
    servers.base_env["LIYA_DATABASE_URL"] = postgres_url
    running, s = await servers.start(LIYA_HEALTH_CHECK_SECONDS="0.1")
    health = health_pb2_grpc.HealthStub(s.channel)

    async def status(name: str) -> int:
        return (await health.Check(health_pb2.HealthCheckRequest(service=name))).status

    assert await status("") == health_pb2.HealthCheckResponse.SERVING
    # Point the server's engine at a port where no database answers.
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    db = running.services.db
    await db.engine.dispose()
    db.engine = create_async_engine(db.engine.url.set(port=bind_refused_port()))
    db._sessions = async_sessionmaker(db.engine, expire_on_commit=False)
    for _ in range(50):
        if await status("") == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.1)
    assert await status("") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert (
        await status("liya.engine.v1.InferenceService")
        == health_pb2.HealthCheckResponse.NOT_SERVING
    )
    assert await status("liveness") == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")


class _Node:
    """A container object that can form a reference cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.me = self


def test_settle_heap_frees_start_up_garbage_and_freezes_what_lives():
    """What settle_heap promises: garbage cycles of start-up are collected, not
    frozen for the life of the process; live start-up objects are frozen (out of
    every later collection); the thresholds are ours."""
    before, was_enabled = gc.get_threshold(), gc.isenabled()
    gc.disable()  # no automatic collection may free the garbage before settle_heap does
    garbage = _Node()
    freed = weakref.ref(garbage)
    del garbage
    kept = _Node()
    try:
        assert freed() is not None  # a cycle: only a collection frees it
        frozen = settle_heap()
        assert freed() is None
        assert all(obj is not kept for obj in gc.get_objects())  # frozen: in no generation
        assert frozen > 10_000  # modules, classes, functions
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        if was_enabled:
            gc.enable()

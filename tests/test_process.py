"""The server as operators run it: ``liya-engine serve`` in its own process."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
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
    canary_key,
    details_of,
    free_port,
    head_revision,
    hello,
    process_env,
    served_process,
    stubs_for,
)
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.app import log_settings_in_effect
from liya_engine.fakes import bind_refused_port
from liya_engine.heap import GC_THRESHOLDS, settle_heap
from liya_engine.settings import Settings


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


# ---------------------------------------------------------------------- logs

_TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) +(?:\[worker (?P<worker>\d+)\] )?"
    r"(?P<logger>\S+) \[req=(?P<request_id>\S+) tenant=(?P<tenant>\S+)\] (?P<msg>.*)$"
)


def _entries(text: str, fmt: str) -> list[dict]:
    """The server's log lines as dicts (level, logger, msg, worker, ...); any
    line in neither format fails the test."""
    entries = []
    for line in text.splitlines():
        if fmt == "json":
            entries.append(json.loads(line))
            continue
        match = _TEXT_LINE.match(line)
        assert match, f"not a log line: {line!r}"
        entry = match.groupdict()
        worker = entry.pop("worker")
        if worker is not None:
            entry["worker"] = int(worker)
        entries.append(entry)
    return entries


def _lines(entries: list[dict]) -> list[tuple]:
    """(level, logger, message) of each entry, the varying numbers normalised."""
    normalised = []
    for e in entries:
        msg = re.sub(r"froze \d+ ", "froze N ", e["msg"])
        msg = re.sub(r"after \d+\.\ds", "after Ts", msg)
        msg = re.sub(r"pid \d+", "pid P", msg)
        normalised.append((e["level"], e["logger"], msg))
    return normalised


async def test_start_up_and_shutdown_say_what_the_process_does(tmp_path, fake):
    async with served_process(
        tmp_path,
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
        LIYA_ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES="true",
        LIYA_SHUTDOWN_DRAIN_SECONDS="0.2",
        LIYA_EVENT_LOOP="asyncio",
    ) as (proc, port, log):
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    entries = _entries(log.read_text(), "text")
    assert all("worker" not in e for e in entries)  # a lone process names no worker
    assert _lines(entries) == [
        (
            "INFO",
            "liya_engine",
            f"database schema at revision {head_revision()} (migrated on start)",
        ),
        ("INFO", "liya_engine", "keyring: 1 master key(s), primary test-1"),
        (
            "INFO",
            "liya_engine",
            f"serving liya.engine.v1 on 127.0.0.1:{port} (event loop: asyncio)",
        ),
        (
            "INFO",
            "liya_engine",
            f"upstream base URLs: OpenAI {fake.openai_base_url}, "
            f"Anthropic {fake.anthropic_base_url}",
        ),
        ("INFO", "liya_engine", f"database: sqlite at sqlite+aiosqlite:///{tmp_path / 'srv.db'}"),
        (
            "WARNING",
            "liya_engine",
            "development setting on: LIYA_ALLOW_INSECURE_ENDPOINTS=true "
            "(Azure endpoints may be loopback http URLs; never in production)",
        ),
        (
            "WARNING",
            "liya_engine",
            "setting on: tenants' Azure endpoints may resolve to private addresses "
            "(LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES=true, for Private Link only)",
        ),
        ("INFO", "liya_engine", "garbage collector: froze N start-up objects"),
        ("INFO", "liya_engine", "shutting down on SIGTERM"),
        (
            "INFO",
            "liya_engine",
            "drain started: 0 call(s) in flight; health NOT_SERVING, serving 0.2s more, "
            "then in-flight calls get up to 1.0s",
        ),
        ("INFO", "liya_engine", "drain finished after Ts (0 call(s) still in flight)"),
        ("INFO", "liya_engine", "stopped"),
    ]


def test_the_database_password_is_masked_in_the_start_up_line(caplog):
    settings = Settings.from_env(
        {"LIYA_DATABASE_URL": "postgresql+asyncpg://liya:Secr3t-pw@db.internal:5432/liya"}
    )
    with caplog.at_level(logging.INFO, logger="liya_engine"):
        log_settings_in_effect(settings)
    messages = [r.getMessage() for r in caplog.records]
    assert "database: postgresql at postgresql+asyncpg://liya:***@db.internal:5432/liya" in messages
    assert not any("Secr3t" in m for m in messages)


async def test_dev_flag_is_logged_at_warning(tmp_path, fake, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --dev keeps its secrets under ./.dev
    async with served_process(tmp_path, "--dev", LIYA_OPENAI_BASE_URL=fake.openai_base_url) as (
        proc,
        _,
        log,
    ):
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    created, *rest = log.read_text().splitlines()
    assert created == (
        "liya-engine: created DEVELOPMENT secrets .dev/master-keys, .dev/jwt-secret "
        "(for local use only; never use them in production)"
    )
    assert _lines(_entries("\n".join(rest), "text"))[0] == (
        "WARNING",
        "liya_engine",
        "development flag on: --dev (master key and JWT secret from .dev/ where none "
        "is set; never in production)",
    )


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_every_line_of_a_worker_names_it(tmp_path, fake, fmt):
    async with served_process(
        tmp_path,
        "--workers",
        "2",
        LIYA_LOG_FORMAT=fmt,
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
    ) as (proc, port, log):
        await asyncio.sleep(1)  # let the second worker start too
        s = stubs_for(port)
        with pytest.raises(grpc.aio.AioRpcError):  # a failed call is logged by its worker
            await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest())
        await s.channel.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    entries = _entries(log.read_text(), fmt)
    parent = [e for e in entries if "worker" not in e]
    assert _lines(parent) == [
        (
            "INFO",
            "liya_engine.workers",
            f"database schema at revision {head_revision()} (migrated before forking)",
        ),
        ("INFO", "liya_engine", "keyring: 1 master key(s), primary test-1"),
        ("INFO", "liya_engine.workers", "started 2 workers: worker 0 pid P, worker 1 pid P"),
        ("INFO", "liya_engine.workers", "received SIGTERM: forwarding SIGTERM to 2 workers"),
        ("INFO", "liya_engine.workers", "worker 0 (pid P) exited with status 0"),
        ("INFO", "liya_engine.workers", "worker 1 (pid P) exited with status 0"),
        ("INFO", "liya_engine.workers", "all workers stopped"),
    ]
    for index in (0, 1):
        mine = _lines([e for e in entries if e.get("worker") == index])
        assert (
            "INFO",
            "liya_engine",
            f"serving liya.engine.v1 on 127.0.0.1:{port} (event loop: uvloop)",
        ) in mine
        assert mine[-1] == ("INFO", "liya_engine", "stopped")
    failed = [e for e in entries if "INVALID_TOKEN" in e["msg"]]
    assert len(failed) == 1 and failed[0]["worker"] in (0, 1)
    assert {e.get("worker") for e in entries} == {None, 0, 1}


# ------------------------------------------------------------ library logs


async def _warm_completions(port: int, keys: dict[str, str]):
    """Configure one tenant per provider and warm each up; return the stubs."""
    s = stubs_for(port)
    configs = {
        "openai": byok_openai(keys["openai"]),
        "anthropic": cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok", anthropic=cpb.AnthropicConfig(api_key=keys["anthropic"])
            )
        ),
    }
    for tenant, request in configs.items():
        await s.config.UpdateConfig(request, metadata=auth(tenant))
        reply = await s.inference.Complete(hello(), metadata=auth(tenant))
        assert reply.usage.provider == tenant
    return s


@pytest.mark.parametrize("sdk_log", ["", "debug"])
async def test_warm_completions_add_no_library_line(tmp_path, fake, sdk_log):
    """At INFO, 20 warm completions add no line at all (libraries included);
    with the SDKs' own logging switches on, still none, and no key anywhere."""
    keys = {"openai": canary_key("sk-proj-"), "anthropic": canary_key("sk-ant-api03-")}
    async with served_process(
        tmp_path,
        LIYA_LOG_FORMAT="json",
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
        LIYA_ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        OPENAI_LOG=sdk_log,
        ANTHROPIC_LOG=sdk_log,
        HTTPX_LOG_LEVEL="trace" if sdk_log else "",
    ) as (proc, port, log):
        s = await _warm_completions(port, keys)
        warm = log.read_text()
        for _ in range(20):
            for tenant in ("openai", "anthropic"):
                reply = await s.inference.Complete(hello(), metadata=auth(tenant))
                assert reply.usage.provider == tenant
        await s.channel.close()
        assert log.read_text() == warm
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    text = log.read_text()
    entries = _entries(text, "json")
    assert {e["logger"] for e in entries} == {"liya_engine", "liya_engine.config.service"}
    for key in keys.values():
        assert key not in text
        assert key[-12:] not in text

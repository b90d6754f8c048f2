"""``/metrics`` of a real server after a known sequence of calls: the names,
labels and values DESIGN.md ("Observability") and docs/operations.md promise.

Every check is an exact value: a counter that is not fed (stuck at 0) or fed
twice fails here.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import platform
import re
import time

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from helpers import auth, byok_openai, details_of, free_port, hello
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.errors import REASONS
from liya_engine.fakes import bind_refused_port

CONFIG = "liya.engine.v1.ConfigService"
INFERENCE = "liya.engine.v1.InferenceService"
KEY = "sk-" + "Q" * 40 + "tail"
#: What ``reason`` says when there is no ErrorInfo reason.
OUTCOMES = {"OK", "CANCELLED"}


async def read_metrics(port: int) -> list:
    """The metric families of ``http://127.0.0.1:port/metrics``, parsed."""
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert reply.status_code == 200
    return list(text_string_to_metric_families(reply.text))


def samples_of(families: list) -> list[Sample]:
    return [sample for family in families for sample in family.samples]


def series(families: list, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples called ``name``: sorted labels -> value."""
    return {
        tuple(sorted(s.labels.items())): s.value for s in samples_of(families) if s.name == name
    }


def value(families: list, name: str, **labels: str) -> float:
    return series(families, name)[tuple(sorted(labels.items()))]


def rpc(service: str, method: str, code: str, reason: str | None = None, kind: str = "unary"):
    """The sorted label tuple of one RPC series."""
    labels = {"grpc_type": kind, "grpc_service": service, "grpc_method": method}
    labels["grpc_code"] = code
    if reason is not None:
        labels["reason"] = reason
    return tuple(sorted(labels.items()))


async def exercise(servers, fake) -> tuple[int, object]:
    """Start a server with metrics and make the known sequence of calls: one
    UpdateConfig, two good Completes, one the provider refuses
    (BYOK_AUTH_FAILED), one with a bad token (INVALID_TOKEN). Returns the
    metrics port and the stubs."""
    port = free_port()
    _, s = await servers.start(LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}")
    await s.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"))
    for _ in range(2):
        await s.inference.Complete(hello(), metadata=auth("acme"))
    fake.fail("openai", "auth")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.inference.Complete(hello(), metadata=auth("acme"))
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BYOK_AUTH_FAILED")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.inference.Complete(hello(), metadata=(("authorization", "Bearer not-a-jwt"),))
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN")
    return port, s


async def test_rpc_metrics_count_every_call_with_grpc_labels_and_one_ok_value(servers, fake):
    port, _ = await exercise(servers, fake)
    families = await read_metrics(port)

    assert series(families, "grpc_server_handled_total") == {
        rpc(CONFIG, "UpdateConfig", "OK", "OK"): 1.0,
        rpc(INFERENCE, "Complete", "OK", "OK"): 2.0,
        rpc(INFERENCE, "Complete", "FAILED_PRECONDITION", "BYOK_AUTH_FAILED"): 1.0,
        rpc(INFERENCE, "Complete", "UNAUTHENTICATED", "INVALID_TOKEN"): 1.0,
    }
    # The latency histogram carries the code; every call is observed once.
    counts = series(families, "grpc_server_handling_seconds_count")
    assert counts == {
        rpc(CONFIG, "UpdateConfig", "OK"): 1.0,
        rpc(INFERENCE, "Complete", "OK"): 2.0,
        rpc(INFERENCE, "Complete", "FAILED_PRECONDITION"): 1.0,
        rpc(INFERENCE, "Complete", "UNAUTHENTICATED"): 1.0,
    }
    sums = series(families, "grpc_server_handling_seconds_sum")
    assert set(sums) == set(counts) and all(0 < v < 10 for v in sums.values())
    buckets = series(families, "grpc_server_handling_seconds_bucket")
    for labels, count in counts.items():
        assert buckets[tuple(sorted((*labels, ("le", "+Inf"))))] == count

    # Nothing in flight once the calls returned; the series exist, at 0.
    unary = (("grpc_type", "unary"),)
    assert series(families, "liya_rpc_in_flight") == {
        (("grpc_method", "UpdateConfig"), ("grpc_service", CONFIG), *unary): 0.0,
        (("grpc_method", "Complete"), ("grpc_service", INFERENCE), *unary): 0.0,
    }

    # The bad token never reached the provider; the refused key did.
    byok = (("mode", "byok"), ("model", "gpt-4o"), ("provider", "openai"))
    assert series(families, "liya_provider_calls_total") == {
        (*byok, ("reason", "OK")): 2.0,
        (*byok, ("reason", "BYOK_AUTH_FAILED")): 1.0,
    }
    assert series(families, "liya_provider_duration_seconds_count") == {
        (("provider", "openai"), ("reason", "OK")): 2.0,
        (("provider", "openai"), ("reason", "BYOK_AUTH_FAILED")): 1.0,
    }
    # One miss loads the tenant; the other three authenticated Completes hit.
    assert series(families, "liya_config_cache_total") == {
        (("result", "hit"),): 2.0,
        (("result", "miss"),): 1.0,
    }


async def test_every_series_follows_the_prometheus_conventions(servers, fake):
    port, _ = await exercise(servers, fake)
    families = await read_metrics(port)
    samples = samples_of(families)
    names = {s.name for s in samples}

    assert not [n for n in names if n.endswith("_created")]
    # An empty label value reads as "no such label" in PromQL.
    assert not [s for s in samples if "" in s.labels.values()]
    for family in families:
        assert family.documentation, f"{family.name} has no HELP"
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {f"{family.name}_total"}, family.name
    reasons = {s.labels["reason"] for s in samples if "reason" in s.labels}
    assert reasons <= REASONS | OUTCOMES
    codes = {s.labels["grpc_code"] for s in samples if "grpc_code" in s.labels}
    assert codes <= {c.name for c in grpc.StatusCode}
    for s in samples:
        if "grpc_method" in s.labels:
            assert re.fullmatch(r"[A-Z][A-Za-z]+", s.labels["grpc_method"]), s
            assert s.labels["grpc_service"] in (CONFIG, INFERENCE), s
    # No tenant, token or key in any label.
    assert not [s for s in samples if {"acme", KEY} & set(s.labels.values())]


async def test_build_process_python_and_database_series(servers, fake):
    port, _ = await exercise(servers, fake)
    families = await read_metrics(port)

    version = importlib.metadata.version("liya-engine")
    assert series(families, "liya_build_info") == {(("version", version),): 1.0}
    assert value(families, "liya_database_up") == 1.0
    # The test process is the server process here.
    assert value(families, "process_resident_memory_bytes") > 10 * 2**20
    assert value(families, "process_virtual_memory_bytes") > value(
        families, "process_resident_memory_bytes"
    )
    assert value(families, "process_cpu_seconds_total") > 0
    assert value(families, "process_open_fds") > 2
    assert value(families, "process_max_fds") >= value(families, "process_open_fds")
    assert time.time() - 86_400 < value(families, "process_start_time_seconds") < time.time()
    info = series(families, "python_info")
    assert len(info) == 1
    labels = dict(next(iter(info)))
    assert (labels["implementation"], labels["version"]) == (
        platform.python_implementation(),
        platform.python_version(),
    )
    collections = series(families, "python_gc_collections_total")
    assert set(collections) == {(("generation", g),) for g in ("0", "1", "2")}
    assert collections[(("generation", "0"),)] > 0


async def test_in_flight_gauge_follows_a_call_and_a_cancel_is_labelled_cancelled(servers, fake):
    port, s = await exercise(servers, fake)
    fake.fail("openai", "slow", delay=5)
    call = s.inference.Complete(hello(), metadata=auth("acme"))
    # The three provider calls of the sequence, then this one, held by the fake.
    await fake.wait_for(lambda f: len(f.requests) == 4 and f.last_request.failure == "slow")
    complete = {"grpc_type": "unary", "grpc_service": INFERENCE, "grpc_method": "Complete"}
    assert value(await read_metrics(port), "liya_rpc_in_flight", **complete) == 1.0
    call.cancel()
    families = None
    for _ in range(50):
        families = await read_metrics(port)
        if value(families, "liya_rpc_in_flight", **complete) == 0.0:
            break
        await asyncio.sleep(0.1)
    assert value(families, "liya_rpc_in_flight", **complete) == 0.0
    cancelled = rpc(INFERENCE, "Complete", "CANCELLED", "CANCELLED")
    assert series(families, "grpc_server_handled_total")[cancelled] == 1.0
    assert (
        value(families, "grpc_server_handling_seconds_count", **complete, grpc_code="CANCELLED")
        == 1.0
    )


async def test_a_stream_is_labelled_server_stream(servers, fake):
    port, s = await exercise(servers, fake)
    request = ipb.CompleteStreamRequest(
        intent="general_chat", messages=[ipb.ChatMessage(role="user", content="hi")]
    )
    pieces = [p async for p in s.inference.CompleteStream(request, metadata=auth("acme"))]
    assert pieces[-1].usage.output_tokens > 0
    families = await read_metrics(port)
    stream = rpc(INFERENCE, "CompleteStream", "OK", "OK", kind="server_stream")
    assert series(families, "grpc_server_handled_total")[stream] == 1.0
    assert (
        value(
            families,
            "liya_rpc_in_flight",
            grpc_type="server_stream",
            grpc_service=INFERENCE,
            grpc_method="CompleteStream",
        )
        == 0.0
    )


@pytest.mark.postgres
async def test_database_up_follows_the_health_check(servers, fake, postgres_url):
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    servers.base_env["LIYA_DATABASE_URL"] = postgres_url
    port = free_port()
    running, s = await servers.start(
        LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}", LIYA_HEALTH_CHECK_SECONDS="0.1"
    )
    assert value(await read_metrics(port), "liya_database_up") == 1.0

    async def point_at(url) -> None:
        db = running.services.db
        await db.engine.dispose()
        db.engine = create_async_engine(url)
        db._sessions = async_sessionmaker(db.engine, expire_on_commit=False)

    async def database_up_becomes(expected: float) -> None:
        for _ in range(50):
            if value(await read_metrics(port), "liya_database_up") == expected:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"liya_database_up did not become {expected}")

    good = running.services.db.engine.url
    await point_at(good.set(port=bind_refused_port()))
    await database_up_becomes(0.0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.inference.Complete(hello(), metadata=auth("acme"))
    assert details_of(err.value).reason == "STORAGE_UNAVAILABLE"
    assert (
        value(
            await read_metrics(port),
            "grpc_server_handled_total",
            grpc_type="unary",
            grpc_service=INFERENCE,
            grpc_method="Complete",
            grpc_code="UNAVAILABLE",
            reason="STORAGE_UNAVAILABLE",
        )
        == 1.0
    )
    await point_at(good)
    await database_up_becomes(1.0)


async def test_the_drain_says_how_many_calls_are_in_flight(servers, fake, caplog):
    running, s = await servers.start()
    await s.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"))
    fake.fail("openai", "slow", delay=0.5)
    call = s.inference.Complete(hello(), metadata=auth("acme"))
    await fake.wait_for(lambda f: len(f.requests) == 1 and f.last_request.failure == "slow")
    assert running.services.metrics.calls_in_flight == 1
    with caplog.at_level(logging.INFO, logger="liya_engine"):
        await running.stop(5)  # the held call finishes within the grace period
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("drain started")] == [
        "drain started: 1 call(s) in flight; health NOT_SERVING, serving 0.0s more, "
        "then in-flight calls get up to 5.0s"
    ]
    (finished,) = [m for m in messages if m.startswith("drain finished")]
    assert finished.endswith("(0 call(s) still in flight)")
    reply = await call
    assert reply.message.content == "Fake answer to: hi"

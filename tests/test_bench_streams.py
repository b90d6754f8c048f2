"""The benchmark's streaming and overload load code, run by its own client
(``bench/loadgen.py``) against a real server and the fake: an S stream and
an S1 stream each checked to their end, a short stream counted as a failure,
H's held streams, and the open loop's refusals read from the status details.
So a change to the service or the fake that the bench would trip over fails
the test suite, not the next benchmark.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from helpers import JWT_SECRET
from liya_engine.settings import Settings

BENCH = Path(__file__).resolve().parent.parent / "bench"
WARM_KEY = "sk-proj-benchwarm-0123456789abcdef"


@pytest.fixture
def bench(monkeypatch) -> SimpleNamespace:
    # bench/ is a directory of scripts (``python bench/run.py``), not a package.
    monkeypatch.syspath_prepend(str(BENCH))
    names = ("common", "loadgen", "seeding", "streams")
    return SimpleNamespace(**{name: importlib.import_module(name) for name in names})


async def _client(bench, servers, fake, **server_env: str):
    """The bench's load client, connected to a server on a seeded database."""
    settings = Settings.from_env({**servers.base_env, **server_env})
    await bench.seeding.seed_database(settings, WARM_KEY, 6)
    running, _stubs = await servers.start(**server_env)
    cfg = {
        "fake_url": fake.base_url,
        "jwt_secret": JWT_SECRET,
        "warm_key": WARM_KEY,
        "b1_aiohttp": False,
    }
    client = bench.loadgen.LoadClient(cfg)
    await client.connect(running.port, 1)
    return client


async def test_an_s_and_an_s1_stream_each_bring_twenty_deltas_and_the_usage(bench, servers, fake):
    client = await _client(bench, servers, fake)
    try:
        for scenario in ("S", "S1"):
            call = client._caller(scenario, 0, None)()
            began = time.monotonic()
            first = await call()
            assert began < first < time.monotonic()  # the moment of the first delta
    finally:
        await client.aclose()
    chunks = bench.common.STREAM_CHUNKS
    service, direct = fake.requests_for("openai")
    assert (service.api_key, direct.api_key) == (WARM_KEY, WARM_KEY)
    for record in (service, direct):
        assert record.stream and record.completed
        assert record.body["stream_options"] == {"include_usage": True}
        assert record.body["messages"][-1]["content"] == bench.common.STREAM_PROMPT
    assert direct.body["max_completion_tokens"] == chunks


async def test_a_stream_short_of_a_word_is_a_failure(bench, servers, fake):
    client = await _client(bench, servers, fake)
    try:
        # The role chunk and 19 deltas, then the stream ends without finish or usage.
        fake.fail("openai", "stream_end_early", times=2, after=20)
        with pytest.raises(bench.streams.StreamCheckFailed) as failed:
            await client._caller("S1", 0, None)()()
        assert str(failed.value) == "19 words and no usage, expected 20"
        with pytest.raises(grpc.aio.AioRpcError):  # the service says the stream broke
            await client._caller("S", 0, None)()()
    finally:
        await client.aclose()


async def test_held_streams_all_end_checked(bench, servers, fake):
    client = await _client(bench, servers, fake)
    fake.fail("openai", "slow_stream", times=None, chunk_delay=0.01, after=2)
    job = {"op": "hold", "streams": 6, "tenants": (0, 3), "rate": 1000.0, "timeout": 30}
    try:
        reply = await client.run_phase(job | {"start": time.monotonic()})
    finally:
        await client.aclose()
    assert (reply["errors"], len(reply["ttft"]) // 8, len(reply["durations"]) // 8) == (0, 6, 6)
    assert [r.api_key != WARM_KEY for r in fake.requests] == [True] * 6  # cold tenants


@pytest.mark.parametrize(
    ("server_env", "tenants", "admitted", "reason"),
    [
        ({"LIYA_TENANT_MAX_IN_FLIGHT": "1"}, None, 1, "CONCURRENCY_LIMIT_EXCEEDED"),
        ({"LIYA_MAX_IN_FLIGHT": "2"}, (0, 5), 2, "SERVER_OVERLOADED"),
    ],
)
async def test_the_open_loop_reads_why_admission_refused(
    bench, servers, fake, server_env, tenants, admitted, reason
):
    client = await _client(bench, servers, fake, **server_env)
    # The admitted calls hold their slots for a second: the other launches are refused.
    fake.fail("openai", "slow", times=None, delay=1.0)
    start = time.monotonic()
    job = {"op": "open_loop", "start": start, "end": start + 0.0045, "rate": 1000.0}
    try:
        reply = await client.run_phase(job | {"bound": 100, "tenants": tenants})
    finally:
        await client.aclose()
    refused = {r: len(v) // 8 for r, v in reply["refused"].items()}
    assert (reply["launched"], reply["shed"], reply["errors"]) == (5, 0, 0)
    assert len(reply["admitted"]) // 8 == admitted
    assert refused == {"SERVER_OVERLOADED": 0, "CONCURRENCY_LIMIT_EXCEEDED": 0} | {
        reason: 5 - admitted
    }

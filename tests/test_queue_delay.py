"""Admission on queueing delay (``liya_engine.api.queue_delay``,
LIYA_QUEUE_DELAY_TARGET_MS):

- the decision, CoDel's: a delay above the target for less than the interval
  is let through, one that stayed above it for the interval refuses, and the
  first sample under the target admits again;
- on a real event loop, with the core's counts given: a loop blocked while
  calls wait is seen as soon as it runs again;
- through a real server and stub: calls that queue in the gRPC core while
  the server's loop is too slow to take them in are answered SERVER_OVERLOADED with ErrorInfo
  and RetryInfo, never CANCELLED; health checks are never refused; the
  server admits again once the queue has drained; at 0 nothing is refused.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import auth, details_of, hello, until
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import config_service_pb2_grpc, inference_service_pb2_grpc
from liya_engine.api.queue_delay import (
    ADMITTED_PER_TICK,
    ALLOWANCE_BACKOFF,
    ALLOWANCE_STEP,
    QUEUE_FLOOR,
    QueueDelayShedder,
    server_ids,
)

TARGET = 0.005
INTERVAL = 0.05
BLOCK_SECONDS = 0.3  # longer than the interval: a standing queue
QUEUED_CALLS = 40
SENT_CALLS = 600  # over a second, while the server takes in at most 1 / TURN a second
TURN = 0.01


def shedder() -> QueueDelayShedder:
    return QueueDelayShedder(TARGET, lambda: 0, interval=INTERVAL, tick=0.01)


def test_a_delay_above_the_target_refuses_only_once_it_has_lasted_the_interval():
    s = shedder()
    s.observe(0.0, 0, 0)
    s.observe(0.01, 20, 100)  # 10,000 calls end a second; 20 queued: 2 ms
    assert (s.delay, s.shedding) == (pytest.approx(0.002), False)
    s.observe(0.02, 200, 200)  # 200 queued at that rate: 20 ms, above the target
    assert s.delay > TARGET and not s.shedding
    s.observe(0.05, 200, 500)  # seen above since 0.02: 30 ms, less than the interval
    assert not s.shedding
    s.observe(0.07, 200, 700)  # above for 50 ms
    assert s.shedding
    s.observe(0.08, 30, 800)  # under the target: admit again at once
    assert (s.delay, s.shedding) == (pytest.approx(0.003), False)
    s.observe(0.09, 200, 900)  # a new burst starts a new interval
    assert not s.shedding


def test_while_refusing_a_few_calls_a_tick_are_still_admitted():
    s = shedder()
    assert not s.refuse()
    s.observe(0.0, 0, 0)
    s.observe(0.2, 50, 0)
    s.observe(0.3, 50, 0)
    assert s.shedding
    s._passes = ADMITTED_PER_TICK  # what a sample sets at the first allowance
    admitted = [not s.refuse() for _ in range(10)]
    assert admitted == [True] * ADMITTED_PER_TICK + [False] * (10 - ADMITTED_PER_TICK)


def _shedding_at(s: QueueDelayShedder, queued: int) -> float:
    """Samples 10 ms apart, 1,000 calls ending a second, until ``s`` sheds."""
    now, ended = 0.0, 0
    s.observe(now, 0, ended)
    while not s.shedding:
        now, ended = now + 0.01, ended + 10
        s.observe(now, queued, ended)
    return now


def test_while_refusing_the_allowance_grows_as_the_queue_drains_and_backs_off_as_it_grows():
    s = shedder()
    now = _shedding_at(s, 200)  # 200 waiting at 1,000 a second: 200 ms
    assert s.allowance == ADMITTED_PER_TICK
    ended = 1000
    for queued in (190, 180, 170):  # draining: one more a tick each sample
        now, ended = now + 0.01, ended + 10
        s.observe(now, queued, ended)
    assert (s.shedding, s.allowance) == (True, ADMITTED_PER_TICK + 3 * ALLOWANCE_STEP)
    now, ended = now + 0.01, ended + 10
    s.observe(now, 175, ended)  # growing again: a quarter fewer
    grown = ADMITTED_PER_TICK + 3 * ALLOWANCE_STEP
    assert s.allowance == pytest.approx(grown * ALLOWANCE_BACKOFF)
    for _ in range(20):  # a queue that never drains: down to the floor, not below
        now, ended = now + 0.01, ended + 10
        s.observe(now, 175, ended)
    assert s.allowance == ADMITTED_PER_TICK


def test_the_allowance_never_exceeds_the_calls_that_end_a_tick_and_outlives_an_episode():
    s = shedder()
    now = _shedding_at(s, 400)
    ended, queued = 1000, 400
    for _ in range(30):  # draining for long: capped at 1,000/s x 10 ms = 10 a tick
        now, ended, queued = now + 0.01, ended + 10, queued - 5
        s.observe(now, queued, ended)
    assert s.shedding and s.allowance == pytest.approx(10.0, rel=0.01)
    s.observe(now + 0.01, 0, ended + 10)  # drained: admit all again
    assert not s.shedding and s.allowance == pytest.approx(10.0, rel=0.01)


def test_a_fractional_allowance_admits_its_share_over_the_ticks():
    s = shedder()
    s.shedding, s.allowance = True, 1.5
    s._counts = lambda: (0, 0)

    class _Loop:
        def time(self) -> float:
            return 0.0

        def call_at(self, *_args) -> None:
            return None

    s._loop = _Loop()
    admitted = 0
    for _ in range(4):
        s._sample()
        s.shedding, s.allowance = True, 1.5  # as if the queue stood still
        admitted += sum(not s.refuse() for _ in range(10))
    assert admitted == 6


def test_after_an_idle_while_a_burst_has_waited_only_since_it_came():
    s = shedder()
    s.observe(0.0, 0, 0)
    s.observe(0.01, 0, 10)
    s.observe(5.0, 0, 10)  # idle: nothing queued, nothing ended
    s.observe(5.01, 50, 10)  # a burst arrives
    assert s.delay == pytest.approx(0.01)


def test_a_few_calls_waiting_are_no_queue_whatever_the_rate():
    s = shedder()
    s.observe(0.0, 0, 0)
    # Nothing ends (hung calls, an idle server) and a health Watch stays open.
    for step in range(1, 30):
        s.observe(step * 0.01, QUEUE_FLOOR, 0)
    assert (s.delay, s.shedding) == (0.0, False)


def test_a_queue_with_no_call_ending_has_waited_since_the_last_one_ended():
    s = shedder()
    s.observe(0.0, 0, 0)
    s.observe(0.01, 0, 10)
    s.observe(0.21, 50, 10)  # nothing ended for 200 ms while 50 calls waited
    assert s.delay == pytest.approx(0.2)
    assert not s.shedding  # one stall: it may drain at once
    s.observe(0.27, 50, 10)  # it did not
    assert s.shedding
    s.observe(0.28, 0, 60)
    assert not s.shedding and s.queued == 0


def test_calls_in_the_service_hands_are_not_queued():
    in_flight = 30
    s = QueueDelayShedder(TARGET, lambda: in_flight, interval=INTERVAL)
    s.observe(0.0, 30 - in_flight, 0)
    assert s.queued == 0 and not s.shedding


async def test_on_a_real_loop_a_blocked_loop_with_calls_waiting_is_seen_when_it_runs_again():
    counts = {"started": 0, "ended": 0}
    s = QueueDelayShedder(TARGET, lambda: 0, interval=INTERVAL, tick=0.01)
    s.start(lambda: (counts["started"], counts["ended"]))
    try:
        await asyncio.sleep(0.05)
        assert not s.shedding
        counts["started"] = QUEUED_CALLS  # calls arrive and nothing takes them in
        time.sleep(BLOCK_SECONDS)  # the loop is blocked: no sample runs meanwhile
        await _until(lambda: s.shedding)
        counts["ended"] = QUEUED_CALLS  # the queue drains
        await _until(lambda: not s.shedding)
    finally:
        s.stop()
    assert not s.shedding


def test_off_at_zero_and_without_counts():
    off = QueueDelayShedder(0, lambda: 0)
    off.start(lambda: (0, 0))  # no running loop needed: nothing is started
    assert off._handle is None and not off.shedding


async def _until(check, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _saturated_with_calls(port: int, calls, seconds: float = 1.0) -> list:
    """Send ``calls`` (``(stubs) -> future`` on a blocking channel, whose calls
    gRPC's own threads send) at an even pace over ``seconds`` from a thread,
    while every turn of this loop, the server's, takes at least ``TURN``
    seconds (a callback that blocks, standing for CPU-bound work): the server
    takes in fewer calls a second than arrive. Their answers, or errors."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    loop = asyncio.get_running_loop()
    hogging = True

    def hog() -> None:
        if hogging:
            time.sleep(TURN)
            loop.call_soon(hog)

    def send(stubs) -> list:
        futures = []
        for call in calls:
            futures.append(call(*stubs))
            time.sleep(seconds / len(calls))
        return futures

    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        stubs = (
            inference_service_pb2_grpc.InferenceServiceStub(channel),
            config_service_pb2_grpc.ConfigServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )
        loop.call_soon(hog)
        try:
            futures = await asyncio.to_thread(send, stubs)
        finally:
            hogging = False
        await _until(lambda: all(f.done() for f in futures), within=60)
        return [f.exception() or f.result() for f in futures]
    finally:
        channel.close()


async def test_calls_queued_in_the_core_are_refused_server_overloaded_and_health_stays_up(
    servers, fake
):
    running, stubs = await servers.start(LIYA_QUEUE_DELAY_TARGET_MS=str(TARGET * 1000))
    assert running.shedder is not None and running.shedder._handle is not None
    metadata = auth("tenant-q")
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok", openai=cpb.OpenAIConfig(api_key="sk-tenant-q-" + "k" * 40)
            )
        ),
        metadata=metadata,
    )

    def complete(inference, _config, _health):
        return inference.Complete.future(hello(), metadata=metadata, timeout=30)

    def check(_inference, _config, health):
        return health.Check.future(health_pb2.HealthCheckRequest(), timeout=30)

    answers = await _saturated_with_calls(running.port, [complete] * SENT_CALLS + [check])
    *completions, health_answer = answers
    assert health_answer.status == health_pb2.HealthCheckResponse.SERVING
    refusals = [a for a in completions if isinstance(a, BaseException)]
    assert refusals, "calls that queued for longer than the interval are refused"
    for exc in refusals:
        assert isinstance(exc, grpc.RpcError)
        details = details_of(exc)
        assert details.code == grpc.StatusCode.UNAVAILABLE
        assert details.reason == "SERVER_OVERLOADED"
        assert details.retry_delay == 1.0
        assert set(details.metadata) == {"request_id"}
        assert "its calls are queueing" in details.message
    for reply in completions:
        if not isinstance(reply, BaseException):
            assert reply.usage.provider == "openai"

    async def served() -> bool:
        try:
            await stubs.inference.Complete(hello(), metadata=metadata, timeout=30)
            return True
        except grpc.aio.AioRpcError as exc:
            assert details_of(exc).reason == "SERVER_OVERLOADED"
            return False

    await until(served, message="the server did not admit again")


async def test_at_zero_no_call_is_refused_for_queueing(servers, fake):
    running, _stubs = await servers.start(LIYA_QUEUE_DELAY_TARGET_MS="0")
    assert running.shedder is not None and running.shedder._handle is None

    def masked(_inference, config, _health):
        return config.GetMaskedConfig.future(
            cpb.GetMaskedConfigRequest(), metadata=auth("tenant-z"), timeout=30
        )

    answers = await _saturated_with_calls(running.port, [masked] * SENT_CALLS)
    for answer in answers:
        # No config yet: every call gets its own answer, none an overload.
        if isinstance(answer, grpc.RpcError):
            assert details_of(answer).reason != "SERVER_OVERLOADED"


def test_server_ids_reads_channelz():
    assert isinstance(server_ids(), set)

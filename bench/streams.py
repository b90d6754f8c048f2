"""Streaming load, in the client workers: the calls of S and S1, and H's held streams.

S is ``InferenceService/CompleteStream`` through the service (warm tenant); S1
the OpenAI SDK's own stream (``stream=True`` with ``include_usage``) straight
at the fake. Both ask for the answer to ``STREAM_PROMPT``, which the fake
streams as exactly ``STREAM_CHUNKS`` deltas of one word each, then the usage.
Every stream is read to its end and checked: that many words in its deltas
(the service may join deltas that arrive while it is still sending the one
before: the words are what the caller relies on), the usage present with that
many output tokens, status OK; anything else raises
``StreamCheckFailed`` (or the call's own error), which the load loop counts.
A call returns the moment its first delta arrived: the load loop records the
time to first delta as the stream's latency.

H (``hold``): many CompleteStream calls launched at a fixed rate, each its own
task, held open at once against a slow upstream (the orchestrator has asked
the fake for ``slow_stream``), spread over the tenants of the job.
"""

from __future__ import annotations

import array
import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from common import CALL_TIMEOUT, MODEL, STREAM_CHUNKS, STREAM_PROMPT, cold_tenant, describe

SCENARIOS = ("S", "S1")
_MESSAGES = [{"role": "user", "content": STREAM_PROMPT}]


class StreamCheckFailed(Exception):
    """A stream ended OK but not as the fake sends it: deltas or usage wrong."""


def _check(words: int, output_tokens: int | None) -> None:
    if words != STREAM_CHUNKS or output_tokens != STREAM_CHUNKS:
        usage = "no usage" if output_tokens is None else f"usage of {output_tokens} tokens"
        raise StreamCheckFailed(f"{words} words and {usage}, expected {STREAM_CHUNKS}")


def stream_request() -> Any:
    """The CompleteStream request of S and H."""
    from liya.engine.v1 import inference_service_pb2 as pb

    return pb.CompleteStreamRequest(
        intent="general_chat",
        messages=[pb.ChatMessage(role="user", content=STREAM_PROMPT)],
        max_tokens=STREAM_CHUNKS,
    )


async def read_service_stream(call: Any) -> float:
    """Read a CompleteStream call to its end, check it; when its first delta came."""
    from grpc.aio import EOF  # grpc loads in the workers only

    first = 0.0
    text: list[str] = []
    output_tokens = None
    while True:
        # read() rather than ``async for``: no async generator per message.
        message = await call.read()
        if message is EOF:
            break
        if message.delta:
            text.append(message.delta)
            if not first:
                first = time.monotonic()
        if message.HasField("usage"):
            output_tokens = message.usage.output_tokens
    _check(len("".join(text).split()), output_tokens)
    return first


async def read_sdk_stream(stream: Any) -> float:
    """Read an OpenAI SDK stream to its end, check it; when its first delta came."""
    first = 0.0
    text: list[str] = []
    output_tokens = None
    async for chunk in stream:
        if chunk.usage is not None:
            output_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
                if not first:
                    first = time.monotonic()
    _check(len("".join(text).split()), output_tokens)
    return first


def caller(
    scenario: str, *, openai: Any, stubs: list[Any], slot: int, metadata: Any
) -> Callable[[], Awaitable[float]]:
    """The ``async call()`` of one S or S1 load task; it returns when the first delta came."""
    if scenario == "S1":
        create = openai.chat.completions.create

        async def sdk_call() -> float:
            stream = await create(
                model=MODEL,
                messages=_MESSAGES,
                max_completion_tokens=STREAM_CHUNKS,
                stream=True,
                stream_options={"include_usage": True},
            )
            return await read_sdk_stream(stream)

        return sdk_call
    open_stream, req = stubs[slot % len(stubs)].CompleteStream, stream_request()

    async def service_call() -> float:
        return await read_service_stream(open_stream(req, metadata=metadata, timeout=CALL_TIMEOUT))

    return service_call


async def hold(
    job: dict[str, Any], stubs: list[Any], metadata_of: Callable[[str], Any]
) -> dict[str, Any]:
    """H: ``job["streams"]`` CompleteStream calls, launched ``job["rate"]`` a
    second from ``job["start"]``, the tenants of ``job["tenants"]`` in turn.

    Answers the time to first delta and the duration of every stream that
    ended OK and checked, the failures by kind, and the most open at once here.
    """
    req = stream_request()
    metadata = [metadata_of(cold_tenant(i)) for i in range(*job["tenants"])]
    ttft, durations = array.array("d"), array.array("d")
    errors: Counter[str] = Counter()
    state = {"open": 0, "peak": 0}

    async def one(i: int) -> None:
        open_stream = stubs[i % len(stubs)].CompleteStream
        began = time.monotonic()
        state["open"] += 1
        state["peak"] = max(state["peak"], state["open"])
        try:
            call = open_stream(req, metadata=metadata[i % len(metadata)], timeout=job["timeout"])
            first = await read_service_stream(call)
            ttft.append(first - began)
            durations.append(time.monotonic() - began)
        except Exception as exc:
            errors[describe(exc)] += 1
        finally:
            state["open"] -= 1

    tasks = []
    for i in range(job["streams"]):
        await asyncio.sleep(max(0.0, job["start"] + i / job["rate"] - time.monotonic()))
        tasks.append(asyncio.create_task(one(i)))
    launched = time.monotonic()
    await asyncio.gather(*tasks)
    return {
        "ok": True,
        "ttft": ttft.tobytes(),
        "durations": durations.tobytes(),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "peak_open": state["peak"],
        "launch_seconds": launched - job["start"],
    }

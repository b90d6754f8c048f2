"""The stream relay (``liya_engine.inference.relay``) on a scripted event source:
order kept, what arrives during a send joined, the failure after the deltas
before it, reading bounded and stopped when the caller goes away. The relay
through the real server and fake providers is covered by the stream tests of
test_inference, test_failures and test_hostile_answers."""

from __future__ import annotations

import asyncio

import pytest

from liya_engine.errors import ProviderUnavailable
from liya_engine.inference.ports import StreamDelta, StreamEnd
from liya_engine.inference.relay import MAX_AHEAD_CHARS, relay

END = StreamEnd(finish_reason="stop", input_tokens=3, output_tokens=4, model="m")


async def burst(texts, end=END):
    """Every delta at once (as from one network read), then the end."""
    for text in texts:
        yield StreamDelta(text)
    if isinstance(end, BaseException):
        raise end
    yield end


async def test_the_first_delta_goes_alone_and_what_arrived_during_its_send_goes_next_as_one():
    got = []
    async for event in relay(burst(["a", "", " b", " c"])):
        got.append(event)
        await asyncio.sleep(0.01)  # a send under way
    assert got == [StreamDelta("a"), StreamDelta(" b c"), END]


async def test_deltas_spaced_apart_go_one_by_one():
    async def spaced():
        for text in ("a", " b", " c"):
            await asyncio.sleep(0.01)
            yield StreamDelta(text)
        yield END

    got = [event async for event in relay(spaced())]
    assert got == [StreamDelta("a"), StreamDelta(" b"), StreamDelta(" c"), END]


async def test_a_failure_comes_after_the_deltas_before_it():
    failure = ProviderUnavailable("cut", provider="openai")
    got = []
    with pytest.raises(ProviderUnavailable) as err:
        async for event in relay(burst(["a", " b", " c"], end=failure)):
            got.append(event)
            await asyncio.sleep(0.01)
    assert err.value is failure
    assert "".join(e.text for e in got) == "a b c"


async def test_a_stream_that_ends_without_its_end_ends_the_relay_the_same_way():
    async def unfinished():
        yield StreamDelta("a")

    assert [event async for event in relay(unfinished())] == [StreamDelta("a")]


async def test_reading_ahead_is_bounded_and_closing_stops_it():
    pulled = []
    closed = asyncio.Event()

    async def endless():
        try:
            while True:
                pulled.append(1)
                yield StreamDelta("x" * 1024)
        finally:
            closed.set()

    source = endless()
    relayed = relay(source)
    first = await relayed.__anext__()
    assert first == StreamDelta("x" * 1024)
    await asyncio.sleep(0.05)  # the caller reads nothing more for a while
    assert len(pulled) <= MAX_AHEAD_CHARS // 1024 + 2
    await relayed.aclose()
    await source.aclose()
    assert closed.is_set()

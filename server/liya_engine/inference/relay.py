"""Relaying a provider's stream to the caller: deltas that arrive while the
previous one is still being sent go on together, as one delta.

The provider's stream is read by a task of its own while the caller's side
sends. Whenever the sender is waiting, a delta that arrives wakes it and the
reader steps aside, so the sender sends it at once: no delta waits for the
parsing of those behind it. What arrives while a send is under way is joined
and sent next, as one delta. With chunks spaced apart (a model producing
tokens) every chunk is sent alone, as it came; when chunks arrive faster than
they can be sent (a busy replica, a burst after a stall), the cost of a reply
message (building it, writing it, the wake-ups around it) is paid once per
batch instead of once per chunk, so a busy replica falls behind less.

Reading ahead is bounded (``MAX_AHEAD_CHARS``): beyond it the reader waits for
the sender, so a caller reading slowly still slows the upstream read down.
Events keep their order: every delta before the end, or before the failure,
which the sender raises once the deltas before it are sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from liya_engine.inference.ports import StreamDelta, StreamEnd, StreamEvent

#: The most answer text read ahead of the sender, in characters.
MAX_AHEAD_CHARS = 64 * 1024


class _Relay:
    """The state the reader task and the sender share (one event loop, no locks)."""

    def __init__(self, events: AsyncIterator[StreamEvent]) -> None:
        self.events = events
        self.texts: list[str] = []
        self.ahead = 0
        # The end: a StreamEnd, an exception to raise, or None (ended without one).
        self.outcome: StreamEnd | BaseException | None = None
        self.ended = False
        self.sender: asyncio.Future[None] | None = None  # the sender, waiting
        self.reader: asyncio.Future[None] | None = None  # the reader, waiting for room

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for event in self.events:
                if isinstance(event, StreamDelta):
                    if not event.text:
                        continue
                    self.texts.append(event.text)
                    self.ahead += len(event.text)
                else:
                    self.outcome = event
                if self._wake_sender():
                    await asyncio.sleep(0)  # the sender goes first
                while self.ahead > MAX_AHEAD_CHARS:
                    self.reader = loop.create_future()
                    await self.reader
        except Exception as exc:
            self.outcome = exc
        finally:
            self.ended = True
            self._wake_sender()

    def _wake_sender(self) -> bool:
        sender, self.sender = self.sender, None
        if sender is None or sender.done():
            return False
        sender.set_result(None)
        return True

    def take(self) -> str:
        """The text read since the last take, joined."""
        texts = self.texts
        text = texts[0] if len(texts) == 1 else "".join(texts)
        texts.clear()
        self.ahead = 0
        reader, self.reader = self.reader, None
        if reader is not None and not reader.done():
            reader.set_result(None)
        return text


async def relay(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """``events`` (an adapter's stream) with the deltas that arrived during a
    send joined; then its ``StreamEnd``, or its failure raised. Closing this
    generator stops the reading (the caller still closes ``events``)."""
    loop = asyncio.get_running_loop()
    state = _Relay(events)
    task = loop.create_task(state.read())
    try:
        while True:
            if not state.texts and not state.ended and state.outcome is None:
                state.sender = loop.create_future()
                await state.sender
            if state.texts:
                yield StreamDelta(state.take())
                continue
            outcome = state.outcome
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome is not None:
                yield outcome
                return
            if state.ended:
                return
    finally:
        if not task.done():
            task.cancel()
            # Not ``await task``: that would raise this task's own CancelledError
            # for the reader's, and swallowing it could swallow a real one.
            await asyncio.wait((task,))

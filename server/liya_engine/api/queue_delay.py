"""Adaptive admission on queueing delay: refuse new calls while calls have
been queueing in front of the service for a while.

One process serves every call on one event loop, and what bounds it under
overload is CPU, not a count. grpc.aio takes calls in from the gRPC core one
at a time, one per turn of the event loop; past the process's capacity, the
calls the core has received but the loop has not yet taken in pile up in the
core (and, beyond ``grpc.server.max_pending_requests``, 1,000 by default, the
core itself ends them CANCELLED, with no reason). Every call waits in that
queue, refusals included, long before ``LIYA_MAX_IN_FLIGHT`` calls are in
the service's hands; the event loop's own lag stays small, since each turn
takes in a single call.

The queue is measured from gRPC's channelz counters of this server (calls
the core has started, and ended) against the calls in the service's hands
(``Metrics.calls_in_flight``): the difference is the calls waiting in the
core, and divided by the rate calls end, about how long they wait.

The decision is CoDel's (Nichols and Jacobson, "Controlling Queue Delay",
2012): a delay above ``target`` for a moment is a burst, and is let through;
a delay that has stayed above ``target`` for a whole ``interval`` is a
standing queue, and new calls are refused (``shedding``) until a sample is
under the target again. Refusing costs the loop little (no token check, no
I/O), so the queue drains and the calls admitted keep about the latency
they have at capacity; the callers refused get SERVER_OVERLOADED with
RetryInfo at once and may retry on another replica.

While refusing, some calls a tick are still admitted, as many as the queue
allows: a refusal costs gRPC's own share of a call (a third to a half of a
completion), so a process that refused everything past its capacity would
serve nothing, and one that admits too many never drains its queue. The
allowance is found as TCP finds its window (additive increase,
multiplicative decrease): one more call a tick while the queue shrinks, a
quarter fewer while it does not. It is kept from one episode of
refusing to the next, since the load that caused one usually causes the
next. ``refuse()`` is an attribute read and a counter; a timer samples every
``TICK_SECONDS`` (a channelz read: about 0.1 ms).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

log = logging.getLogger("liya_engine")

#: How often the queue is sampled.
TICK_SECONDS = 0.01
#: How long the delay must stay above the target before calls are refused
#: (CoDel's interval: longer than a burst, shorter than a caller notices).
INTERVAL_SECONDS = 0.1
#: Weight of the newest sample in the moving average of the rate calls end.
_RATE_WEIGHT = 0.25
#: While refusing, at least this many calls are still admitted every tick
#: (100 a second): a process whose refusals alone cannot keep up with what
#: arrives still serves some calls instead of none.
ADMITTED_PER_TICK = 1
#: The allowance's additive increase (calls a tick) while the queue shrinks...
ALLOWANCE_STEP = 1.0
#: ... and its multiplicative decrease while it does not.
ALLOWANCE_BACKOFF = 0.75
#: At most this many calls waiting are no queue, whatever the rate: the count
#: includes calls gRPC serves itself (health, reflection: a health Watch stays
#: open) and calls the service has ended but the core not yet.
QUEUE_FLOOR = 16

#: ``() -> (calls started, calls ended)`` by the gRPC core, cumulative.
CoreCounts = Callable[[], tuple[int, int]]


def server_ids() -> set[int]:
    """The channelz ids of the gRPC servers of this process (empty when
    channelz cannot be read)."""
    try:
        from grpc._cython import cygrpc  # the module grpcio-channelz itself reads

        servers = json.loads(cygrpc.channelz_get_servers(0)).get("server", [])
        return {int(s["ref"]["serverId"]) for s in servers}
    except Exception:  # an internal API: its absence turns this admission off
        return set()


def channelz_counts(server_id: int) -> CoreCounts:
    """The core's counts of the server ``server_id`` (see ``server_ids``)."""
    from grpc._cython import cygrpc

    def read() -> tuple[int, int]:
        data = json.loads(cygrpc.channelz_get_server(server_id))["server"]["data"]
        ended = int(data.get("callsSucceeded", 0)) + int(data.get("callsFailed", 0))
        return int(data.get("callsStarted", 0)), ended

    return read


class QueueDelayShedder:
    """``shedding`` while the calls waiting in front of the service have
    waited more than ``target`` seconds for ``interval`` seconds. A ``target``
    of 0, or no ``start``, leaves it off (``shedding`` stays False)."""

    __slots__ = (
        "_above_since",
        "_counts",
        "_empty_at",
        "_ended",
        "_ended_at",
        "_handle",
        "_in_flight",
        "_loop",
        "_passes",
        "_rate",
        "_sampled_at",
        "allowance",
        "delay",
        "interval",
        "queued",
        "shedding",
        "target",
        "tick",
    )

    def __init__(
        self,
        target: float,
        in_flight: Callable[[], int],
        *,
        interval: float = INTERVAL_SECONDS,
        tick: float = TICK_SECONDS,
    ) -> None:
        self.target = target
        self.interval = interval
        self.tick = tick
        #: True while new calls are to be refused.
        self.shedding = False
        #: The last sample: calls waiting in the core, and their estimated wait (s).
        self.queued = 0
        self.delay = 0.0
        self._in_flight = in_flight
        self._counts: CoreCounts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._ended = 0
        self._ended_at = 0.0
        self._empty_at = 0.0
        self._rate = 0.0
        self._sampled_at = 0.0
        self._above_since: float | None = None
        #: Calls still to admit before the next sample while ``shedding``.
        self._passes = 0.0
        #: Calls a tick admitted while ``shedding`` (see the module's docstring).
        self.allowance = float(ADMITTED_PER_TICK)

    def refuse(self) -> bool:
        """Whether to refuse the call beginning now: while ``shedding``, all
        but ``allowance`` a tick."""
        if not self.shedding:
            return False
        if self._passes >= 1:
            self._passes -= 1
            return False
        return True

    def start(self, counts: CoreCounts | None) -> None:
        """Sample ``counts`` on the running loop from now on; no-op when off,
        already started, or ``counts`` is None (channelz unreadable)."""
        if self.target <= 0 or self._handle is not None:
            return
        if counts is None:
            log.warning("gRPC channelz is unreadable: admission on queueing delay is off")
            return
        self._counts = counts
        self._loop = asyncio.get_running_loop()
        self._sampled_at = self._ended_at = self._empty_at = self._loop.time()
        self._ended = counts()[1]
        self._handle = self._loop.call_at(self._sampled_at + self.tick, self._sample)

    def stop(self) -> None:
        """Stop sampling; admit every call from now on."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.shedding = False
        self._above_since = None

    def _sample(self) -> None:
        loop, counts = self._loop, self._counts
        assert loop is not None and counts is not None  # set by start()
        now = loop.time()
        started, ended = counts()
        self.observe(now, started - ended - self._in_flight(), ended)
        # Passes left unused lapse, but a fraction carries over: an allowance
        # of 1.5 a tick admits 3 in 2 ticks.
        self._passes = self._passes % 1 + self.allowance
        self._handle = loop.call_at(now + self.tick, self._sample)

    def observe(self, now: float, queued: int, ended: int) -> None:
        """One sample at ``now`` (loop time): ``queued`` calls the core holds
        that the service has not taken in, ``ended`` calls ended so far."""
        elapsed = now - self._sampled_at
        before = self.queued
        if ended > self._ended:
            rate = (ended - self._ended) / elapsed if elapsed > 0 else self._rate
            self._rate += _RATE_WEIGHT * (rate - self._rate) if self._rate else rate
            self._ended_at = now
        self._sampled_at, self._ended = now, ended
        self.queued = queued = max(0, queued)
        if queued <= QUEUE_FLOOR:
            self.delay = 0.0
            self._empty_at = now
        else:
            # At the rate calls end, and if none ended lately, at least since one
            # did; but no call has waited since before the queue was last empty
            # (an idle server, then a burst).
            by_rate = queued / self._rate if self._rate else 0.0
            self.delay = min(max(by_rate, now - self._ended_at), now - self._empty_at)
        if self.delay <= self.target:
            self._above_since = None
            self.shedding = False
            return
        if self._above_since is None:
            # From the first sample that saw it: one stall of the loop (a long
            # collection) with calls waiting is no standing queue if they are
            # taken in soon after.
            self._above_since = now
        if self.shedding:
            self._adapt(shrinking=queued < before)
        if now - self._above_since >= self.interval:
            self.shedding = True

    def _adapt(self, *, shrinking: bool) -> None:
        """One step of the allowance while refusing: more while the queue
        shrinks, fewer while it does not; never fewer than
        ``ADMITTED_PER_TICK``, never more than the calls that end a tick."""
        if shrinking:
            ceiling = max(float(ADMITTED_PER_TICK), self._rate * self.tick)
            self.allowance = min(self.allowance + ALLOWANCE_STEP, ceiling)
        else:
            self.allowance = max(float(ADMITTED_PER_TICK), self.allowance * ALLOWANCE_BACKOFF)

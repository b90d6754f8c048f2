"""Overload, in the client workers: an open-loop generator of Complete calls.

Unlike the closed loops of the blocks (a task sends its next call when the
previous one answered), the offered load here does not slow down when the
server does: calls are launched at a fixed rate from ``start`` to ``end``,
each its own task, whatever the answers. What bounds the client is
``bound``, the most calls it keeps outstanding: a launch due while that many
are outstanding is not made and is counted as ``shed`` (the client, not the
server, refused it), so the client cannot blow up.

Each call ends one of three ways: admitted (answered OK; its latency kept),
refused by the server's admission (the ``ErrorInfo.reason`` of its status
details is ``SERVER_OVERLOADED`` or ``CONCURRENCY_LIMIT_EXCEEDED``; its latency
kept by reason), or another failure (counted by kind, its latency kept: a
call the gRPC core sheds before the service sees it ends CANCELLED, with no
reason).
"""

from __future__ import annotations

import array
import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from common import CALL_TIMEOUT, WARM_TENANT, cold_tenant, describe

#: The reasons admission refuses a call with (DESIGN.md's names).
REFUSALS = ("SERVER_OVERLOADED", "CONCURRENCY_LIMIT_EXCEEDED")


def reason_of(exc: Any) -> str | None:
    """The ``ErrorInfo.reason`` of a failed call's rich status, if it has one."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None


async def open_loop(
    job: dict[str, Any],
    stubs: list[Any],
    metadata_of: Callable[[str], Any],
    request: Any,
) -> dict[str, Any]:
    """Launch Complete calls ``job["rate"]`` a second in [``start``, ``end``),
    at most ``bound`` outstanding, from the warm tenant (``tenants`` None) or
    the cold tenants of the range ``tenants`` in turn; wait for them all.

    Answers the admitted calls' latencies, the refusals' latencies by reason,
    the other failures by kind, and the launches made, shed and how late.
    """
    import grpc

    lo_hi = job.get("tenants")
    tenants = [cold_tenant(i) for i in range(*lo_hi)] if lo_hi else [WARM_TENANT]
    metadata = [metadata_of(t) for t in tenants]
    admitted = array.array("d")
    refused: dict[str, array.array] = {r: array.array("d") for r in REFUSALS}
    errors: Counter[str] = Counter()
    failed = array.array("d")  # the latencies of the other failures
    examples: dict[str, str] = {}  # a debug_error_string per kind: where it came from
    state = {"outstanding": 0, "peak": 0}

    async def one(i: int) -> None:
        complete = stubs[i % len(stubs)].Complete
        began = time.monotonic()
        try:
            await complete(request, metadata=metadata[i % len(metadata)], timeout=CALL_TIMEOUT)
            admitted.append(time.monotonic() - began)
        except grpc.aio.AioRpcError as exc:
            took = time.monotonic() - began
            reason = reason_of(exc)
            if reason in refused:
                refused[reason].append(took)
            else:
                kind = f"{reason or 'no reason'}: {describe(exc)}"
                errors[kind] += 1
                failed.append(took)
                examples.setdefault(kind, exc.debug_error_string()[:300])
        except Exception as exc:
            errors[describe(exc)] += 1
            failed.append(time.monotonic() - began)
        finally:
            state["outstanding"] -= 1

    tasks: set[asyncio.Task[None]] = set()
    start, end, rate, bound = job["start"], job["end"], job["rate"], job["bound"]
    launched = shed = 0
    late = 0.0
    i = 0
    while (due := start + i / rate) < end:
        i += 1
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late = max(late, -wait)
        if state["outstanding"] >= bound:
            shed += 1
            continue
        state["outstanding"] += 1
        state["peak"] = max(state["peak"], state["outstanding"])
        launched += 1
        task = asyncio.create_task(one(launched))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    offered_until = time.monotonic()
    while tasks:
        await asyncio.gather(*tasks)
    return {
        "ok": True,
        "launched": launched,
        "shed": shed,
        "late_max_s": round(late, 4),
        "launch_seconds": offered_until - start,
        "peak_outstanding": state["peak"],
        "admitted": admitted.tobytes(),
        "refused": {r: lat.tobytes() for r, lat in refused.items()},
        "errors": sum(errors.values()),
        "failed": failed.tobytes(),
        "error_kinds": dict(errors.most_common(5)),
        "error_examples": examples,
    }

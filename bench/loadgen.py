"""Load generation: the client worker processes and their closed-loop load.

Each worker is a spawned process (a fresh interpreter, no inherited gRPC state)
running one asyncio loop. The orchestrator sends it jobs over a pipe
(``connect``, ``wait_serving``, ``load``, ``stop``); a ``load`` job runs
``concurrency`` tasks that each call back to back, and answers with the
latencies of the calls started in the measured window and the count of those
that finished in it. The calls of every scenario are prepared here, outside
the timed part: tokens minted with ``liya_engine.identity.mint_token``, calls
made with the generated stubs, the OpenAI SDK or httpx; those of the streams
(S, S1) and the jobs of the phases after the rounds (``hold``, ``open_loop``)
are in ``streams`` and ``overload``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from typing import Any

import overload
import streams
from common import CALL_TIMEOUT, MAX_TOKENS, MODEL, PROMPT, WARM_TENANT, cold_tenant, describe

from liya_engine.heap import settle_heap


def client_main(conn: Any, cfg: dict[str, Any]) -> None:
    """Entry point of a client worker: serve jobs from ``conn`` until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when to stop
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        asyncio.run(_client_loop(conn, cfg))


class _Exhausted(Exception):
    """The worker used every tenant it was given for this block."""


async def _client_loop(conn: Any, cfg: dict[str, Any]) -> None:
    """Answer one job at a time; a failed job answers ``ok: False`` and the loop goes on."""
    client = LoadClient(cfg)
    # The service's collector settings: a client that pauses for a full
    # collection while a thousand streams are open would charge the pause to
    # the server's latency.
    settle_heap()
    loop = asyncio.get_running_loop()
    try:
        while True:
            job = await loop.run_in_executor(None, conn.recv)
            op = job["op"]
            try:
                if op == "stop":
                    conn.send({"ok": True})
                    return
                if op == "ping":
                    reply: dict[str, Any] = {"ok": True, "pid": os.getpid()}
                elif op == "connect":
                    await client.connect(job["port"], job["channels"])
                    reply = {"ok": True}
                elif op == "wait_serving":
                    reply = await client.wait_serving(job["within"])
                elif op == "load":
                    reply = await client.load(job)
                elif op in ("hold", "open_loop"):
                    reply = await client.run_phase(job)
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            conn.send(reply)
    finally:
        await client.aclose()


class LoadClient:
    """The calls of every scenario, and a closed-loop load generator."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import httpx
        import openai

        from liya.engine.v1 import config_service_pb2, inference_service_pb2
        from liya_engine.identity import mint_token
        from liya_engine.settings import Settings

        self._cfg = cfg
        self._mint = mint_token
        self._settings = Settings.from_env({"LIYA_JWT_HS256_SECRET": cfg["jwt_secret"]})
        self._warm_md = self._metadata(WARM_TENANT)
        self._channels: list[Any] = []
        self._health: list[Any] = []
        self._inference: list[Any] = []
        self._config: list[Any] = []
        messages = [{"role": "user", "content": PROMPT}]
        self._http_body = {
            "model": MODEL,
            "messages": messages,
            "max_completion_tokens": MAX_TOKENS,
        }
        self._http_headers = {"authorization": f"Bearer {cfg['warm_key']}"}
        self._http = httpx.AsyncClient(
            base_url=cfg["fake_url"],
            timeout=CALL_TIMEOUT,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
            trust_env=False,
        )
        self._openai = openai.AsyncOpenAI(
            api_key=cfg["warm_key"],
            base_url=cfg["fake_url"] + "/v1",
            max_retries=0,
            # The service sends through aiohttp; --b1-aiohttp gives the direct
            # call the same transport (the SDK's own aiohttp client).
            **({"http_client": openai.DefaultAioHttpClient()} if cfg["b1_aiohttp"] else {}),
        )
        self._sdk_messages = messages
        self._complete_req = inference_service_pb2.CompleteRequest(
            intent="general_chat",
            messages=[inference_service_pb2.ChatMessage(role="user", content=PROMPT)],
            max_tokens=MAX_TOKENS,
        )
        self._masked_req = config_service_pb2.GetMaskedConfigRequest()

    def _metadata(self, tenant: str) -> tuple[tuple[str, str], ...]:
        token = self._mint(self._settings, tenant=tenant, ttl_seconds=4 * 3600)
        return (("authorization", f"Bearer {token}"),)

    async def connect(self, port: int, channels: int) -> None:
        """(Re)open ``channels`` gRPC channels to the server on ``port``."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from liya.engine.v1 import config_service_pb2_grpc, inference_service_pb2_grpc

        await self._close_channels()
        for _ in range(channels):
            # A local subchannel pool gives each channel its own connection, so
            # with --workers the kernel can spread them over the server processes.
            channel = grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            self._channels.append(channel)
            self._health.append(health_pb2_grpc.HealthStub(channel))
            self._inference.append(inference_service_pb2_grpc.InferenceServiceStub(channel))
            self._config.append(config_service_pb2_grpc.ConfigServiceStub(channel))
        self._health_req = health_pb2.HealthCheckRequest()
        self._serving = health_pb2.HealthCheckResponse.SERVING

    async def wait_serving(self, within: float) -> dict[str, Any]:
        """Poll the health service on every channel until all say SERVING."""
        import grpc

        deadline = time.monotonic() + within
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                replies = [await h.Check(self._health_req, timeout=1) for h in self._health]
                if all(r.status == self._serving for r in replies):
                    return {"ok": True}
                last = "NOT_SERVING"
            except grpc.aio.AioRpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            await asyncio.sleep(0.1)
        return {"ok": False, "error": f"server not SERVING after {within:.0f}s ({last})"}

    async def _close_channels(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._health.clear()
        self._inference.clear()
        self._config.clear()

    async def aclose(self) -> None:
        """Close the channels and the HTTP clients."""
        await self._close_channels()
        await self._http.aclose()
        await self._openai.close()

    async def run_phase(self, job: dict[str, Any]) -> dict[str, Any]:
        """H (``streams.hold``) or overload (``overload.open_loop``) on these channels."""
        if job["op"] == "hold":
            return await streams.hold(job, self._inference, self._metadata)
        return await overload.open_loop(job, self._inference, self._metadata, self._complete_req)

    def _caller(self, scenario: str, slot: int, tenants: Any) -> Any:
        """An ``async call()`` for one load task; prepares what is not to be timed."""
        n = len(self._channels) or 1
        if scenario in streams.SCENARIOS:
            call = streams.caller(
                scenario,
                openai=self._openai,
                stubs=self._inference,
                slot=slot,
                metadata=self._warm_md,
            )
            return lambda: call
        if scenario == "F":

            async def call() -> None:
                r = await self._http.post(
                    "/v1/chat/completions", json=self._http_body, headers=self._http_headers
                )
                if r.status_code != 200:
                    raise RuntimeError(f"fake answered HTTP {r.status_code}")

            return lambda: call
        if scenario == "B1":

            async def call() -> None:
                await self._openai.chat.completions.create(
                    model=MODEL,
                    messages=self._sdk_messages,
                    max_completion_tokens=MAX_TOKENS,
                )

            return lambda: call
        if scenario == "B0":
            check, req = self._health[slot % n].Check, self._health_req

            async def call() -> None:
                await check(req, timeout=CALL_TIMEOUT)

            return lambda: call
        if scenario == "R":
            get, req, md = self._config[slot % n].GetMaskedConfig, self._masked_req, self._warm_md

            async def call() -> None:
                await get(req, metadata=md, timeout=CALL_TIMEOUT)

            return lambda: call
        complete, req = self._inference[slot % n].Complete, self._complete_req
        if scenario == "G":
            md = self._warm_md

            async def call() -> None:
                await complete(req, metadata=md, timeout=CALL_TIMEOUT)

            return lambda: call
        if scenario == "G-cold":

            def prepare() -> Any:
                index = next(tenants, None)
                if index is None:
                    raise _Exhausted
                md = self._metadata(cold_tenant(index))

                async def call() -> None:
                    await complete(req, metadata=md, timeout=CALL_TIMEOUT)

                return call

            return prepare
        raise ValueError(f"unknown scenario {scenario!r}")

    async def load(self, job: dict[str, Any]) -> dict[str, Any]:
        """Closed loop: ``concurrency`` tasks call back to back from ``start``.

        Latency is kept for calls started in [measure, end); throughput counts
        calls that finished in that window. With ``tenants`` (G-cold) a task
        stops when the range is used up; ``end`` may then be infinite.
        """
        start, measure, end = job["start"], job["measure"], job["end"]
        lo_hi = job.get("tenants")
        tenants = iter(range(*lo_hi)) if lo_hi else None
        latencies = array.array("d")
        stats = {"done": 0, "errors": 0, "used": 0}
        errors: Counter[str] = Counter()
        exhausted = False

        async def task(slot: int) -> None:
            nonlocal exhausted
            prepare = self._caller(job["scenario"], slot + job.get("slot_offset", 0), tenants)
            while True:
                if time.monotonic() >= end:
                    return
                try:
                    call = prepare()
                except _Exhausted:
                    exhausted = True
                    return
                began = time.monotonic()
                try:
                    # A stream's call returns when its first delta came: its latency.
                    first = await call()
                    ok = True
                except Exception as exc:
                    ok = False
                    errors[describe(exc)] += 1
                ended = time.monotonic()
                stats["used"] += 1
                if began >= measure:
                    if ok:
                        latencies.append((first or ended) - began)
                    else:
                        stats["errors"] += 1
                if ok and measure <= ended < end:
                    stats["done"] += 1

        await asyncio.sleep(max(0.0, start - time.monotonic()))
        await asyncio.gather(*(task(i) for i in range(job["concurrency"])))
        return {
            "ok": True,
            "latencies": latencies.tobytes(),
            "done": stats["done"],
            "errors": stats["errors"],
            "calls": stats["used"],
            "error_kinds": dict(errors.most_common(3)),
            "exhausted": exhausted,
        }

"""Benchmark of the Liya Engine service on loopback (``make bench``).

Everything runs on this machine and talks over 127.0.0.1 only:

* the fake providers (``liya-engine fake-providers``) in their own process,
  measured alone first with plain httpx POSTs (scenario F);
* the service (``liya-engine serve``) in its own process, on a fresh SQLite file
  (or a scratch PostgreSQL database with ``--postgres``) seeded with one warm
  tenant and ``--tenants`` cold ones before it starts;
* client worker processes (``--clients``, spawned, each one asyncio loop) that
  generate the load, so the client is not one saturated core.

Scenarios, run interleaved in rounds (every scenario at every concurrency in each
round, in an order that changes from round to round, each target's pair side by
side) so that drift on a shared machine hits all alike:

    B0      grpc.health.v1.Health/Check on the service: the gRPC floor
    B1      the official OpenAI SDK (one reused AsyncOpenAI, max_retries=0,
            its default HTTP client) straight at the fake: the SDK + HTTP
            floor of a caller using the SDK directly (``--b1-aiohttp``: on the
            SDK's aiohttp client, the transport the service itself uses)
    G       InferenceService/Complete through the service, warm tenant
    G-cold  Complete, each call from a tenant never seen before
    R       ConfigService/GetMaskedConfig, warm tenant

For each: p50/p99 latency at concurrency 1; throughput and p99 at 16 and 64;
CPU per request of the server, the fake and the clients (from /proc); the
server's RSS. Then RSS before and after ``--rss-tenants`` distinct tenants made
a call, the issue's targets as ratios, a table, and JSON under bench/results/.
``--profile`` samples the server with py-spy during an extra G block.

Run ``python bench/run.py --help`` for the knobs; see bench/README.md for how
to read the figures.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import ctypes
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent

SCENARIOS = ("B0", "B1", "G", "G-cold", "R")
# Scenarios a target compares run next to each other in every round.
ADJACENT = (("B0", "R"), ("B1", "G", "G-cold"))
CONCURRENCY = (1, 16, 64)
WARM_TENANT = "bench-warm"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 64
PROMPT = "Summarise in one sentence why a company would bring its own provider key."
CALL_TIMEOUT = 30.0
TICKS = os.sysconf("SC_CLK_TCK")
SEED_BATCH = 5_000
PR_SET_PDEATHSIG = 1
# Environment that could send traffic anywhere but loopback, or change the SDKs.
SCRUBBED_PREFIXES = ("LIYA_", "OPENAI_", "ANTHROPIC_", "AZURE_")
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")


def cold_tenant(i: int) -> str:
    return f"bench-cold-{i:06d}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


# ---------------------------------------------------------------------------
# Client worker processes (spawned: a fresh interpreter, no inherited gRPC state)
# ---------------------------------------------------------------------------


def client_main(conn: Any, cfg: dict[str, Any]) -> None:
    """Entry point of a client worker: serve jobs from ``conn`` until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when to stop
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        asyncio.run(_client_loop(conn, cfg))


class _Exhausted(Exception):
    """The worker used every tenant it was given for this block."""


async def _client_loop(conn: Any, cfg: dict[str, Any]) -> None:
    client = LoadClient(cfg)
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
        await self._close_channels()
        await self._http.aclose()
        await self._openai.close()

    def _caller(self, scenario: str, slot: int, tenants: Any) -> Any:
        """An ``async call()`` for one load task; prepares what is not to be timed."""
        n = len(self._channels) or 1
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
                    await call()
                    ok = True
                except Exception as exc:
                    ok = False
                    errors[_describe(exc)] += 1
                ended = time.monotonic()
                stats["used"] += 1
                if began >= measure:
                    if ok:
                        latencies.append(ended - began)
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


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {(details() or '')[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


# ---------------------------------------------------------------------------
# Processes: the fake, the server, the clients; /proc readings
# ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the benchmark is killed, so is it.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This process's environment without LIYA_/SDK settings and proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SCRUBBED_PREFIXES) and k.lower() not in PROXY_VARS
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads, dead ones too)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = raw.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in out:
                out[name] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def http_get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
        return int(r.status)


def http_post(url: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=data, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        r.read()


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}")
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.5)
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.05)
    raise BenchError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Snapshot:
    at: float
    server: float
    fake: float
    clients: float


@dataclass
class Block:
    """One measured block: a scenario at a concurrency in one round."""

    scenario: str
    concurrency: int
    round: int
    window: float
    done: int
    errors: int
    calls: int
    latencies: array.array
    server_cpu: float
    fake_cpu: float
    client_cpu: float
    server_rss_kb: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    exhausted: bool = False
    cache_hits: float | None = None
    cache_misses: float | None = None


class Bench:
    """Owns the processes and runs the phases."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="liya-bench-"))
        self.env = clean_environment()
        self.fake: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_pids: list[int] = []
        self.clients: list[tuple[Any, Any, int]] = []  # (process, conn, pid)
        self.fake_port = free_port()
        self.server_port = free_port()
        self.fake_url = f"http://127.0.0.1:{self.fake_port}"
        self.master_key_id = "bench-1"
        self.master_key = secrets.token_bytes(32)
        self.jwt_secret = secrets.token_urlsafe(48)
        self.warm_key = "sk-proj-benchwarm" + secrets.token_hex(16)
        self.db_url = ""
        self.scratch_pg: str | None = None
        self.tenant_cursor = 0
        self.cold_calls = 0
        # The server's Prometheus endpoint, read between blocks to check that
        # G-cold calls miss the tenant cache and G calls hit it (one process only:
        # workers would all try to bind it).
        self.metrics_port = free_port() if args.workers == 1 else None

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        for proc, conn, _pid in self.clients:
            with contextlib.suppress(Exception):
                conn.send({"op": "stop"})
                if conn.poll(5):
                    conn.recv()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        stop_process(self.server)
        stop_process(self.fake, grace=5)
        if self.scratch_pg:
            with contextlib.suppress(Exception):
                asyncio.run(drop_pg_database(self.args.postgres, self.scratch_pg))
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start_fake(self) -> None:
        with (self.tmp / "fake.log").open("wb") as logfile:
            self.fake = subprocess.Popen(  # noqa: S603 - our own entry point
                [str(BIN / "liya-engine"), "fake-providers", "--port", str(self.fake_port)],
                env=self.env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # safe: this process runs no threads
            )
        wait_port(self.fake_port, self.fake, 30, "fake providers")
        if http_get(f"{self.fake_url}/_control/health") != 200:
            raise BenchError("fake providers are not healthy")

    def server_env(self) -> dict[str, str]:
        key = f"{self.master_key_id}:{base64.b64encode(self.master_key).decode()}"
        env = dict(self.env)
        env.update(
            LIYA_LISTEN_ADDRESS=f"127.0.0.1:{self.server_port}",
            LIYA_DATABASE_URL=self.db_url,
            LIYA_MASTER_KEYS=key,
            LIYA_JWT_HS256_SECRET=self.jwt_secret,
            LIYA_OPENAI_BASE_URL=f"{self.fake_url}/v1",
            LIYA_ANTHROPIC_BASE_URL=self.fake_url,
            LIYA_LOG_LEVEL="WARNING",
            LIYA_SHUTDOWN_GRACE_SECONDS="2",
        )
        if self.metrics_port:
            env["LIYA_METRICS_ADDRESS"] = f"127.0.0.1:{self.metrics_port}"
        for item in self.args.server_env:
            name, _, value = item.partition("=")
            env[name] = value
        return env

    def cache_counters(self) -> tuple[float, float] | None:
        """(hits, misses) of the server's tenant config cache, if it is readable."""
        if not self.metrics_port:
            return None
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        found = {"hit": 0.0, "miss": 0.0}
        for line in text.splitlines():
            if line.startswith("liya_config_cache_total{"):
                labels, _, value = line.rpartition(" ")
                for result in found:
                    if f'result="{result}"' in labels:
                        found[result] = float(value)
        return found["hit"], found["miss"]

    def start_server(self) -> None:
        cmd = [str(BIN / "liya-engine"), "serve"]
        if self.args.workers > 1:
            cmd += ["--workers", str(self.args.workers)]
        with (self.tmp / "server.log").open("ab") as logfile:
            self.server = subprocess.Popen(  # noqa: S603 - our own entry point
                cmd,
                env=self.server_env(),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # safe: this process runs no threads
            )
        try:
            wait_port(self.server_port, self.server, 60, "server")
            if self.args.workers > 1:
                deadline = time.monotonic() + 30
                while len(children_of(self.server.pid)) < self.args.workers:
                    if time.monotonic() > deadline or self.server.poll() is not None:
                        raise BenchError("server workers did not start")
                    time.sleep(0.1)
            for conn in self.conns():
                self.ask(conn, {"op": "connect", "port": self.server_port, "channels": 1})
            self.ask(self.conns()[0], {"op": "wait_serving", "within": 60}, timeout=70)
            if self.args.workers > 1:
                time.sleep(2.0)  # every worker has bound the port by now
        except BenchError as exc:
            raise BenchError(
                f"{exc}\n--- server log ---\n{tail(self.tmp / 'server.log')}"
            ) from None
        pids = [self.server.pid, *children_of(self.server.pid)]
        self.server_pids = pids
        for conn in self.conns():
            self.ask(
                conn,
                {"op": "connect", "port": self.server_port, "channels": self.args.channels},
            )

    def start_clients(self) -> None:
        ctx = mp.get_context("spawn")
        cfg = {
            "fake_url": self.fake_url,
            "jwt_secret": self.jwt_secret,
            "warm_key": self.warm_key,
            "b1_aiohttp": self.args.b1_aiohttp,
        }
        for _ in range(self.args.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child, cfg), daemon=True)
            proc.start()
            child.close()
            self.clients.append((proc, parent, proc.pid))
        for conn in self.conns():
            self.ask(conn, {"op": "ping"}, timeout=60)

    def check_alive(self) -> None:
        for proc, what, logname in (
            (self.fake, "fake providers", "fake.log"),
            (self.server, "server", "server.log"),
        ):
            if proc is not None and proc.poll() is not None:
                raise BenchError(
                    f"{what} exited with status {proc.returncode}\n--- {logname} ---\n"
                    + tail(self.tmp / logname)
                )

    def conns(self) -> list[Any]:
        return [conn for _proc, conn, _pid in self.clients]

    def ask(self, conn: Any, job: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        conn.send(job)
        return self.answer(conn, timeout)

    def answer(self, conn: Any, timeout: float) -> dict[str, Any]:
        if not conn.poll(timeout):
            raise BenchError(f"a client worker did not answer within {timeout:.0f}s")
        try:
            reply = conn.recv()
        except EOFError:
            raise BenchError("a client worker died") from None
        if not reply.get("ok"):
            raise BenchError(f"client worker: {reply.get('error')}")
        return reply

    # -- measuring -------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return Snapshot(
            at=time.monotonic(),
            server=sum(cpu_seconds(p) for p in self.server_pids),
            fake=cpu_seconds(self.fake.pid) if self.fake else 0.0,
            clients=sum(cpu_seconds(pid) for _p, _c, pid in self.clients),
        )

    def server_memory(self) -> dict[str, int]:
        total = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.server_pids:
            for k, v in memory_kb(pid).items():
                total[k] += v
        return total

    def take_tenants(self, count: int) -> tuple[int, int]:
        lo = self.tenant_cursor
        hi = min(lo + count, self.args.tenants)
        if hi <= lo:
            raise BenchError(f"all {self.args.tenants} cold tenants are used up")
        self.tenant_cursor = hi
        return lo, hi

    def run_block(
        self,
        scenario: str,
        concurrency: int,
        *,
        warm: float,
        window: float,
        round_no: int = 0,
        cold_budget: int = 0,
    ) -> Block:
        """Run one closed-loop block and read CPU at the window's edges."""
        conns = self.conns()[: 1 if concurrency == 1 else len(self.clients)]
        shares = split(concurrency, len(conns))
        cache_before = self.cache_counters() if scenario in ("G", "G-cold") else None
        start = time.monotonic() + 0.1
        measure, end = start + warm, start + warm + window
        offset = 0
        for conn, share in zip(conns, shares, strict=True):
            job: dict[str, Any] = {
                "op": "load",
                "scenario": scenario,
                "concurrency": share,
                "start": start,
                "measure": measure,
                "end": end,
                "slot_offset": offset,
            }
            offset += share
            if scenario == "G-cold":
                job["tenants"] = self.take_tenants(max(1, cold_budget // len(conns)))
            conn.send(job)
        time.sleep(max(0.0, measure - time.monotonic()))
        before = self.snapshot()
        time.sleep(max(0.0, end - time.monotonic()))
        after = self.snapshot()
        rss = self.server_memory()["VmRSS"]
        replies = [self.answer(conn, CALL_TIMEOUT + 30) for conn in conns]
        self.check_alive()
        with contextlib.suppress(OSError):
            http_post(f"{self.fake_url}/_control/reset")  # the fake records every request
        latencies = array.array("d")
        kinds: Counter[str] = Counter()
        for r in replies:
            latencies.frombytes(r["latencies"])
            kinds.update(r["error_kinds"])
        hits = misses = None
        cache_after = self.cache_counters() if cache_before else None
        if cache_before and cache_after:
            hits, misses = (a - b for a, b in zip(cache_after, cache_before, strict=True))
        if scenario == "G-cold":
            self.cold_calls += sum(r["calls"] for r in replies)
        return Block(
            scenario=scenario,
            concurrency=concurrency,
            round=round_no,
            window=after.at - before.at,
            done=sum(r["done"] for r in replies),
            errors=sum(r["errors"] for r in replies),
            calls=sum(r["calls"] for r in replies),
            latencies=latencies,
            server_cpu=after.server - before.server,
            fake_cpu=after.fake - before.fake,
            client_cpu=after.clients - before.clients,
            server_rss_kb=rss,
            error_kinds=dict(kinds),
            exhausted=any(r["exhausted"] for r in replies),
            cache_hits=hits,
            cache_misses=misses,
        )

    def run_count(self, scenario: str, concurrency: int, count: int) -> Block:
        """Run exactly ``count`` G-cold calls (distinct tenants), as fast as allowed."""
        conns = self.conns()
        shares = split(concurrency, len(conns))
        per = split(count, len(conns))
        start = time.monotonic() + 0.1
        for conn, share, n in zip(conns, shares, per, strict=True):
            conn.send(
                {
                    "op": "load",
                    "scenario": scenario,
                    "concurrency": share,
                    "start": start,
                    "measure": start,
                    "end": float("inf"),
                    "tenants": self.take_tenants(n),
                }
            )
        time.sleep(max(0.0, start - time.monotonic()))
        before = self.snapshot()
        replies = [self.answer(conn, 600) for conn in conns]
        after = self.snapshot()
        self.check_alive()
        latencies = array.array("d")
        kinds: Counter[str] = Counter()
        for r in replies:
            latencies.frombytes(r["latencies"])
            kinds.update(r["error_kinds"])
        with contextlib.suppress(OSError):
            http_post(f"{self.fake_url}/_control/reset")
        self.cold_calls += sum(r["calls"] for r in replies)
        return Block(
            scenario=scenario,
            concurrency=concurrency,
            round=0,
            window=after.at - before.at,
            done=sum(r["calls"] - r["errors"] for r in replies),
            errors=sum(r["errors"] for r in replies),
            calls=sum(r["calls"] for r in replies),
            latencies=latencies,
            server_cpu=after.server - before.server,
            fake_cpu=after.fake - before.fake,
            client_cpu=after.clients - before.clients,
            server_rss_kb=self.server_memory()["VmRSS"],
            error_kinds=dict(kinds),
        )


# ---------------------------------------------------------------------------
# Seeding the database (before the server starts, through the service's own
# schema and cipher)
# ---------------------------------------------------------------------------


async def seed_database(
    url: str, key_id: str, material: bytes, warm_key: str, tenants: int
) -> dict[str, Any]:
    """Migrate, then bulk-insert the warm tenant and ``tenants`` cold ones.

    Each tenant is in byok mode with its own OpenAI key, encrypted by the same
    ``KeyCipher`` (AES-256-GCM, per-tenant HKDF key) the service uses.
    """
    from sqlalchemy import insert

    from liya_engine.config.service import key_preview
    from liya_engine.crypto.cipher import KeyCipher, Keyring, KeyringEntry
    from liya_engine.secret import Secret
    from liya_engine.storage.database import Database
    from liya_engine.storage.tables import ProviderCredentialRow, TenantConfigRow

    db = Database(url)
    try:
        started = time.perf_counter()
        await db.migrate()
        salt = (await db.salts_for([key_id]))[key_id]
        cipher = KeyCipher(Keyring([KeyringEntry(key_id, material, salt)]))
        migrated = time.perf_counter()
        now = datetime.now(UTC)
        ids = [WARM_TENANT, *(cold_tenant(i) for i in range(tenants))]
        crypto_s = 0.0
        for first in range(0, len(ids), SEED_BATCH):
            configs, creds = [], []
            t0 = time.perf_counter()
            for tenant in ids[first : first + SEED_BATCH]:
                key = warm_key if tenant == WARM_TENANT else "sk-proj-" + secrets.token_hex(24)
                configs.append(
                    {
                        "tenant_id": tenant,
                        "version": 1,
                        "mode": "byok",
                        "strategy": "",
                        "overrides": {},
                        "cost_limit_usd": None,
                        "update_time": now,
                    }
                )
                creds.append(
                    {
                        "tenant_id": tenant,
                        "provider": "openai",
                        "api_key_ciphertext": cipher.encrypt(
                            key, tenant_id=tenant, provider="openai", field="api_key"
                        ),
                        "master_key_id": key_id,
                        "api_key_preview": key_preview(Secret(key)),
                        "default_model": MODEL,
                        "endpoint": "",
                        "deployment_name": "",
                        "api_version": "",
                    }
                )
            crypto_s += time.perf_counter() - t0
            async with db.engine.begin() as conn:
                await conn.execute(insert(TenantConfigRow.__table__), configs)
                await conn.execute(insert(ProviderCredentialRow.__table__), creds)
        done = time.perf_counter()
        return {
            "tenants": len(ids),
            "seconds": round(done - started, 2),
            "migrate_seconds": round(migrated - started, 2),
            "encrypt_seconds": round(crypto_s, 2),
            "insert_seconds": round(done - migrated - crypto_s, 2),
            "tenants_per_second": round(len(ids) / (done - migrated), 1),
        }
    finally:
        await db.dispose()


async def create_pg_database(url: str) -> tuple[str, str]:
    """A fresh database on the PostgreSQL server of ``url``: (its name, its URL)."""
    import asyncpg

    name = f"liya_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, url.rsplit("/", 1)[0] + f"/{name}"


async def drop_pg_database(url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def block_order(round_index: int) -> list[str]:
    """The scenarios of one round: groups of ``ADJACENT`` stay together, and
    both the order of the groups and the order within them flip from round to
    round, so a steady drift favours no scenario of a compared pair."""
    groups = [list(group) for group in ADJACENT]
    if round_index % 2:
        groups = [group[::-1] for group in reversed(groups)]
    return [scenario for group in groups for scenario in group]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarise(blocks: list[Block]) -> dict[str, Any]:
    """Pool the rounds of one scenario at one concurrency."""
    lat = sorted(x for b in blocks for x in b.latencies)
    window = sum(b.window for b in blocks)
    done = sum(b.done for b in blocks)
    per_round = [b.done / b.window for b in blocks if b.window > 0]

    def per_req(total: float) -> float | None:
        return round(total / done * 1000, 4) if done else None

    return {
        "samples": len(lat),
        "p50_ms": round(percentile(lat, 50) * 1000, 4),
        "p90_ms": round(percentile(lat, 90) * 1000, 4),
        "p99_ms": round(percentile(lat, 99) * 1000, 4),
        "mean_ms": round(sum(lat) / len(lat) * 1000, 4) if lat else None,
        "throughput_rps": round(done / window, 1) if window else 0.0,
        "throughput_rps_per_round": [round(x, 1) for x in per_round],
        "errors": sum(b.errors for b in blocks),
        "error_kinds": dict(sum((Counter(b.error_kinds) for b in blocks), Counter())),
        "server_cpu_ms_per_req": per_req(sum(b.server_cpu for b in blocks)),
        "fake_cpu_ms_per_req": per_req(sum(b.fake_cpu for b in blocks)),
        "client_cpu_ms_per_req": per_req(sum(b.client_cpu for b in blocks)),
        "server_cores": round(sum(b.server_cpu for b in blocks) / window, 3) if window else None,
        "fake_cores": round(sum(b.fake_cpu for b in blocks) / window, 3) if window else None,
        "client_cores": round(sum(b.client_cpu for b in blocks) / window, 3) if window else None,
        "server_rss_mb": round(max(b.server_rss_kb for b in blocks) / 1024, 1),
        "exhausted_tenants": any(b.exhausted for b in blocks),
        "cache_misses_per_call": cache_misses_per_call(blocks),
    }


def cache_misses_per_call(blocks: list[Block]) -> float | None:
    """Tenant cache misses per call (all calls of the blocks, warm-up included)."""
    if any(b.cache_misses is None for b in blocks):
        return None
    calls = sum(b.calls for b in blocks)
    return round(sum(b.cache_misses or 0.0 for b in blocks) / calls, 4) if calls else None


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_tables(figures: dict[str, dict[int, dict[str, Any]]], fake_alone: dict[int, Any]) -> str:
    """The latency/throughput table and the CPU table, as Markdown."""
    rows = []
    head = (
        "| scenario | p50 c1 ms | p99 c1 ms | req/s c16 | p99 c16 ms | req/s c64 | p99 c64 ms "
        "| server CPU ms/req (c1 / c64) | errors |"
    )
    rows += [head, "|" + "---|" * 9]
    named = [("F (fake alone, httpx)", fake_alone)] + [(s, figures[s]) for s in SCENARIOS]
    for name, by_c in named:
        c1, c16, c64 = by_c[1], by_c[16], by_c[64]
        errors = sum(by_c[c]["errors"] for c in CONCURRENCY)
        server = (
            "-"
            if name.startswith(("F", "B1"))
            else f"{fmt(c1['server_cpu_ms_per_req'], 3)} / {fmt(c64['server_cpu_ms_per_req'], 3)}"
        )
        rows.append(
            f"| {name} | {fmt(c1['p50_ms'], 3)} | {fmt(c1['p99_ms'], 3)} "
            f"| {fmt(c16['throughput_rps'], 0)} | {fmt(c16['p99_ms'], 2)} "
            f"| {fmt(c64['throughput_rps'], 0)} | {fmt(c64['p99_ms'], 2)} | {server} | {errors} |"
        )
    rows += [
        "",
        "CPU at concurrency 64 (cores busy during the window; ms of CPU per request):",
        "",
        "| scenario | server cores | server ms/req | fake cores | fake ms/req "
        "| client cores | client ms/req | server RSS MB |",
        "|" + "---|" * 8,
    ]
    for name, by_c in named:
        c = by_c[64]
        rows.append(
            f"| {name} | {fmt(c['server_cores'])} | {fmt(c['server_cpu_ms_per_req'], 3)} "
            f"| {fmt(c['fake_cores'])} | {fmt(c['fake_cpu_ms_per_req'], 3)} "
            f"| {fmt(c['client_cores'])} | {fmt(c['client_cpu_ms_per_req'], 3)} "
            f"| {fmt(c['server_rss_mb'], 1)} |"
        )
    return "\n".join(rows)


def evaluate_targets(
    figures: dict[str, dict[int, dict[str, Any]]], rss: dict[str, Any]
) -> list[dict[str, Any]]:
    """The issue's targets, as ratios within this run."""
    p50 = {s: figures[s][1]["p50_ms"] for s in SCENARIOS}
    thr = {s: figures[s][64]["throughput_rps"] for s in SCENARIOS}
    growth_mb = rss["growth_mb"]

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    def round_ratios(a: str, b: str) -> list[float]:
        # The same ratio within each round: its spread shows how noisy the run was.
        pairs = zip(
            figures[a][64]["throughput_rps_per_round"],
            figures[b][64]["throughput_rps_per_round"],
            strict=False,
        )
        return [round(ratio(x, y), 3) for x, y in pairs]

    targets = [
        {
            "target": "p50(G) - p50(B1) <= 1.5 x p50(B0)",
            "measured": p50["G"] - p50["B1"],
            "limit": 1.5 * p50["B0"],
            "unit": "ms",
            "higher_is_better": False,
        },
        {
            "target": "throughput c64: G >= 0.5 x B1",
            "measured": ratio(thr["G"], thr["B1"]),
            "per_round": round_ratios("G", "B1"),
            "limit": 0.5,
            "unit": "x B1",
            "higher_is_better": True,
        },
        {
            "target": "throughput c64: R >= 0.8 x B0",
            "measured": ratio(thr["R"], thr["B0"]),
            "per_round": round_ratios("R", "B0"),
            "limit": 0.8,
            "unit": "x B0",
            "higher_is_better": True,
        },
        {
            "target": "p50(G-cold) - p50(G) <= 1 x p50(B0)",
            "measured": p50["G-cold"] - p50["G"],
            "limit": p50["B0"],
            "unit": "ms",
            "higher_is_better": False,
        },
        {
            "target": "RSS growth 0 -> 10,000 active tenants <= 100 MB"
            + ("" if rss["tenants"] == 10_000 else f" (measured with {rss['tenants']:,})"),
            "measured": growth_mb,
            "limit": 100.0,
            "unit": "MB",
            "higher_is_better": False,
        },
    ]
    for t in targets:
        ok = t["measured"] >= t["limit"] if t["higher_is_better"] else t["measured"] <= t["limit"]
        t["result"] = "PASS" if ok else "MISS"
    if rss["tenants"] != 10_000:
        # Growth is not linear (the SDK client cache fills up first), so a
        # smaller count says little about 10,000: shown, not judged.
        targets[-1]["result"] = "n/a"
        t["measured"] = round(t["measured"], 4)
        t["limit"] = round(t["limit"], 4)
    return targets


def render_targets(targets: list[dict[str, Any]]) -> str:
    rows = ["| target | measured | limit | result | per round |", "|---|---|---|---|---|"]
    for t in targets:
        sign = ">=" if t["higher_is_better"] else "<="
        rounds = ", ".join(f"{x:.2f}" for x in t.get("per_round", ()))
        rows.append(
            f"| {t['target']} | {t['measured']:.3f} {t['unit']} "
            f"| {sign} {t['limit']:.3f} {t['unit']} | {t['result']} | {rounds or '-'} |"
        )
    return "\n".join(rows)


def machine_info() -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model, mem_total = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = f"{int(line.split()[1]) // 1024} MB"

    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(  # noqa: S603 - fixed read-only queries
                ["git", "--no-optional-locks", *args],  # noqa: S607
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        return ""

    commit = git("rev-parse", "--short", "HEAD")
    # Uncommitted changes to the service mean the figures are not of that commit.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "server"))
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "openai": version("openai"),
        "httpx2": version("httpx2"),
        "sqlalchemy": version("SQLAlchemy"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "server_tree_dirty": dirty,
    }


# ---------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------


def summarise_profile(collapsed: Path, top: int = 25) -> str:
    """Top functions by own and by total samples, and own samples per package."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    package: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += n
        package[_package_of(frames[-1])] += n
        for name in set(frames):
            total[name] += n
    if not samples:
        return "no samples (was the server busy?)\n"
    out = [f"{samples} samples of the server's Python threads holding the GIL", ""]
    out.append("own time by package:")
    out += [f"  {n / samples:6.1%}  {name}" for name, n in package.most_common(15)]
    out += ["", f"top {top} functions by own time:"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in own.most_common(top)]
    out += ["", f"top {top} functions by total time (own + callees):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in total.most_common(top)]
    ours = [(name, n) for name, n in total.most_common() if "(liya_engine/" in name]
    out += ["", "liya_engine functions by total time:"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in ours[:top]]
    return "\n".join(out) + "\n"


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", "/server/", "/clients/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def _package_of(frame_name: str) -> str:
    path = frame_name.rpartition(" (")[2].rstrip(")")
    if not path:
        return "?"
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if "/" in path or head.endswith(".py") else head


def run_profile(bench: Bench, stamp: str, seconds: float, scenario: str) -> dict[str, Any]:
    """Sample the server with py-spy during an extra block at concurrency 16."""
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not py_spy:
        log("--profile: py-spy not found (pip install py-spy); no profile taken")
        return {"tool": None}
    # With --no-save the profile goes to the temporary directory (see --keep).
    folder = bench.tmp if bench.args.no_save else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"profile-{stamp}-{scenario}.collapsed.txt"
    cmd = [
        py_spy,
        "record",
        "--pid",
        str(bench.server.pid if bench.server else 0),
        "--rate",
        "200",
        "--duration",
        str(max(1, round(seconds))),
        # Only samples that hold the GIL: the single-process server is bound by it
        # (about one core busy), so that is where its time goes. Threads waiting on
        # a queue (aiosqlite, executors) would otherwise look busy.
        "--gil",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    if bench.args.workers > 1:
        cmd.append("--subprocesses")
    if bench.args.profile_native:
        cmd.append("--native")  # C and Cython frames too (gRPC core, protobuf)
    log(f"profiling the server with py-spy for {seconds:.0f}s during {scenario} at c=16")
    spy = subprocess.Popen(  # noqa: S603 - a tool found on PATH, fixed arguments
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    time.sleep(1.0)  # py-spy attaches
    budget = (bench.args.tenants - bench.tenant_cursor) if scenario == "G-cold" else 0
    block = bench.run_block(scenario, 16, warm=0.2, window=seconds, cold_budget=budget)
    output, _ = spy.communicate(timeout=60)
    if spy.returncode != 0 or not out.exists():
        log(f"py-spy failed: {output.decode(errors='replace')[-500:]}")
        return {"tool": "py-spy", "error": output.decode(errors="replace")[-500:]}
    summary = summarise_profile(out)
    top_file = folder / f"profile-{stamp}-{scenario}.top.txt"
    top_file.write_text(summary)
    return {
        "tool": "py-spy",
        "scenario": scenario,
        "concurrency": 16,
        "seconds": seconds,
        "throughput_rps_while_profiled": round(block.done / block.window, 1),
        "collapsed_stacks": out.name,
        "summary": top_file.name,
        "summary_text": summary,
    }


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the service against the gRPC and SDK floors on loopback "
        "(see bench/README.md).",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run (under a minute)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    p.add_argument("--window", type=float, help="measured seconds per block (default 3; quick 1)")
    p.add_argument(
        "--warm", type=float, help="unmeasured ramp seconds per block (default 0.5; quick 0.3)"
    )
    p.add_argument(
        "--tenants",
        type=int,
        help="cold tenants seeded in the database (default 100000; quick 20000)",
    )
    p.add_argument(
        "--rss-tenants",
        type=int,
        help="distinct tenants that call before the second RSS reading (default 10000; quick 1000)",
    )
    p.add_argument("--workers", type=int, default=1, help="serve --workers N (default 1)")
    p.add_argument(
        "--b1-aiohttp",
        action="store_true",
        help="B1 on the SDK's aiohttp client instead of its default (httpx2) one",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the server, e.g. LIYA_EVENT_LOOP=uvloop (repeatable)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=max(2, len(os.sched_getaffinity(0))),
        help="client worker processes (default: one per core, at least 2)",
    )
    p.add_argument(
        "--channels", type=int, default=2, help="gRPC channels (connections) per client process"
    )
    p.add_argument(
        "--postgres",
        metavar="URL",
        help="postgresql+asyncpg://user@host/db: run on a scratch database created "
        "on that server (dropped afterwards) instead of SQLite",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="G",
        metavar="SCENARIOS",
        help="py-spy the server during an extra block of each scenario after the measured "
        "rounds (comma-separated; default G)",
    )
    p.add_argument("--profile-seconds", type=float, help="default 10; quick 4")
    p.add_argument(
        "--profile-native", action="store_true", help="py-spy --native: C/Cython frames too"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, db)")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "rounds": 1 if quick else 3,
        "window": 1.0 if quick else 3.0,
        "warm": 0.3 if quick else 0.5,
        "tenants": 20_000 if quick else 100_000,
        "rss_tenants": 1_000 if quick else 10_000,
        "profile_seconds": 4.0 if quick else 10.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.clients < 1 or args.channels < 1 or args.rounds < 1 or args.workers < 1:
        p.error("--clients, --channels, --rounds and --workers must be at least 1")
    if args.profile and not set(args.profile.split(",")) <= set(SCENARIOS) - {"B1"}:
        p.error("--profile takes scenarios of the server: B0, G, G-cold, R")
    if args.rss_tenants >= args.tenants:
        p.error("--rss-tenants must be below --tenants")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = datetime.now(UTC)
    bench = Bench(args)
    try:
        return run(bench, stamp, started)
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.close()


def run(bench: Bench, stamp: str, started: datetime) -> int:
    args = bench.args
    machine = machine_info()
    log(
        f"{machine['nproc']} cores ({machine['cpu_model']}), Python {machine['python']}, "
        f"grpcio {machine['grpcio']}; load average {machine['load_average_at_start']}"
    )

    # 1. The database, seeded before the server exists.
    if args.postgres:
        name, bench.db_url = asyncio.run(create_pg_database(args.postgres))
        bench.scratch_pg = name
    else:
        bench.db_url = f"sqlite+aiosqlite:///{bench.tmp / 'bench.db'}"
    log(f"seeding {args.tenants:,} cold tenants + 1 warm tenant")
    seed = asyncio.run(
        seed_database(
            bench.db_url, bench.master_key_id, bench.master_key, bench.warm_key, args.tenants
        )
    )
    log(
        f"seeded {seed['tenants']:,} tenants in {seed['seconds']}s "
        f"({seed['tenants_per_second']:,.0f}/s; encrypt {seed['encrypt_seconds']}s, "
        f"insert {seed['insert_seconds']}s)"
    )

    # 2. The fake alone, measured first.
    bench.start_fake()
    bench.start_clients()
    log(f"fake providers on {bench.fake_url}; {args.clients} client processes")
    bench.run_block("F", 64, warm=0.2, window=0.5)  # ramp, not measured
    fake_blocks = {
        c: bench.run_block("F", c, warm=args.warm, window=args.window) for c in CONCURRENCY
    }
    fake_alone = {c: summarise([b]) for c, b in fake_blocks.items()}
    log(
        "fake alone: "
        + ", ".join(f"c{c} {fake_alone[c]['throughput_rps']:.0f} req/s" for c in CONCURRENCY)
    )

    # 3. The server.
    bench.start_server()
    log(
        f"server pid(s) {bench.server_pids} on 127.0.0.1:{bench.server_port} "
        f"({args.workers} worker(s), {'PostgreSQL' if args.postgres else 'SQLite'})"
    )

    # 4. Warm-up: every scenario once; any error stops the run here.
    warm_budget = 200 * args.clients
    for scenario in SCENARIOS:
        block = bench.run_block(
            scenario, 16, warm=0.2, window=max(0.5, args.warm), cold_budget=warm_budget
        )
        if block.errors or not block.done:
            raise BenchError(
                f"warm-up of {scenario}: {block.errors} errors of {block.calls} calls: "
                f"{block.error_kinds}\n--- server log ---\n{tail(bench.tmp / 'server.log')}"
            )

    # 5. RSS from 0 to N active tenants.
    time.sleep(0.5)
    mem_before = bench.server_memory()
    log(f"RSS {mem_before['VmRSS'] / 1024:.1f} MB; {args.rss_tenants:,} distinct tenants now call")
    rss_block = bench.run_count("G-cold", 16, args.rss_tenants)
    time.sleep(0.5)
    mem_after = bench.server_memory()
    growth_mb = (mem_after["VmRSS"] - mem_before["VmRSS"]) / 1024
    rss = {
        "tenants": args.rss_tenants,
        "before_mb": round(mem_before["VmRSS"] / 1024, 1),
        "after_mb": round(mem_after["VmRSS"] / 1024, 1),
        "growth_mb": round(growth_mb, 1),
        "growth_mb_per_10k": round(growth_mb * 10_000 / args.rss_tenants, 1),
        "peak_mb_after": round(mem_after["VmHWM"] / 1024, 1),
        "calls_per_second": round(rss_block.done / rss_block.window, 1),
        "errors": rss_block.errors,
    }
    log(
        f"RSS {rss['before_mb']} -> {rss['after_mb']} MB (+{rss['growth_mb']} MB) after "
        f"{args.rss_tenants:,} tenants at {rss['calls_per_second']:.0f} calls/s"
    )

    # 6. The interleaved rounds.
    blocks: list[Block] = []
    cold_blocks_left = args.rounds * len(CONCURRENCY)
    # Cold tenants kept back for a G-cold profile after the rounds.
    profiled = args.profile.split(",") if args.profile else []
    reserve = (
        min(args.tenants // 5, int(1_500 * args.profile_seconds)) if "G-cold" in profiled else 0
    )
    total = args.rounds * len(CONCURRENCY) * len(SCENARIOS)
    log(f"{total} blocks of {args.warm}+{args.window}s in {args.rounds} round(s)")
    for r in range(args.rounds):
        for c in CONCURRENCY:
            for scenario in block_order(r):
                budget = 0
                if scenario == "G-cold":
                    budget = (args.tenants - reserve - bench.tenant_cursor) // cold_blocks_left
                    cold_blocks_left -= 1
                block = bench.run_block(
                    scenario,
                    c,
                    warm=args.warm,
                    window=args.window,
                    round_no=r + 1,
                    cold_budget=budget,
                )
                blocks.append(block)
                if block.exhausted:
                    log(f"warning: {scenario} c{c} ran out of cold tenants; its req/s is low")
        log(f"round {r + 1}/{args.rounds} done")

    figures = {
        s: {
            c: summarise([b for b in blocks if b.scenario == s and b.concurrency == c])
            for c in CONCURRENCY
        }
        for s in SCENARIOS
    }

    # 7. Profile (after the measured rounds, so it perturbs none of them).
    profiles = [run_profile(bench, stamp, args.profile_seconds, s) for s in profiled]
    mem_end = bench.server_memory()
    rss["peak_mb"] = round(mem_end["VmHWM"] / 1024, 1)
    rss["final_mb"] = round(mem_end["VmRSS"] / 1024, 1)
    rss["cold_tenants_called"] = bench.cold_calls

    # 8. Report.
    targets = evaluate_targets(figures, rss)
    tables = render_tables(figures, fake_alone)
    print()
    print(
        f"Liya Engine bench {stamp}: {machine['nproc']} x {machine['cpu_model']}, "
        f"Python {machine['python']}, grpcio {machine['grpcio']}, "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}, {args.workers} server worker(s), "
        f"{args.clients} client processes, {args.rounds} round(s) x {args.window}s"
        + (" [QUICK]" if args.quick else "")
    )
    print()
    print(tables)
    print()
    print(
        f"Server RSS: {rss['before_mb']} MB before, {rss['after_mb']} MB after "
        f"{rss['tenants']:,} distinct tenants (+{rss['growth_mb']} MB); peak {rss['peak_mb']} MB "
        f"after {rss['cold_tenants_called']:,} cold tenants in all. Seeding "
        f"{seed['tenants']:,} tenants took {seed['seconds']}s."
    )
    fake_ms = fake_alone[64]["fake_cpu_ms_per_req"] or float("nan")
    print(
        f"Fake providers: {fake_ms:.3f} ms CPU per request alone (about "
        f"{1000 / fake_ms:,.0f} req/s on one core); busy {fmt(figures['G'][64]['fake_cores'])} "
        f"cores during G and {fmt(figures['B1'][64]['fake_cores'])} during B1 at c64."
    )
    misses = {s: figures[s][64]["cache_misses_per_call"] for s in ("G", "G-cold")}
    if None not in misses.values():
        print(
            f"Tenant cache misses per call at c64: G {misses['G']:.4f}, "
            f"G-cold {misses['G-cold']:.4f} (a warm tenant is re-read once per cache TTL)."
        )
    print()
    print(render_targets(targets))
    for profile in profiles:
        if profile.get("summary_text"):
            print()
            print(f"Profile of the server during {profile['scenario']} (c=16):")
            print("\n".join(profile["summary_text"].splitlines()[:45]))
    print()

    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "settings": {
            "rounds": args.rounds,
            "window_s": args.window,
            "warm_s": args.warm,
            "tenants": args.tenants,
            "rss_tenants": args.rss_tenants,
            "server_workers": args.workers,
            "b1_transport": "aiohttp" if args.b1_aiohttp else "httpx2 (SDK default)",
            "client_processes": args.clients,
            "channels_per_client": args.channels,
            "database": "postgresql" if args.postgres else "sqlite",
            "prompt_chars": len(PROMPT),
            "max_tokens": MAX_TOKENS,
        },
        "machine": machine,
        "seed": seed,
        "fake_alone": {str(c): v for c, v in fake_alone.items()},
        "scenarios": {s: {str(c): v for c, v in by_c.items()} for s, by_c in figures.items()},
        "rss": rss,
        "targets": targets,
        "profiles": [{k: v for k, v in pr.items() if k != "summary_text"} for pr in profiles],
        "blocks": [
            {
                "scenario": b.scenario,
                "concurrency": b.concurrency,
                "round": b.round,
                "window_s": round(b.window, 3),
                "done": b.done,
                "errors": b.errors,
                "throughput_rps": round(b.done / b.window, 1) if b.window else 0,
                "server_cpu_s": round(b.server_cpu, 2),
                "fake_cpu_s": round(b.fake_cpu, 2),
                "client_cpu_s": round(b.client_cpu, 2),
                "server_rss_mb": round(b.server_rss_kb / 1024, 1),
            }
            for b in blocks
        ],
        "table_markdown": tables,
        "targets_markdown": render_targets(targets),
    }
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        text = json.dumps(report, indent=2) + "\n"
        path = RESULTS_DIR / f"{stamp}.json"
        path.write_text(text)
        (RESULTS_DIR / "latest.json").write_text(text)
        log(f"wrote {path.relative_to(ROOT)} and bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

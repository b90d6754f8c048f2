"""The processes of a run: the fake providers, the server and the client
workers, each started on loopback with a scrubbed environment and stopped at
the end; and the readings taken of them between and around blocks.

``Bench`` owns them all. If the benchmark itself is killed, the fake and the
server get SIGTERM (``PR_SET_PDEATHSIG``) and the workers are daemons.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import BIN, BenchError, log
from loadgen import client_main
from procstats import Snapshot, children_of, cpu_seconds, memory_kb
from seeding import drop_pg_database

PR_SET_PDEATHSIG = 1
# Environment that could send traffic anywhere but loopback, or change the SDKs.
# OTEL_: tracing is on only where a run asks for it (``--tracing``).
SCRUBBED_PREFIXES = ("LIYA_", "OPENAI_", "ANTHROPIC_", "AZURE_", "OTEL_")
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the benchmark is killed, so is it.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
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


def http_get(url: str, timeout: float = 2.0) -> int:
    """GET ``url`` (loopback); its HTTP status."""
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
        return int(r.status)


def http_post(url: str, body: dict[str, Any] | None = None) -> None:
    """POST ``body`` as JSON to ``url`` (loopback), reading the answer."""
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=data, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        r.read()


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Wait until ``port`` accepts connections; ``BenchError`` if ``proc`` exits
    or time runs out."""
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
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (empty if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Bench:
    """Owns the processes of a run, the secrets they share, and the cursor of
    cold tenants not called yet."""

    def __init__(self, args: argparse.Namespace) -> None:
        from liya_engine.crypto.cipher import generate_master_key_line

        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="liya-bench-"))
        self.env = clean_environment()
        self.fake: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_pids: list[int] = []
        # Servers started besides ``server`` (the one on PostgreSQL): stopped by close.
        self.more_servers: list[subprocess.Popen[bytes]] = []
        self.clients: list[tuple[Any, Any, int]] = []  # (process, conn, pid)
        self.fake_port = free_port()
        self.server_port = free_port()
        self.fake_url = f"http://127.0.0.1:{self.fake_port}"
        self.master_keys = generate_master_key_line("bench-1")  # LIYA_MASTER_KEYS
        self.jwt_secret = secrets.token_urlsafe(48)
        self.warm_key = "sk-proj-benchwarm" + secrets.token_hex(16)
        self.db_url = ""
        self.scratch_pg: str | None = None
        self.server_log = "server.log"  # in ``tmp``
        self.tenant_cursor = 0
        self.tenant_limit = args.tenants  # cold tenants in the server's database
        self.cold_calls = 0
        # The server's Prometheus endpoint, read between blocks to check that
        # G-cold calls miss the tenant cache and G calls hit it (one process only:
        # workers would all try to bind it).
        self.metrics_port = free_port() if args.workers == 1 else None
        # The command before ``serve``; ``feature_ab`` starts variants of the server.
        self.server_command = [str(BIN / "liya-engine")]

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers, the server and the fake; drop the scratch database and
        the temporary directory (unless ``--keep``)."""
        for proc, conn, _pid in self.clients:
            with contextlib.suppress(Exception):
                conn.send({"op": "stop"})
                if conn.poll(5):
                    conn.recv()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for server in [self.server, *self.more_servers]:
            stop_process(server)
        stop_process(self.fake, grace=5)
        if self.scratch_pg:
            with contextlib.suppress(Exception):
                asyncio.run(drop_pg_database(self.args.postgres, self.scratch_pg))
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start_fake(self) -> None:
        """Start the fake providers and wait until they answer their health check."""
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
        """The server's environment: loopback addresses, the generated secrets,
        the database, the fake as provider, and every ``--server-env``."""
        env = dict(self.env)
        env.update(
            LIYA_LISTEN_ADDRESS=f"127.0.0.1:{self.server_port}",
            LIYA_DATABASE_URL=self.db_url,
            LIYA_MASTER_KEYS=self.master_keys,
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

    def metrics_text(self) -> str | None:
        """The server's Prometheus text; None when unreadable (with ``--workers``,
        no metrics are served)."""
        if not self.metrics_port:
            return None
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def cache_counters(self) -> tuple[float, float] | None:
        """(hits, misses) of the server's tenant config cache, if it is readable."""
        text = self.metrics_text()
        if text is None:
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
        """Start the server (and its workers), wait until it is SERVING, then
        connect every client worker with ``--channels`` channels."""
        cmd = [*self.server_command, "serve"]
        if self.args.workers > 1:
            cmd += ["--workers", str(self.args.workers)]
        with (self.tmp / self.server_log).open("ab") as logfile:
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
                f"{exc}\n--- {self.server_log} ---\n{tail(self.tmp / self.server_log)}"
            ) from None
        pids = [self.server.pid, *children_of(self.server.pid)]
        self.server_pids = pids
        for conn in self.conns():
            self.ask(
                conn,
                {"op": "connect", "port": self.server_port, "channels": self.args.channels},
            )

    def start_clients(self) -> None:
        """Spawn the client workers and wait until each answers."""
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
        """``BenchError`` with the log's tail if the fake or the server has exited."""
        for proc, what, logname in (
            (self.fake, "fake providers", "fake.log"),
            (self.server, "server", self.server_log),
        ):
            if proc is not None and proc.poll() is not None:
                raise BenchError(
                    f"{what} exited with status {proc.returncode}\n--- {logname} ---\n"
                    + tail(self.tmp / logname)
                )

    def conns(self) -> list[Any]:
        """The pipes to the client workers."""
        return [conn for _proc, conn, _pid in self.clients]

    def ask(self, conn: Any, job: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Send ``job`` to a worker and wait for its answer."""
        conn.send(job)
        return self.answer(conn, timeout)

    def answer(self, conn: Any, timeout: float) -> dict[str, Any]:
        """A worker's answer; ``BenchError`` if it is late, dead or failed."""
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
        """CPU seconds so far of the server (all workers), the fake and the clients."""
        return Snapshot(
            at=time.monotonic(),
            server=sum(cpu_seconds(p) for p in self.server_pids),
            fake=cpu_seconds(self.fake.pid) if self.fake else 0.0,
            clients=sum(cpu_seconds(pid) for _p, _c, pid in self.clients),
        )

    def server_memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server, summed over its processes, in kB."""
        total = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.server_pids:
            for k, v in memory_kb(pid).items():
                total[k] += v
        return total

    def take_tenants(self, count: int) -> tuple[int, int]:
        """The next ``count`` unused cold tenants, as a range ``(lo, hi)``."""
        lo = self.tenant_cursor
        hi = min(lo + count, self.tenant_limit)
        if hi <= lo:
            raise BenchError(f"all {self.tenant_limit} cold tenants are used up")
        self.tenant_cursor = hi
        return lo, hi

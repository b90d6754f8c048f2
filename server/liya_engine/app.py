"""Lifecycle: serve gRPC (and HTTP/JSON) over the services ``services``
builds from settings, and stop gracefully (health NOT_SERVING first, then
drain in-flight calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from liya.engine.v1 import (
    config_service_pb2,
    config_service_pb2_grpc,
    inference_service_pb2,
    inference_service_pb2_grpc,
    usage_service_pb2,
    usage_service_pb2_grpc,
)
from liya_engine.api import queue_delay, reflection
from liya_engine.api.calls import CallGuard, GenericOnly
from liya_engine.api.config_servicer import ConfigServicer
from liya_engine.api.inference_servicer import InferenceServicer
from liya_engine.api.usage_servicer import UsageServicer
from liya_engine.heap import settle_heap
from liya_engine.http.server import HttpSurface
from liya_engine.overload import (
    PROVIDER_CALLING_METHODS,
    handshake_options,
    warn_about_limits,
)
from liya_engine.services import Services, build_services
from liya_engine.settings import Settings
from liya_engine.storage.readiness import DatabaseState
from liya_engine.tracing import setup as tracing_setup

log = logging.getLogger("liya_engine")

SERVICE_NAMES = (
    config_service_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name,
    inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name,
    usage_service_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
)
LIVENESS_SERVICE = "liveness"  # health name that stays SERVING while the process runs


def metrics_address_for_worker(address: str, worker_index: int) -> str:
    """Worker ``i`` of ``serve --workers`` serves metrics on the port plus ``i``:
    each worker process has its own counters."""
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + worker_index}"


class RunningServer:
    """A started gRPC server with its services; ``stop()`` drains and closes."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        services: Services,
        health_servicer: health.aio.HealthServicer,
    ) -> None:
        self.server = server
        self.port = port
        self.services = services
        self.health = health_servicer
        self._probe = asyncio.create_task(self._probe_health())
        self._health_writer = asyncio.create_task(services.health.run())
        self._listener = None
        self._stopped = False
        self.tracing: tracing_setup.Tracing | None = None
        self.http: HttpSurface | None = None  # with LIYA_HTTP_LISTEN_ADDRESS
        # The guard's admission on queueing delay, stopped with the server.
        self.shedder: queue_delay.QueueDelayShedder | None = None

    async def _set_health(self, serving: bool) -> None:
        """Readiness: the overall status and each API service follow the
        database; ``liveness`` only says the process answers."""
        self.services.metrics.database_up(serving)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)

    async def _probe_health(self) -> None:
        healthy = True
        while True:
            await asyncio.sleep(self.services.settings.health_check_seconds)
            state = await self.services.db.check()
            ok = state is DatabaseState.USABLE
            if ok != healthy:
                healthy = ok
                log.warning("database %s", "usable again" if ok else state.value)
                await self._set_health(ok)

    async def listen_for_changes(self) -> None:
        """Drop a tenant's cached config as soon as any replica changes it."""
        tenants, health = self.services.tenants, self.services.health_view

        def changed(tenant_id: str) -> None:
            tenants.invalidate(tenant_id)
            health.invalidate(tenant_id)  # health read before new credentials

        def gap() -> None:
            tenants.clear()
            health.clear()

        self._listener = await self.services.db.listen_for_changes(changed, gap)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, stop accepting calls, let in-flight calls finish."""
        if self._stopped:
            return
        self._stopped = True
        self._probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._probe
        await self.health.enter_graceful_shutdown()
        drain = self.services.settings.shutdown_drain_seconds
        grace = self.services.settings.shutdown_grace_seconds if grace is None else grace
        started = time.monotonic()
        metrics = self.services.metrics
        log.info(
            "drain started: %d call(s) in flight; health NOT_SERVING, serving %.1fs more, "
            "then in-flight calls get up to %.1fs",
            metrics.calls_in_flight,
            drain,
            grace,
        )
        if drain > 0:
            # Keep answering while load balancers see NOT_SERVING and move away.
            await asyncio.sleep(drain)
        if self.http is None:
            await self.server.stop(grace)
        else:
            await asyncio.gather(self.server.stop(grace), self.http.stop())
        log.info(
            "drain finished after %.1fs (%d call(s) still in flight)",
            time.monotonic() - started,
            metrics.calls_in_flight,
        )
        if self._listener is not None:
            await self._listener.close()
        if self.shedder is not None:
            self.shedder.stop()
        self._health_writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._health_writer
        await self.services.health.flush()  # what the last calls found
        await self.services.aclose()
        if self.tracing is not None:
            # Flushing waits for the exporter; the loop keeps running meanwhile.
            await asyncio.to_thread(self.tracing.stop)


def connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    """Clients reconnect now and then (every 5 minutes), so replicas added later
    get traffic. The calls still open on an aged connection get the longest a
    provider call may take (``LIYA_UPSTREAM_TIMEOUT_SECONDS``) and 5 s more to
    finish: a stream is never cut for the connection's age."""
    grace_ms = round((settings.upstream_timeout_seconds + 5.0) * 1000)
    return [("grpc.max_connection_age_ms", 300_000), ("grpc.max_connection_age_grace_ms", grace_ms)]


async def start_server(
    settings: Settings,
    *,
    services: Services | None = None,
    reuse_port: bool = False,
    migrate: bool = True,
    worker_index: int = 0,
) -> RunningServer:
    """Build services (unless given) and start serving on ``settings.listen_address``."""
    # Before anything is registered: the guard and the domain check it once.
    traces = tracing_setup.start(os.environ)
    try:
        services = services or await build_services(settings, migrate=migrate)
    except BaseException:
        if traces is not None:
            await asyncio.to_thread(traces.stop)
        raise
    # Channelz is read only when admission on queueing delay is on.
    shedding = settings.limits.queue_delay_target_ms > 0
    servers_before = queue_delay.server_ids() if shedding else set()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            *connection_age_options(settings),
            *handshake_options(settings),
        ],
    )
    guard = CallGuard(
        services.verifier,
        services.metrics,
        access_log=settings.access_log,
        limits=settings.limits,
        limited_methods=PROVIDER_CALLING_METHODS,
    )
    guard.register(
        config_service_pb2_grpc.add_ConfigServiceServicer_to_server,
        ConfigServicer(
            services.configs, services.inference, services.tenants, services.health_view
        ),
        server,
    )
    guard.register(
        inference_service_pb2_grpc.add_InferenceServiceServicer_to_server,
        InferenceServicer(services.inference),
        server,
    )
    guard.register(
        usage_service_pb2_grpc.add_UsageServiceServicer_to_server,
        UsageServicer(services.usage),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, GenericOnly(server))
    reflection.enable(
        server, (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    )
    try:
        port = server.add_insecure_port(settings.listen_address)
    except RuntimeError as exc:
        await services.aclose()
        if traces is not None:
            await asyncio.to_thread(traces.stop)
        raise OSError(f"cannot listen on {settings.listen_address}: {exc}") from None
    await server.start()
    services.ledger.start()
    # This server's channelz id: the one that was not there before it.
    if shedding:
        ours = queue_delay.server_ids() - servers_before
        guard.shedder.start(queue_delay.channelz_counts(ours.pop()) if len(ours) == 1 else None)
    running = RunningServer(server, port, services, health_servicer)
    running.shedder = guard.shedder
    running.tracing = traces
    if settings.http_listen_address:
        running.http = await start_http(settings, guard, reuse_port=reuse_port)
    await running.listen_for_changes()
    await running._set_health(True)
    if settings.metrics_address:
        address = metrics_address_for_worker(settings.metrics_address, worker_index)
        services.metrics.serve(address)
        log.info("metrics on http://%s/metrics", address)
    host = settings.listen_address.rpartition(":")[0]
    loop_module = type(asyncio.get_running_loop()).__module__
    loop = "uvloop" if loop_module.startswith("uvloop") else "asyncio"
    log.info("serving liya.engine.v1 on %s:%d (event loop: %s)", host, port, loop)
    log_settings_in_effect(settings)
    return running


async def start_http(settings: Settings, guard: CallGuard, *, reuse_port: bool) -> HttpSurface:
    """Serve every method registered with ``guard`` that has a ``google.api.http``
    annotation as HTTP/JSON on ``settings.http_listen_address``."""
    surface = HttpSurface(
        guard,
        max_bytes=settings.max_receive_message_bytes,
        shutdown_grace=settings.shutdown_grace_seconds,
    )
    port = await surface.start(settings.http_listen_address or "", reuse_port=reuse_port)
    host = (settings.http_listen_address or "").rpartition(":")[0]
    log.info("serving HTTP/JSON on http://%s:%d (%d routes)", host, port, len(surface.routes))
    return surface


def log_settings_in_effect(settings: Settings) -> None:
    """Say where calls go and what development settings are on: the first
    thing to check when calls fail everywhere after a deploy."""
    log.info(
        "upstream base URLs: OpenAI %s, Anthropic %s",
        settings.openai_base_url,
        settings.anthropic_base_url,
    )
    url = make_url(settings.database_url)
    log.info("database: %s at %s", url.get_backend_name(), url.render_as_string(hide_password=True))
    if settings.allow_insecure_endpoints:
        log.warning(
            "development setting on: LIYA_ALLOW_INSECURE_ENDPOINTS=true "
            "(Azure endpoints may be loopback http URLs; never in production)"
        )
    warn_about_limits(settings)
    if not settings.usage_ledger:
        log.warning("setting on: LIYA_USAGE_LEDGER=false (no usage recorded, budgets not enforced)")
    if settings.azure_allow_private_addresses:
        log.warning(
            "setting on: tenants' Azure endpoints may resolve to private addresses "
            "(LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES=true, for Private Link only)"
        )


async def serve_forever(
    settings: Settings, *, reuse_port: bool = False, migrate: bool = True, worker_index: int = 0
) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    running = await start_server(
        settings, reuse_port=reuse_port, migrate=migrate, worker_index=worker_index
    )
    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    log.info("garbage collector: froze %d start-up objects", settle_heap())
    await stop.wait()
    log.info("shutting down on %s", received[0])
    await running.stop()
    log.info("stopped")

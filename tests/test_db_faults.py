"""PostgreSQL faults of the availability class, on a cluster of the test's own
(``pg_cluster``): stopped, shutting down, out of connections, not accepting
connections, gone, read-only. Every call they touch fails with
STORAGE_UNAVAILABLE (UNAVAILABLE, retry), never INTERNAL and never with an
ERROR traceback in the log; readiness says NOT_SERVING while writes cannot
succeed, and SERVING again once they can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pg_cluster import DATABASE, start_cluster

from helpers import auth, byok_openai, details_of, hello
from liya.engine.v1 import config_service_pb2 as cpb

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HOLDER = "liya-test-holder"  # application_name of the test's own connections
KEY = "sk-" + "d" * 44


@pytest.fixture
async def cluster():
    # Not under pytest's tmp_path: as root the cluster runs as another user,
    # who must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="liya-pg-"))
    started = None
    try:
        started = start_cluster(root)
        await started.sql(f"CREATE DATABASE {DATABASE}")
        yield started
    finally:
        if started is not None and _running(started):
            started.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _running(cluster) -> bool:
    return (cluster.data / "postmaster.pid").exists()


@pytest.fixture
async def served(servers, cluster):
    """A server on the cluster, checking readiness every 0.2 s and reading the
    database on every call (no config cache)."""
    servers.base_env["LIYA_DATABASE_URL"] = cluster.url
    _, stubs = await servers.start(
        LIYA_HEALTH_CHECK_SECONDS="0.2", LIYA_CONFIG_CACHE_TTL_SECONDS="0"
    )
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"))
    return stubs


async def health_becomes(stubs, expected: int, within: float = 10.0) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    deadline = time.monotonic() + within
    while True:
        status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
        if status == expected:
            return
        assert time.monotonic() < deadline, f"health stayed {status}, expected {expected}"
        await asyncio.sleep(0.05)


async def assert_storage_unavailable(stubs, *, writes_only: bool = False) -> None:
    """A write (UpdateConfig) and, unless ``writes_only``, reads (GetMaskedConfig,
    Complete) fail with STORAGE_UNAVAILABLE."""
    calls = [stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"), timeout=15)]
    if not writes_only:
        calls += [
            stubs.config.GetMaskedConfig(
                cpb.GetMaskedConfigRequest(), metadata=auth("acme"), timeout=15
            ),
            stubs.inference.Complete(hello(), metadata=auth("acme"), timeout=15),
        ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        details = details_of(err.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "STORAGE_UNAVAILABLE",
        ), details.message
        assert details.message == "the configuration database is unavailable; retry shortly"


async def assert_usable(stubs) -> None:
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"), timeout=15)
    masked = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("acme"))
    assert masked.config.mode == "byok"


def assert_no_errors_logged(caplog) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def holders(cluster, database: str = "postgres") -> list[asyncpg.Connection]:
    """As many connections as the cluster lets the test open."""
    held = []
    while True:
        try:
            held.append(
                await asyncpg.connect(
                    cluster.admin_dsn.rsplit("/", 1)[0] + f"/{database}",
                    timeout=10,
                    server_settings={"application_name": HOLDER},
                )
            )
        except asyncpg.TooManyConnectionsError:
            return held


async def drop_server_connections(conn: asyncpg.Connection) -> None:
    """End every client connection but the test's own (the server's pool and
    listener), so the server's next call has to connect again."""
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND application_name <> $1",
        HOLDER,
    )


async def take_every_slot(cluster) -> list[asyncpg.Connection]:
    """Every connection slot of the cluster, the server's included: the
    server's connections are ended until the test holds all the others."""
    held = await holders(cluster)
    others = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND application_name <> $1"
    )
    for _ in range(100):
        if await held[0].fetchval(others, HOLDER) == 0:
            return held
        await drop_server_connections(held[0])
        await asyncio.sleep(0.05)  # the ended backends leave their slots
        held += await holders(cluster)
    pytest.fail("the server kept connections the test could not take")


async def test_read_only_postgres_is_not_serving_and_writes_are_storage_unavailable(
    served, cluster, caplog
):
    await health_becomes(served, SERVING)
    await cluster.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    await cluster.sql("SELECT pg_reload_conf()")

    await health_becomes(served, NOT_SERVING)
    await assert_storage_unavailable(served, writes_only=True)  # 25006
    masked = await served.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(), metadata=auth("acme")
    )
    assert masked.config.mode == "byok"  # reads still work
    assert_no_errors_logged(caplog)

    conn = await asyncpg.connect(cluster.admin_dsn, timeout=10)
    try:
        await conn.execute("SET default_transaction_read_only = off")
        await conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    await health_becomes(served, SERVING)
    await assert_usable(served)


async def test_a_stopped_then_restarted_postgres(served, cluster, caplog):
    cluster.stop()
    await health_becomes(served, NOT_SERVING)
    await assert_storage_unavailable(served)
    cluster.start()
    await health_becomes(served, SERVING)
    await assert_usable(served)
    assert_no_errors_logged(caplog)


async def test_too_many_connections(servers, cluster, caplog):
    cluster.stop()
    # No slots kept for superusers: the server connects as one here.
    cluster.start(max_connections="12", superuser_reserved_connections="0")
    servers.base_env["LIYA_DATABASE_URL"] = cluster.url
    _, stubs = await servers.start(
        LIYA_HEALTH_CHECK_SECONDS="0.2", LIYA_CONFIG_CACHE_TTL_SECONDS="0"
    )
    await assert_usable(stubs)
    held = await take_every_slot(cluster)

    await assert_storage_unavailable(stubs)  # 53300
    await health_becomes(stubs, NOT_SERVING)
    assert_no_errors_logged(caplog)

    for conn in held:
        await conn.close()
    await health_becomes(stubs, SERVING)
    await assert_usable(stubs)


async def test_pooled_connections_the_server_ended_cost_the_caller_nothing(
    servers, cluster, caplog
):
    # The pool has no pre-ping: a connection PostgreSQL ended (a restart, a
    # failover, an idle timeout) is found when a read uses it, and the read
    # runs again on a new connection. No readiness probe runs here to find
    # the dead connections first.
    servers.base_env["LIYA_DATABASE_URL"] = cluster.url
    _, stubs = await servers.start(
        LIYA_HEALTH_CHECK_SECONDS="3600", LIYA_CONFIG_CACHE_TTL_SECONDS="0"
    )
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"))
    admin = await asyncpg.connect(
        cluster.admin_dsn, timeout=10, server_settings={"application_name": HOLDER}
    )
    try:
        for _ in range(3):
            await drop_server_connections(admin)
            masked = await stubs.config.GetMaskedConfig(
                cpb.GetMaskedConfigRequest(), metadata=auth("acme"), timeout=15
            )
            assert masked.config.mode == "byok"
    finally:
        await admin.close()
    assert_no_errors_logged(caplog)


async def test_a_postgres_shutting_down_cannot_connect_now(served, cluster, caplog):
    holder = (await holders(cluster))[0]
    cluster.stop("smart", wait=False)  # waits for the holder to leave

    async def refusing() -> bool:
        try:
            await (await asyncpg.connect(cluster.admin_dsn, timeout=5)).close()
            return False
        except asyncpg.CannotConnectNowError:
            return True

    deadline = time.monotonic() + 10
    while not await refusing():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await drop_server_connections(holder)

    await assert_storage_unavailable(served)  # 57P03
    await health_becomes(served, NOT_SERVING)
    assert_no_errors_logged(caplog)

    await holder.close()
    deadline = time.monotonic() + 30
    while _running(cluster):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    cluster.start()
    await health_becomes(served, SERVING)
    await assert_usable(served)


async def test_a_database_not_accepting_connections_then_gone(served, cluster, caplog):
    admin = await asyncpg.connect(
        cluster.admin_dsn, timeout=10, server_settings={"application_name": HOLDER}
    )
    try:
        await admin.execute(f"ALTER DATABASE {DATABASE} ALLOW_CONNECTIONS false")
        await drop_server_connections(admin)
        await assert_storage_unavailable(served)  # 55000
        await health_becomes(served, NOT_SERVING)

        await admin.execute(f"ALTER DATABASE {DATABASE} ALLOW_CONNECTIONS true")
        await health_becomes(served, SERVING)
        await assert_usable(served)

        await admin.execute(f"DROP DATABASE {DATABASE} WITH (FORCE)")
        await assert_storage_unavailable(served)  # 3D000
        await health_becomes(served, NOT_SERVING)
    finally:
        await admin.close()
    assert_no_errors_logged(caplog)


@contextlib.contextmanager
def read_only_file(path: Path):
    """``path`` read-only for this process while the block runs. Root ignores
    permission bits, so as root the file is made immutable instead."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    mode = path.stat().st_mode
    path.chmod(0o444)
    try:
        yield
    finally:
        path.chmod(mode)


async def test_a_read_only_sqlite_file_is_not_serving(servers, tmp_path, caplog):
    _, stubs = await servers.start(LIYA_HEALTH_CHECK_SECONDS="0.2")
    await health_becomes(stubs, SERVING)
    with read_only_file(Path(servers.db_url.removeprefix("sqlite+aiosqlite:///"))):
        await health_becomes(stubs, NOT_SERVING)
    await health_becomes(stubs, SERVING)
    await assert_usable(stubs)
    assert_no_errors_logged(caplog)

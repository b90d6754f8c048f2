"""Fixtures: a real grpc.aio server on a free loopback port, real stubs, a real
SQLite file (or PostgreSQL), and the fake provider server.

Async tests run on uvloop, the server's default loop; the transport and adapter
tests run on the standard asyncio loop as well (what ``LIYA_EVENT_LOOP=asyncio``
serves on).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import uvloop

from helpers import Stubs, stubs_for, test_env
from liya_engine.app import RunningServer, start_server
from liya_engine.fakes import FakeProviders
from liya_engine.settings import Settings

POSTGRES_URL = os.environ.get(
    "LIYA_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


ON_BOTH_LOOPS = frozenset({"test_transport", "test_provider_adapters"})


def pytest_asyncio_loop_factories(config, item):
    loops = {"uvloop": uvloop.new_event_loop}
    if item.module.__name__ in ON_BOTH_LOOPS:
        loops["asyncio"] = asyncio.new_event_loop
    return loops


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with FakeProviders.start() as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'liya.db'}"


class ServerFactory:
    """Starts servers on demand; all are stopped at teardown."""

    def __init__(self, db_url: str, fake: FakeProviders | None) -> None:
        self.db_url = db_url
        self.fake = fake
        self.running: list[tuple[RunningServer, Stubs]] = []
        self.base_env: dict[str, str] = test_env(db_url)
        if fake is not None:
            self.base_env["LIYA_OPENAI_BASE_URL"] = fake.openai_base_url
            self.base_env["LIYA_ANTHROPIC_BASE_URL"] = fake.anthropic_base_url

    async def start(self, **overrides: str) -> tuple[RunningServer, Stubs]:
        settings = Settings.from_env({**self.base_env, **overrides})
        running = await start_server(settings)
        stubs = stubs_for(running.port)
        self.running.append((running, stubs))
        return running, stubs

    async def close(self) -> None:
        for running, stubs in reversed(self.running):
            await stubs.channel.close()
            await running.stop(0)


@pytest.fixture
async def servers(sqlite_url, fake) -> AsyncIterator[ServerFactory]:
    factory = ServerFactory(sqlite_url, fake)
    yield factory
    await factory.close()


@pytest.fixture
async def stubs(servers) -> Stubs:
    """Stubs of one running server on a fresh SQLite file, wired to the fakes."""
    _, s = await servers.start()
    return s


async def _postgres_database() -> str:
    """Create a fresh database on the local PostgreSQL; return its URL."""
    import asyncpg

    base = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncpg.connect(base, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    name = f"liya_test_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


async def _drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    base = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(base, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await _postgres_database()
    yield url
    await _drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    """Each storage test runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'liya.db'}"
        return
    url = await _postgres_database()
    yield url
    await _drop_postgres_database(url)

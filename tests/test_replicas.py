"""Two server replicas sharing one PostgreSQL database: how the service grows
past one machine. Each replica has its own tenant cache and its own SDK
clients; only the database is shared."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from helpers import auth, details_of, master_key_line
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.bootstrap import build_cipher
from liya_engine.config.rewrap import RewrapReport, rewrap_all
from liya_engine.settings import Settings
from liya_engine.storage.database import Database
from liya_engine.storage.notify import ChangeListener

TTL = 0.5


def openai_update(key: str, model: str = "gpt-4o", etag: str = "") -> cpb.UpdateConfigRequest:
    return cpb.UpdateConfigRequest(
        etag=etag,
        provider_config=cpb.ProviderConfig(
            mode="byok", openai=cpb.OpenAIConfig(api_key=key, default_model=model)
        ),
    )


async def rewrap(settings: Settings, batch_size: int) -> RewrapReport:
    """What ``liya-engine keys rewrap`` does with these settings."""
    db = Database(settings.database_url)
    try:
        return await rewrap_all(db, await build_cipher(settings, db), batch_size=batch_size)
    finally:
        await db.dispose()


def hello() -> ipb.CompleteRequest:
    return ipb.CompleteRequest(
        intent="general_chat", messages=[ipb.ChatMessage(role="user", content="hi")]
    )


@pytest.fixture
async def replicas(servers, postgres_url):
    servers.base_env["LIYA_DATABASE_URL"] = postgres_url
    servers.base_env["LIYA_CONFIG_CACHE_TTL_SECONDS"] = str(TTL)
    a = await servers.start()
    b = await servers.start()
    return a[1], b[1]


async def test_update_through_one_is_served_by_the_other(replicas, fake):
    a, b = replicas
    await a.config.UpdateConfig(openai_update("sk-" + "1" * 40), metadata=auth("t"))
    masked = await b.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    assert masked.config.openai.default_model == "gpt-4o"  # B had nothing cached yet
    r = await b.inference.Complete(hello(), metadata=auth("t"))
    assert r.usage.model == "gpt-4o"

    await a.config.UpdateConfig(openai_update("sk-" + "2" * 40, "gpt-4o-mini"), metadata=auth("t"))
    await asyncio.sleep(TTL + 0.1)  # the documented staleness bound of B's cache
    r = await b.inference.Complete(hello(), metadata=auth("t"))
    assert r.usage.model == "gpt-4o-mini"
    assert fake.last_request.api_key == "sk-" + "2" * 40


async def test_concurrent_updates_through_both_keep_the_etag_guarantee(replicas):
    a, b = replicas
    first = await a.config.UpdateConfig(openai_update("sk-" + "1" * 40), metadata=auth("t"))
    etag = first.config.etag
    results = await asyncio.gather(
        *[
            (a if i % 2 else b).config.UpdateConfig(
                openai_update("sk-" + str(i) * 40, etag=etag), metadata=auth("t")
            )
            for i in range(2, 8)
        ],
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(wins) == 1 and len(losses) == 5
    for loss in losses:
        d = details_of(loss)
        assert (d.code, d.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    masked = await b.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    assert masked.config.etag == wins[0].config.etag
    assert masked.config.openai.api_key_preview == wins[0].config.openai.api_key_preview
    audit = await a.config.ListAuditEntries(cpb.ListAuditEntriesRequest(), metadata=auth("t"))
    assert len(audit.audit_entries) == 2  # the first write and the single winner


async def test_rewrap_while_both_serve_loses_nothing(servers, postgres_url, fake):
    old = master_key_line("old-1")
    new = master_key_line("new-2")
    servers.base_env.update(
        LIYA_DATABASE_URL=postgres_url, LIYA_MASTER_KEYS=old, LIYA_CONFIG_CACHE_TTL_SECONDS="0"
    )
    _, a = await servers.start()
    tenants = [f"t{i}" for i in range(30)]
    for t in tenants:
        await a.config.UpdateConfig(openai_update("sk-" + t.ljust(40, "x")), metadata=auth(t))
    # Roll out the new primary; the old key stays for decryption.
    servers.base_env["LIYA_MASTER_KEYS"] = f"{new},{old}"
    _, b = await servers.start()
    _, c = await servers.start()

    async def keep_calling(stubs, tenant_slice) -> int:
        done = 0
        for t in tenant_slice:
            r = await stubs.inference.Complete(hello(), metadata=auth(t))
            assert r.usage.provider == "openai"
            done += 1
        return done

    async def keep_updating(stubs) -> None:
        for t in tenants[:10]:
            await stubs.config.UpdateConfig(
                openai_update("sk-" + t.ljust(40, "y")), metadata=auth(t)
            )

    settings = Settings.from_env({**servers.base_env})
    report, calls_b, calls_c, _ = await asyncio.gather(
        rewrap(settings, batch_size=7),
        keep_calling(b, tenants),
        keep_calling(c, tenants),
        keep_updating(b),
    )
    assert report.failed == 0 and calls_b == calls_c == len(tenants)
    leftovers = await rewrap(settings, batch_size=7)  # re-running finishes any stragglers
    assert leftovers.failed == 0
    assert set(leftovers.remaining_by_key) == {"new-2"}

    # With the old key retired, a fresh replica serves every tenant its newest key.
    servers.base_env["LIYA_MASTER_KEYS"] = new
    _, d = await servers.start()
    fake.reset()
    for t in tenants:
        await d.inference.Complete(hello(), metadata=auth(t))
    expected = {("sk-" + t.ljust(40, "y" if t in tenants[:10] else "x")) for t in tenants}
    assert {q.api_key for q in fake.requests} == expected


async def test_other_replicas_drop_their_cached_copy_at_once(servers, postgres_url, fake):
    """PostgreSQL NOTIFY tells every replica about a change: no waiting for the TTL."""
    servers.base_env.update(LIYA_DATABASE_URL=postgres_url, LIYA_CONFIG_CACHE_TTL_SECONDS="600")
    _, a = await servers.start()
    _, b = await servers.start()
    await a.config.UpdateConfig(openai_update("sk-" + "1" * 40), metadata=auth("t"))
    r = await b.inference.Complete(hello(), metadata=auth("t"))  # B caches the config
    assert r.usage.model == "gpt-4o"
    await a.config.UpdateConfig(openai_update("sk-" + "2" * 40, "gpt-4o-mini"), metadata=auth("t"))
    for _ in range(50):
        masked = await b.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
        if masked.config.openai.default_model == "gpt-4o-mini":
            break
        await asyncio.sleep(0.02)
    r = await b.inference.Complete(hello(), metadata=auth("t"))
    assert r.usage.model == "gpt-4o-mini"
    assert fake.last_request.api_key == "sk-" + "2" * 40


async def test_a_replica_that_loses_its_listening_connection_catches_up(
    servers, postgres_url, fake, monkeypatch
):
    """A dropped LISTEN connection (a PostgreSQL restart, a failover) neither
    leaves the replica serving a stale config until the TTL nor stops later
    changes from arriving: it drops its cache and listens again."""
    import asyncpg

    monkeypatch.setattr(ChangeListener, "RETRY_SECONDS", 0.1)
    servers.base_env.update(LIYA_DATABASE_URL=postgres_url, LIYA_CONFIG_CACHE_TTL_SECONDS="600")
    _, a = await servers.start()
    replica_b, b = await servers.start()
    await a.config.UpdateConfig(openai_update("sk-" + "1" * 40), metadata=auth("t"))

    async def model_on_b() -> str:
        masked = await b.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
        return masked.config.openai.default_model

    async def b_serves(model: str) -> bool:
        for _ in range(100):
            if await model_on_b() == model:
                return True
            await asyncio.sleep(0.02)
        return False

    assert await model_on_b() == "gpt-4o"  # cached on B from now on
    lost = replica_b._listener._conn
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", lost.get_server_pid())
    finally:
        await admin.close()
    # Changed while B may not be listening: its NOTIFY can be lost.
    await a.config.UpdateConfig(openai_update("sk-" + "2" * 40, "gpt-4o-mini"), metadata=auth("t"))
    assert await b_serves("gpt-4o-mini")

    for _ in range(100):
        current = replica_b._listener._conn
        if current is not lost and current is not None and not current.is_closed():
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the replica did not listen again")
    await a.config.UpdateConfig(openai_update("sk-" + "3" * 40, "gpt-4-turbo"), metadata=auth("t"))
    assert await b_serves("gpt-4-turbo")
    r = await b.inference.Complete(hello(), metadata=auth("t"))
    assert fake.last_request.api_key == "sk-" + "3" * 40
    assert r.usage.model == "gpt-4-turbo"


async def test_two_server_processes_on_one_postgres_database(tmp_path, postgres_url, fake):
    """The deployment shape: separate OS processes, one database."""
    from helpers import served_process, stubs_for

    keys = master_key_line("proc-1")
    env = dict(
        LIYA_DATABASE_URL=postgres_url,
        LIYA_MASTER_KEYS=keys,
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
        LIYA_CONFIG_CACHE_TTL_SECONDS="600",
    )
    async with (
        served_process(tmp_path, **env) as (_, port_a, log_a),
        served_process(tmp_path, **env) as (_, port_b, log_b),
    ):
        a, b = stubs_for(port_a), stubs_for(port_b)
        first = await a.config.UpdateConfig(openai_update("sk-" + "1" * 40), metadata=auth("t"))
        r = await b.inference.Complete(hello(), metadata=auth("t"))  # B caches it
        assert r.usage.model == "gpt-4o" and fake.last_request.api_key == "sk-" + "1" * 40

        results = await asyncio.gather(
            a.config.UpdateConfig(
                openai_update("sk-" + "2" * 40, "gpt-4o-mini", etag=first.config.etag),
                metadata=auth("t"),
            ),
            b.config.UpdateConfig(
                openai_update("sk-" + "3" * 40, "o3-mini", etag=first.config.etag),
                metadata=auth("t"),
            ),
            return_exceptions=True,
        )
        wins = [x for x in results if not isinstance(x, Exception)]
        assert len(wins) == 1
        assert (
            details_of(next(x for x in results if isinstance(x, Exception))).reason
            == "ETAG_MISMATCH"
        )
        winner = wins[0].config.openai.default_model
        for stubs in (a, b):  # both processes serve the winner, without waiting for the TTL
            for _ in range(50):
                r = await stubs.inference.Complete(hello(), metadata=auth("t"))
                if r.usage.model == winner:
                    break
                await asyncio.sleep(0.02)
            assert r.usage.model == winner
        await a.channel.close()
        await b.channel.close()
    for log in (log_a, log_b):
        assert "Traceback" not in log.read_text()

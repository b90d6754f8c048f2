"""The README's curl walkthrough of the public guide, run as written with the
real ``curl`` against ``liya-engine serve`` in its own process (HTTP/JSON on)
and the fake providers: every request answers the status its comment states,
and does what the guide says it does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from guide_bodies import BODIES
from helpers import BIN, free_port, wait_serving

ROOT = Path(__file__).resolve().parents[1]
SECTION = "The guide's requests over HTTP with curl"
CURL = shutil.which("curl")
# Each command's output ends with this mark and the HTTP status, written by a
# shell function around the real binary (the commands run as the README has them).
MARK = "::HTTP::"


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(rf"^## {re.escape(SECTION)}\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, f"README.md has no section {SECTION!r}"
    (block,) = re.findall(r"^```sh\n(.*?)^```$", section.group(1), re.M | re.S)
    return block


def steps(block: str) -> list[tuple[int, str, str]]:
    """(stated status, comment, command) for every curl command of the block."""
    out, comment, command = [], [], []
    for line in block.splitlines():
        if command:
            command.append(line)
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
        elif line.startswith("curl "):
            command.append(line)
        elif not line.strip():
            comment = []
        if command and not line.endswith("\\") and not _open_quote(command):
            stated = [m for m in (re.match(r"(\d{3}):", c) for c in comment) if m]
            assert stated, f"no status stated above: {command[0]}"
            out.append((int(stated[0].group(1)), " ".join(comment), "\n".join(command)))
            comment, command = [], []
    return out


def _open_quote(lines: list[str]) -> bool:
    return "\n".join(lines).count("'") % 2 == 1


def test_the_walkthrough_sends_the_guides_bodies_verbatim():
    block = walkthrough()
    for name, body in BODIES.items():
        assert f"-d '{body}'" in block, f"the guide's {name} body is not verbatim"


async def run(command: str, env: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    script = f'curl() {{ command {CURL} -D "$HEADERS" -w "{MARK}%{{http_code}}" "$@"; }}\n{command}'
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    text, _, status = out.decode().rpartition(MARK)
    headers = {}
    for line in Path(env["HEADERS"]).read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status), text, headers


def reason(text: str) -> str:
    (info,) = [d for d in json.loads(text)["error"]["details"] if "ErrorInfo" in d["@type"]]
    return info["reason"]


def config(text: str) -> dict:
    return json.loads(text)["config"]


def usage(text: str) -> dict:
    return json.loads(text)["usage"]


def sse(text: str) -> list[dict]:
    events = [e for e in text.split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events), text
    return [json.loads(e.removeprefix("data: ")) for e in events]


# What each request of the walkthrough must do, in order (the status is the
# README's own comment, checked separately).
CHECKS = [
    lambda t, h: config(t)["openai"] == {
        "configured": True, "apiKeyPreview": "sk-...", "defaultModel": "gpt-4o",
        "health": {"state": "unknown", "keySetTime": config(t)["openai"]["health"]["keySetTime"]}},
    lambda t, h: config(t)["anthropic"]["apiKeyPreview"] == "sk-ant-..."
    and config(t)["servingProvider"] == "anthropic",
    lambda t, h: config(t)["servingProvider"] == "azure"
    and config(t)["azure"]["deploymentName"] == "gpt-4o",
    lambda t, h: config(t)["mode"] == "byok"
    and config(t)["azure"]["endpoint"] == "https://your-resource.openai.azure.com"
    and "your-azure-key" not in t,
    lambda t, h: config(t)["azure"]["endpoint"].startswith("http://127.0.0.1:"),
    lambda t, h: (usage(t)["provider"], usage(t)["mode"], usage(t)["model"])
    == ("azure", "byok", "gpt-4o"),
    lambda t, h: json.loads(t)["provider"] == "azure" and json.loads(t)["mode"] == "byok",
    lambda t, h: config(t)["modelConfig"]["costLimitUsdPerRequest"] == 0.05
    and config(t)["modelConfig"]["overrides"]["mock_interview"] == "claude-sonnet-4-6",
    lambda t, h: (usage(t)["provider"], usage(t)["model"]) == ("anthropic", "claude-sonnet-4-6"),
    lambda t, h: h["content-type"] == "text/event-stream"
    and sse(t)[-1]["usage"]["provider"] == "azure"
    and "".join(m.get("delta", "") for m in sse(t)) == "Fake answer to: Hello",
    lambda t, h: json.loads(t) == {"ok": True},
    lambda t, h: reason(t) == "BYOK_AUTH_FAILED",
    lambda t, h: json.loads(t) == {"ok": True},
    lambda t, h: reason(t) == "BYOK_QUOTA_EXCEEDED" and h["retry-after"] == "20",
    lambda t, h: json.loads(t) == {"ok": True},
    lambda t, h: reason(t) == "BYOK_MODEL_NOT_FOUND",
    lambda t, h: json.loads(t) == {"ok": True},
    lambda t, h: reason(t) == "BYOK_ENDPOINT_UNREACHABLE",
    lambda t, h: config(t)["mode"] == "managed" and config(t)["azure"]["configured"] is True,
    lambda t, h: reason(t) == "BYOK_NOT_CONFIGURED",
    lambda t, h: [e["modeAfter"] for e in json.loads(t)["auditEntries"]] == ["managed", "byok"],
]  # fmt: skip


@contextlib.asynccontextmanager
async def make_run(tmp_path: Path, fake, http_port: int):
    """What `make run` runs (`liya-engine serve --dev` with HTTP on), in a
    directory of its own (its development secrets go to ./.dev there), pointed
    at the fake providers as the README says."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIYA_")}
    env.update(
        LIYA_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        LIYA_HTTP_LISTEN_ADDRESS=f"127.0.0.1:{http_port}",
        LIYA_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'liya-engine.db'}",
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
        LIYA_ANTHROPIC_BASE_URL=fake.anthropic_base_url,
        LIYA_ALLOW_INSECURE_ENDPOINTS="true",
        LIYA_SHUTDOWN_GRACE_SECONDS="1",
    )
    log = tmp_path / "server.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [BIN / "liya-engine", "serve", "--dev"], cwd=tmp_path, env=env, stderr=log_file
        )
    try:
        await wait_serving(port, proc)
        yield env, log
    finally:
        proc.terminate()
        proc.wait(20)


async def test_the_readme_walkthrough_with_curl_against_a_served_process(tmp_path, fake):
    assert CURL, "the walkthrough test needs the curl binary"
    block = walkthrough()
    token_line, *_ = block.splitlines()
    assert token_line == "TOKEN=$(make -s token)"
    http_port = free_port()
    fake_address = fake.base_url.removeprefix("http://")
    async with make_run(tmp_path, fake, http_port) as (env, log):
        env = {**env, "HEADERS": str(tmp_path / "headers.txt")}
        # `make -s token` runs `liya-engine token --dev --tenant acme` where make run runs.
        minted = await asyncio.create_subprocess_exec(
            BIN / "liya-engine", "token", "--dev", "--tenant", "acme",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        env["TOKEN"] = (await minted.communicate())[0].decode().strip()
        found = steps(block)
        assert len(found) == len(CHECKS)
        for n, ((stated, comment, command), check) in enumerate(zip(found, CHECKS, strict=True)):
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
            command = command.replace("127.0.0.1:8090", fake_address)
            status, text, headers = await run(command, env)
            assert status == stated, (n, comment, text)
            assert check(text, headers), (n, comment, text)
    server_log = log.read_text()
    assert "Traceback" not in server_log, server_log
    assert "your-azure-key" not in server_log

"""The client is its own distribution: ``pip install ./clients`` into a fresh
virtual environment gives a working client (the generated stubs and
``liya_engine_client``) and none of the server's dependencies.

The environment is built once for this module (pip's cache makes that quick);
the client in it then talks to a real server started by the test fixtures."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import token
from liya.engine.v1.error_reason_pb2 import ErrorReason

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "clients"

# What a caller must not get by installing the client: the server and its
# SDK, storage and event-loop dependencies.
SERVER_ONLY = ("liya_engine", "openai", "anthropic", "sqlalchemy", "uvloop", "aiohttp")


def _pins(pyproject: Path) -> dict[str, str]:
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    return dict(dep.split("==", 1) for dep in deps)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with only ``pip install ./clients`` in it."""
    base = tmp_path_factory.mktemp("client-dist")
    source = base / "clients"
    # A copy, so the build writes nothing into the working tree.
    shutil.copytree(
        CLIENTS, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        check=True,
        cwd=base,
        timeout=600,
    )
    return python


def _env() -> dict[str, str]:
    # Nothing of this process's import path may leak into the fresh environment.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run_in(python: Path, script: str, *args: str) -> dict:
    done = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=python.parent,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


INSPECT = """
import importlib.metadata, importlib.util, json, sys
import liya_engine_client
from liya.engine.v1 import config_service_pb2, error_reason_pb2, inference_service_pb2
print(json.dumps({
    "client_file": liya_engine_client.__file__,
    "missing": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None],
    "requires": sorted(importlib.metadata.requires("liya-engine-client")),
    "installed": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
    "reasons": sorted(liya_engine_client.reason_classes()),
}))
"""


def test_the_client_installs_alone_with_grpc_and_protobuf_only(client_venv):
    seen = run_in(client_venv, INSPECT, *SERVER_ONLY)
    assert Path(seen["client_file"]).is_relative_to(client_venv.parent.parent)
    assert seen["missing"] == list(SERVER_ONLY)
    server_pins = _pins(ROOT / "pyproject.toml")
    wanted = ("grpcio", "grpcio-status", "protobuf", "googleapis-common-protos")
    # Pinned exactly as the server pins them.
    assert seen["requires"] == sorted(f"{name}=={server_pins[name]}" for name in wanted)
    assert _pins(CLIENTS / "pyproject.toml") == {name: server_pins[name] for name in wanted}
    assert server_pins["liya-engine-client"] == "0.1.0"
    assert "liya-engine" not in seen["installed"]
    assert seen["reasons"] == sorted(set(ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"})


CALLS = """
import json, sys
import liya_engine_client as lc
target, good, bad = sys.argv[1:4]
out = {}
with lc.LiyaClient(target, token=good, default_timeout=10) as client:
    out["mode"] = client.get_masked_config().mode
    try:
        client.update_config({"provider_config": {"mode": "wizard"}})
    except lc.InvalidConfig as err:
        out["invalid"] = [err.code.name, err.reason, [v.field for v in err.violations]]
with lc.LiyaClient(target, token=bad, default_timeout=10) as client:
    try:
        client.get_masked_config()
    except lc.InvalidToken as err:
        out["token"] = [err.code.name, err.reason, len(err.request_id)]
print(json.dumps(out))
"""


async def test_the_installed_client_talks_to_a_real_server(client_venv, servers):
    running, _ = await servers.start()
    # The server runs on this test's event loop: the client runs in a thread.
    seen = await asyncio.to_thread(
        run_in, client_venv, CALLS, f"127.0.0.1:{running.port}", token("t"), "not-a-jwt"
    )
    assert seen == {
        "mode": "managed",
        "invalid": ["INVALID_ARGUMENT", "INVALID_CONFIG", ["provider_config.mode"]],
        "token": ["UNAUTHENTICATED", "INVALID_TOKEN", 32],
    }

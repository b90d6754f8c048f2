"""The domain (config, inference, routing, usage) loads no transport, storage or SDK.

Each domain module is imported in a fresh interpreter, so what another test
imported first cannot hide what the module itself pulls in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import liya_engine.config
import liya_engine.inference
import liya_engine.routing
import liya_engine.usage

# The transport, the storage (its drivers, and bootstrap, which wires it in),
# the HTTP clients and the SDKs.
FORBIDDEN = (
    "grpc",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "aiohttp",
    "httpx",
    "httpx2",
    "openai",
    "anthropic",
    "liya_engine.storage",
    "liya_engine.bootstrap",
    "liya_engine.api",
    # The domain may use the OpenTelemetry API; the SDK and exporter are wired in app.py.
    "opentelemetry.sdk",
    "opentelemetry.exporter",
)
DOMAIN_PACKAGES = (
    liya_engine.config,
    liya_engine.inference,
    liya_engine.routing,
    liya_engine.usage,
)

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
forbidden = set(json.loads(sys.argv[2]))
loaded = {p for m in sys.modules for p in forbidden if m == p or m.startswith(p + ".")}
print(json.dumps(sorted(loaded)))
"""


def domain_modules() -> list[str]:
    names = []
    for package in DOMAIN_PACKAGES:
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.append(info.name)
    return sorted(names)


def test_the_domain_has_the_modules_this_test_looks_at():
    modules = domain_modules()
    # A broken walk would make the test below pass on nothing.
    for name in (
        "liya_engine.config.endpoints",
        "liya_engine.config.validation",
        "liya_engine.inference.service",
        "liya_engine.inference.ports",
        "liya_engine.inference.estimate",
        "liya_engine.routing.router",
        "liya_engine.usage.ledger",
    ):
        assert name in modules


@pytest.mark.parametrize("module", domain_modules())
def test_importing_a_domain_module_loads_no_transport_storage_or_sdk(module):
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, module, json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [], f"{module} loads {run.stdout.strip()}"


def test_the_probe_sees_a_forbidden_import():
    # The same probe on a module that does load an SDK must say so.
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, "liya_engine.providers.classify", json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert {"openai", "anthropic", "httpx2"} <= set(json.loads(run.stdout))

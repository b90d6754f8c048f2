"""The real server and the fake providers for the TypeScript client's tests
(``clients/typescript/test``): run as a script, it starts both on free loopback
ports with a fresh SQLite file, prints one JSON line (the server's address,
the fakes' base URL, tokens for the tenants the tests use, the guide's bodies)
and serves until its standard input closes. Run as a script, its own
directory is on ``sys.path``, so it shares the tests' helpers."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from guide_bodies import BODIES
from helpers import test_env, token
from liya_engine.app import start_server
from liya_engine.fakes import FakeProviders
from liya_engine.settings import Settings

TENANTS = ("ts-guide", "ts-errors", "ts-deadline")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeProviders.start() as fake:
            env = test_env(
                f"sqlite+aiosqlite:///{Path(tmp) / 'liya.db'}",
                LIYA_OPENAI_BASE_URL=fake.openai_base_url,
                LIYA_ANTHROPIC_BASE_URL=fake.anthropic_base_url,
            )
            running = await start_server(Settings.from_env(env))
            try:
                ready = {
                    "address": f"http://127.0.0.1:{running.port}",
                    "fake": fake.base_url,
                    "tokens": {t: token(t, sub=f"{t}@example") for t in TENANTS},
                    "bodies": BODIES,
                }
                print(json.dumps(ready), flush=True)
                await asyncio.to_thread(sys.stdin.read)  # until the test closes it
            finally:
                await running.stop(0)


if __name__ == "__main__":
    asyncio.run(main())

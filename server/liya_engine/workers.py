"""``serve --workers N``: fork N server processes that share the port.

Workers are forked before any gRPC object exists in the parent (gRPC does not
survive a fork), each binds the same address with SO_REUSEPORT, and the
parent forwards SIGTERM/SIGINT so all stop gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from liya_engine.settings import Settings

log = logging.getLogger("liya_engine.workers")


def _worker(settings: Settings, index: int) -> None:
    from liya_engine import loops
    from liya_engine.app import serve_forever
    from liya_engine.logs import set_worker

    set_worker(index)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        loops.run(
            serve_forever(settings, reuse_port=True, migrate=False, worker_index=index),
            settings.event_loop,
        )
    except BaseException:
        log.exception("worker %d (pid %d) failed", index, os.getpid())
        os._exit(1)
    os._exit(0)


async def _prepare(settings: Settings) -> None:
    """Migrate and create key salts once, so workers do not race on them."""
    from liya_engine.bootstrap import build_cipher
    from liya_engine.storage.database import Database

    db = Database(settings.database_url)
    try:
        revision = await db.migrate()
        log.info("database schema at revision %s (migrated before forking)", revision)
        await build_cipher(settings, db)
    finally:
        await db.dispose()


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` processes; return when all have exited."""
    asyncio.run(_prepare(settings))
    children: list[int] = []
    for index in range(settings.workers):
        pid = os.fork()
        if pid == 0:
            _worker(settings, index)
        children.append(pid)
    log.info(
        "started %d workers: %s",
        len(children),
        ", ".join(f"worker {i} pid {pid}" for i, pid in enumerate(children)),
    )

    def forward(signum, _frame) -> None:
        log.info(
            "received %s: forwarding SIGTERM to %d workers",
            signal.Signals(signum).name,
            len(children),
        )
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for index, pid in enumerate(children):
        while True:
            try:
                _, code = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        exit_code = os.waitstatus_to_exitcode(code)
        log.info("worker %d (pid %d) exited with status %d", index, pid, exit_code)
        status = status or (exit_code != 0)
    log.info("all workers stopped")
    return int(status)

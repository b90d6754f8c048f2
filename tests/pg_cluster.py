"""A PostgreSQL cluster of a test's own (initdb and pg_ctl on a free port, in a
temporary directory, trust authentication), so that the test may stop it,
start it again, make it read-only or let it run out of connections.

The shared server at LIYA_TEST_POSTGRES_URL cannot be treated that way. The
binaries come from PATH or PostgreSQL's usual install directories; without
them, tests skip, except under CI=true, where they fail. initdb refuses to
run as root, so as root the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest

from helpers import free_port

SYSTEM_USER = "postgres"  # who runs the cluster when the tests run as root
DATABASE = "liya"


def _bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


class PgCluster:
    """One cluster: ``start``, ``stop``, ``sql``; ``url`` is its database for the server."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self.admin_dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_other = os.geteuid() == 0
        self._root = root

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_other:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=check)

    def init(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._as_other:
            user = pwd.getpwnam(SYSTEM_USER)
            for path in (self._root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self, **settings: str) -> None:
        """Start (waiting until it accepts connections); ``settings`` are
        ``-c name=value`` server settings for this run."""
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.sockets}",
            "-c fsync=off",
            *(f"-c {name}={value}" for name, value in settings.items()),
        ]
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop", check=wait
        )

    async def sql(self, statement: str, database: str = "postgres") -> None:
        """Run ``statement`` as the superuser, outside any transaction."""
        conn = await asyncpg.connect(self.admin_dsn.rsplit("/", 1)[0] + f"/{database}", timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()


def start_cluster(root: Path) -> PgCluster:
    """A started cluster with an empty database ``liya``; skips (fails under
    CI=true) when PostgreSQL's binaries are not installed."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "initdb/pg_ctl not installed: cannot start a PostgreSQL cluster of our own"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster(root, bin_dir)
    cluster.init()
    cluster.start()
    return cluster

"""Schema migrations: Alembic's upgrade to the latest revision, run on the
service's own engine. Alembic's environment (``env.py``) and the revisions
(``versions/``) live in this folder and are loaded by Alembic from here."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from liya_engine.storage.engine import WRITE_OPTION

MIGRATIONS_DIR = Path(__file__).parent
# Any fixed number: the PostgreSQL advisory lock replicas migrate under.
_MIGRATION_LOCK_ID = 7316044415


async def upgrade(engine: AsyncEngine) -> str:
    """Bring the schema to the latest revision; return it.

    On PostgreSQL an advisory lock makes replicas that start together migrate
    one after the other; on SQLite the write lock taken at BEGIN does the same.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    def run(sync_conn) -> str:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")
        return MigrationContext.configure(sync_conn).get_current_revision() or ""

    async with engine.connect() as conn:
        conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            return await conn.run_sync(run)

"""Storage: the config plane's ports (``liya_engine.config.ports``) implemented
on SQLAlchemy 2 async, SQLite (aiosqlite) or PostgreSQL (asyncpg).

Modules, by job:

    database       ``Database``, the facade the rest of the service holds: the
                   hot read, units of work, migrate, ping, salts, dispose,
                   change listening (ConfigStore and SaltStore)
    engine         URLs (``async_url``), engine creation, SQLite's per-connection
                   pragmas and BEGIN kind, ping
    migrations     the Alembic upgrade (its __init__), env.py and the revisions
    tables         the schema (declarative rows); change with a migration
    rows           THE row mapper: rows <-> ``config.model`` objects, and the
                   one joined query that reads a tenant's config
    sqlite_reader  the fast SQLite read path on the event loop, with a reader
                   thread for a locked database
    repositories   tenant configs and audit entries inside a unit of work
    unit_of_work   one transaction with its repositories
    availability   which driver errors become ``StorageUnavailable``
    salts          master key salts (SaltStore)
    notify         PostgreSQL LISTEN/NOTIFY: announcing a change, listening
    health         key health records: merged upserts, reads, the reset
                   new credentials bring (HealthStore)

May import: sqlalchemy, alembic, aiosqlite/asyncpg, sqlite3, the domain's model
and ports (``liya_engine.config.model``, ``liya_engine.config.ports``),
``liya_engine.errors`` and ``liya_engine.crypto`` (for a fresh salt). Never
grpc, the API layer or the providers. Rows never leave this package: callers
get ``config.model`` objects. The domain never imports this package;
``liya_engine.app`` wires it in.
"""

"""The ``liya-engine`` command: serve, token, keys generate|rewrap, migrate,
fake-providers."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from liya_engine.errors import SettingsError
from liya_engine.settings import Settings, all_settings, describe

DEV_DIR = Path(".dev")
DEV_MASTER_KEYS = DEV_DIR / "master-keys"
DEV_JWT_SECRET = DEV_DIR / "jwt-secret"


def _dev_settings(settings: Settings) -> Settings:
    """Fill in development secrets from ./.dev (created once) where none is set.

    Only with ``--dev``: production settings never fall back to these.
    """
    from liya_engine.crypto.master_keys import generate_master_key_line

    created = []
    DEV_DIR.mkdir(mode=0o700, exist_ok=True)
    if not DEV_MASTER_KEYS.exists():
        DEV_MASTER_KEYS.write_text(generate_master_key_line("dev-1") + "\n")
        DEV_MASTER_KEYS.chmod(0o600)
        created.append(str(DEV_MASTER_KEYS))
    if not DEV_JWT_SECRET.exists():
        DEV_JWT_SECRET.write_text(secrets.token_urlsafe(48) + "\n")
        DEV_JWT_SECRET.chmod(0o600)
        created.append(str(DEV_JWT_SECRET))
    if created:
        print(
            f"liya-engine: created DEVELOPMENT secrets {', '.join(created)} "
            "(for local use only; never use them in production)",
            file=sys.stderr,
        )
    dev: dict[str, object] = {}
    if not settings.master_keys:
        dev["master_keys"] = _from_file("master_keys", DEV_MASTER_KEYS)
    if settings.jwt_hs256_secret is None and settings.jwt_public_key_pem is None:
        dev["jwt_hs256_secret"] = _from_file("jwt_hs256_secret", DEV_JWT_SECRET)
    return dataclasses.replace(settings, **dev)


def _from_file(field_name: str, path: Path) -> object:
    return Settings.parse(field_name, path.read_text(encoding="utf-8"), str(path))


#: Flags that override a setting: argparse dest -> Settings field.
_FLAG_FIELDS = {
    "listen": "listen_address",
    "database_url": "database_url",
    "metrics_address": "metrics_address",
    "http_listen": "http_listen_address",
    "workers": "workers",
}


def _settings(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with the command's flags applied.

    A flag's value passes the same checks as its variable, and the variable it
    overrides (with its ``*_FILE`` variant) is not read at all.
    """
    overrides = {}
    for dest, field_name in _FLAG_FIELDS.items():
        raw = getattr(args, dest, None)
        flag = "--" + dest.replace("_", "-")
        value = None if raw is None else Settings.parse(field_name, str(raw), flag)
        if value is not None:  # an empty flag counts as not given, like an empty variable
            overrides[field_name] = value
    overridden = {
        name for f, row in all_settings() if f.name in overrides for name in row.variables
    }
    env = {name: value for name, value in os.environ.items() if name not in overridden}
    settings = dataclasses.replace(Settings.from_env(env), **overrides)
    return _dev_settings(settings) if getattr(args, "dev", False) else settings


def cmd_serve(args: argparse.Namespace) -> int:
    from liya_engine.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    settings.primary_master_key  # noqa: B018 - refuse to start without one
    if args.dev:
        logging.getLogger("liya_engine").warning(
            "development flag on: --dev (master key and JWT secret from %s/ where "
            "none is set; never in production)",
            DEV_DIR,
        )
    if settings.workers > 1:
        from liya_engine.workers import serve_workers

        return serve_workers(settings)
    from liya_engine import loops
    from liya_engine.app import serve_forever

    loops.run(serve_forever(settings), settings.event_loop)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from liya_engine.identity import mint_token

    settings = _settings(args)
    print(mint_token(settings, tenant=args.tenant, sub=args.sub, ttl_seconds=args.ttl))
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from liya_engine.crypto.master_keys import generate_master_key_line

    try:
        print(generate_master_key_line(args.id))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return 0


def cmd_keys_rewrap(args: argparse.Namespace) -> int:
    from liya_engine.bootstrap import build_cipher
    from liya_engine.config.rewrap import rewrap_all
    from liya_engine.logs import configure_logging
    from liya_engine.storage.database import Database

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)

    async def run():
        db = Database(settings.database_url)
        try:
            cipher = await build_cipher(settings, db)
            return await rewrap_all(db, cipher, batch_size=args.batch_size)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    print(report.summary())
    return 0 if report.failed == 0 else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from liya_engine.storage.database import Database

    settings = _settings(args)

    async def run() -> str:
        db = Database(settings.database_url)
        try:
            return await db.migrate()
        finally:
            await db.dispose()

    print(f"database schema at revision {asyncio.run(run())}")
    return 0


def cmd_fake_providers(args: argparse.Namespace) -> int:
    from liya_engine.fakes import main_forever

    main_forever(args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liya-engine",
        description="Liya Engine BYOK service. Settings come from LIYA_* environment "
        "variables (see README); flags override them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def dev_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--dev",
            action="store_true",
            help="use development secrets under ./.dev (created on first use) "
            "where no master key or JWT secret is set",
        )

    p = sub.add_parser(
        "serve",
        help="serve the gRPC API (migrates the database on start)",
        description="Serve the gRPC API until SIGTERM/SIGINT, then drain "
        "in-flight calls. The database schema is migrated on start.",
        epilog="environment variables (read once at start; flags override them):\n" + describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="overrides LIYA_LISTEN_ADDRESS")
    p.add_argument(
        "--http-listen", metavar="HOST:PORT", help="overrides LIYA_HTTP_LISTEN_ADDRESS (HTTP/JSON)"
    )
    p.add_argument("--database-url", metavar="URL", help="overrides LIYA_DATABASE_URL")
    p.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="overrides LIYA_METRICS_ADDRESS (Prometheus /metrics)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes sharing the port (overrides LIYA_WORKERS)",
    )
    dev_flag(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "token",
        help="print a development JWT signed with the HS256 secret",
        description="Print a JWT for TENANT signed with LIYA_JWT_HS256_SECRET, "
        "for grpcurl and local tests.",
    )
    p.add_argument("--tenant", required=True, help="the tenant_id claim")
    p.add_argument("--sub", help="the sub claim (the actor in audit entries); default dev@TENANT")
    p.add_argument(
        "--ttl",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="lifetime in seconds (default 3600)",
    )
    dev_flag(p)
    p.set_defaults(func=cmd_token)

    keys = sub.add_parser("keys", help="master key commands").add_subparsers(
        dest="keys_command", required=True, metavar="SUBCOMMAND"
    )
    p = keys.add_parser(
        "generate",
        help="print a new master key as key_id:base64",
        description="Print a new random master key in the LIYA_MASTER_KEYS "
        "format. Put it first in LIYA_MASTER_KEYS to make it primary.",
    )
    p.add_argument("--id", help="key id (default mk-YYYYMMDD-xxxx)")
    p.set_defaults(func=cmd_keys_generate)
    p = keys.add_parser(
        "rewrap",
        help="re-encrypt every stored key under the primary key",
        description="Re-encrypt every stored provider key under the primary "
        "master key, in batches. Safe while servers run and to "
        "re-run after an interruption.",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=200,
        metavar="N",
        help="keys re-encrypted per transaction (default 200)",
    )
    dev_flag(p)
    p.set_defaults(func=cmd_keys_rewrap)

    p = sub.add_parser(
        "migrate",
        help="bring the database schema to the latest revision",
        description="Run the Alembic migrations (serve also does this on start).",
    )
    p.add_argument(
        "--http-listen", metavar="HOST:PORT", help="overrides LIYA_HTTP_LISTEN_ADDRESS (HTTP/JSON)"
    )
    p.add_argument("--database-url", metavar="URL", help="overrides LIYA_DATABASE_URL")
    dev_flag(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "fake-providers",
        help="run fake OpenAI/Anthropic/Azure servers for demos",
        description="Serve fake OpenAI, Anthropic and Azure OpenAI APIs on one "
        "loopback port, for local demos and tests.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    p.set_defaults(func=cmd_fake_providers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from liya_engine.logs import ignore_library_switches

    ignore_library_switches()  # before any command imports an SDK
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"liya-engine: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"liya-engine: error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"liya-engine: error: database: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

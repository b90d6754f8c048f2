"""Service settings: one frozen object, read once from the environment.

The dataclasses below are the settings table: each field declared with
``setting(...)`` is one row (its ``LIYA_*`` variable, parser, default and help
text). Every name here is part of the operator contract (DESIGN.md, README,
docs/operations.md): rename nothing. ``Settings.from_env`` is the only place
that reads ``os.environ``; everything else receives the object. A caller that
overrides a setting (the command line's flags) uses ``dataclasses.replace``
with a value checked by ``Settings.parse``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from liya_engine.crypto.master_keys import MASTER_KEY_BYTES, MasterKey, parse_master_keys
from liya_engine.errors import SettingsError
from liya_engine.secret import Secret
from liya_engine.settings_limits import Limits
from liya_engine.settings_schema import (
    UNSET,
    Setting,
    base_url,
    boolean,
    choice,
    default_text,
    file_text,
    integer,
    items,
    number,
    read_settings,
    row_of,
    rows,
    secret,
    setting,
    text,
)

EVENT_LOOPS = ("uvloop", "asyncio")
LOG_FORMATS = ("text", "json")
#: The level names ``logging`` knows (WARN and FATAL included, as before).
LOG_LEVELS = tuple(logging.getLevelNamesMapping())
#: With a public key, the algorithms tokens may use; the first is the default.
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class ManagedAzure:
    """The platform's Azure OpenAI deployment for managed mode (the first three go together)."""

    api_key: Secret = setting(
        "LIYA_MANAGED_AZURE_API_KEY",
        secret(),
        help="the platform's Azure OpenAI key",
        file="LIYA_MANAGED_AZURE_API_KEY_FILE",
    )
    endpoint: str = setting(
        "LIYA_MANAGED_AZURE_ENDPOINT", base_url, help="the platform's Azure OpenAI endpoint"
    )
    deployment: str = setting(
        "LIYA_MANAGED_AZURE_DEPLOYMENT", text, help="the platform's Azure OpenAI deployment"
    )
    api_version: str = setting(
        "LIYA_MANAGED_AZURE_API_VERSION",
        text,
        "2024-02-15-preview",
        "the API version used with the platform's deployment",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ManagedAzure | None:
        """The deployment when its key, endpoint and deployment are all set, else None.

        ``SettingsError`` when only one or two of those three are set.
        """
        values = read_settings(cls, env)
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        present = [name for name in required if name in values]
        if not present:
            return None
        if len(present) < len(required):
            names = [row_of(cls, name).variable for name in required]
            raise SettingsError(
                f"managed Azure needs {', '.join(names[:-1])} and {names[-1]} together"
            )
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ManagedCredentials:
    """The platform's own provider credentials, used in managed mode."""

    openai_api_key: Secret | None = setting(
        "LIYA_MANAGED_OPENAI_API_KEY",
        secret(),
        None,
        "the platform's OpenAI key",
        file="LIYA_MANAGED_OPENAI_API_KEY_FILE",
    )
    anthropic_api_key: Secret | None = setting(
        "LIYA_MANAGED_ANTHROPIC_API_KEY",
        secret(),
        None,
        "the platform's Anthropic key",
        file="LIYA_MANAGED_ANTHROPIC_API_KEY_FILE",
    )
    azure: ManagedAzure | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ManagedCredentials:
        """Read the managed-mode credentials (all optional)."""
        return cls(**read_settings(cls, env), azure=ManagedAzure.from_env(env))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server is configured with. Build it with ``from_env``."""

    listen_address: str = setting(
        "LIYA_LISTEN_ADDRESS", text, "127.0.0.1:50051", "host:port to serve on"
    )
    database_url: str = setting(
        "LIYA_DATABASE_URL",
        text,
        "sqlite+aiosqlite:///liya-engine.db",
        "SQLAlchemy URL (sqlite+aiosqlite:///file.db or postgresql+asyncpg://user@host/db)",
        file="LIYA_DATABASE_URL_FILE",
        repr=False,  # it may carry the database password
    )
    master_keys: tuple[MasterKey, ...] = setting(
        "LIYA_MASTER_KEYS",
        parse_master_keys,
        (),
        "key_id:base64(32 bytes) entries, comma- or newline-separated; the first is primary",
        file="LIYA_MASTER_KEYS_FILE",
    )
    jwt_hs256_secret: Secret | None = setting(
        "LIYA_JWT_HS256_SECRET",
        secret(min_length=32),
        None,
        "HS256 secret (at least 32 characters) that verifies tokens",
        file="LIYA_JWT_HS256_SECRET_FILE",
    )
    jwt_public_key_pem: str | None = setting(
        "LIYA_JWT_PUBLIC_KEY_FILE",
        file_text,
        None,
        "PEM public key file; tokens are then RS256 or ES256",
    )
    jwt_algorithms: tuple[str, ...] = setting(
        "LIYA_JWT_ALGORITHMS",
        items,
        ("HS256",),
        "with a public key: RS256 and/or ES256 (default RS256); without one, HS256",
    )
    jwt_issuer: str | None = setting("LIYA_JWT_ISSUER", text, None, "checked when set")
    jwt_audience: str | None = setting("LIYA_JWT_AUDIENCE", text, None, "checked when set")
    jwt_leeway_seconds: float = setting(
        "LIYA_JWT_LEEWAY_SECONDS", number(minimum=0), 30.0, "clock-skew leeway for tokens"
    )
    openai_base_url: str = setting(
        "LIYA_OPENAI_BASE_URL", base_url, "https://api.openai.com/v1", "OpenAI base URL"
    )
    anthropic_base_url: str = setting(
        "LIYA_ANTHROPIC_BASE_URL", base_url, "https://api.anthropic.com", "Anthropic base URL"
    )
    allow_insecure_endpoints: bool = setting(
        "LIYA_ALLOW_INSECURE_ENDPOINTS",
        boolean,
        False,
        "development only: Azure endpoints may be loopback http URLs",
    )
    azure_endpoint_allowlist: tuple[str, ...] = setting(
        "LIYA_AZURE_ENDPOINT_ALLOWLIST",
        items,
        (),
        "extra Azure endpoint hosts (host or .suffix), comma-separated",
    )
    azure_allow_private_addresses: bool = setting(
        "LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES",
        boolean,
        False,
        "let Azure endpoints resolve to private addresses (Private Link)",
    )
    managed: ManagedCredentials = field(default_factory=ManagedCredentials)
    limits: Limits = field(default_factory=Limits)
    metrics_address: str | None = setting(
        "LIYA_METRICS_ADDRESS", text, None, "host:port for Prometheus /metrics; unset = off"
    )
    http_listen_address: str | None = setting(
        "LIYA_HTTP_LISTEN_ADDRESS", text, None, "host:port for the HTTP/JSON API; unset = off"
    )
    log_format: str = setting("LIYA_LOG_FORMAT", choice(*LOG_FORMATS), "text", "text or json")
    access_log: bool = setting(
        "LIYA_ACCESS_LOG",
        boolean,
        False,
        "one INFO line per call on logger liya_engine.access",
    )
    log_level: str = setting(
        "LIYA_LOG_LEVEL",
        choice(*LOG_LEVELS, normalise=str.upper),
        "INFO",
        "a logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    max_receive_message_bytes: int = setting(
        "LIYA_MAX_RECEIVE_MESSAGE_BYTES",
        integer(minimum=1024),
        4 * 1024 * 1024,
        "largest request accepted, in bytes",
    )
    shutdown_grace_seconds: float = setting(
        "LIYA_SHUTDOWN_GRACE_SECONDS",
        number(minimum=0),
        20.0,
        "after the drain, how long in-flight calls may take to finish",
    )
    shutdown_drain_seconds: float = setting(
        "LIYA_SHUTDOWN_DRAIN_SECONDS",
        number(minimum=0),
        0.0,
        "after SIGTERM, how long to keep serving while health says NOT_SERVING",
    )
    health_check_seconds: float = setting(
        "LIYA_HEALTH_CHECK_SECONDS",
        number(minimum=0.05),
        5.0,
        "how often readiness checks the database",
    )
    upstream_timeout_seconds: float = setting(
        "LIYA_UPSTREAM_TIMEOUT_SECONDS",
        number(minimum=0.1),
        60.0,
        "the longest a provider call may take",
    )
    config_cache_size: int = setting(
        "LIYA_CONFIG_CACHE_SIZE", integer(minimum=0), 50_000, "tenants kept warm in memory"
    )
    config_cache_ttl_seconds: float = setting(
        "LIYA_CONFIG_CACHE_TTL_SECONDS",
        number(minimum=0),
        2.0,
        "the longest a cached tenant config is used before it is re-read",
    )
    usage_flush_seconds: float = setting(
        "LIYA_USAGE_FLUSH_SECONDS", number(minimum=0.05), 1.0, "how often usage is written"
    )
    usage_max_pending_keys: int = setting(
        "LIYA_USAGE_MAX_PENDING_KEYS", integer(minimum=1), 100_000, "unwritten usage rows kept"
    )
    usage_ledger: bool = setting(
        "LIYA_USAGE_LEDGER", boolean, True, "false: no usage ledger, no budgets (benchmarks)"
    )
    catalog_file: str | None = setting(
        "LIYA_CATALOG_FILE", text, None, "model catalog to use instead of the packaged one"
    )
    workers: int = setting(
        "LIYA_WORKERS", integer(minimum=1), 1, "server processes sharing the port"
    )
    event_loop: str = setting(
        "LIYA_EVENT_LOOP",
        choice(*EVENT_LOOPS, normalise=str.lower),
        "uvloop",
        "uvloop, or asyncio for the standard loop",
    )

    @property
    def primary_master_key(self) -> MasterKey:
        """The master key new values are encrypted under; ``SettingsError`` if none."""
        if not self.master_keys:
            raise SettingsError(
                "no master key: set LIYA_MASTER_KEYS or LIYA_MASTER_KEYS_FILE "
                "(generate one with `liya-engine keys generate`)"
            )
        return self.master_keys[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``LIYA_*`` variable; raise ``SettingsError`` naming a bad one."""
        env = os.environ if env is None else env
        values = read_settings(cls, env)
        values["managed"] = ManagedCredentials.from_env(env)
        values["limits"] = Limits.from_env(env)
        if values.get("jwt_public_key_pem"):
            values["jwt_algorithms"] = _public_key_algorithms(values.get("jwt_algorithms"))
        else:
            values.pop("jwt_algorithms", None)  # HS256, whatever the variable says
        return cls(**values)

    @classmethod
    def parse(cls, field_name: str, raw: str, source: str) -> Any:
        """Parse ``raw`` as the setting ``field_name`` would be, errors naming ``source``.

        For overrides (a command-line flag) that must pass the same checks as
        the variable; None means the value counts as unset.
        """
        return row_of(cls, field_name).parse(raw.strip(), source)


def _public_key_algorithms(chosen: tuple[str, ...] | None) -> tuple[str, ...]:
    algorithms = chosen or PUBLIC_KEY_ALGORITHMS[:1]
    bad = [a for a in algorithms if a not in PUBLIC_KEY_ALGORITHMS]
    if bad:
        raise SettingsError(
            f"LIYA_JWT_ALGORITHMS: {', '.join(bad)} not allowed with a public key "
            f"(use {' or '.join(PUBLIC_KEY_ALGORITHMS)})"
        )
    return algorithms


def all_settings() -> Iterator[tuple[dataclasses.Field, Setting]]:
    """Every row of the table: ``Settings``, the limits, then the managed-mode credentials."""
    for cls in (Settings, Limits, ManagedCredentials, ManagedAzure):
        yield from rows(cls)


def variables() -> list[str]:
    """Every ``LIYA_*`` variable the settings read, ``*_FILE`` variants included."""
    return [name for _, row in all_settings() for name in row.variables]


def describe() -> str:
    """The table as text: one line per setting (for ``liya-engine serve --help``)."""
    lines = []
    for f, row in all_settings():
        names = " / ".join(row.variables)
        lines.append(f"  {names}\n      {row.help} (default: {default_text(f)})")
    return "\n".join(lines)


def markdown_table() -> str:
    """The table as docs/operations.md shows it (a test keeps the two equal)."""
    lines = ["| variable | meaning | default |", "| --- | --- | --- |"]
    for f, row in all_settings():
        names = " / ".join(f"`{name}`" for name in row.variables)
        default = default_text(f)
        shown = default if default == UNSET else f"`{default}`"
        lines.append(f"| {names} | {row.help} | {shown} |")
    return "\n".join(lines)


# The names other modules import from here.
__all__ = [
    "EVENT_LOOPS",
    "MASTER_KEY_BYTES",
    "ManagedAzure",
    "ManagedCredentials",
    "MasterKey",
    "Settings",
    "SettingsError",
    "all_settings",
    "describe",
    "markdown_table",
    "parse_master_keys",
    "variables",
]

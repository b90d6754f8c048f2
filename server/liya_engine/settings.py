"""Service settings: one frozen object, read once from the environment.

Every name here is part of the operator contract (DESIGN.md, README): rename
nothing. ``Settings.from_env`` is the only place that reads ``os.environ``;
everything else receives the object.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from liya_engine.errors import SettingsError
from liya_engine.secret import Secret

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///liya-engine.db"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"
MASTER_KEY_BYTES = 32
EVENT_LOOPS = ("uvloop", "asyncio")


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One master key of the keyring: an id and 32 secret bytes."""

    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != MASTER_KEY_BYTES:
            raise SettingsError(f"master key {self.key_id!r} must be {MASTER_KEY_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class ManagedAzure:
    """The platform's Azure OpenAI deployment for managed mode."""

    api_key: Secret
    endpoint: str
    deployment: str
    api_version: str


@dataclass(frozen=True, slots=True)
class ManagedCredentials:
    """The platform's own provider credentials, used in managed mode."""

    openai_api_key: Secret | None = None
    anthropic_api_key: Secret | None = None
    azure: ManagedAzure | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server is configured with. Build it with ``from_env``."""

    listen_address: str = DEFAULT_LISTEN_ADDRESS
    database_url: str = DEFAULT_DATABASE_URL
    master_keys: tuple[MasterKey, ...] = ()
    jwt_hs256_secret: Secret | None = None
    jwt_public_key_pem: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: float = 30.0
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    anthropic_base_url: str = DEFAULT_ANTHROPIC_BASE_URL
    allow_insecure_endpoints: bool = False
    azure_endpoint_allowlist: tuple[str, ...] = ()
    azure_allow_private_addresses: bool = False
    managed: ManagedCredentials = field(default_factory=ManagedCredentials)
    metrics_address: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    max_receive_message_bytes: int = 4 * 1024 * 1024
    shutdown_grace_seconds: float = 20.0
    shutdown_drain_seconds: float = 0.0
    health_check_seconds: float = 5.0
    upstream_timeout_seconds: float = 60.0
    config_cache_size: int = 50_000
    config_cache_ttl_seconds: float = 2.0
    catalog_file: str | None = None
    workers: int = 1
    event_loop: str = "uvloop"

    @property
    def primary_master_key(self) -> MasterKey:
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

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        master_keys: tuple[MasterKey, ...] = ()
        if raw := get("LIYA_MASTER_KEYS"):
            master_keys = parse_master_keys(raw, "LIYA_MASTER_KEYS")
        elif path := get("LIYA_MASTER_KEYS_FILE"):
            master_keys = parse_master_keys(
                _read_file(path, "LIYA_MASTER_KEYS_FILE"), "LIYA_MASTER_KEYS_FILE"
            )

        hs_secret = get("LIYA_JWT_HS256_SECRET")
        if hs_secret is None and (path := get("LIYA_JWT_HS256_SECRET_FILE")):
            hs_secret = _read_file(path, "LIYA_JWT_HS256_SECRET_FILE").strip()
        public_pem = None
        if path := get("LIYA_JWT_PUBLIC_KEY_FILE"):
            public_pem = _read_file(path, "LIYA_JWT_PUBLIC_KEY_FILE")
        if public_pem:
            algorithms = _split(get("LIYA_JWT_ALGORITHMS") or "RS256")
            bad = [a for a in algorithms if a not in ("RS256", "ES256")]
            if bad:
                raise SettingsError(
                    f"LIYA_JWT_ALGORITHMS: {', '.join(bad)} not allowed with a public key "
                    "(use RS256 or ES256)"
                )
        else:
            algorithms = ("HS256",)
        if hs_secret is not None and len(hs_secret) < 32:
            raise SettingsError("LIYA_JWT_HS256_SECRET must be at least 32 characters")

        azure = None
        azure_key = _from_value_or_file(get, "LIYA_MANAGED_AZURE_API_KEY")
        azure_endpoint = get("LIYA_MANAGED_AZURE_ENDPOINT")
        azure_deployment = get("LIYA_MANAGED_AZURE_DEPLOYMENT")
        if azure_key and azure_endpoint and azure_deployment:
            azure = ManagedAzure(
                api_key=Secret(azure_key),
                endpoint=azure_endpoint,
                deployment=azure_deployment,
                api_version=get("LIYA_MANAGED_AZURE_API_VERSION") or "2024-02-15-preview",
            )
        elif azure_key or azure_endpoint or azure_deployment:
            raise SettingsError(
                "managed Azure needs LIYA_MANAGED_AZURE_API_KEY, LIYA_MANAGED_AZURE_ENDPOINT "
                "and LIYA_MANAGED_AZURE_DEPLOYMENT together"
            )
        managed = ManagedCredentials(
            openai_api_key=_secret(_from_value_or_file(get, "LIYA_MANAGED_OPENAI_API_KEY")),
            anthropic_api_key=_secret(_from_value_or_file(get, "LIYA_MANAGED_ANTHROPIC_API_KEY")),
            azure=azure,
        )

        log_format = get("LIYA_LOG_FORMAT") or "text"
        if log_format not in ("text", "json"):
            raise SettingsError("LIYA_LOG_FORMAT must be text or json")
        event_loop = (get("LIYA_EVENT_LOOP") or "uvloop").lower()
        if event_loop not in EVENT_LOOPS:
            raise SettingsError("LIYA_EVENT_LOOP must be uvloop or asyncio")

        return cls(
            listen_address=get("LIYA_LISTEN_ADDRESS") or DEFAULT_LISTEN_ADDRESS,
            database_url=_from_value_or_file(get, "LIYA_DATABASE_URL") or DEFAULT_DATABASE_URL,
            master_keys=master_keys,
            jwt_hs256_secret=_secret(hs_secret),
            jwt_public_key_pem=public_pem,
            jwt_algorithms=tuple(algorithms),
            jwt_issuer=get("LIYA_JWT_ISSUER"),
            jwt_audience=get("LIYA_JWT_AUDIENCE"),
            jwt_leeway_seconds=_float(env, "LIYA_JWT_LEEWAY_SECONDS", 30.0, minimum=0),
            openai_base_url=get("LIYA_OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL,
            anthropic_base_url=get("LIYA_ANTHROPIC_BASE_URL") or DEFAULT_ANTHROPIC_BASE_URL,
            allow_insecure_endpoints=_bool(env, "LIYA_ALLOW_INSECURE_ENDPOINTS"),
            azure_endpoint_allowlist=_split(get("LIYA_AZURE_ENDPOINT_ALLOWLIST") or ""),
            azure_allow_private_addresses=_bool(env, "LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES"),
            managed=managed,
            metrics_address=get("LIYA_METRICS_ADDRESS"),
            log_format=log_format,
            log_level=(get("LIYA_LOG_LEVEL") or "INFO").upper(),
            max_receive_message_bytes=int(
                _float(env, "LIYA_MAX_RECEIVE_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=1024)
            ),
            shutdown_grace_seconds=_float(env, "LIYA_SHUTDOWN_GRACE_SECONDS", 20.0, minimum=0),
            shutdown_drain_seconds=_float(env, "LIYA_SHUTDOWN_DRAIN_SECONDS", 0.0, minimum=0),
            health_check_seconds=_float(env, "LIYA_HEALTH_CHECK_SECONDS", 5.0, minimum=0.05),
            upstream_timeout_seconds=_float(
                env, "LIYA_UPSTREAM_TIMEOUT_SECONDS", 60.0, minimum=0.1
            ),
            config_cache_size=int(_float(env, "LIYA_CONFIG_CACHE_SIZE", 50_000, minimum=0)),
            config_cache_ttl_seconds=_float(env, "LIYA_CONFIG_CACHE_TTL_SECONDS", 2.0, minimum=0),
            catalog_file=get("LIYA_CATALOG_FILE"),
            workers=int(_float(env, "LIYA_WORKERS", 1, minimum=1)),
            event_loop=event_loop,
        )


def parse_master_keys(raw: str, source: str) -> tuple[MasterKey, ...]:
    """Parse ``id:base64,id:base64`` (commas or newlines); the first is primary."""
    keys: list[MasterKey] = []
    seen: set[str] = set()
    for item in raw.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        key_id, sep, b64 = item.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id:
            raise SettingsError(f"{source}: each entry must be key_id:base64(32 bytes)")
        if not key_id.replace("-", "").replace("_", "").isalnum() or len(key_id) > 64:
            raise SettingsError(f"{source}: key id {key_id!r} must be 1-64 of [A-Za-z0-9_-]")
        if key_id in seen:
            raise SettingsError(f"{source}: key id {key_id!r} appears twice")
        try:
            material = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SettingsError(f"{source}: key {key_id!r} is not valid base64") from None
        if len(material) != MASTER_KEY_BYTES:
            raise SettingsError(
                f"{source}: key {key_id!r} decodes to {len(material)} bytes, not {MASTER_KEY_BYTES}"
            )
        seen.add(key_id)
        keys.append(MasterKey(key_id, material))
    if not keys:
        raise SettingsError(f"{source} is set but holds no key")
    return tuple(keys)


def _from_value_or_file(get, name: str) -> str | None:
    """``NAME`` itself, else the stripped content of the file named by ``NAME_FILE``
    (so secrets can come from mounted files instead of the environment)."""
    value = get(name)
    if value is None and (path := get(f"{name}_FILE")):
        value = _read_file(path, f"{name}_FILE").strip() or None
    return value


def _read_file(path: str, name: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not value >= minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value

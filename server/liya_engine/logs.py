"""Logging: a request context on every line, redaction, text or JSON output.

The request id and tenant of the current call live in context variables set
by the gRPC layer; a filter copies them onto every record and scrubs the
message of anything key-shaped, so no handler can print a key even when a
caller puts one in the wrong place.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Mapping

from liya_engine.redact import scrub

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="-")


class ContextAndRedactionFilter(logging.Filter):
    """Adds ``request_id``/``tenant`` and scrubs the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.tenant = tenant_var.get()
        message = record.getMessage()
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks may quote locals or provider text; keep the type and
            # a scrubbed message, drop the frames' reprs.
            exc = record.exc_info[1]
            record.exc_text = scrub("".join(logging.Formatter().formatException(record.exc_info)))
            record.exc_info = None
            record.exc_type_name = type(exc).__name__
        return True


CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


class CredentialHeaderFilter(logging.Filter):
    """Masks credential headers in a record whose argument holds ``headers``.

    For the Anthropic SDK's logger: at DEBUG it logs each request's options,
    including the per-request headers that carry the tenant's key. Set on the
    logger itself, it acts before any handler (a test's capture included)
    sees the record. The OpenAI SDK installs the same kind of filter itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and isinstance(args.get("headers"), Mapping):
            headers = {
                name: "<masked>" if str(name).lower() in CREDENTIAL_HEADERS else value
                for name, value in args["headers"].items()
            }
            record.args = {**args, "headers": headers}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for production log pipelines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "tenant": getattr(record, "tenant", "-"),
        }
        for key in ("method", "code", "reason", "duration_ms", "provider", "model"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = (
    "%(asctime)s %(levelname)-5s %(name)s [req=%(request_id)s tenant=%(tenant)s] %(message)s"
)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler with the context/redaction filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextAndRedactionFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party clients log full URLs and headers at DEBUG.
    for noisy in ("httpx", "httpcore", "openai", "anthropic", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    # Alembic narrates every plugin at INFO; the server logs the revision itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)

"""Logging: a request context on every line, redaction, text or JSON output.

The request id and tenant of the current call live in context variables set
by the gRPC layer; a filter copies them onto every record and scrubs the
message of anything key-shaped, so no handler can print a key even when a
caller puts one in the wrong place. A worker of ``serve --workers`` names
itself on every line (``set_worker``).

Libraries log at WARNING and above, whatever their own switches
(``OPENAI_LOG``, ``ANTHROPIC_LOG``) say: at INFO the HTTP clients log a line per
provider call, with tenants' Azure URLs in it, and at DEBUG the SDKs print
response headers verbatim. The command line removes those switches from the
environment before any SDK is imported (``ignore_library_switches``), so they
never act; the levels set here undo them in any process that imported an SDK
first. Only ``LIYA_LOG_LEVEL=DEBUG``
lets them log below that (the SDKs' request options, with the credential
headers masked by their filters); the HTTP/2 header codecs, which would print
raw headers, stay at WARNING even then.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, MutableMapping

from liya_engine.redact import scrub_line

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="-")

#: Loggers of the libraries the server uses (WARNING unless we run at DEBUG). Parents cover
#: their children (``aiohttp.access``, ``openai._base_client``, ...).
LIBRARY_LOGGERS: tuple[str, ...] = (
    "aiohttp",
    "aiosqlite",
    "alembic",
    "anthropic",
    "asyncio",
    "asyncpg",
    "grpc",
    "h11",
    "httpcore",
    "httpcore2",
    "httpx",
    "httpx2",
    "openai",
    "sqlalchemy",
    "urllib3",
)
#: Loggers that print raw request headers at DEBUG: WARNING at every level.
HEADER_LOGGERS: tuple[str, ...] = ("h2", "hpack")
#: SDKs that read a logging switch (``OPENAI_LOG``, ``ANTHROPIC_LOG``) when
#: imported and then lower their own and the HTTP client's levels.
SDK_MODULES: tuple[str, ...] = ("openai", "anthropic")
#: The environment variables those SDKs read for their logging switch.
LIBRARY_SWITCHES: tuple[str, ...] = ("OPENAI_LOG", "ANTHROPIC_LOG")
_ignored_switches: list[str] = []

_worker: int | None = None
_worker_tag = ""


def set_worker(index: int | None) -> None:
    """Name worker ``index`` on every line this process logs from now on
    (``worker`` in JSON, ``[worker i]`` in text); None for a lone process."""
    global _worker, _worker_tag
    _worker = index
    _worker_tag = "" if index is None else f"[worker {index}] "


class ContextAndRedactionFilter(logging.Filter):
    """Adds ``request_id``/``tenant`` and scrubs the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.tenant = tenant_var.get()
        record.worker = _worker
        record.worker_tag = _worker_tag
        # Set by the tracing record factory inside a span, when tracing is on.
        trace_id = getattr(record, "trace_id", None)
        record.trace = f" trace={trace_id}" if trace_id else ""
        message = record.getMessage()
        record.msg = scrub_line(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks may quote locals or provider text; keep the type and
            # a scrubbed message, drop the frames' reprs.
            exc = record.exc_info[1]
            record.exc_text = scrub_line(
                "".join(logging.Formatter().formatException(record.exc_info))
            )
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
        worker = getattr(record, "worker", None)
        if worker is not None:
            entry["worker"] = worker
        for key in (
            "method",
            "code",
            "reason",
            "duration_ms",
            "provider",
            "model",
            "trace_id",
            "span_id",
        ):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = (
    "%(asctime)s %(levelname)-5s %(worker_tag)s%(name)s "
    "[req=%(request_id)s tenant=%(tenant)s%(trace)s] %(message)s"
)


def ignore_library_switches(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the SDKs' logging switches from ``environ`` (default: this
    process's environment) before an SDK is imported; return the names removed.

    ``configure_logging`` says at WARNING which were set, so an operator who
    set one learns that ``LIYA_LOG_LEVEL`` is the switch.
    """
    target = os.environ if environ is None else environ
    removed = [name for name in LIBRARY_SWITCHES if target.pop(name, None) is not None]
    if environ is None:  # this process's: worth saying at start
        _ignored_switches.extend(name for name in removed if name not in _ignored_switches)
    return removed


def quiet_libraries(level: str = "INFO") -> None:
    """Set every library logger's level from ours, after the SDKs' switches ran.

    Importing an SDK with ``OPENAI_LOG``/``ANTHROPIC_LOG`` set lowers its
    logger (and the HTTP client's) to DEBUG and installs a root handler;
    importing them first and setting the levels after undoes both. Libraries
    get WARNING, or DEBUG when ``level`` is DEBUG.
    """
    for module in SDK_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    library_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    for name in HEADER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler with the context/redaction filter."""
    quiet_libraries(level)  # first: an SDK's import may add a root handler
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextAndRedactionFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if _ignored_switches:
        logging.getLogger("liya_engine").warning(
            "ignored %s: library logging follows LIYA_LOG_LEVEL, and never shows keys "
            "or credential headers",
            ", ".join(_ignored_switches),
        )

"""How a setting is declared and read: the row type of the settings table and its parsers.

``liya_engine.settings`` declares each setting once, as a dataclass field made
with ``setting(variable, parser, default, help)``; the field's metadata is the
table row. ``read_settings`` turns the environment into field values with
those rows, so a default is written in one place (the field) and a variable
name in one place (the row). Imports only the standard library,
``liya_engine.errors`` and ``liya_engine.secret``.

A parser is ``parse(raw, name) -> value``: ``raw`` is the stripped text of the
variable (or of the file a ``*_FILE`` variable names), ``name`` the variable
it came from, for the error message. It returns None for "not set" (the
field keeps its default) and raises ``SettingsError`` naming ``name`` on a
malformed value, with a one-line message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from liya_engine.errors import SettingsError
from liya_engine.secret import Secret

Parser = Callable[[str, str], Any]

_ROW = "liya_setting"
#: How a setting without a default shows in the docs and in ``--help``.
UNSET = "unset"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table (the dataclass field it belongs to holds the default)."""

    variable: str
    parse: Parser
    help: str
    #: A variable naming a file that may hold the value instead (for secrets).
    file_variable: str | None = None

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable this row reads, the direct one first."""
        return (self.variable, self.file_variable) if self.file_variable else (self.variable,)

    def read(self, env: Mapping[str, str]) -> Any:
        """The parsed value, or None when no variable of this row is set.

        The variable itself wins over its ``*_FILE`` variant.
        """
        raw = _get(env, self.variable)
        if raw is not None:
            return self.parse(raw, self.variable)
        file_variable = self.file_variable
        if file_variable and (path := _get(env, file_variable)):
            return self.parse(read_file(path, file_variable).strip(), file_variable)
        return None


def setting(
    variable: str,
    parse: Parser,
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    file: bool = False,
    repr: bool = True,
) -> Any:
    """A dataclass field read from ``variable`` (``default`` omitted: required);
    ``repr=False`` keeps a value that may hold a password out of ``repr``."""
    return dataclasses.field(
        default=default, repr=repr, metadata={_ROW: Setting(variable, parse, help, file)}
    )


def rows(cls: type) -> Iterator[tuple[dataclasses.Field, Setting]]:
    """The fields of dataclass ``cls`` declared with ``setting``, in order."""
    for f in dataclasses.fields(cls):
        if (row := f.metadata.get(_ROW)) is not None:
            yield f, row


def row_of(cls: type, field_name: str) -> Setting:
    """The row of ``cls.field_name`` (``KeyError`` if it is not a setting)."""
    for f, row in rows(cls):
        if f.name == field_name:
            return row
    raise KeyError(field_name)


def read_settings(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """Field name -> parsed value, for the settings of ``cls`` that are set in ``env``."""
    values = {}
    for f, row in rows(cls):
        value = row.read(env)
        if value is not None:
            values[f.name] = value
    return values


def default_text(f: dataclasses.Field) -> str:
    """The default of a setting's field as the docs and ``--help`` show it."""
    if f.default is dataclasses.MISSING or f.default in (None, (), ""):
        return UNSET
    if isinstance(f.default, bool):
        return str(f.default).lower()
    if isinstance(f.default, tuple):
        return ",".join(map(str, f.default))
    return str(f.default)


def read_file(path: str, name: str) -> str:
    """The text of the file ``name`` points at; ``SettingsError`` if unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


# ------------------------------------------------------------------ parsers


def text(raw: str, name: str) -> str | None:
    """Any non-empty text."""
    return raw or None


def file_text(raw: str, name: str) -> str:
    """The variable names a file; the value is the file's content, as is."""
    return read_file(raw, name)


def items(raw: str, name: str) -> tuple[str, ...] | None:
    """Comma-separated items, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip()) or None


def base_url(raw: str, name: str) -> str:
    """An http(s) URL with a host, and no user information, query or fragment.

    The message never quotes the value: a URL with user information carries a
    password, and a parser's own error may quote part of it.
    """
    problem = _base_url_problem(raw)
    if problem:
        raise SettingsError(f"{name} must be an http(s) URL such as https://host/path: {problem}")
    return raw


def _base_url_problem(raw: str) -> str:
    if any(ch.isspace() or not ch.isprintable() or not ch.isascii() for ch in raw):
        return "it contains spaces, control or non-ASCII characters"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return "it cannot be parsed"
    if parts.scheme not in ("http", "https"):
        return "it does not start with http:// or https://"
    if "@" in parts.netloc:
        return "it has user information (put no credentials in a base URL)"
    if not parts.hostname:
        return "it has no host"
    if parts.query or "?" in raw:
        return "it has a query"
    if parts.fragment or "#" in raw:
        return "it has a fragment"
    return ""


def boolean(raw: str, name: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, any case."""
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def number(minimum: float) -> Parser:
    """A number (decimals allowed) of at least ``minimum``."""

    def parse(raw: str, name: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {raw!r}") from None
        if not value >= minimum:  # also refuses NaN
            raise SettingsError(f"{name} must be at least {minimum:g}")
        return value

    return parse


def integer(minimum: int) -> Parser:
    """A whole number (``2.9`` or ``1e3`` is refused) of at least ``minimum``."""

    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}")
        return value

    return parse


def choice(*allowed: str, normalise: Callable[[str], str] = str) -> Parser:
    """One of ``allowed`` after ``normalise`` (e.g. ``str.lower``)."""
    wording = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]

    def parse(raw: str, name: str) -> str:
        value = normalise(raw)
        if value not in allowed:
            raise SettingsError(f"{name} must be {wording}")
        return value

    return parse


def secret(min_length: int = 0) -> Parser:
    """A ``Secret``; an empty one counts as unset unless ``min_length`` forbids it."""

    def parse(raw: str, name: str) -> Secret | None:
        if len(raw) < min_length:
            raise SettingsError(f"{name} must be at least {min_length} characters")
        return Secret(raw) if raw else None

    return parse

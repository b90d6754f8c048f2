"""The code's shape, as the team's rules state it: small modules, documented
packages. Cyclomatic complexity is checked by ruff (``make lint``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAND_WRITTEN = ("server", "clients/liya_engine_client", "bench", "scripts")
MAX_LINES = 400


def _modules() -> list[Path]:
    out: list[Path] = []
    for top in HAND_WRITTEN:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "_pb2" in path.name or ".venv" in path.parts or "node_modules" in path.parts:
                continue
            out.append(path)
    return out


def test_the_walk_finds_the_modules() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert "server/liya_engine/app.py" in names
    assert "clients/liya_engine_client/__init__.py" in names
    assert "bench/run.py" in names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hand_written_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines < MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by job"


_PACKAGES = [
    *sorted(
        p
        for p in (ROOT / "server" / "liya_engine").rglob("__init__.py")
        if "migrations" not in p.parts
    ),
    ROOT / "clients" / "liya_engine_client" / "__init__.py",
]


@pytest.mark.parametrize("init", _PACKAGES, ids=lambda p: p.parent.relative_to(ROOT).as_posix())
def test_each_package_says_what_lives_there(init: Path) -> None:
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc, f"{init.relative_to(ROOT)} needs a docstring"
    assert len(doc.split()) >= 12, f"{init.relative_to(ROOT)}: say what lives there"

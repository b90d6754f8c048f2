"""The README shows the latest saved bench run: the block between its markers
is what ``bench/saving.py`` writes from ``bench/results/latest.json``, so a
saved run and the README cannot drift apart."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def saving(monkeypatch) -> ModuleType:
    # bench/ is a directory of scripts (``python bench/run.py``), not a package.
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return importlib.import_module("saving")


def test_readme_shows_the_latest_saved_run(saving):
    report = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert saving.current_section(readme) == saving.readme_section(report), (
        "README.md's latest bench run is not bench/results/latest.json: "
        "run `.venv/bin/python bench/saving.py`"
    )


def test_update_rewrites_only_between_the_markers(saving, tmp_path):
    report = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{saving.START}\nold figures\n{saving.END}\nafter\n")

    saving.update_readme(report, readme)

    assert readme.read_text() == (
        f"# Title\n\nbefore\n{saving.START}\n{saving.readme_section(report)}\n{saving.END}\nafter\n"
    )
    readme.write_text("# Title\n\nno markers\n")
    with pytest.raises(saving.BenchError, match="markers"):
        saving.update_readme(report, readme)

"""The benchmark's two-server comparison reads the cost of "on" from its rounds
the way the reports state it: the geometric mean of each round's on/off ratio,
with the standard error that says how far this many rounds can be off."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def ab(monkeypatch):
    # bench/ is a directory of scripts (``python bench/run.py``), not a package.
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("ab")


def test_a_steady_cost_reads_exactly_whatever_the_drift(ab):
    off = [1.0, 2.0, 1.5, 3.0]  # the machine's speed moves from round to round
    on = [x * 1.1 for x in off]
    added, error = ab.paired_ratio(on, off)
    assert added == pytest.approx(0.10, abs=1e-4)
    assert error == pytest.approx(0.0, abs=1e-4)


def test_the_error_is_the_spread_of_the_rounds_over_their_number(ab):
    off = [1.0] * 4
    on = [1.0 * math.exp(d) for d in (0.1, -0.1, 0.3, -0.3)]
    added, error = ab.paired_ratio(on, off)
    assert added == pytest.approx(0.0, abs=1e-4)
    spread = math.sqrt((0.01 + 0.01 + 0.09 + 0.09) / 3)
    assert error == pytest.approx(spread / 2, abs=1e-4)
    assert ab.paired_ratio([1.2], [1.0]) == (pytest.approx(0.2), None)


def test_the_report_line_gives_cost_error_and_rounds(ab):
    figures = {
        "overhead_paired": 0.158,
        "overhead_paired_se": 0.019,
        "overhead_per_round": [0] * 120,
    }
    assert ab.describe_paired(figures) == "+15.8% ± 1.9% over 120 paired rounds"

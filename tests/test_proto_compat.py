"""``make breaking`` compares the protos with the released v1.0 API (the buf
image under ``protos/baseline/``), not with HEAD: a commit that breaks callers
fails ``make lint`` and so ``make test``.

Each test copies ``protos/`` (and ``buf.yaml``, with the googleapis protos
laid out beside them) into a temporary folder, edits
the copy, and runs the very command of the Makefile's ``breaking`` target."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"
USAGE_PROTO = Path("protos/liya/engine/v1/inference_service.proto")


def baseline() -> Path:
    """The Makefile's default ``BREAKING_AGAINST``: the released image."""
    match = re.search(r"^BREAKING_AGAINST \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile sets no default BREAKING_AGAINST"
    return ROOT / match.group(1)


@pytest.fixture
def buf() -> Path:
    if not BUF.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BUF} is missing: `make` installs it")
        pytest.skip("buf is not installed here (run `make install`)")
    return BUF


@pytest.fixture
def workspace(tmp_path) -> Path:
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    # The googleapis protos the files import, laid out as `make` does.
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "proto_deps.py", tmp_path / "build" / "proto-deps"],
        check=True,
        capture_output=True,
    )
    return tmp_path


def breaking(buf: Path, workspace: Path) -> subprocess.CompletedProcess[str]:
    """``$(BUF) breaking protos --against '$(BREAKING_AGAINST)'``, run in ``workspace``."""
    return subprocess.run(
        [str(buf), "breaking", "protos", "--against", str(baseline())],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_baseline_is_a_checked_in_image():
    image = baseline()
    assert image.is_relative_to(ROOT / "protos" / "baseline")
    assert image.suffix == ".binpb"
    assert image.stat().st_size > 0


def test_the_protos_as_they_are_pass(buf, workspace):
    done = breaking(buf, workspace)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_renumbering_a_field_of_usage_fails(buf, workspace):
    proto = workspace / USAGE_PROTO
    text = proto.read_text()
    assert text.count("  string request_id = 8;\n") == 1
    proto.write_text(text.replace("  string request_id = 8;\n", "  string request_id = 998;\n"))
    done = breaking(buf, workspace)
    assert done.returncode != 0
    assert (
        'Previously present field "8" with name "request_id" on message "Usage" was deleted.'
        in done.stdout
    )


def test_deleting_a_field_of_usage_fails(buf, workspace):
    proto = workspace / USAGE_PROTO
    text = proto.read_text()
    assert "  double cost_usd = 4;\n" in text
    proto.write_text(text.replace("  double cost_usd = 4;\n", ""))
    done = breaking(buf, workspace)
    assert done.returncode != 0
    assert (
        'Previously present field "4" with name "cost_usd" on message "Usage" was deleted.'
        in done.stdout
    )


def test_adding_a_field_passes(buf, workspace):
    proto = workspace / USAGE_PROTO
    text = proto.read_text()
    assert text.count("  string request_id = 8;\n") == 1
    proto.write_text(
        text.replace(
            "  string request_id = 8;\n",
            "  string request_id = 8;\n\n  // A field added later.\n  string added_later = 999;\n",
        )
    )
    done = breaking(buf, workspace)
    assert (done.returncode, done.stdout) == (0, "")

"""Lay out the third-party protos that ``protos/`` imports, taken from the
installed googleapis-common-protos distribution (never hand copies).

python scripts/proto_deps.py build/proto-deps   # write them under that root

``google/api/annotations.proto`` and ``google/api/http.proto`` (for the
``google.api.http`` option on every RPC) ship inside the googleapis-common-protos
wheel next to their generated ``*_pb2.py`` modules; the pinned version in
``clients/pyproject.toml`` is therefore also the version of these files. buf
reads them as a second module of the workspace (``buf.yaml``), and
``scripts/gen_stubs.py`` passes the same root to protoc. The generated stubs
import ``google.api.annotations_pb2``, which the same distribution provides at
run time.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import shutil
import sys
from pathlib import Path

#: The files ``protos/`` imports from googleapis (their own imports are only
#: protobuf's well-known types, which protoc and buf ship).
FILES = ("google/api/annotations.proto", "google/api/http.proto")

#: Where the Makefile lays them out (ignored by git).
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "build" / "proto-deps"


def installed_root() -> Path:
    """The directory that holds ``google/api/*.proto`` of the installed package."""
    # ``google`` is a namespace package: find the module, not the package.
    spec = importlib.util.find_spec("google.api.annotations_pb2")
    if spec is None or spec.origin is None:
        raise SystemExit("google.api.annotations_pb2 not found: install googleapis-common-protos")
    return Path(spec.origin).resolve().parent.parent.parent


def write(root: Path = DEFAULT_ROOT) -> list[Path]:
    """Copy ``FILES`` from the installed package under ``root`` (only when they
    differ, so make and buf see no change on a second run); return the paths."""
    source = installed_root()
    written = []
    for name in FILES:
        src, dst = source / name, root / name
        if not src.is_file():
            raise SystemExit(f"{src} is missing: is googleapis-common-protos installed?")
        if not dst.is_file() or not filecmp.cmp(src, dst, shallow=False):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=DEFAULT_ROOT)
    ns = parser.parse_args(argv)
    for path in write(ns.root.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the artifacts for callers in any language from ``protos/``, or check them.

python scripts/gen_polyglot.py                       # regenerate the checked-in copies
python scripts/gen_polyglot.py --check               # fail if they drift from protos/
python scripts/gen_polyglot.py --descriptor-set OUT  # write the descriptor set to OUT

The descriptor set is a ``google.protobuf.FileDescriptorSet`` of every proto
file under ``protos/`` (the released baselines aside) plus
``google/rpc/status.proto`` and ``google/rpc/error_details.proto`` (what a
caller needs to read error details), with all their imports and with source
info, so it carries the proto comments. protoc from grpcio-tools builds it, with
the googleapis protos of the googleapis-common-protos package on its include
path. The server ships a copy (``server/liya_engine/data/liya-engine.binpb``)
and serves it through reflection.

The TypeScript stubs under ``clients/typescript/src/gen`` are generated from
that same descriptor set by ``buf generate`` with ``buf.gen.yaml``, whose only
plugin is the local ``protoc-gen-es`` of ``clients/typescript/node_modules``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.rpc.status_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
BASELINE_DIR = PROTO_ROOT / "baseline"
PACKAGED = ROOT / "server" / "liya_engine" / "data" / "liya-engine.binpb"
# buf.gen.yaml names this input (the file `make descriptors` writes).
IMAGE = ROOT / "build" / "liya-engine.binpb"
TS_OUT = Path("clients/typescript/src/gen")
BUF = ROOT / "node_modules" / ".bin" / "buf"
# Not imported by our protos, but every error a caller decodes is made of them.
ERROR_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def proto_files() -> list[str]:
    """Every proto file of the API, relative to ``protos/``."""
    return sorted(
        p.relative_to(PROTO_ROOT).as_posix()
        for p in PROTO_ROOT.rglob("*.proto")
        if BASELINE_DIR not in p.parents
    )


def include_paths() -> list[Path]:
    """``protos/``, the googleapis protos shipped by googleapis-common-protos
    (``google/api``, ``google/rpc``) and protobuf's well-known types."""
    googleapis = Path(google.rpc.status_pb2.__file__).resolve().parent.parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [PROTO_ROOT, googleapis, well_known]


def build_descriptor_set(out: Path) -> None:
    """Write the descriptor set (imports and source info included) to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        *(f"-I{p}" for p in include_paths()),
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out}",
        *proto_files(),
        *ERROR_PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generate_typescript(out_root: Path) -> Path:
    """Run ``buf generate`` (buf.gen.yaml) on ``IMAGE`` with ``out_root`` as the
    base of its ``out`` paths; return the directory of the stubs."""
    subprocess.run(  # noqa: S603 (fixed arguments)
        [str(BUF), "generate", "--template", "buf.gen.yaml", "-o", str(out_root)],
        cwd=ROOT,
        check=True,
    )
    return out_root / TS_OUT


def tree(directory: Path) -> set[str]:
    if not directory.exists():
        return set()
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def differences(fresh: Path, current: Path) -> list[str]:
    """Files added, removed or changed between two generated trees."""
    fresh_files, current_files = tree(fresh), tree(current)
    changed = [
        name
        for name in sorted(fresh_files & current_files)
        if not filecmp.cmp(fresh / name, current / name, shallow=False)
    ]
    return sorted(fresh_files ^ current_files) + changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--descriptor-set", type=Path, help="only write the descriptor set here")
    ns = parser.parse_args(argv)
    if ns.descriptor_set:
        build_descriptor_set(ns.descriptor_set.resolve())
        print(f"wrote {ns.descriptor_set} ({len(proto_files())} API files, imports, comments)")
        return 0
    build_descriptor_set(IMAGE)
    with tempfile.TemporaryDirectory() as tmp:
        fresh_ts = generate_typescript(Path(tmp))
        if ns.check:
            drift = differences(fresh_ts, ROOT / TS_OUT)
            if not PACKAGED.exists() or not filecmp.cmp(IMAGE, PACKAGED, shallow=False):
                drift.append(str(PACKAGED.relative_to(ROOT)))
            if drift:
                print("generated artifacts differ from protos/; run `make gen`:", *drift)
                return 1
            print(f"descriptor set and TypeScript stubs in sync ({len(tree(fresh_ts))} files)")
            return 0
        shutil.copyfile(IMAGE, PACKAGED)
        shutil.rmtree(ROOT / TS_OUT, ignore_errors=True)
        shutil.copytree(fresh_ts, ROOT / TS_OUT)
    print(f"wrote {PACKAGED.relative_to(ROOT)} and {TS_OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate the Python stubs in ``clients/`` from ``protos/``, or check them.

python scripts/gen_stubs.py clients          # regenerate in place
python scripts/gen_stubs.py --check clients  # fail if the checked-in stubs drift

Every ``protos/liya/engine/v1/*.proto`` file is compiled (the services and
``error_reason.proto``), with the googleapis protos they import laid out by
``proto_deps.py`` from the installed package; the stubs ship in the ``liya-engine-client``
distribution (``clients/pyproject.toml``).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
import proto_deps
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("liya/engine/v1")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path, deps_root: Path) -> list[Path]:
    """Run protoc for every proto file into ``out_dir``; return the files written.

    ``deps_root`` receives the googleapis protos they import (``proto_deps``);
    only our own files are compiled, the stubs import googleapis' modules."""
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    proto_deps.write(deps_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{deps_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / PACKAGE_DIR).glob("*_pb2*.py*"))


def generated_files(directory: Path) -> set[str]:
    return {
        p.name for p in (directory / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clients_dir", type=Path)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    ns = parser.parse_args(argv)
    target: Path = ns.clients_dir.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp) / "out"
        generate(fresh_root, Path(tmp) / "deps")
        fresh = generated_files(fresh_root)
        if ns.check:
            current = generated_files(target)
            drift = sorted(current ^ fresh)
            drift += sorted(
                name
                for name in fresh & current
                if not filecmp.cmp(
                    fresh_root / PACKAGE_DIR / name, target / PACKAGE_DIR / name, shallow=False
                )
            )
            if drift:
                print("generated stubs differ from protos/; run `make gen`:", *drift, sep="\n  ")
                return 1
            print(f"stubs in sync ({len(fresh)} files):", *sorted(fresh), sep="\n  ")
            return 0
        (target / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
        for name in generated_files(target) - fresh:
            (target / PACKAGE_DIR / name).unlink()
        for name in fresh:
            shutil.copyfile(fresh_root / PACKAGE_DIR / name, target / PACKAGE_DIR / name)
        print(f"wrote {len(fresh)} files under {target / PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

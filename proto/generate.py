"""Regenerate (or check) the protobuf/gRPC modules from ``splitedge.proto``.

    python -m splitedge.proto.generate          # rewrite the committed modules
    python -m splitedge.proto.generate --check  # exit 1 if they are stale

The proto is compiled with the import root ``splitedge/proto`` so the generated
modules import each other as ``from splitedge.proto import ...``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATED = ("splitedge_pb2.py", "splitedge_pb2.pyi", "splitedge_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Compile ``splitedge.proto`` into ``out_dir`` (needs grpcio-tools)."""
    from grpc_tools import protoc  # dev-only dependency

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-Isplitedge/proto={HERE}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(HERE / "splitedge.proto"),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on splitedge.proto")
        for name in GENERATED:
            shutil.copyfile(Path(tmp) / "splitedge" / "proto" / name, out_dir / name)


def stale_files() -> list[str]:
    """Names of committed modules that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            name
            for name in GENERATED
            if not (HERE / name).exists() or not filecmp.cmp(Path(tmp) / name, HERE / name, False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale modules")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated modules: " + ", ".join(stale), file=sys.stderr)
            return 1
        print("generated modules are up to date")
        return 0
    generate(HERE)
    print("regenerated " + ", ".join(GENERATED))
    return 0


if __name__ == "__main__":
    sys.exit(main())

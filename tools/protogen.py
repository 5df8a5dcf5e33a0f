"""Regenerate the committed Python code for proto/archive/v1/*.proto.

Usage: python -m tools.protogen [--out DIR]   (default: libs, i.e. libs/archive/v1/)
tests/unit/test_protos_fresh.py generates into a temporary directory and compares.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "archive" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    # google/rpc/*.proto ship with googleapis-common-protos, beside their generated code.
    from google.rpc import status_pb2

    googleapis = Path(status_pb2.__file__).resolve().parents[2]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"-I{googleapis}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    package_dir = out_dir / "archive" / "v1"
    doc = '"""Generated from proto/archive/v1 by tools/protogen.py; do not edit."""\n'
    (package_dir / "__init__.py").write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "libs")
    ns = parser.parse_args(argv)
    generate(ns.out)
    print(f"generated {len(proto_files())} proto files into {ns.out / 'archive' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

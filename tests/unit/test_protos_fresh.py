"""The committed generated code must match what `make protos` produces from proto/."""

from __future__ import annotations

import filecmp
from pathlib import Path

from tools import protogen

COMMITTED = Path(protogen.REPO) / "libs" / "archive" / "v1"


def test_generated_protobuf_code_is_fresh(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    fresh = tmp_path / "archive" / "v1"
    fresh_names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_names = sorted(
        p.name for p in COMMITTED.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}
    )
    assert fresh_names == committed_names, "run `make protos` and commit the result"
    stale = [n for n in fresh_names if not filecmp.cmp(fresh / n, COMMITTED / n, shallow=False)]
    assert stale == [], f"stale generated files {stale}: run `make protos` and commit them"

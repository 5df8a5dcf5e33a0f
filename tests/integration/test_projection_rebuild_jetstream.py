"""A projection over the real JetStream store rebuilds to the same state after deletion."""

from __future__ import annotations

from pathlib import Path

import pytest
from projection_support import DocumentCounts, dump, fill

from archive.eventstore.jetstream import JetStreamEventStore
from archive.projections import ProjectionRunner

pytestmark = pytest.mark.integration


async def test_projection_over_jetstream_rebuilds_identically(
    jetstream_store: JetStreamEventStore, tmp_path: Path
) -> None:
    await fill(jetstream_store, 300)
    db_path = tmp_path / "p.sqlite"
    runner = ProjectionRunner(jetstream_store, DocumentCounts(), db_path, batch_size=64)
    await runner.catch_up()
    before = dump(runner.db)
    runner.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    rebuilt = ProjectionRunner(jetstream_store, DocumentCounts(), db_path)
    await rebuilt.catch_up()
    assert dump(rebuilt.db) == before
    assert len(before[1]) == 300

"""Projection runner: state and position commit together, so crashes neither skip nor
double-apply, and a deleted projection rebuilds to the identical state."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from projection_support import DocumentCounts, dump, fill

from archive.eventstore import ANY, NewEvent, StreamFilter, StreamName
from archive.eventstore.memory import InMemoryEventStore
from archive.projections import ProjectionRunner


async def test_deleted_projection_rebuilds_to_identical_state(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    await fill(store, 1234)
    db_path = tmp_path / "p.sqlite"
    runner = ProjectionRunner(store, DocumentCounts(), db_path, batch_size=100)
    assert await runner.catch_up() == 1234
    before = dump(runner.db)
    runner.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    rebuilt = ProjectionRunner(store, DocumentCounts(), db_path, batch_size=7)
    assert rebuilt.position == 0
    await rebuilt.catch_up()
    assert dump(rebuilt.db) == before
    assert sum(n for _, n in before[0]) == 1234


async def test_crash_mid_batch_neither_skips_nor_double_applies(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    await fill(store, 250)
    db_path = tmp_path / "p.sqlite"
    crashing = ProjectionRunner(store, DocumentCounts(fail_at=130), db_path, batch_size=50)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await crashing.catch_up()
    # Batches 1-50 and 51-100 committed; the batch holding event 130 rolled back whole.
    assert crashing.position == 100
    assert len(dump(crashing.db)[1]) == 100
    crashing.close()
    resumed = ProjectionRunner(store, DocumentCounts(), db_path, batch_size=50)
    assert resumed.position == 100
    await resumed.catch_up()
    counts, seen = dump(resumed.db)
    assert [p for _, p in seen] == list(range(1, 251))  # every event exactly once
    assert sum(n for _, n in counts) == 250


async def test_live_run_follows_new_events_and_wait_for_gives_read_your_writes(
    tmp_path: Path,
) -> None:
    store = InMemoryEventStore()
    await fill(store, 10)
    runner = ProjectionRunner(store, DocumentCounts(), tmp_path / "p.sqlite")
    task = asyncio.create_task(runner.run())
    result = await store.append(StreamName("acme", "document", "x"), [NewEvent("t", b"")], ANY)
    await runner.wait_for(result.last_position, timeout=5)
    assert runner.position == 11
    assert dict(dump(runner.db)[0])["acme"] == 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_filtered_projection_only_sees_its_events(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    await fill(store, 30)
    runner = ProjectionRunner(
        store, DocumentCounts(filter=StreamFilter(tenant="globex")), tmp_path / "p.sqlite"
    )
    await runner.catch_up()
    assert dump(runner.db)[0] == [("globex", 10)]


async def test_wait_for_store_returns_when_the_stores_last_event_is_outside_the_filter(
    tmp_path: Path,
) -> None:
    store = InMemoryEventStore()
    runner = ProjectionRunner(
        store, DocumentCounts(filter=StreamFilter(category="document")), tmp_path / "p.sqlite"
    )
    task = asyncio.create_task(runner.run())
    await store.append(StreamName("acme", "document", "x"), [NewEvent("t", b"")], ANY)
    await store.append(StreamName("acme", "access", "x"), [NewEvent("t", b"")], ANY)
    # The last event is an access, which the projection never applies: waiting for the store's
    # last position would time out; waiting for what the filter passes does not.
    await runner.wait_for_store(timeout=5)
    assert runner.position == 1
    assert dump(runner.db)[0] == [("acme", 1)]
    with pytest.raises(TimeoutError):
        await runner.wait_for(await store.last_position(), timeout=0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_database_is_for_the_service_user_only(usual_umask: None, tmp_path: Path) -> None:
    store = InMemoryEventStore()
    await fill(store, 10)
    db_path = tmp_path / "data" / "search" / "p.sqlite"
    runner = ProjectionRunner(store, DocumentCounts(), db_path)
    await runner.catch_up()
    # While open in WAL mode, SQLite keeps -wal and -shm files beside the database.
    names = {"p.sqlite", "p.sqlite-wal", "p.sqlite-shm"}
    assert {p.name: mode_of(p) for p in db_path.parent.iterdir()} == dict.fromkeys(names, 0o600)
    assert (mode_of(tmp_path / "data"), mode_of(db_path.parent)) == (0o700, 0o700)
    runner.close()

    # A database left readable by an older version is tightened when opened.
    db_path.chmod(0o644)
    reopened = ProjectionRunner(store, DocumentCounts(), db_path)
    assert mode_of(db_path) == 0o600 and reopened.position == 10
    reopened.close()

"""ArchiveClient.upload_many against the real servicers on in-memory stores, over real gRPC
(tests/archive_in_memory.py): retries of a document or of a whole stream reuse the keys (no
duplicate), refusals are per document, and a refusal of the stream itself reaches every
document."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from archive_in_memory import InMemoryArchive

from archive.client import (
    ArchiveClient,
    InvalidArgument,
    Unauthenticated,
    UploadItem,
    UploadOutcome,
)


def items(count: int) -> list[UploadItem]:
    return [UploadItem(f"doc {i}".encode() * 50, file_name=f"d{i}.txt") for i in range(count)]


async def collect(outcomes: AsyncIterator[UploadOutcome]) -> dict[int, UploadOutcome]:
    return {o.index: o async for o in outcomes}


async def test_every_item_gets_one_outcome_with_its_receipt(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    given = items(25)
    outcomes = await collect(client.upload_many(given, streams=3))
    assert sorted(outcomes) == list(range(25))
    for index, outcome in outcomes.items():
        assert outcome.ok and outcome.receipt is not None
        assert outcome.receipt.sha256 == hashlib.sha256(given[index].source).hexdigest()  # type: ignore[arg-type]
        assert outcome.receipt.idempotency_key
    stored_keys = {d.idempotency_key for d in archive.deposits()}
    assert stored_keys == {o.receipt.idempotency_key for o in outcomes.values() if o.receipt}
    assert len(stored_keys) == 25


async def test_a_lost_answer_is_retried_with_the_same_key_and_replayed(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    # The first deposit is recorded, its acknowledgement lost: that document's answer is
    # UNAVAILABLE although it is stored.
    archive.store.fail_appends(1, after_commit=True)
    outcomes = await collect(client.upload_many(items(5), streams=1))
    assert all(o.ok for o in outcomes.values())
    assert [o.receipt.replayed for o in outcomes.values() if o.receipt].count(True) == 1
    assert len(archive.deposits()) == 5


async def test_a_stream_cut_by_a_server_restart_is_sent_again_without_duplicates(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    given = items(12)

    async def restarting_midway() -> AsyncIterator[UploadItem]:
        for number, item in enumerate(given):
            if number == 6:  # both streams are open and taking items
                archive.restart()
            yield item

    archive.calls.clear()
    outcomes = await collect(client.upload_many(restarting_midway(), streams=2))
    assert sorted(outcomes) == list(range(12))
    assert all(o.ok for o in outcomes.values()), [o.error for o in outcomes.values()]
    stored = archive.deposits()
    assert len(stored) == len({d.document_id.value for d in stored}) == 12
    assert archive.calls.count("UploadMany") > 2  # streams after the restart


async def test_a_refused_document_does_not_stop_the_others(client: ArchiveClient) -> None:
    given = [*items(3), UploadItem(b"x", file_name="a/b.txt"), *items(2)]
    outcomes = await collect(client.upload_many(given, streams=1))
    refused = outcomes[3].error
    assert isinstance(refused, InvalidArgument)
    assert refused.idempotency_key  # retrying later with it is safe
    assert [i for i, o in sorted(outcomes.items()) if o.ok] == [0, 1, 2, 4, 5]


async def test_a_refused_stream_reaches_every_document(archive: InMemoryArchive) -> None:
    async with ArchiveClient(archive.config("arc_unknown_token")) as stranger:
        outcomes = await collect(stranger.upload_many(items(7), streams=2))
    assert sorted(outcomes) == list(range(7))
    assert all(isinstance(o.error, Unauthenticated) for o in outcomes.values())
    assert archive.deposits() == []


async def test_a_missing_file_is_that_items_error(client: ArchiveClient, tmp_path: Path) -> None:
    missing = tmp_path / "gone.pdf"
    outcomes = await collect(client.upload_many([UploadItem(missing), *items(1)]))
    assert outcomes[0].error is not None and "gone.pdf" in str(outcomes[0].error)
    assert outcomes[1].ok


async def test_invalid_arguments_are_refused_before_anything_is_sent(
    client: ArchiveClient,
) -> None:
    with pytest.raises(ValueError, match="streams"):
        client.upload_many([], streams=0)
    with pytest.raises(TypeError, match="UploadItem"):
        await collect(client.upload_many([b"raw bytes"]))  # type: ignore[list-item]

"""ArchiveClient.upload_many against the in-memory archive over real gRPC: retries of a
document or of a whole stream reuse the keys (no duplicate), refusals are per document, and
a refusal of the stream itself reaches every document."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from fake_archive import FakeArchive, FakeArchiveServer
from fake_archive_fixtures import make_config

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
    client: ArchiveClient, archive: FakeArchive
) -> None:
    given = items(25)
    outcomes = await collect(client.upload_many(given, streams=3))
    assert sorted(outcomes) == list(range(25))
    for index, outcome in outcomes.items():
        assert outcome.ok and outcome.receipt is not None
        assert outcome.receipt.sha256 == hashlib.sha256(given[index].source).hexdigest()  # type: ignore[arg-type]
        assert outcome.receipt.idempotency_key
    assert archive.document_count("acme") == 25
    sent_keys = [h.idempotency_key for h in archive.upload_headers]
    assert len(set(sent_keys)) == 25


async def test_a_lost_answer_is_retried_with_the_same_key_and_replayed(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    archive.fail_after_store = 1  # the first document is stored, its receipt lost
    outcomes = await collect(client.upload_many(items(5), streams=1))
    assert all(o.ok for o in outcomes.values())
    assert [o.receipt.replayed for o in outcomes.values() if o.receipt].count(True) == 1
    assert archive.document_count("acme") == 5


async def test_a_broken_stream_is_sent_again_without_duplicates(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    archive.inject("UploadMany", grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", times=2)
    outcomes = await collect(client.upload_many(items(12), streams=2))
    assert sorted(outcomes) == list(range(12))
    assert all(o.ok for o in outcomes.values())
    assert archive.document_count("acme") == 12
    assert archive.calls.count("UploadMany") >= 4  # two refused streams, then two that worked


async def test_a_refused_document_does_not_stop_the_others(client: ArchiveClient) -> None:
    given = [*items(3), UploadItem(b"x", file_name="a/b.txt"), *items(2)]
    outcomes = await collect(client.upload_many(given, streams=1))
    refused = outcomes[3].error
    assert isinstance(refused, InvalidArgument)
    assert refused.idempotency_key  # retrying later with it is safe
    assert [i for i, o in sorted(outcomes.items()) if o.ok] == [0, 1, 2, 4, 5]


async def test_a_refused_stream_reaches_every_document(
    server: FakeArchiveServer, archive: FakeArchive
) -> None:
    config = make_config(server, "arc_unknown_token")
    async with ArchiveClient(config) as stranger:
        outcomes = await collect(stranger.upload_many(items(7), streams=2))
    assert sorted(outcomes) == list(range(7))
    assert all(isinstance(o.error, Unauthenticated) for o in outcomes.values())
    assert archive.document_count("acme") == 0


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

"""Ingest.UploadMany over the real stack, raw and through the SDK: many documents on one
stream, answered in order; refused documents do not stop the others; broken framing ends the
call after the documents complete before it; idempotency as for Upload."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from ingest_stack import Stack, requests, stored_blobs

from archive.client import (
    ArchiveClient,
    ClientConfig,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
    UploadItem,
)
from archive.v1 import common_pb2, ingest_pb2, search_pb2

pytestmark = pytest.mark.integration


def many(
    documents: Iterable[tuple[ingest_pb2.UploadHeader, bytes]],
) -> Iterator[ingest_pb2.UploadRequest]:
    for header, content in documents:
        yield from requests(header, content, chunk=16 * 1024)


async def upload_many(
    stack: Stack, messages: Iterable[ingest_pb2.UploadRequest], tenant: str = "acme"
) -> list[ingest_pb2.UploadManyResult]:
    return [r async for r in stack.ingest.UploadMany(messages, metadata=stack.auth(tenant))]


def header(name: str, **fields: object) -> ingest_pb2.UploadHeader:
    return ingest_pb2.UploadHeader(file_name=name, **fields)


async def test_many_documents_on_one_stream_are_each_durable_and_answered_in_order(
    stack: Stack,
) -> None:
    # Sizes around the chunk and feed-buffer boundaries, an empty document, a PDF.
    contents = [os.urandom(n) for n in (0, 1, 16 * 1024, 16 * 1024 + 1, 300_000, 700_000)]
    contents += [b"%PDF-1.7\n" + os.urandom(30_000) for _ in range(40)]
    results = await upload_many(
        stack,
        many((header(f"d{i}.bin", idempotency_key=f"k{i}"), c) for i, c in enumerate(contents)),
    )
    assert [r.index for r in results] == list(range(len(contents)))
    for result, content in zip(results, contents, strict=True):
        assert result.WhichOneof("result") == "receipt", result
        assert result.receipt.sha256.value == hashlib.sha256(content).digest()
        assert result.receipt.size_bytes == len(content)
        assert not result.receipt.replayed
    assert results[-1].receipt.format.puid == "fmt/276"
    ingested = await stack.events("archive.v1.DocumentIngested")
    assert len(ingested) == len(contents)
    # Each is there to read back, through the search service.
    last = results[-1].receipt
    info = await stack.search.GetDocument(
        search_pb2.GetDocumentRequest(
            document_id=common_pb2.DocumentId(value=last.document_id.value)
        ),
        metadata=stack.auth(),
    )
    assert info.sha256 == last.sha256


async def test_a_refused_document_gets_its_status_and_the_others_go_on(stack: Stack) -> None:
    good = [os.urandom(1000) for _ in range(3)]
    documents = [
        (header("good-0.bin"), good[0]),
        (header("bad/name.bin"), b"x" * 10),
        (header("good-1.bin"), good[1]),
        (header("big.bin"), b"x" * (2 * 1024 * 1024 + 1)),  # over the stack's 2 MiB limit
        (header("digest.bin", expected_sha256_hex="0" * 64), b"y" * 10),
        (header("good-2.bin"), good[2]),
    ]
    results = await upload_many(stack, many(documents))
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["receipt", "error", "receipt", "error", "error", "receipt"]
    bad_name, too_big, digest = results[1].error, results[3].error, results[4].error
    assert bad_name.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert too_big.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert digest.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "file_name" in bad_name.message or "separator" in bad_name.message, bad_name.message
    violations = error_details_pb2.BadRequest()
    assert any(d.Unpack(violations) for d in bad_name.details)
    assert violations.field_violations
    # Nothing of the refused documents was kept: three blobs, three events.
    assert len(stored_blobs(stack.blob_root)) == 3
    assert len(await stack.events("archive.v1.DocumentIngested")) == 3


@pytest.mark.parametrize(
    ("case", "tail", "detail"),
    [
        ("content before any header", [ingest_pb2.UploadRequest(chunk=b"x")], "UploadHeader"),
        (
            "a header inside a document",
            [
                ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name="a")),
                ingest_pb2.UploadRequest(chunk=b"abc"),
                ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name="b")),
            ],
            "second UploadHeader",
        ),
        (
            "the stream ends inside a document",
            [
                ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name="cut")),
                ingest_pb2.UploadRequest(chunk=b"x" * 50_000),
            ],
            "ended inside document 2",
        ),
    ],
)
async def test_broken_framing_ends_the_call_after_answering_the_complete_documents(
    stack: Stack, case: str, tail: list[ingest_pb2.UploadRequest], detail: str
) -> None:
    complete = [(header(f"ok-{i}.bin"), os.urandom(2000)) for i in range(2)]
    answered: list[ingest_pb2.UploadManyResult] = []
    call = stack.ingest.UploadMany([*many(complete), *tail], metadata=stack.auth())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for result in call:
            answered.append(result)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert detail in (caught.value.details() or ""), caught.value.details()
    assert [r.WhichOneof("result") for r in answered] == ["receipt", "receipt"]
    # Exactly the two complete documents are stored: nothing of the broken one.
    assert len(stored_blobs(stack.blob_root)) == 2
    assert len(await stack.events("archive.v1.DocumentIngested")) == 2


async def test_a_repeated_stream_replays_every_receipt_and_stores_nothing_new(
    stack: Stack,
) -> None:
    documents = [
        (header(f"s{i}.pdf", idempotency_key=f"stmt-{i}"), os.urandom(5000)) for i in range(20)
    ]
    first = await upload_many(stack, many(documents))
    again = await upload_many(stack, many(documents))
    assert all(not r.receipt.replayed for r in first)
    assert all(r.receipt.replayed for r in again)
    assert [r.receipt.document_id for r in again] == [r.receipt.document_id for r in first]
    assert len(await stack.events("archive.v1.DocumentIngested")) == 20
    # The same key for other content is refused for that document only.
    reused = await upload_many(stack, many([(documents[0][0], b"other content")]))
    assert reused[0].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]


async def test_one_key_twice_in_one_stream_makes_one_document(stack: Stack) -> None:
    content = os.urandom(4000)
    results = await upload_many(
        stack, many([(header("a.bin", idempotency_key="same"), content)] * 2)
    )
    receipts = [r.receipt for r in results]
    assert receipts[0].document_id == receipts[1].document_id
    assert sorted(r.replayed for r in receipts) == [False, True]
    assert len(await stack.events("archive.v1.DocumentIngested")) == 1


async def test_a_wrong_token_refuses_the_stream_and_stores_nothing(stack: Stack) -> None:
    # Through the SDK: a raw client that keeps sending after the refusal can see grpc's lost
    # status (grpc/grpc#36066), which the SDK recognises and asks again.
    config = ClientConfig(endpoint=stack.endpoint, token="arc_nope_nope")
    async with ArchiveClient(config) as stranger:
        outcomes = [o async for o in stranger.upload_many([UploadItem(b"abc", file_name="a")] * 3)]
    assert len(outcomes) == 3
    assert all(isinstance(o.error, Unauthenticated) for o in outcomes)
    assert stored_blobs(stack.blob_root) == []


async def test_sdk_upload_many_deposits_files_and_bytes_and_reports_each_refusal(
    stack: Stack, tmp_path: Path
) -> None:
    files = []
    for i in range(30):
        path = tmp_path / f"statement-{i:03}.pdf"
        path.write_bytes(b"%PDF-1.7\n" + os.urandom(3000 + i))
        files.append(path)
    items = [
        UploadItem(path, document_class="statement", metadata={"n": str(i)})
        for i, path in enumerate(files)
    ]
    items.append(UploadItem(b"inline bytes", file_name="note.txt"))
    items.append(UploadItem(b"bad", file_name="../escape.txt"))
    items.append(UploadItem(b"z" * (2 * 1024 * 1024 + 1), file_name="huge.bin"))
    progressed: list[int] = []
    config = ClientConfig(endpoint=stack.endpoint, token=stack.tokens["acme"])
    async with ArchiveClient(config) as archive:
        outcomes = [
            o
            async for o in archive.upload_many(
                items, streams=3, chunk_size=1000, on_progress=progressed.append
            )
        ]
        assert sorted(o.index for o in outcomes) == list(range(len(items)))
        by_index = {o.index: o for o in outcomes}
        for i, path in enumerate(files):
            receipt = by_index[i].receipt
            assert receipt is not None, by_index[i].error
            assert receipt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            assert receipt.file_name == path.name
            assert receipt.idempotency_key
        assert by_index[30].ok
        escape, huge = by_index[31].error, by_index[32].error
        assert isinstance(escape, InvalidArgument) and escape.idempotency_key
        assert isinstance(huge, ResourceExhausted)
        assert sum(progressed) == sum(p.stat().st_size for p in files) + len(b"inline bytes")
    # What was deposited is what the archive recorded, header fields included.
    seventh = by_index[7].receipt
    assert seventh is not None
    recorded = {e.document_id.value: e for e in await stack.events("archive.v1.DocumentIngested")}
    assert len(recorded) == 31
    assert recorded[seventh.document_id].document_class == "statement"
    assert dict(recorded[seventh.document_id].metadata) == {"n": "7"}


async def test_sdk_upload_many_with_a_bad_item_raises_it(stack: Stack) -> None:
    config = ClientConfig(endpoint=stack.endpoint, token=stack.tokens["acme"])
    async with ArchiveClient(config) as archive:
        with pytest.raises(ValueError, match="file_name is required"):
            async for _ in archive.upload_many([UploadItem(b"no name")]):
                pass

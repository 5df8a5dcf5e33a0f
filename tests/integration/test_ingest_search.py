"""Ingest and search over a real JetStream store and a real filesystem blob store, each
service a real gRPC server: deposits, retrieval, idempotency, bad input, tenant isolation."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import grpc
import grpc.aio
import pytest
from ingest_stack import Stack, damage_stored_copy, requests, stored_blobs

from archive.blobstore import BlobInfo
from archive.v1 import (
    common_pb2,
    events_pb2,
    ingest_pb2,
    search_pb2,
)

pytestmark = pytest.mark.integration


async def test_deposit_then_get_list_and_download(stack: Stack) -> None:
    content = b"%PDF-1.7\n" + os.urandom(300_000)
    receipt = await stack.upload(
        content,
        file_name="invoice-2026-11.pdf",
        metadata={"customer": "c-42", "month": "2026-11"},
        document_class="invoice",
        scan_provenance=events_pb2.ScanProvenance(operator="j.doe", device="scanner-7"),
    )
    assert receipt.sha256.value == hashlib.sha256(content).digest()
    assert receipt.sha512.value == hashlib.sha512(content).digest()
    assert receipt.size_bytes == len(content)
    assert (receipt.format.puid, receipt.format.media_type) == ("fmt/276", "application/pdf")
    assert receipt.media_type == "application/pdf"
    assert not receipt.replayed and receipt.event_position > 0
    doc_id = common_pb2.DocumentId(value=receipt.document_id.value)

    # Found at once, though the search registry is another process's projection.
    info = await stack.search.GetDocument(
        search_pb2.GetDocumentRequest(document_id=doc_id), metadata=stack.auth()
    )
    assert info.file_name == "invoice-2026-11.pdf"
    assert dict(info.metadata) == {"customer": "c-42", "month": "2026-11"}
    assert info.scan_provenance.device == "scanner-7"
    assert info.sha256 == receipt.sha256

    parts = [
        p
        async for p in stack.search.Download(
            search_pb2.DownloadRequest(document_id=doc_id), metadata=stack.auth()
        )
    ]
    assert parts[0].WhichOneof("part") == "info"
    assert b"".join(p.chunk for p in parts[1:]) == content

    accessed = await stack.events("archive.v1.DocumentAccessed")
    assert [(a.document_id.value, a.access_kind) for a in accessed] == [
        (receipt.document_id.value, "metadata"),
        (receipt.document_id.value, "content"),
    ]
    assert all(a.accessed_by for a in accessed)


async def test_retry_with_same_idempotency_key_replays_the_receipt(stack: Stack) -> None:
    content = os.urandom(50_000)
    first = await stack.upload(content, idempotency_key="batch-7/file-1")
    again = await stack.upload(content, idempotency_key="batch-7/file-1")
    assert again.replayed and not first.replayed
    assert again.document_id == first.document_id
    assert again.event_position == first.event_position
    assert len(await stack.events("archive.v1.DocumentIngested")) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.upload(b"other content", idempotency_key="batch-7/file-1")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # The same key of another tenant is another document.
    other = await stack.upload(content, tenant="globex", idempotency_key="batch-7/file-1")
    assert other.document_id != first.document_id and not other.replayed


async def test_concurrent_retries_with_one_key_make_one_document(stack: Stack) -> None:
    content = os.urandom(10_000)
    receipts = await asyncio.gather(
        *[stack.upload(content, idempotency_key="same-key") for _ in range(5)]
    )
    assert len({r.document_id.value for r in receipts}) == 1
    assert sum(not r.replayed for r in receipts) == 1
    assert len(await stack.events("archive.v1.DocumentIngested")) == 1


BAD_UPLOADS = {
    "no header": (None, b"content", grpc.StatusCode.INVALID_ARGUMENT),
    "empty call": (None, b"", grpc.StatusCode.INVALID_ARGUMENT),
    "path in file name": (
        ingest_pb2.UploadHeader(file_name="../etc/passwd"),
        b"x",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "backslash in file name": (
        ingest_pb2.UploadHeader(file_name="a\\b.pdf"),
        b"x",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "control character in file name": (
        ingest_pb2.UploadHeader(file_name="a\x07.pdf"),
        b"x",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "no file name": (ingest_pb2.UploadHeader(), b"x", grpc.StatusCode.INVALID_ARGUMENT),
    "too much metadata": (
        ingest_pb2.UploadHeader(file_name="a", metadata={f"k{i}": "v" for i in range(9)}),
        b"x",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "metadata value too long": (
        ingest_pb2.UploadHeader(file_name="a", metadata={"k": "v" * 5000}),
        b"x",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "oversized file": (
        ingest_pb2.UploadHeader(file_name="big.bin"),
        b"x" * (2 * 1024 * 1024 + 1),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    "stream stops before its end (truncated)": (
        ingest_pb2.UploadHeader(file_name="cut.bin"),
        b"x" * 100_000,
        grpc.StatusCode.INVALID_ARGUMENT,
        None,
    ),
    "end announces another size": (
        ingest_pb2.UploadHeader(file_name="cut.bin"),
        b"x" * 1000,
        grpc.StatusCode.INVALID_ARGUMENT,
        999,
    ),
    "wrong expected digest": (
        ingest_pb2.UploadHeader(file_name="a", expected_sha256_hex="0" * 64),
        b"x",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
async def test_bad_uploads_are_refused_and_leave_nothing(stack: Stack, case: str) -> None:
    header, content, code, *end = BAD_UPLOADS[case]
    before = await stack.store.last_position()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.ingest.Upload(
            requests(header, content, end=end[0] if end else -1), metadata=stack.auth()
        )
    assert caught.value.code() == code, caught.value.details()
    assert caught.value.details()  # a message a person can act on
    assert await stack.store.last_position() == before
    assert stored_blobs(stack.blob_root) == []


async def test_header_twice_is_refused_and_leaves_nothing(stack: Stack) -> None:
    header = ingest_pb2.UploadHeader(file_name="a.txt")

    def twice() -> Iterable[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=header)
        yield ingest_pb2.UploadRequest(chunk=b"abc")
        yield ingest_pb2.UploadRequest(header=header)
        yield ingest_pb2.UploadRequest(chunk=b"def")
        yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=6))

    before = await stack.store.last_position()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.ingest.Upload(twice(), metadata=stack.auth())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "second UploadHeader" in (caught.value.details() or "")
    assert await stack.store.last_position() == before
    assert stored_blobs(stack.blob_root) == []


async def test_wrong_token_is_unauthenticated_and_writes_nothing(stack: Stack) -> None:
    before = await stack.store.last_position()
    for metadata in ((("authorization", "Bearer arc_nope_nope"),), ()):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.ingest.Upload(
                requests(ingest_pb2.UploadHeader(file_name="a"), b"x"), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await stack.store.last_position() == before
    assert stored_blobs(stack.blob_root) == []


async def test_another_tenant_gets_not_found_never_the_document(stack: Stack) -> None:
    receipt = await stack.upload(b"acme secret payroll")
    doc_id = common_pb2.DocumentId(value=receipt.document_id.value)
    missing = common_pb2.DocumentId(value="00000000-0000-4000-8000-000000000000")
    answers = []
    for document_id in (doc_id, missing):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.search.GetDocument(
                search_pb2.GetDocumentRequest(document_id=document_id),
                metadata=stack.auth("globex"),
            )
        answers.append((caught.value.code(), caught.value.details().replace(document_id.value, "")))
    # Someone else's document and no document answer exactly alike.
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stack.search.Download(
            search_pb2.DownloadRequest(document_id=doc_id), metadata=stack.auth("globex")
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stack.search.ListDocuments(
        search_pb2.ListDocumentsRequest(), metadata=stack.auth("globex")
    )
    assert list(listed.documents) == []
    assert await stack.events("archive.v1.DocumentAccessed") == []


async def test_list_pages_newest_first_with_filters(stack: Stack) -> None:
    ids = []
    for i in range(23):
        receipt = await stack.upload(
            b"doc %d" % i,
            document_class="invoice" if i % 2 else "payslip",
            metadata={"batch": str(i % 3)},
        )
        ids.append(receipt.document_id.value)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stack.search.ListDocuments(
            search_pb2.ListDocumentsRequest(
                page=common_pb2.PageRequest(page_size=5, page_token=token)
            ),
            metadata=stack.auth(),
        )
        seen.extend(d.document_id.value for d in page.documents)
        pages += 1
        token = page.page.next_page_token
        if not token:
            break
    assert seen == ids[::-1] and pages == 5
    invoices = await stack.search.ListDocuments(
        search_pb2.ListDocumentsRequest(document_class="invoice", metadata={"batch": "1"}),
        metadata=stack.auth(),
    )
    expected = [ids[i] for i in range(23) if i % 2 and i % 3 == 1][::-1]
    assert [d.document_id.value for d in invoices.documents] == expected
    # Listings are consultations too: one event per page, naming what was shown.
    listed = await stack.events("archive.v1.DocumentsListed")
    assert len(listed) == 6  # five pages, then the filtered listing
    assert [i for e in listed[:5] for i in e.document_ids] == ids[::-1]
    assert listed[-1].document_class_filter == "invoice"
    assert dict(listed[-1].metadata_filter) == {"batch": "1"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.search.ListDocuments(
            search_pb2.ListDocumentsRequest(page=common_pb2.PageRequest(page_token="garbage!")),
            metadata=stack.auth(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_damaged_content_ends_the_download_with_data_loss(stack: Stack) -> None:
    content = os.urandom(600_000)
    receipt = await stack.upload(content)
    assert len(stored_blobs(stack.blob_root)) == 1
    damage_stored_copy(stack.blob_root, content, at=1000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stack.search.Download(
            search_pb2.DownloadRequest(document_id=receipt.document_id), metadata=stack.auth()
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS


async def test_client_cancelling_mid_upload_stores_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Watch the ingest server's blob writes: when the first chunk reached it, how the put ended.
    receiving = asyncio.Event()
    put_ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    put = stack.ingest_blobs.put

    async def watched_put(tenant: str, chunks: AsyncIterable[bytes], **options: Any) -> BlobInfo:
        async def passed_on() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                receiving.set()
                yield chunk

        try:
            info = await put(tenant, passed_on(), **options)
        except BaseException as error:
            put_ended.set_result(error)
            raise
        put_ended.set_result(None)
        return info

    monkeypatch.setattr(stack.ingest_blobs, "put", watched_put)

    async def stalled() -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name="half.bin"))
        yield ingest_pb2.UploadRequest(chunk=b"x" * 50_000)
        await asyncio.sleep(30)  # the client "dies" before the rest

    before = await stack.store.last_position()
    call = stack.ingest.Upload(stalled(), metadata=stack.auth())
    await asyncio.wait_for(receiving.wait(), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The server has seen the cancellation once its put is over: abandoned (cancelled, or the
    # stream ended before its UploadEnd), not committed, so no DocumentIngested can follow.
    assert await asyncio.wait_for(put_ended, 10) is not None
    assert await stack.store.last_position() == before
    assert stored_blobs(stack.blob_root) == []


async def test_find_deposits_answers_known_keys_without_the_content(stack: Stack) -> None:
    content = os.urandom(20_000)
    digest = hashlib.sha256(content).hexdigest()
    first = await stack.upload(content, idempotency_key="run-1/a.pdf")
    await stack.upload(b"globex's own", tenant="globex", idempotency_key="run-1/g.pdf")
    keys = [
        ingest_pb2.DepositKey(idempotency_key="run-1/a.pdf", sha256_hex=digest),
        ingest_pb2.DepositKey(idempotency_key="run-1/a.pdf", sha256_hex="0" * 64),
        ingest_pb2.DepositKey(idempotency_key="run-1/new.pdf", sha256_hex=digest),
        # Another tenant's key is simply unknown here: nothing to probe across tenants.
        ingest_pb2.DepositKey(
            idempotency_key="run-1/g.pdf", sha256_hex=hashlib.sha256(b"globex's own").hexdigest()
        ),
    ]
    found = await stack.ingest.FindDeposits(
        ingest_pb2.FindDepositsRequest(keys=keys), metadata=stack.auth()
    )
    kinds = [d.WhichOneof("result") for d in found.deposits]
    assert kinds == ["receipt", "error", "absent", "absent"]
    receipt = found.deposits[0].receipt
    assert receipt.replayed and receipt.document_id == first.document_id
    assert receipt.event_position == first.event_position and receipt.sha256 == first.sha256
    assert found.deposits[1].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    # Asking stores nothing.
    assert len(await stack.events("archive.v1.DocumentIngested")) == 2


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ([], "keys"),
        ([ingest_pb2.DepositKey(idempotency_key="k", sha256_hex="abc")], "keys[0].sha256_hex"),
        ([ingest_pb2.DepositKey(idempotency_key="a b", sha256_hex="0" * 64)], "keys[0]"),
        ([ingest_pb2.DepositKey(idempotency_key="k", sha256_hex="0" * 64)] * 1001, "keys"),
    ],
)
async def test_find_deposits_refuses_bad_keys_naming_the_field(
    stack: Stack, keys: list[ingest_pb2.DepositKey], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.ingest.FindDeposits(
            ingest_pb2.FindDepositsRequest(keys=keys), metadata=stack.auth()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")

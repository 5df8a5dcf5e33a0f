"""services.ingest.bulk.deposit_many with a stand-in deposit: order of answers, the cap on
documents in flight, dropping what a failed document still sends, and clean-up when the
caller goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from waiting import eventually

from archive.grpcserver import InvalidArgument
from archive.v1 import ingest_pb2
from services.ingest import bulk
from services.ingest.bulk import deposit_many


def document(name: str, *chunks: bytes) -> list[ingest_pb2.UploadRequest]:
    return [
        ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name=name)),
        *(ingest_pb2.UploadRequest(chunk=c) for c in chunks),
        ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=sum(map(len, chunks)))),
    ]


async def stream_of(*messages: ingest_pb2.UploadRequest) -> AsyncIterator[ingest_pb2.UploadRequest]:
    for message in messages:
        yield message


async def read_all(messages: AsyncIterator[ingest_pb2.UploadRequest]) -> int:
    return sum([len(m.chunk) async for m in messages])


async def test_answers_come_in_document_order_even_when_deposits_finish_out_of_order() -> None:
    # Each deposit waits for another to finish first: they end b, c, a whatever the speed.
    after = {"a": "c", "b": None, "c": "b"}
    finished: list[str] = []
    done = {name: asyncio.Event() for name in after}

    async def deposit(
        header: ingest_pb2.UploadHeader, rest: AsyncIterator[ingest_pb2.UploadRequest]
    ) -> ingest_pb2.DepositReceipt:
        size = await read_all(rest)
        name = header.file_name
        if (first := after[name]) is not None:
            await asyncio.wait_for(done[first].wait(), 10)  # a timeout: not run concurrently
        finished.append(name)
        done[name].set()
        return ingest_pb2.DepositReceipt(file_name=name, size_bytes=size)

    requests = stream_of(*document("a", b"12"), *document("b", b"345", b"6"), *document("c"))
    results = [r async for r in deposit_many(requests, deposit)]
    assert finished == ["b", "c", "a"]
    assert [(r.index, r.receipt.file_name, r.receipt.size_bytes) for r in results] == [
        (0, "a", 2),
        (1, "b", 4),
        (2, "c", 0),
    ]


async def test_deposits_overlap_but_never_more_than_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk, "MAX_IN_FLIGHT", 3)
    running = peak = 0
    release = asyncio.Event()

    async def deposit(
        header: ingest_pb2.UploadHeader, rest: AsyncIterator[ingest_pb2.UploadRequest]
    ) -> ingest_pb2.DepositReceipt:
        nonlocal running, peak
        await read_all(rest)
        running += 1
        peak = max(peak, running)
        if peak >= 3:
            release.set()
        await release.wait()
        running -= 1
        return ingest_pb2.DepositReceipt(file_name=header.file_name)

    messages = [m for i in range(10) for m in document(f"d{i}", b"x")]
    results = [r async for r in deposit_many(stream_of(*messages), deposit)]
    assert len(results) == 10
    # The queue holds MAX_IN_FLIGHT answers to come, plus the one being awaited.
    assert 2 <= peak <= 4


async def test_a_failed_document_gets_an_error_and_its_remaining_content_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk, "FEED_BUFFER_BYTES", 10)

    async def deposit(
        header: ingest_pb2.UploadHeader, rest: AsyncIterator[ingest_pb2.UploadRequest]
    ) -> ingest_pb2.DepositReceipt:
        if header.file_name == "bad":
            raise InvalidArgument("file_name", "refused before any content is read")
        return ingest_pb2.DepositReceipt(size_bytes=await read_all(rest))

    # The bad document's content is far over the feed buffer: were it buffered for a
    # deposit that no longer reads, the reader would wait forever.
    messages = [*document("bad", *[b"z" * 8] * 50), *document("good", b"abc")]
    results = await asyncio.wait_for(
        _collect(deposit_many(stream_of(*messages), deposit)), timeout=10
    )
    assert results[0].WhichOneof("result") == "error"
    assert results[0].error.message == "file_name: refused before any content is read"
    assert results[1].receipt.size_bytes == 3


async def test_a_caller_that_goes_away_cancels_the_deposits_in_flight() -> None:
    waiting: list[str] = []
    cancelled: list[str] = []

    async def deposit(
        header: ingest_pb2.UploadHeader, rest: AsyncIterator[ingest_pb2.UploadRequest]
    ) -> ingest_pb2.DepositReceipt:
        await read_all(rest)
        waiting.append(header.file_name)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(header.file_name)
            raise
        raise AssertionError("not reached")

    results = deposit_many(stream_of(*document("a", b"1"), *document("b", b"2")), deposit)
    consumer = asyncio.create_task(_collect(results))
    await eventually(lambda: len(waiting) == 2, what="both deposits to be in flight")
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert sorted(cancelled) == ["a", "b"]


async def _collect(
    results: AsyncIterator[ingest_pb2.UploadManyResult],
) -> list[ingest_pb2.UploadManyResult]:
    return [r async for r in results]


async def test_a_failing_request_stream_ends_the_results_after_the_complete_documents() -> None:
    async def deposit(
        header: ingest_pb2.UploadHeader, rest: AsyncIterator[ingest_pb2.UploadRequest]
    ) -> ingest_pb2.DepositReceipt:
        return ingest_pb2.DepositReceipt(size_bytes=await read_all(rest))

    async def failing() -> AsyncIterator[ingest_pb2.UploadRequest]:
        for message in [*document("a", b"12"), *document("b", b"3")[:2]]:
            yield message
        raise ConnectionResetError("the client's connection broke")

    answered: list[ingest_pb2.UploadManyResult] = []
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(10):  # a reader failure must not leave the answers waiting
            async for result in deposit_many(failing(), deposit):
                answered.append(result)
    assert [r.receipt.size_bytes for r in answered] == [2]

"""Ingest.UploadMany: many deposits on one stream, answered one by one, in order.

The stream is cut into documents (header, chunks, end) as it arrives. Each document becomes a
deposit task of its own, exactly the one Upload runs, fed through a small buffer; the reader
moves on to the next document without waiting for the previous one to be durable, so the
deposits of one stream overlap and share the blob store's group commits. Results are sent in
document order: a receipt, or the status Upload would have ended with. At most
`MAX_IN_FLIGHT` documents of a stream are being deposited at once, and a document's buffer
holds at most `FEED_BUFFER_BYTES` before the reader waits: that bounds a stream's memory.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

from archive.eventstore import StoreUnavailable
from archive.grpcserver import InvalidArgument, current_correlation_id
from archive.grpcserver.errors import log_error, status_proto_for
from archive.v1 import ingest_pb2

MAX_IN_FLIGHT: Final = 32
FEED_BUFFER_BYTES: Final = 256 * 1024

Deposit = Callable[
    [ingest_pb2.UploadHeader, AsyncIterator[ingest_pb2.UploadRequest]],
    Coroutine[Any, Any, ingest_pb2.DepositReceipt],
]


class _DocumentFeed:
    """The chunks and UploadEnd of one document, from the stream reader to its deposit.

    Once the deposit has stopped listening (it failed, e.g. on a size limit), what still
    arrives for the document is dropped instead of buffered."""

    def __init__(self) -> None:
        self._messages: collections.deque[ingest_pb2.UploadRequest] = collections.deque()
        self._buffered = 0
        self._changed = asyncio.Event()
        self._closed = False

    async def push(self, message: ingest_pb2.UploadRequest) -> None:
        while self._buffered >= FEED_BUFFER_BYTES and not self._closed:
            self._changed.clear()
            await self._changed.wait()
        if self._closed:
            return
        self._messages.append(message)
        self._buffered += len(message.chunk)
        self._changed.set()

    def close(self) -> None:
        """The deposit is over: drop whatever comes next."""
        self._closed = True
        self._messages.clear()
        self._changed.set()

    async def messages(self) -> AsyncIterator[ingest_pb2.UploadRequest]:
        while True:
            while not self._messages:
                if self._closed:
                    return
                self._changed.clear()
                await self._changed.wait()
            message = self._messages.popleft()
            self._buffered -= len(message.chunk)
            self._changed.set()
            yield message
            if message.WhichOneof("part") == "end":
                return


def _closing(feed: _DocumentFeed) -> Callable[[object], None]:
    """A done-callback closing `feed` (bound here: the reader moves on to the next feed)."""
    return lambda _task: feed.close()


class _ReadFailed:
    """Reading the stream stopped on an error (broken framing, a failing connection): it ends
    the call once the documents queued before it are answered."""

    def __init__(self, error: Exception) -> None:
        self.error = error


async def deposit_many(
    requests: AsyncIterator[ingest_pb2.UploadRequest], deposit: Deposit
) -> AsyncIterator[ingest_pb2.UploadManyResult]:
    """Run `deposit` for every document of `requests`; yield one result per document, in
    order. Ends with the error that stopped the reading (broken framing, a failing
    connection), if any, after the documents complete before it."""
    pending: asyncio.Queue[asyncio.Task[ingest_pb2.DepositReceipt] | _ReadFailed | None] = (
        asyncio.Queue(maxsize=MAX_IN_FLIGHT)
    )
    in_flight: set[asyncio.Task[ingest_pb2.DepositReceipt]] = set()
    broken: set[asyncio.Task[ingest_pb2.DepositReceipt]] = set()  # cut off: not answered

    async def read() -> None:
        feed: _DocumentFeed | None = None
        task: asyncio.Task[ingest_pb2.DepositReceipt] | None = None
        index = 0
        try:
            async for message in requests:
                part = message.WhichOneof("part")
                if part == "header":
                    if feed is not None:
                        raise InvalidArgument(
                            "header",
                            f"document {index} got a second UploadHeader before its UploadEnd",
                        )
                    feed = _DocumentFeed()
                    task = asyncio.create_task(deposit(message.header, feed.messages()))
                    task.add_done_callback(_closing(feed))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    await pending.put(task)
                elif feed is None:
                    raise InvalidArgument(
                        part or "part",
                        f"document {index} must start with an UploadHeader, then its content",
                    )
                else:
                    await feed.push(message)
                    if part == "end":
                        feed = None
                        index += 1
            if feed is not None:
                raise InvalidArgument(
                    "end", f"the stream ended inside document {index}, before its UploadEnd"
                )
        except Exception as error:
            if feed is not None and task is not None:
                task.cancel()  # nothing of it is stored, and it gets no answer of its own
                broken.add(task)
            await pending.put(_ReadFailed(error))
            return
        await pending.put(None)

    reader = asyncio.create_task(read())
    index = 0
    try:
        while (item := await pending.get()) is not None:
            if isinstance(item, _ReadFailed):
                raise item.error
            if item in broken:
                continue
            await asyncio.wait([item])
            yield _result(index, item)
            index += 1
        await reader
    finally:
        # The caller went away (or the framing broke): nobody will hear about the rest.
        reader.cancel()
        for task in list(in_flight):
            task.cancel()
        await asyncio.gather(reader, *in_flight, return_exceptions=True)


def _result(
    index: int, task: asyncio.Task[ingest_pb2.DepositReceipt]
) -> ingest_pb2.UploadManyResult:
    if task.cancelled():  # not by us (we skip those): say so, and that a retry is safe
        error: BaseException | None = StoreUnavailable(
            "the deposit was interrupted; send it again with the same idempotency key"
        )
    else:
        error = task.exception()
    if error is None:
        return ingest_pb2.UploadManyResult(index=index, receipt=task.result())
    log_error(error, f"/archive.v1.Ingest/UploadMany[{index}]")
    return ingest_pb2.UploadManyResult(
        index=index, error=status_proto_for(error, current_correlation_id())
    )

"""Bulk deposits over Ingest.UploadMany: many documents per stream, several streams at once.

    items = (UploadItem(path, document_class="statement") for path in paths)
    async for outcome in archive.upload_many(items):
        print(outcome.index, outcome.receipt or outcome.error)

(`ArchiveClient.upload_many`; the run itself is a `BulkUpload`.)

The same safety rules as `ArchiveClient.upload`, per document: an idempotency key on every
document (generated when none is given), the SHA-256 announced in its header and checked
against the receipt. When a stream breaks (UNAVAILABLE, DEADLINE_EXCEEDED, or grpc losing the
server's status), the documents it had sent without an answer are sent again, with their
keys, on a new stream: a document that was in fact stored comes back as its original receipt
(`replayed=True`), never twice. A document refused on its own (too large, a bad name) gets
its error in its outcome and the others go on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
import grpc.aio

from archive.client.config import ClientConfig
from archive.client.errors import (
    ArchiveError,
    IntegrityError,
    error_from_rpc,
    error_from_status,
    is_retryable,
    server_status_lost,
)
from archive.client.models import Receipt, ScanProvenance
from archive.v1 import ingest_pb2, ingest_pb2_grpc

DEFAULT_STREAMS: Final = 4
_LOST_STATUS_RETRIES: Final = 16


@dataclass(frozen=True)
class UploadItem:
    """One document for `upload_many`: a file path or the bytes themselves, and its header
    fields (as for `ArchiveClient.upload`). `file_name` defaults to the path's name."""

    source: Path | bytes
    file_name: str | None = None
    media_type: str = ""
    metadata: Mapping[str, str] | None = None
    document_class: str = ""
    idempotency_key: str | None = None
    scan_provenance: ScanProvenance | None = None


@dataclass(frozen=True)
class UploadOutcome:
    """What became of one item: `receipt` when it is durable, else `error` (whose
    `idempotency_key` makes a later retry safe). `index` is the item's position in the
    input; outcomes arrive in the order documents are answered, not always input order."""

    index: int
    item: UploadItem
    receipt: Receipt | None = None
    error: ArchiveError | None = None

    @property
    def ok(self) -> bool:
        return self.receipt is not None


Metadata = tuple[tuple[str, str], ...]
MetadataFactory = Callable[[str], Metadata]  # correlation id -> the call's headers


@dataclass
class _Pending:
    index: int
    item: UploadItem
    key: str
    file_name: str
    sha256: str = ""
    size: int = 0
    sends: int = 0  # times it went out on a stream
    free_resends: int = 0  # of those, resent because grpc lost the stream's status

    @property
    def attempts(self) -> int:
        """Sends that count against `max_attempts`: a lost status is not the archive's
        answer, so asking again does not use one up."""
        return self.sends - self.free_resends


class _Exhausted(Exception):
    pass


class BulkUpload:
    """One `upload_many` run over `channel`, each UploadMany call with the headers
    `metadata(correlation_id)` gives (the token among them).

    State shared by its streams: the items not taken yet (`_source`), those to send again
    (`_retries`: unanswered when a stream stopped, or answered UNAVAILABLE), the outcomes
    ready for the caller, and how many streams had their status lost by grpc (bounded for
    the whole run). Each stream's own state is a `_Stream`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: MetadataFactory,
        config: ClientConfig,
        items: Iterable[UploadItem] | AsyncIterable[UploadItem],
        *,
        streams: int = DEFAULT_STREAMS,
        chunk_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.stub = ingest_pb2_grpc.IngestStub(channel)
        self.metadata = metadata
        self.config = config
        self.chunk_size = chunk_size
        self.on_progress = on_progress
        self._streams = streams
        self._source = _Source(items)
        self._retries: collections.deque[_Pending] = collections.deque()
        self._outcomes: asyncio.Queue[UploadOutcome | None] = asyncio.Queue()
        self._lost_statuses = 0

    async def outcomes(self) -> AsyncIterator[UploadOutcome]:
        """One outcome per item, as each is answered; raises what stopped the run (a bad
        item, say) once the outcomes before it are out."""
        runner = asyncio.create_task(self._run())
        try:
            while (outcome := await self._outcomes.get()) is not None:
                yield outcome
            await runner
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    # ---- for the streams ----

    async def take(self) -> _Pending:
        """The next item to send: a retry first, else a new one (_Exhausted: none left)."""
        return await self._source.next(self._retries)

    def send_again(self, pending: _Pending) -> None:
        self._retries.append(pending)

    def may_send_again(self, pending: _Pending) -> bool:
        return pending.attempts < self.config.max_attempts

    def finish(self, pending: _Pending, *, error: ArchiveError) -> None:
        self.done(UploadOutcome(pending.index, pending.item, error=error.for_key(pending.key)))

    def done(self, outcome: UploadOutcome) -> None:
        if outcome.receipt is not None and self.on_progress is not None:
            self.on_progress(outcome.receipt.size)
        self._outcomes.put_nowait(outcome)

    def status_lost(self) -> bool:
        """Whether a stream whose status grpc lost may ask again (see server_status_lost)."""
        if self._lost_statuses >= _LOST_STATUS_RETRIES:
            return False
        self._lost_statuses += 1
        return True

    # ---- running ----

    async def _run(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self._streams)]
        try:
            await asyncio.gather(*workers)
        except ArchiveError as error:
            # A refusal of a whole stream (a revoked token, say) is every document's.
            await _cancel(workers)
            async for pending in self._source.rest(self._retries):
                self.finish(pending, error=error)
        finally:
            await _cancel(workers)
            self._outcomes.put_nowait(None)

    async def _worker(self) -> None:
        while not self._source.done(self._retries):
            await _Stream(self).run()
            if self._retries:
                await asyncio.sleep(self.config.initial_backoff * random.uniform(0.5, 1.0))


class _Stream:
    """One UploadMany call. Answers name documents by their place on the stream, so `sent`
    keeps them in order and `answered` counts those answered; `preparing` is the item taken
    but not yet sent (being hashed). A failure of the items themselves (not of the call) is
    kept in `item_error`: grpc runs the request iterator in its own task and swallows what
    it raises."""

    def __init__(self, upload: BulkUpload) -> None:
        self.upload = upload
        self.correlation_id = uuid.uuid4().hex
        self.sent: list[_Pending] = []
        self.answered = 0
        self.preparing: _Pending | None = None
        self.item_error: Exception | None = None

    @property
    def unanswered(self) -> list[_Pending]:
        return self.sent[self.answered :]

    async def run(self) -> None:
        """Send documents until there are none left. Answered ones become outcomes; when the
        stream stops, the unanswered ones are sent again (on another stream) or, once out of
        attempts, get the error."""
        upload = self.upload
        config = upload.config
        call = upload.stub.UploadMany(
            self._requests(),
            metadata=upload.metadata(self.correlation_id),
            timeout=config.transfer_timeout,
        )
        try:
            async for result in call:
                self._answer(result)
        except grpc.aio.AioRpcError as rpc_error:
            await self._broken(rpc_error)
            return
        except asyncio.CancelledError:
            # They get the outcome of whatever stopped us.
            for pending in self._take_back():
                upload.send_again(pending)
            raise
        for pending in self._take_back():  # the server ended the stream without answering
            if upload.may_send_again(pending):
                upload.send_again(pending)
            else:
                error = ArchiveError(
                    "the archive ended the stream without answering this document",
                    correlation_id=self.correlation_id,
                )
                upload.finish(pending, error=error)
        if self.item_error is not None:
            raise self.item_error

    def _answer(self, result: ingest_pb2.UploadManyResult) -> None:
        pending = self.sent[result.index]
        self.answered = result.index + 1
        outcome = _outcome(pending, result, self.correlation_id)
        retryable = outcome.error is not None and is_retryable(outcome.error)
        if retryable and self.upload.may_send_again(pending):
            self.upload.send_again(pending)  # e.g. the event store was briefly unavailable
        else:
            self.upload.done(outcome)

    async def _broken(self, rpc_error: grpc.aio.AioRpcError) -> None:
        upload = self.upload
        error = error_from_rpc(rpc_error, self.correlation_id)
        if self.preparing is not None:  # taken but never sent: nothing to answer for it
            upload.send_again(self.preparing)
            self.preparing = None
        unanswered = self._take_back()
        if server_status_lost(rpc_error) and upload.status_lost():
            # The server refused the stream before these documents were complete; asking
            # again brings its real answer.
            for pending in unanswered:
                pending.free_resends += 1
                upload.send_again(pending)
            return
        retryable = is_retryable(error)
        for pending in unanswered:
            if retryable and upload.may_send_again(pending):
                upload.send_again(pending)
            else:
                upload.finish(pending, error=error)
        if not retryable:
            raise error from rpc_error
        delay = upload.config.initial_backoff * random.uniform(0.5, 1.0)
        await asyncio.sleep(max(delay, error.retry_delay or 0))

    def _take_back(self) -> list[_Pending]:
        """The unanswered documents and the one being prepared: none of them is answered
        for by this stream any more."""
        back = [*self.unanswered, *([self.preparing] if self.preparing else [])]
        self.answered = len(self.sent)
        self.preparing = None
        return back

    async def _requests(self) -> AsyncIterator[ingest_pb2.UploadRequest]:
        # A bad item is kept, the stream ended cleanly, and the error raised once it is
        # drained (grpc would swallow it).
        while True:
            try:
                pending = await self.upload.take()
            except _Exhausted:
                return
            except Exception as exc:
                self.item_error = exc
                return
            self.preparing = pending  # if the stream is cancelled now, it is not lost
            try:
                await asyncio.to_thread(_measure, pending)
            except OSError as exc:
                self.preparing = None
                self.upload.finish(
                    pending, error=ArchiveError(f"{pending.file_name}: {exc.strerror or exc}")
                )
                continue
            self.preparing = None
            pending.sends += 1
            self.sent.append(pending)
            yield ingest_pb2.UploadRequest(header=_header(pending))
            async for chunk in _chunks(pending, self.upload.chunk_size):
                yield ingest_pb2.UploadRequest(chunk=chunk)
            yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=pending.size))


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Source:
    """The items, numbered, read one at a time whichever stream asks; retries first."""

    def __init__(self, items: Iterable[UploadItem] | AsyncIterable[UploadItem]) -> None:
        self._items: AsyncIterator[UploadItem] = (
            aiter(items) if isinstance(items, AsyncIterable) else _async(items)
        )
        self._lock = asyncio.Lock()
        self._count = 0
        self._exhausted = False

    def done(self, retries: collections.deque[_Pending]) -> bool:
        return self._exhausted and not retries

    async def next(self, retries: collections.deque[_Pending]) -> _Pending:
        if retries:
            return retries.popleft()
        async with self._lock:
            if self._exhausted:
                raise _Exhausted
            try:
                item = await anext(self._items)
            except StopAsyncIteration:
                self._exhausted = True
                raise _Exhausted from None
        index = self._count
        self._count += 1
        return _pending(index, item)

    async def rest(self, retries: collections.deque[_Pending]) -> AsyncIterator[_Pending]:
        while True:
            try:
                yield await self.next(retries)
            except _Exhausted:
                return


async def _async(items: Iterable[UploadItem]) -> AsyncIterator[UploadItem]:
    for item in items:
        yield item


def _pending(index: int, item: UploadItem) -> _Pending:
    if not isinstance(item, UploadItem):
        raise TypeError(f"upload_many takes UploadItem objects, got {type(item).__name__}")
    source = item.source
    if isinstance(source, os.PathLike):
        file_name = item.file_name or Path(source).name
    elif isinstance(source, bytes | bytearray | memoryview):
        if item.file_name is None:
            raise ValueError(f"item {index}: file_name is required when the source is bytes")
        file_name = item.file_name
    else:
        raise TypeError(f"item {index}: the source must be a Path or bytes")
    return _Pending(index, item, item.idempotency_key or str(uuid.uuid4()), file_name)


def _measure(pending: _Pending) -> None:
    """Hash the content and take its size (again for a retry: what is sent is checked)."""
    source = pending.item.source
    if isinstance(source, os.PathLike):
        with open(source, "rb") as file:
            digest = hashlib.file_digest(file, "sha256")
            pending.size = file.tell()
    else:
        digest = hashlib.sha256(source)
        pending.size = len(source)
    pending.sha256 = digest.hexdigest()


async def _chunks(pending: _Pending, chunk_size: int) -> AsyncIterator[bytes]:
    source = pending.item.source
    if not isinstance(source, os.PathLike):
        for start in range(0, len(source), chunk_size):
            yield bytes(source[start : start + chunk_size])
        return
    with await asyncio.to_thread(open, source, "rb") as file:
        while chunk := await asyncio.to_thread(file.read, chunk_size):
            yield chunk


def _header(pending: _Pending) -> ingest_pb2.UploadHeader:
    item = pending.item
    header = ingest_pb2.UploadHeader(
        file_name=pending.file_name,
        media_type=item.media_type,
        metadata=dict(item.metadata or {}),
        document_class=item.document_class,
        idempotency_key=pending.key,
        expected_sha256_hex=pending.sha256,
    )
    if item.scan_provenance is not None:
        header.scan_provenance.CopyFrom(item.scan_provenance.to_proto())
    return header


def _outcome(
    pending: _Pending, result: ingest_pb2.UploadManyResult, correlation_id: str
) -> UploadOutcome:
    if result.WhichOneof("result") == "receipt":
        receipt = Receipt.from_proto(result.receipt, pending.key)
        if not receipt.replayed and receipt.sha256 != pending.sha256:
            error: ArchiveError = IntegrityError(
                f"the archive stored content with SHA-256 {receipt.sha256}, "
                f"but {pending.sha256} was sent",
                expected=pending.sha256,
                actual=receipt.sha256,
                correlation_id=correlation_id,
            )
            error.idempotency_key = pending.key
            return UploadOutcome(pending.index, pending.item, error=error)
        return UploadOutcome(pending.index, pending.item, receipt=receipt)
    error = error_from_status(result.error, correlation_id)
    error.idempotency_key = pending.key
    error.attempts = pending.attempts
    return UploadOutcome(pending.index, pending.item, error=error)

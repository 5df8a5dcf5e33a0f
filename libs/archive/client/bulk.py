"""Bulk deposits over Ingest.UploadMany: many documents per stream, several streams at once.

    items = (UploadItem(path, document_class="statement") for path in paths)
    async for outcome in archive.upload_many(items):
        print(outcome.index, outcome.receipt or outcome.error)

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
from typing import TYPE_CHECKING, Final

import grpc
import grpc.aio

from archive.client.errors import (
    RETRYABLE_CODES,
    ArchiveError,
    IntegrityError,
    error_from_rpc,
    error_from_status,
    server_status_lost,
)
from archive.client.models import Receipt, ScanProvenance
from archive.v1 import ingest_pb2, ingest_pb2_grpc

if TYPE_CHECKING:
    from archive.client.client import ArchiveClient

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


@dataclass
class _Pending:
    index: int
    item: UploadItem
    key: str
    file_name: str
    attempts: int = 0
    sha256: str = ""
    size: int = 0


class _Exhausted(Exception):
    pass


async def upload_many(
    client: ArchiveClient,
    items: Iterable[UploadItem] | AsyncIterable[UploadItem],
    *,
    streams: int = DEFAULT_STREAMS,
    chunk_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> AsyncIterator[UploadOutcome]:
    """See `ArchiveClient.upload_many`."""
    source = _Source(items)
    lost_statuses = [0]  # streams whose status grpc lost, in this whole run
    outcomes: asyncio.Queue[UploadOutcome | None] = asyncio.Queue()
    config = client.config

    def finish(outcome: UploadOutcome) -> None:
        outcomes.put_nowait(outcome)

    async def one_stream(retries: collections.deque[_Pending]) -> None:
        """Send documents until there are none left; answered ones become outcomes, the
        unanswered ones of a broken stream go back to `retries`."""
        sent: list[_Pending] = []
        preparing: list[_Pending] = []  # taken from the source, not yet sent
        local_error: list[BaseException] = []
        correlation_id = uuid.uuid4().hex

        async def requests() -> AsyncIterator[ingest_pb2.UploadRequest]:
            # grpc runs this in its own task and swallows what it raises: a bad item is kept
            # here, the stream is ended cleanly, and the error raised once it is drained.
            while True:
                try:
                    pending = await source.next(retries)
                except _Exhausted:
                    return
                except Exception as exc:
                    local_error.append(exc)
                    return
                preparing.append(pending)  # if the stream is cancelled now, it is not lost
                try:
                    await asyncio.to_thread(_measure, pending)
                except OSError as exc:
                    preparing.clear()
                    error = ArchiveError(f"{pending.file_name}: {exc.strerror or exc}")
                    error.idempotency_key = pending.key
                    finish(UploadOutcome(pending.index, pending.item, error=error))
                    continue
                preparing.clear()
                pending.attempts += 1
                sent.append(pending)
                yield ingest_pb2.UploadRequest(header=_header(pending))
                async for chunk in _chunks(pending, chunk_size):
                    yield ingest_pb2.UploadRequest(chunk=chunk)
                yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=pending.size))

        call = ingest_pb2_grpc.IngestStub(client._open()).UploadMany(
            requests(),
            metadata=client._metadata(config.tenant_token(), correlation_id),
            timeout=config.transfer_timeout,
        )
        answered = 0
        try:
            async for result in call:
                pending = sent[result.index]
                answered = result.index + 1
                outcome = _outcome(pending, result, correlation_id)
                if (
                    outcome.error is not None
                    and outcome.error.code in RETRYABLE_CODES
                    and pending.attempts < config.max_attempts
                ):
                    retries.append(pending)  # e.g. the event store was briefly unavailable
                    continue
                if outcome.receipt is not None and on_progress is not None:
                    on_progress(outcome.receipt.size)
                finish(outcome)
        except grpc.aio.AioRpcError as rpc_error:
            error = error_from_rpc(rpc_error, correlation_id)
            retries.extend(preparing)  # taken but never sent: nothing to answer for them
            preparing.clear()
            if server_status_lost(rpc_error) and lost_statuses[0] < _LOST_STATUS_RETRIES:
                # grpc lost the server's answer (see server_status_lost): the server refused
                # the stream before these documents were complete; asking again brings the
                # real answer, and does not use up the documents' attempts.
                lost_statuses[0] += 1
                for pending in sent[answered:]:
                    pending.attempts -= 1
                    retries.append(pending)
                return
            retryable = error.code in RETRYABLE_CODES
            for pending in sent[answered:]:
                if retryable and pending.attempts < config.max_attempts:
                    retries.append(pending)
                else:
                    finish(UploadOutcome(pending.index, pending.item, error=_for(error, pending)))
            if not retryable:
                raise error from rpc_error
            await asyncio.sleep(
                max(config.initial_backoff * random.uniform(0.5, 1.0), error.retry_delay or 0)
            )
        except asyncio.CancelledError:
            # They get the outcome of whatever stopped us.
            retries.extend([*sent[answered:], *preparing])
            raise
        for pending in sent[answered:]:  # the server ended the stream without answering them
            if pending.attempts < config.max_attempts:
                retries.append(pending)
            else:
                error = ArchiveError(
                    "the archive ended the stream without answering this document",
                    correlation_id=correlation_id,
                )
                finish(UploadOutcome(pending.index, pending.item, error=_for(error, pending)))
        if local_error:
            raise local_error[0]

    async def worker(retries: collections.deque[_Pending]) -> None:
        while not source.done(retries):
            await one_stream(retries)
            if retries:
                await asyncio.sleep(config.initial_backoff * random.uniform(0.5, 1.0))

    async def run() -> None:
        retries: collections.deque[_Pending] = collections.deque()
        workers = [asyncio.create_task(worker(retries)) for _ in range(streams)]
        try:
            await asyncio.gather(*workers)
        except ArchiveError as error:
            # A refusal of a whole stream (a revoked token, say) is every document's.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            async for pending in source.rest(retries):
                finish(UploadOutcome(pending.index, pending.item, error=_for(error, pending)))
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            outcomes.put_nowait(None)

    runner = asyncio.create_task(run())
    try:
        while (outcome := await outcomes.get()) is not None:
            yield outcome
        await runner  # raises what stopped it: a bad item, say
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


def _for(error: ArchiveError, pending: _Pending) -> ArchiveError:
    copy = type(error).__new__(type(error))
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    copy.idempotency_key = pending.key
    return copy


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

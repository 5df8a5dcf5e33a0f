"""The Ingest servicer. Upload (and UploadMany, document by document) streams a deposit to the
blob store, then records it; the receipt is sent only when both the bytes (fsynced blob) and
the DocumentIngested event (acknowledged append) are durable. FindDeposits answers known
idempotency keys without the content (services/ingest/find.py)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from archive.blobstore import BlobStore
from archive.config import Settings
from archive.document_errors import IdempotencyKeyReused
from archive.documents import (
    document_stream,
    new_document_id,
    receipt_from,
)
from archive.eventstore import (
    NO_STREAM,
    EventStore,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
    first_event,
)
from archive.grpcserver import InvalidArgument, current_correlation_id, current_principal
from archive.tenancy import Principal
from archive.v1 import common_pb2, events_pb2, ingest_pb2, ingest_pb2_grpc
from services.ingest.bulk import deposit_many
from services.ingest.find import find_deposits
from services.ingest.formats import HEAD_BYTES, identify
from services.ingest.validation import validate_find_request, validate_header


class IngestServicer(ingest_pb2_grpc.IngestServicer):
    def __init__(self, store: EventStore, blobs: BlobStore, settings: Settings) -> None:
        self._store = store
        self._blobs = blobs
        self._settings = settings

    async def Upload(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ingest_pb2.DepositReceipt:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "header", "send an UploadHeader as the first message, then the content chunks"
            )
        return await self.deposit(current_principal(), first.header, messages)

    async def UploadMany(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ingest_pb2.UploadManyResult]:
        principal = current_principal()

        async def deposit(
            header: ingest_pb2.UploadHeader, rest: AsyncIterator[ingest_pb2.UploadRequest]
        ) -> ingest_pb2.DepositReceipt:
            return await self.deposit(principal, header, rest)

        async for result in deposit_many(request_iterator, deposit):
            yield result

    async def FindDeposits(
        self,
        request: ingest_pb2.FindDepositsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ingest_pb2.FindDepositsResponse:
        validate_find_request(request)
        return await find_deposits(self._store, current_principal().tenant, list(request.keys))

    async def deposit(
        self,
        principal: Principal,
        header: ingest_pb2.UploadHeader,
        messages: AsyncIterator[ingest_pb2.UploadRequest],
    ) -> ingest_pb2.DepositReceipt:
        """One deposit, its header already read: `messages` are its chunks and UploadEnd."""
        tenant = principal.tenant
        validate_header(header, self._settings)
        document_id = new_document_id(tenant, header.idempotency_key)
        stream = document_stream(tenant, document_id)

        if header.idempotency_key:
            original = await first_event(self._store, stream)
            if original is not None:
                return await self._replay(original, _content(messages, bytearray()))

        head = bytearray()
        blob = await self._blobs.put(
            tenant,
            _content(messages, head),
            expected_sha256=header.expected_sha256_hex or None,
            max_size=self._settings.max_document_bytes,
        )
        identified = identify(bytes(head))
        received_at = Timestamp()
        received_at.FromDatetime(datetime.now(UTC))
        event = events_pb2.DocumentIngested(
            tenant=common_pb2.TenantId(value=tenant),
            document_id=common_pb2.DocumentId(value=document_id),
            sha256=common_pb2.Digest(
                algorithm=common_pb2.DIGEST_ALGORITHM_SHA256, value=bytes.fromhex(blob.sha256)
            ),
            sha512=common_pb2.Digest(
                algorithm=common_pb2.DIGEST_ALGORITHM_SHA512, value=bytes.fromhex(blob.sha512)
            ),
            size_bytes=blob.size,
            file_name=header.file_name,
            media_type=header.media_type or identified.media_type,
            format=events_pb2.IdentifiedFormat(
                puid=identified.puid,
                media_type=identified.media_type,
                name=identified.name,
                identified_by=identified.identified_by,
            ),
            metadata=header.metadata,
            document_class=header.document_class,
            idempotency_key=header.idempotency_key,
            received_at=received_at,
            scan_provenance=header.scan_provenance if header.HasField("scan_provenance") else None,
        )
        new_event = NewEvent.of(
            event,
            correlation_id=current_correlation_id(),
            metadata={"principal": principal.token_id},
        )
        try:
            result = await self._store.append(stream, [new_event], NO_STREAM)
        except WrongExpectedVersion:
            # A concurrent deposit with the same idempotency key won the race.
            original = await first_event(self._store, stream)
            if original is None:
                raise
            previous = original.decode_as(events_pb2.DocumentIngested)
            if previous.sha256.value.hex() != blob.sha256:
                raise IdempotencyKeyReused(document_id) from None
            return receipt_from(previous, original.position, replayed=True)
        return receipt_from(event, result.last_position, replayed=False)

    async def _replay(
        self, original: RecordedEvent, content: AsyncIterator[bytes]
    ) -> ingest_pb2.DepositReceipt:
        """A retry: hash what is sent again (storing nothing) and hand back the original
        receipt if it is the same content."""
        event = original.decode_as(events_pb2.DocumentIngested)
        digest = hashlib.sha256()
        size = 0
        async for chunk in content:
            size += len(chunk)
            if size > self._settings.max_document_bytes:
                raise IdempotencyKeyReused(event.document_id.value)
            digest.update(chunk)
        if digest.digest() != event.sha256.value:
            raise IdempotencyKeyReused(event.document_id.value)
        return receipt_from(event, original.position, replayed=True)


async def _content(
    messages: AsyncIterator[ingest_pb2.UploadRequest], head: bytearray
) -> AsyncIterator[bytes]:
    """The content chunks, up to the UploadEnd; keeps the first bytes for format
    identification. Everything refused here is raised inside the blob write, which then keeps
    nothing: a second header, a missing or wrong UploadEnd, anything after it."""
    size = 0
    async for message in messages:
        part = message.WhichOneof("part")
        if part == "chunk":
            chunk = message.chunk
            size += len(chunk)
            if len(head) < HEAD_BYTES:
                head.extend(chunk[: HEAD_BYTES - len(head)])
            yield chunk
        elif part == "end":
            if message.end.size_bytes != size:
                raise InvalidArgument(
                    "end.size_bytes",
                    f"the UploadEnd announces {message.end.size_bytes} bytes but {size} arrived",
                )
            if await anext(messages, None) is not None:
                raise InvalidArgument("end", "nothing may follow the UploadEnd")
            return
        elif part == "header":
            raise InvalidArgument(
                "header", "a second UploadHeader arrived; send exactly one, first"
            )
    raise InvalidArgument(
        "end",
        "the upload stopped before its UploadEnd (client cancelled or crashed?); nothing was "
        "stored: send the content again, then an UploadEnd with its size",
    )

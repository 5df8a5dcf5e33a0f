"""GetDocument, ListDocuments and Download for the caller's tenant. A consultation is recorded
as a DocumentAccessed event before anything is returned: an access that cannot be recorded is
refused, so the journal never misses one."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from archive.access import record_access
from archive.blobstore import BlobNotFound, BlobStore
from archive.document_errors import ContentDamaged, DocumentNotFound
from archive.documents import parse_document_id
from archive.eventstore import ANY, EventStore, NewEvent, StreamName
from archive.grpcserver import InvalidArgument, current_correlation_id, current_principal
from archive.projections import ProjectionRunner
from archive.v1 import common_pb2, events_pb2, search_pb2, search_pb2_grpc
from services.search.registry import RegistryQueries

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DOWNLOAD_CHUNK_BYTES = 256 * 1024
# How long a lookup that misses, or a first page of a listing, waits for the registry to apply
# what the store already has (a deposit acknowledged a moment ago must be found and listed:
# read-your-writes across services).
CATCH_UP_SECONDS = 5.0
LISTING_CATEGORY = "listing"


class SearchServicer(search_pb2_grpc.SearchServicer):
    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        runner: ProjectionRunner,
        queries: RegistryQueries,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._runner = runner
        self._queries = queries

    async def GetDocument(
        self, request: search_pb2.GetDocumentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> search_pb2.DocumentInfo:
        info = await self._find(request.document_id.value)
        await record_access(self._store, current_principal(), info.document_id.value, "metadata")
        return info

    async def ListDocuments(
        self,
        request: search_pb2.ListDocumentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> search_pb2.ListDocumentsResponse:
        tenant = current_principal().tenant
        size = request.page.page_size or DEFAULT_PAGE_SIZE
        size = min(size, MAX_PAGE_SIZE)
        before = _decode_page_token(request.page.page_token)
        if before is None:
            # A first page reads its writes: a deposit receipted before the call is listed.
            await self._catch_up()
        documents = self._queries.page(
            tenant,
            before_position=before,
            limit=size + 1,  # one more tells whether another page exists
            document_class=request.document_class,
            metadata=dict(request.metadata),
        )
        next_token = ""
        if len(documents) > size:
            documents = documents[:size]
            next_token = _encode_page_token(documents[-1].event_position)
        if documents:
            await self._record_listing(request, documents)
        return search_pb2.ListDocumentsResponse(
            documents=documents, page=common_pb2.PageResponse(next_page_token=next_token)
        )

    async def Download(
        self, request: search_pb2.DownloadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[search_pb2.DownloadResponse]:
        info = await self._find(request.document_id.value)
        tenant = info.tenant.value
        sha256 = info.sha256.value.hex()
        try:
            content = await self._blobs.open(tenant, sha256, chunk_size=DOWNLOAD_CHUNK_BYTES)
        except BlobNotFound:
            log.error("content of document %s (%s) is missing", info.document_id.value, sha256)
            raise ContentDamaged(info.document_id.value, "its content is missing") from None
        async with content:
            await record_access(self._store, current_principal(), info.document_id.value, "content")
            yield search_pb2.DownloadResponse(info=info)
            # Re-hash while sending: a damaged blob ends the call with DATA_LOSS instead of OK.
            digest = hashlib.sha256()
            async for chunk in content:
                digest.update(chunk)
                yield search_pb2.DownloadResponse(chunk=chunk)
        if digest.digest() != info.sha256.value:
            log.error("content of document %s fails its SHA-256", info.document_id.value)
            raise ContentDamaged(info.document_id.value, "its content does not match its digest")

    async def _find(self, raw_id: str) -> search_pb2.DocumentInfo:
        tenant = current_principal().tenant
        if not raw_id:
            raise InvalidArgument("document_id.value", "give the id from the deposit receipt")
        document_id = parse_document_id(raw_id)
        info = self._queries.get(tenant, document_id)
        if info is None:
            # Maybe deposited a moment ago: let the registry catch up with the store once.
            await self._catch_up()
            info = self._queries.get(tenant, document_id)
        if info is None:
            raise DocumentNotFound(document_id)
        return info

    async def _catch_up(self) -> None:
        """Wait (a bounded time) until the registry has applied what the store holds now; a
        registry further behind answers with what it has, and says so in the log."""
        try:
            await self._runner.wait_for_store(CATCH_UP_SECONDS)
        except TimeoutError:
            log.warning("registry is behind the store by more than %ss", CATCH_UP_SECONDS)

    async def _record_listing(
        self,
        request: search_pb2.ListDocumentsRequest,
        documents: list[search_pb2.DocumentInfo],
    ) -> None:
        """One event per page served, naming what was shown (an empty page shows nothing)."""
        principal = current_principal()
        now = Timestamp()
        now.FromDatetime(datetime.now(UTC))
        event = events_pb2.DocumentsListed(
            tenant=common_pb2.TenantId(value=principal.tenant),
            accessed_by=principal.token_id,
            document_ids=[d.document_id.value for d in documents],
            document_class_filter=request.document_class,
            metadata_filter=request.metadata,
            accessed_at=now,
        )
        await self._store.append(
            StreamName(principal.tenant, LISTING_CATEGORY, principal.token_id or "operator"),
            [NewEvent.of(event, correlation_id=current_correlation_id())],
            ANY,
        )


def _encode_page_token(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith("p"):
            raise ValueError(text)
        return int(text[1:])
    except ValueError:
        raise InvalidArgument(
            "page.page_token", "pass back the next_page_token of a previous page unchanged"
        ) from None

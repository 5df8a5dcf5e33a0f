"""`ArchiveClient`: deposit, find, retrieve and administer, over one gRPC channel.

    async with ArchiveClient(ClientConfig.from_env()) as archive:
        receipt = await archive.upload(Path("invoice.pdf"), document_class="invoice")
        info = await archive.download(receipt.document_id, Path("copy.pdf"))

Safety rules the client keeps for its callers:
- Every upload carries an idempotency key (generated when none is given) and is retried with
  that same key on UNAVAILABLE / DEADLINE_EXCEEDED: a retry after a lost answer returns the
  original receipt (`replayed=True`) instead of storing the document twice.
- Content is hashed before sending and the SHA-256 announced in the header, so the server
  refuses bytes altered or cut short on the way (async iterables are spooled to a temporary
  file for this); the receipt's digest is checked against what was sent, too.
- Downloads are checked against the document's SHA-256 and size before they are visible:
  written to a temporary file next to the destination, fsynced, then renamed.
Reads are retried like uploads; administration calls are not (issuing a token twice is not
harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import tempfile
import uuid
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TypeVar

import grpc
import grpc.aio

from archive.client.bulk import DEFAULT_STREAMS, BulkUpload, UploadItem, UploadOutcome
from archive.client.config import ClientConfig
from archive.client.errors import (
    NOT_READY_REASON,
    ArchiveError,
    IntegrityError,
    NotReady,
    error_from_rpc,
    error_from_status,
    is_retryable,
    server_status_lost,
)
from archive.client.models import (
    ConsistencyProof,
    DocumentInfo,
    DocumentPage,
    Identity,
    IntegrityAuditReport,
    IssuedToken,
    Receipt,
    ScanProvenance,
    SignedCheckpoint,
)
from archive.v1 import (
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    sealing_pb2,
    sealing_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    tenancy_pb2,
    tenancy_pb2_grpc,
)

T = TypeVar("T")

DEFAULT_CHUNK_SIZE: Final = 256 * 1024
MAX_CHUNK_SIZE: Final = 1024 * 1024  # the Ingest contract: at most 1 MiB per chunk
_HASH_BLOCK: Final = 1024 * 1024
_SPOOL_IN_MEMORY: Final = 8 * 1024 * 1024
_LOST_STATUS_RETRIES: Final = 8
# A fresh deposit is covered by a checkpoint within about a second: a few waits suffice.
_NOT_READY_ATTEMPTS: Final = 6
_NOT_READY_DELAY: Final = 1.0
_CORRELATION_HEADER: Final = "x-correlation-id"
_USER_AGENT: Final = "archive-client-python/0.1"
# Keys per FindDeposits call: the server's limit.
FIND_BATCH: Final = 1000

UploadSource = Path | bytes | bytearray | memoryview | AsyncIterable[bytes]
ProgressCallback = Callable[[int], None]


class ArchiveClient:
    """Async client for the archive's gRPC API. Use it as an async context manager (or call
    `close()`); one client, one channel, any number of concurrent calls."""

    def __init__(self, config: ClientConfig, *, channel: grpc.aio.Channel | None = None) -> None:
        self.config = config
        self._channel = channel
        self._owns_channel = channel is None

    async def __aenter__(self) -> ArchiveClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._channel is not None and self._owns_channel:
            await self._channel.close()
        self._channel = None

    # ---- deposits ----

    async def upload(
        self,
        source: UploadSource,
        *,
        file_name: str | None = None,
        media_type: str = "",
        metadata: Mapping[str, str] | None = None,
        document_class: str = "",
        idempotency_key: str | None = None,
        scan_provenance: ScanProvenance | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_progress: ProgressCallback | None = None,
    ) -> Receipt:
        """Deposit one document and return its receipt once it is durable.

        `source` is a file path, bytes, or an async iterable of bytes. The content is hashed
        before it is sent and its SHA-256 announced, so the server refuses anything altered
        or cut short on the way; an async iterable is therefore first spooled to a temporary
        file (in memory up to 8 MiB). The upload is retried automatically, with the same
        idempotency key, while the service is briefly unavailable; if it still fails, the
        error's `idempotency_key` lets the caller retry later without a duplicate.
        `file_name` defaults to the path's name (required for other sources).
        `on_progress(n)` is called with each number of bytes sent (negative when a failed
        attempt's bytes are taken back before a retry).
        """
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")
        if isinstance(source, str):
            raise TypeError("pass a pathlib.Path for a file, or bytes for content, not a str")
        if isinstance(source, os.PathLike):
            file_name = Path(source).name if file_name is None else file_name
        if file_name is None:
            raise ValueError("file_name is required when the source is not a Path")
        key = idempotency_key or str(uuid.uuid4())
        async with _Content.of(source, chunk_size) as content:
            return await self._upload(
                content,
                key,
                file_name=file_name,
                media_type=media_type,
                metadata=metadata,
                document_class=document_class,
                scan_provenance=scan_provenance,
                on_progress=on_progress,
            )

    def upload_many(
        self,
        items: Iterable[UploadItem] | AsyncIterable[UploadItem],
        *,
        streams: int = DEFAULT_STREAMS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_progress: ProgressCallback | None = None,
    ) -> AsyncIterator[UploadOutcome]:
        """Deposit many documents over `streams` UploadMany calls and yield one
        `UploadOutcome` per item as each is answered (a receipt once durable, or the error).

        The way to deposit thousands of documents: each stream carries documents back to back
        instead of one call each, and the archive commits them in groups. Items are read
        lazily (a generator of a million items is fine) and each file is read when it is sent.
        Broken streams are re-sent with the same idempotency keys (see archive.client.bulk).
        `on_progress(n)` gets the size of each document deposited. Breaking out of the loop
        cancels what is in flight: those documents may or may not be stored, and their keys
        make a later run safe only if the caller gave them (`UploadItem.idempotency_key`).
        """
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")
        if streams < 1:
            raise ValueError("streams must be at least 1")
        bulk = BulkUpload(
            self._open(),
            lambda correlation_id: self._metadata(self.config.tenant_token(), correlation_id),
            self.config,
            items,
            streams=streams,
            chunk_size=chunk_size,
            on_progress=on_progress,
        )
        return bulk.outcomes()

    async def _upload(
        self,
        content: _Content,
        key: str,
        *,
        file_name: str,
        media_type: str,
        metadata: Mapping[str, str] | None,
        document_class: str,
        scan_provenance: ScanProvenance | None,
        on_progress: ProgressCallback | None,
    ) -> Receipt:
        header = ingest_pb2.UploadHeader(
            file_name=file_name,
            media_type=media_type,
            metadata=dict(metadata or {}),
            document_class=document_class,
            idempotency_key=key,
            expected_sha256_hex=content.sha256,
        )
        if scan_provenance is not None:
            header.scan_provenance.CopyFrom(scan_provenance.to_proto())
        sent_in_attempt = 0

        def progress(n: int) -> None:
            nonlocal sent_in_attempt
            sent_in_attempt += n
            if on_progress is not None:
                on_progress(n)

        async def attempt(correlation_id: str) -> Receipt:
            nonlocal sent_in_attempt
            if sent_in_attempt and on_progress is not None:
                on_progress(-sent_in_attempt)  # a retry sends everything again
            sent_in_attempt = 0
            return await self._upload_once(header, content.chunks(), progress, correlation_id)

        try:
            return await self._call(attempt, client_streaming=True)
        except ArchiveError as exc:
            exc.idempotency_key = key
            raise

    async def _upload_once(
        self,
        header: ingest_pb2.UploadHeader,
        chunks: AsyncIterator[bytes],
        progress: ProgressCallback,
        correlation_id: str,
    ) -> Receipt:
        sha256 = hashlib.sha256()
        local_error: list[BaseException] = []

        async def requests() -> AsyncIterator[ingest_pb2.UploadRequest]:
            # grpc consumes this in its own task. If it raises, grpc cancels the call (it
            # never half-closes it, which would store a truncated document) and swallows
            # the exception, so it is kept here to be raised in place of the cancellation.
            try:
                yield ingest_pb2.UploadRequest(header=header)
                sent = 0
                async for chunk in chunks:
                    sha256.update(chunk)
                    sent += len(chunk)
                    yield ingest_pb2.UploadRequest(chunk=chunk)
                    progress(len(chunk))
                # Only a stream that reaches its UploadEnd is stored: a cut-off one is not.
                yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=sent))
            except Exception as exc:
                local_error.append(exc)
                raise

        # The request-iterator form, not call.write(): when the server ends the call early
        # (a refused token), write() can report INTERNAL instead of the server's status.
        call = ingest_pb2_grpc.IngestStub(self._open()).Upload(
            requests(),
            metadata=self._metadata(self.config.tenant_token(), correlation_id),
            timeout=self.config.transfer_timeout,
        )
        try:
            response: ingest_pb2.DepositReceipt = await call
        except asyncio.CancelledError:
            if local_error:
                raise local_error[0] from None
            raise
        finally:
            with contextlib.suppress(Exception):
                await _aclose(chunks)
        receipt = Receipt.from_proto(response, header.idempotency_key)
        sent = sha256.hexdigest()
        # A replayed receipt describes the original deposit, which may legitimately differ
        # when a caller reuses a key for other content; only a fresh one must match.
        if not receipt.replayed and receipt.sha256 != sent:
            raise IntegrityError(
                f"the archive stored content with SHA-256 {receipt.sha256}, but {sent} was sent",
                expected=sent,
                actual=receipt.sha256,
                correlation_id=correlation_id,
            )
        return receipt

    async def find_deposits(
        self, keys: Sequence[tuple[str, str]]
    ) -> list[Receipt | ArchiveError | None]:
        """The receipts of earlier deposits by (idempotency key, SHA-256 hex of the content),
        without sending the content: one answer per key, in order, the original receipt
        (`replayed`), None when no deposit has the key (send the document), or the error an
        upload would give (IdempotencyKeyReused when the key names other content). Any number
        of keys; they go `FIND_BATCH` per call."""
        answers: list[Receipt | ArchiveError | None] = []
        for start in range(0, len(keys), FIND_BATCH):
            batch = keys[start : start + FIND_BATCH]
            request = ingest_pb2.FindDepositsRequest(
                keys=[ingest_pb2.DepositKey(idempotency_key=k, sha256_hex=d) for k, d in batch]
            )

            async def attempt(
                correlation_id: str, request: ingest_pb2.FindDepositsRequest = request
            ) -> ingest_pb2.FindDepositsResponse:
                found: ingest_pb2.FindDepositsResponse = await ingest_pb2_grpc.IngestStub(
                    self._open()
                ).FindDeposits(
                    request,
                    metadata=self._metadata(self.config.tenant_token(), correlation_id),
                    timeout=self.config.timeout,
                )
                return found

            response = await self._call(attempt)
            for (key, _), found in zip(batch, response.deposits, strict=True):
                kind = found.WhichOneof("result")
                if kind == "receipt":
                    answers.append(Receipt.from_proto(found.receipt, key))
                elif kind == "error":
                    error = error_from_status(found.error)
                    error.idempotency_key = key
                    answers.append(error)
                else:
                    answers.append(None)
        return answers

    # ---- the read side ----

    async def get_document(self, document_id: str) -> DocumentInfo:
        request = search_pb2.GetDocumentRequest(
            document_id=common_pb2.DocumentId(value=document_id)
        )

        async def attempt(correlation_id: str) -> DocumentInfo:
            response = await self._search().GetDocument(
                request,
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return DocumentInfo.from_proto(response)

        return await self._call(attempt)

    async def list_page(
        self,
        *,
        document_class: str = "",
        metadata: Mapping[str, str] | None = None,
        page_size: int = 100,
        page_token: str = "",
    ) -> DocumentPage:
        """One page of documents, newest first. Pass the returned `next_page_token` to get the
        next page; it is empty on the last one."""
        request = search_pb2.ListDocumentsRequest(
            page=common_pb2.PageRequest(page_size=page_size, page_token=page_token),
            document_class=document_class,
            metadata=dict(metadata or {}),
        )

        async def attempt(correlation_id: str) -> DocumentPage:
            response = await self._search().ListDocuments(
                request,
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return DocumentPage.from_proto(response)

        return await self._call(attempt)

    async def list_documents(
        self,
        *,
        document_class: str = "",
        metadata: Mapping[str, str] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[DocumentInfo]:
        """Every matching document, newest first, following the pages."""
        token = ""
        while True:
            page = await self.list_page(
                document_class=document_class,
                metadata=metadata,
                page_size=page_size,
                page_token=token,
            )
            for document in page.documents:
                yield document
            token = page.next_page_token
            if not token:
                return

    @contextlib.asynccontextmanager
    async def open_download(self, document_id: str) -> AsyncIterator[DownloadStream]:
        """Stream a document's content: `async with archive.open_download(id) as download:`
        then `download.info`, and `async for chunk in download`. The SHA-256 and size are
        checked when the last chunk has been read (IntegrityError then): until then, treat
        the bytes as unverified. Opening is retried; the stream itself is not."""
        stream = await self._call(lambda cid: self._open_download(document_id, cid))
        try:
            yield stream
        finally:
            stream.cancel()

    async def download(self, document_id: str, dest: str | os.PathLike[str]) -> DocumentInfo:
        """Save a document to `dest` and return its info. The content is written to a
        temporary file next to `dest`, checked against the SHA-256 and size the archive
        recorded, fsynced and renamed over `dest`. On a mismatch it raises IntegrityError and
        leaves no file behind (an existing `dest` is left as it was)."""
        target = Path(dest)

        async def attempt(correlation_id: str) -> DocumentInfo:
            stream = await self._open_download(document_id, correlation_id)
            try:
                await _save_verified(stream, target)
            finally:
                stream.cancel()
            return stream.info

        return await self._call(attempt)

    async def download_bytes(self, document_id: str) -> bytes:
        """A document's content in memory, checked against its SHA-256 and size."""

        async def attempt(correlation_id: str) -> bytes:
            stream = await self._open_download(document_id, correlation_id)
            try:
                return b"".join([chunk async for chunk in stream])
            finally:
                stream.cancel()

        return await self._call(attempt)

    async def _open_download(self, document_id: str, correlation_id: str) -> DownloadStream:
        call = self._search().Download(
            search_pb2.DownloadRequest(document_id=common_pb2.DocumentId(value=document_id)),
            metadata=self._metadata(self.config.tenant_token(), correlation_id),
            timeout=self.config.transfer_timeout,
        )
        try:
            first = await call.read()
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF or first.WhichOneof("part") != "info":
            call.cancel()
            raise ArchiveError(
                "protocol error: Download did not start with the document's info",
                reason="PROTOCOL_ERROR",
                correlation_id=correlation_id,
            )
        return DownloadStream(call, DocumentInfo.from_proto(first.info), correlation_id)

    # ---- evidence and the tenant's journal ----

    async def get_evidence(
        self, document_id: str, *, not_ready_attempts: int = _NOT_READY_ATTEMPTS
    ) -> bytes:
        """The evidence bundle (a ZIP) of a deposit, to check offline with
        `archive.verify.verify_evidence` or `archivectl verify`.

        A deposit is covered by a checkpoint about a second after it is made; until then the
        archive answers NOT_READY_YET, and this waits (the server's RetryInfo, else a second)
        and asks again, up to `not_ready_attempts` times, before raising NotReady."""
        if not_ready_attempts < 1:
            raise ValueError("not_ready_attempts must be at least 1")
        request = sealing_pb2.GetEvidenceRequest(
            document_id=common_pb2.DocumentId(value=document_id)
        )

        async def attempt(correlation_id: str) -> bytes:
            response = await self._sealing().GetEvidence(
                request,
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return bytes(response.zip)

        return await self._until_ready(attempt, not_ready_attempts)

    async def get_checkpoint(self, tree_size: int = 0) -> SignedCheckpoint:
        """The tenant's latest checkpoint (`tree_size=0`) or the one of that size, with its
        seal, time stamp and certificates. NotReady while the tenant has none yet."""
        request = sealing_pb2.GetCheckpointRequest(tree_size=tree_size)

        async def attempt(correlation_id: str) -> SignedCheckpoint:
            response = await self._sealing().GetCheckpoint(
                request,
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return SignedCheckpoint.from_proto(response)

        return await self._call(attempt)

    async def get_consistency_proof(self, from_size: int, to_size: int = 0) -> ConsistencyProof:
        """RFC 9162 consistency proof from the checkpoint of `from_size` leaves to the one of
        `to_size` (0: the latest), with both checkpoints. Verify it against a checkpoint you
        kept yourself (`archive.verify.verify_consistency_between`), not against the
        `from_checkpoint` sent along."""
        request = sealing_pb2.GetConsistencyProofRequest(from_size=from_size, to_size=to_size)

        async def attempt(correlation_id: str) -> ConsistencyProof:
            response = await self._sealing().GetConsistencyProof(
                request,
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return ConsistencyProof.from_proto(response)

        return await self._call(attempt)

    async def run_integrity_audit(self) -> IntegrityAuditReport:
        """Re-hash the tenant's stored content and check its journal against its log now.

        Takes as long as re-reading every document: no deadline other than the transfer one.
        Not retried: each run is recorded as an audit of its own."""

        async def attempt(correlation_id: str) -> IntegrityAuditReport:
            response = await self._sealing().RunIntegrityAudit(
                sealing_pb2.RunIntegrityAuditRequest(),
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.transfer_timeout,
            )
            return IntegrityAuditReport.from_proto(response)

        return await self._call(attempt, retry=False)

    async def _until_ready(self, attempt: Callable[[str], Awaitable[T]], attempts: int) -> T:
        """`_call(attempt)`, asked again while the archive answers NOT_READY_YET."""
        number = 0
        while True:
            number += 1
            try:
                return await self._call(attempt)
            except NotReady as exc:
                if exc.reason != NOT_READY_REASON or number >= attempts:
                    raise
                delay = exc.retry_delay if exc.retry_delay is not None else _NOT_READY_DELAY
                await asyncio.sleep(min(max(delay, 0.0), self.config.max_backoff))

    # ---- identity and administration ----

    async def whoami(self) -> Identity:
        async def attempt(correlation_id: str) -> Identity:
            response = await tenancy_pb2_grpc.TenancyStub(self._open()).WhoAmI(
                tenancy_pb2.WhoAmIRequest(),
                metadata=self._metadata(self.config.tenant_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return Identity(
                tenant=response.tenant.value,
                token_id=response.token_id,
                roles=tuple(response.roles),
            )

        return await self._call(attempt)

    async def create_tenant(self, tenant: str, display_name: str = "") -> IssuedToken:
        """Create a tenant (operator token) and return its first token, shown only once."""

        async def attempt(correlation_id: str) -> IssuedToken:
            response = await self._admin().CreateTenant(
                tenancy_pb2.CreateTenantRequest(
                    tenant=common_pb2.TenantId(value=tenant), display_name=display_name
                ),
                metadata=self._metadata(self.config.admin_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return IssuedToken.from_proto(response.tenant.value or tenant, response.token)

        return await self._call(attempt, retry=False)

    async def issue_token(
        self, tenant: str, description: str = "", roles: Sequence[str] = ()
    ) -> IssuedToken:
        """Issue another token for a tenant (operator token); shown only once. `roles`:
        "deposit", "read", "audit", "retention"; none given: deposit, read and audit."""

        async def attempt(correlation_id: str) -> IssuedToken:
            response = await self._admin().IssueToken(
                tenancy_pb2.IssueTokenRequest(
                    tenant=common_pb2.TenantId(value=tenant),
                    description=description,
                    roles=list(roles),
                ),
                metadata=self._metadata(self.config.admin_token(), correlation_id),
                timeout=self.config.timeout,
            )
            return IssuedToken.from_proto(tenant, response.token)

        return await self._call(attempt, retry=False)

    async def revoke_token(self, tenant: str, token_id: str) -> None:
        """Revoke a tenant token by its id (operator token); calls with it fail from then on."""

        async def attempt(correlation_id: str) -> None:
            await self._admin().RevokeToken(
                tenancy_pb2.RevokeTokenRequest(
                    tenant=common_pb2.TenantId(value=tenant), token_id=token_id
                ),
                metadata=self._metadata(self.config.admin_token(), correlation_id),
                timeout=self.config.timeout,
            )

        await self._call(attempt, retry=False)

    # ---- plumbing ----

    def _open(self) -> grpc.aio.Channel:
        # Created on first use, inside the running event loop that will drive it. Every call
        # carries a token, so a plaintext channel to another machine is refused before it is
        # opened (a channel given to the constructor is the caller's choice).
        if self._channel is None:
            self.config.check_token_transport()
            options = [("grpc.primary_user_agent", _USER_AGENT)]
            credentials = self.config.credentials()
            if credentials is not None:
                self._channel = grpc.aio.secure_channel(
                    self.config.endpoint, credentials, options=options
                )
            else:
                self._channel = grpc.aio.insecure_channel(self.config.endpoint, options=options)
            self._owns_channel = True
        return self._channel

    def _search(self) -> search_pb2_grpc.SearchStub:
        return search_pb2_grpc.SearchStub(self._open())

    def _sealing(self) -> sealing_pb2_grpc.SealingStub:
        return sealing_pb2_grpc.SealingStub(self._open())

    def _admin(self) -> tenancy_pb2_grpc.TenantAdminStub:
        return tenancy_pb2_grpc.TenantAdminStub(self._open())

    @staticmethod
    def _metadata(token: str, correlation_id: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"), (_CORRELATION_HEADER, correlation_id))

    async def _call(
        self,
        attempt: Callable[[str], Awaitable[T]],
        *,
        retry: bool = True,
        client_streaming: bool = False,
    ) -> T:
        """Run `attempt` and turn gRPC errors into typed ones; when `retry`, repeat it on
        UNAVAILABLE / DEADLINE_EXCEEDED with exponential backoff and jitter, waiting at least
        what the server's RetryInfo asks. Each attempt gets its own correlation id.
        `client_streaming` calls are also repeated when grpc lost the server's status (see
        `server_status_lost`); only idempotent calls may set it."""
        backoff = self.config.initial_backoff
        attempts = self.config.max_attempts if retry else 1
        number = lost = 0
        while True:
            number += 1
            correlation_id = uuid.uuid4().hex
            try:
                return await attempt(correlation_id)
            except grpc.aio.AioRpcError as rpc_error:
                if (
                    client_streaming
                    and lost < _LOST_STATUS_RETRIES
                    and server_status_lost(rpc_error)
                ):
                    lost += 1
                    number -= 1  # not the service's failure: it does not use up a retry
                    continue
                error = error_from_rpc(rpc_error, correlation_id)
                error.attempts = number
                if number >= attempts or not is_retryable(error):
                    raise error from rpc_error
            except ArchiveError as archive_error:
                # Already typed, e.g. UNAVAILABLE in the middle of a download stream.
                error = archive_error
                error.attempts = number
                if number >= attempts or not is_retryable(error):
                    raise
            await asyncio.sleep(max(backoff * random.uniform(0.5, 1.0), error.retry_delay or 0.0))
            backoff = min(backoff * 2, self.config.max_backoff)


class DownloadStream:
    """An open download: `info` now, the content by iterating (once). Iteration raises
    IntegrityError after the last chunk if the SHA-256 or size differ from `info`."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[search_pb2.DownloadRequest, search_pb2.DownloadResponse],
        info: DocumentInfo,
        correlation_id: str,
    ) -> None:
        self._call = call
        self.info = info
        self.correlation_id = correlation_id
        self._consumed = False

    def cancel(self) -> None:
        self._call.cancel()

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._consumed:
            raise RuntimeError("a download stream can be read only once")
        self._consumed = True
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        sha256 = hashlib.sha256()
        size = 0
        while True:
            try:
                message = await self._call.read()
            except grpc.aio.AioRpcError as rpc_error:
                raise error_from_rpc(rpc_error, self.correlation_id) from rpc_error
            if message is grpc.aio.EOF:
                break
            if not isinstance(message, search_pb2.DownloadResponse) or (
                message.WhichOneof("part") != "chunk"
            ):
                raise ArchiveError(
                    "protocol error: Download sent something other than content after the info",
                    reason="PROTOCOL_ERROR",
                    correlation_id=self.correlation_id,
                )
            sha256.update(message.chunk)
            size += len(message.chunk)
            yield message.chunk
        self._verify(sha256.hexdigest(), size)

    def _verify(self, sha256: str, size: int) -> None:
        if size != self.info.size:
            raise IntegrityError(
                f"document {self.info.document_id}: received {size} bytes, "
                f"the archive recorded {self.info.size}",
                expected=str(self.info.size),
                actual=str(size),
                reason="SIZE_MISMATCH",
                correlation_id=self.correlation_id,
            )
        if sha256 != self.info.sha256:
            raise IntegrityError(
                f"document {self.info.document_id}: received content with SHA-256 {sha256}, "
                f"the archive recorded {self.info.sha256}",
                expected=self.info.sha256,
                actual=sha256,
                reason="DIGEST_MISMATCH",
                correlation_id=self.correlation_id,
            )


# ---- local file work (in threads, so concurrent transfers keep the event loop free) ----


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _Content:
    """Upload content that can be hashed up front and read again for each retry."""

    def __init__(self, sha256: str, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self.sha256 = sha256
        self.chunks = chunks

    @classmethod
    @contextlib.asynccontextmanager
    async def of(cls, source: UploadSource, chunk_size: int) -> AsyncIterator[_Content]:
        if isinstance(source, os.PathLike):
            path = Path(source)
            digest = await asyncio.to_thread(_sha256_file, path)
            yield cls(digest, lambda: _file_chunks(lambda: path.open("rb"), chunk_size))
        elif isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            yield cls(hashlib.sha256(data).hexdigest(), lambda: _bytes_chunks(data, chunk_size))
        else:
            # Streaming it straight through would leave the server nothing to check the end
            # against: a cancelled stream can look complete to it (grpc ends the request
            # stream before it reports the cancellation). Spooling buys the digest, and
            # retries.
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
            try:
                hasher = hashlib.sha256()
                async for piece in source:
                    hasher.update(piece)
                    await asyncio.to_thread(spool.write, piece)
                yield cls(hasher.hexdigest(), lambda: _file_chunks(lambda: spool, chunk_size))
            finally:
                spool.close()


async def _file_chunks(opener: Callable[[], IO[bytes]], chunk_size: int) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(opener)
    await asyncio.to_thread(file.seek, 0)
    try:
        while chunk := await asyncio.to_thread(file.read, chunk_size):
            yield chunk
    finally:
        if not isinstance(file, tempfile.SpooledTemporaryFile):
            file.close()


async def _bytes_chunks(content: bytes, chunk_size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(content), chunk_size):
        yield content[start : start + chunk_size]


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def _save_verified(stream: DownloadStream, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    file: IO[bytes] = await asyncio.to_thread(temporary.open, "xb")
    try:
        try:
            async for chunk in stream:
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(_flush_and_sync, file)
        finally:
            file.close()
        # Only verified, durable content ever takes the destination's name.
        await asyncio.to_thread(os.replace, temporary, target)
        await asyncio.to_thread(_sync_directory, target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def _flush_and_sync(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())


def _sync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (e.g. Windows).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

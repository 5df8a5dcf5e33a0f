"""An in-memory archive speaking the real gRPC contracts, for client and CLI tests.

`FakeArchive` holds the state (tenants, tokens, documents) and a few knobs to make it
misbehave; `FakeArchiveServer` serves Ingest, Search, Tenancy and TenantAdmin on a free port
from a background thread with its own event loop, so that both async tests and code that calls
`asyncio.run` itself (the CLI) can talk to it.

It follows the contracts and docs/errors.md where the client can tell: bearer tokens checked
per service kind, errors with google.rpc details (ErrorInfo with correlation id, BadRequest,
RetryInfo), idempotency keys, newest-first cursor paging, Download as info then chunks.
It is not the real services: no event store, no blob store, no format identification beyond
recognising a PDF.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import string
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from archive.v1 import (
    common_pb2,
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    tenancy_pb2,
    tenancy_pb2_grpc,
)

Context = grpc.aio.ServicerContext[Any, Any]

OPERATOR_TOKEN = "fake-operator-token-0123456789abcdef"
MAX_CHUNK = 1024 * 1024
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BAD_FILE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass
class InjectedError:
    code: grpc.StatusCode
    reason: str
    message: str
    retry_delay: float | None = None
    violations: Sequence[tuple[str, str]] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class TokenRecord:
    tenant: str
    token_id: str
    revoked: bool = False


@dataclass
class StoredDocument:
    info: search_pb2.DocumentInfo
    content: bytes


@dataclass
class FakeArchive:
    """State and knobs. Tests may change knobs between calls (the server thread only reads
    them while serving a call)."""

    operator_token: str = OPERATOR_TOKEN
    tenants: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    documents: dict[str, dict[str, StoredDocument]] = field(default_factory=dict)
    receipts: dict[tuple[str, str], ingest_pb2.DepositReceipt] = field(default_factory=dict)
    position: int = 0
    # Knobs.
    fail_after_store: int = 0  # store the deposit, then answer UNAVAILABLE (a lost answer)
    corrupt_downloads: bool = False  # flip a byte of every downloaded content
    max_size_bytes: int | None = None  # RESOURCE_EXHAUSTED / BLOB_TOO_LARGE above this
    download_chunk_size: int = 64 * 1024
    injected: dict[str, list[InjectedError]] = field(default_factory=dict)
    # Observations.
    calls: list[str] = field(default_factory=list)
    upload_headers: list[ingest_pb2.UploadHeader] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)

    def add_tenant(self, tenant: str, display_name: str = "") -> str:
        """Create a tenant directly and return its first token."""
        self.tenants[tenant] = display_name
        self.documents.setdefault(tenant, {})
        return self.new_token(tenant)[1]

    def new_token(self, tenant: str) -> tuple[str, str]:
        alphabet = string.ascii_lowercase + string.digits
        token_id = "".join(secrets.choice(alphabet) for _ in range(12))
        token = f"arc_{token_id}_{secrets.token_urlsafe(32)}"
        self.tokens[token] = TokenRecord(tenant, token_id)
        return token_id, token

    def inject(
        self,
        method: str,
        code: grpc.StatusCode,
        reason: str,
        message: str = "injected failure",
        *,
        times: int = 1,
        retry_delay: float | None = None,
        violations: Sequence[tuple[str, str]] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Make the next `times` calls of `method` (e.g. "Upload") fail after authentication."""
        error = InjectedError(code, reason, message, retry_delay, violations, metadata or {})
        self.injected.setdefault(method, []).extend([error] * times)

    def document_count(self, tenant: str) -> int:
        return len(self.documents.get(tenant, {}))


# ---- errors with google.rpc details, as the real servers send them ----


async def abort(
    context: Context,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    *,
    violations: Sequence[tuple[str, str]] = (),
    retry_delay: float | None = None,
    metadata: dict[str, str] | None = None,
) -> NoReturn:
    details: dict[str, str] = {"correlation_id": _correlation_id(context), **(metadata or {})}
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain="archive.v1", metadata=details)
    )
    if violations:
        status.details.add().Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
    if retry_delay is not None:
        delay = Duration()
        delay.FromNanoseconds(int(retry_delay * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    rich = rpc_status.to_status(status)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)
    raise AssertionError("abort returned")


async def invalid(context: Context, field_path: str, description: str) -> NoReturn:
    await abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        f"{field_path}: {description}",
        violations=[(field_path, description)],
    )


def _correlation_id(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-correlation-id":
            return str(value)
    return uuid.uuid4().hex


def _bearer(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class _Base:
    def __init__(self, archive: FakeArchive) -> None:
        self.archive = archive

    async def _enter(self, context: Context, method: str, *, operator: bool = False) -> str:
        """Authenticate like the real interceptor, record the call, apply injected errors;
        returns the caller's tenant ("" for the operator)."""
        archive = self.archive
        archive.calls.append(method)
        archive.correlation_ids.append(_correlation_id(context))
        token = _bearer(context)
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        if not token:
            await abort(context, unauthenticated, "UNAUTHENTICATED", "missing credentials")
        record = archive.tokens.get(token)
        if operator:
            if token != archive.operator_token:
                if record is not None and not record.revoked:
                    await abort(
                        context,
                        grpc.StatusCode.PERMISSION_DENIED,
                        "PERMISSION_DENIED",
                        "tenant tokens cannot administer tenants",
                    )
                await abort(context, unauthenticated, "UNAUTHENTICATED", "not the operator token")
            tenant = ""
        else:
            if token == archive.operator_token:
                await abort(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    "PERMISSION_DENIED",
                    "the operator token cannot call tenant methods",
                )
            if record is None:
                await abort(context, unauthenticated, "UNAUTHENTICATED", "unknown token")
            if record.revoked:
                await abort(context, unauthenticated, "UNAUTHENTICATED", "token revoked")
            tenant = record.tenant
        pending = archive.injected.get(method)
        if pending:
            error = pending.pop(0)
            await abort(
                context,
                error.code,
                error.reason,
                error.message,
                violations=error.violations,
                retry_delay=error.retry_delay,
                metadata=error.metadata,
            )
        return tenant


def _now() -> Timestamp:
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    return timestamp


def _digest(algorithm: int, value: bytes) -> common_pb2.Digest:
    return common_pb2.Digest(algorithm=algorithm, value=value)  # type: ignore[arg-type]


class FakeIngest(_Base, ingest_pb2_grpc.IngestServicer):
    async def Upload(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadRequest], context: Context
    ) -> ingest_pb2.DepositReceipt:
        tenant = await self._enter(context, "Upload")
        archive = self.archive
        header: ingest_pb2.UploadHeader | None = None
        content = bytearray()
        ended = False
        async for request in request_iterator:
            part = request.WhichOneof("part")
            if header is None:
                if part != "header":
                    await invalid(context, "header", "the first message must be the header")
                header = request.header
                archive.upload_headers.append(header)
                continue
            if part == "end":
                if request.end.size_bytes != len(content):
                    await invalid(context, "end.size_bytes", "not the size that arrived")
                ended = True
                continue
            if part != "chunk":
                await invalid(context, "header", "only one header, first")
            if len(request.chunk) > MAX_CHUNK:
                await invalid(context, "chunk", "at most 1 MiB per chunk")
            content.extend(request.chunk)
            if archive.max_size_bytes is not None and len(content) > archive.max_size_bytes:
                await abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "BLOB_TOO_LARGE",
                    f"content over the limit of {archive.max_size_bytes} bytes",
                    metadata={"limit_bytes": str(archive.max_size_bytes)},
                )
        if header is None:
            await invalid(context, "header", "required")
        if not ended:
            await invalid(context, "end", "the upload stopped before its UploadEnd")
        if not header.file_name or _BAD_FILE_NAME.search(header.file_name):
            await invalid(context, "header.file_name", "a plain file name, no directory")
        if header.idempotency_key and (tenant, header.idempotency_key) in archive.receipts:
            replay = ingest_pb2.DepositReceipt()
            replay.CopyFrom(archive.receipts[(tenant, header.idempotency_key)])
            replay.replayed = True
            return replay
        data = bytes(content)
        sha256 = hashlib.sha256(data).digest()
        if header.expected_sha256_hex and header.expected_sha256_hex != sha256.hex():
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "DIGEST_MISMATCH",
                "the content's SHA-256 differs from expected_sha256_hex; nothing was stored",
                metadata={"expected": header.expected_sha256_hex, "actual": sha256.hex()},
            )
        archive.position += 1
        is_pdf = data.startswith(b"%PDF-")
        identified = events_pb2.IdentifiedFormat(
            puid="fmt/276" if is_pdf else "",
            media_type="application/pdf" if is_pdf else "",
            name="Acrobat PDF 1.7" if is_pdf else "",
            identified_by="fake",
        )
        document_id = str(uuid.uuid4())
        common = {
            "tenant": common_pb2.TenantId(value=tenant),
            "document_id": common_pb2.DocumentId(value=document_id),
            "sha256": _digest(common_pb2.DIGEST_ALGORITHM_SHA256, sha256),
            "sha512": _digest(common_pb2.DIGEST_ALGORITHM_SHA512, hashlib.sha512(data).digest()),
            "size_bytes": len(data),
            "file_name": header.file_name,
            "media_type": header.media_type or "application/octet-stream",
            "format": identified,
            "received_at": _now(),
            "event_position": archive.position,
        }
        info = search_pb2.DocumentInfo(
            **common,
            metadata=dict(header.metadata),
            document_class=header.document_class,
        )
        if header.HasField("scan_provenance"):
            info.scan_provenance.CopyFrom(header.scan_provenance)
        archive.documents.setdefault(tenant, {})[document_id] = StoredDocument(info, data)
        receipt = ingest_pb2.DepositReceipt(**common)
        if header.idempotency_key:
            archive.receipts[(tenant, header.idempotency_key)] = receipt
        if archive.fail_after_store > 0:
            archive.fail_after_store -= 1
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "STORE_UNAVAILABLE",
                "the answer was lost",
                retry_delay=0.01,
            )
        return receipt

    async def UploadMany(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadRequest], context: Context
    ) -> AsyncIterator[ingest_pb2.UploadManyResult]:
        """Each document is handled as an Upload of its own (authentication, injected errors
        and all), its abort turned into that document's status; the stream goes on."""
        await self._enter(context, "UploadMany")
        document: list[ingest_pb2.UploadRequest] = []
        index = 0
        async for request in request_iterator:
            part = request.WhichOneof("part")
            if (part == "header") == bool(document):
                await invalid(context, "header", "each document: one header, content, an end")
            document.append(request)
            if part != "end":
                continue
            one = _DocumentContext(context)
            try:
                receipt = await self.Upload(_replay(document), one)  # type: ignore[arg-type]
            except _DocumentAborted as aborted:
                yield ingest_pb2.UploadManyResult(index=index, error=aborted.status)
            else:
                yield ingest_pb2.UploadManyResult(index=index, receipt=receipt)
            document = []
            index += 1
        if document:
            await invalid(context, "end", "the stream ended inside a document")


class _DocumentAborted(Exception):
    def __init__(self, status: status_pb2.Status) -> None:
        self.status = status


class _DocumentContext:
    """A servicer context for one document of an UploadMany stream: abort ends the document,
    not the call."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    async def abort(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> NoReturn:
        for key, value in trailing or ():
            if key == "grpc-status-details-bin":
                raise _DocumentAborted(status_pb2.Status.FromString(value))
        raise _DocumentAborted(status_pb2.Status(code=code.value[0], message=details))


async def _replay(
    messages: Sequence[ingest_pb2.UploadRequest],
) -> AsyncIterator[ingest_pb2.UploadRequest]:
    for message in messages:
        yield message


class FakeSearch(_Base, search_pb2_grpc.SearchServicer):
    async def GetDocument(
        self, request: search_pb2.GetDocumentRequest, context: Context
    ) -> search_pb2.DocumentInfo:
        tenant = await self._enter(context, "GetDocument")
        return (await self._find(context, tenant, request.document_id.value)).info

    async def ListDocuments(
        self, request: search_pb2.ListDocumentsRequest, context: Context
    ) -> search_pb2.ListDocumentsResponse:
        tenant = await self._enter(context, "ListDocuments")
        size = min(request.page.page_size or 50, 1000)
        before: int | None = None
        if request.page.page_token:
            if not request.page.page_token.isdigit():
                await invalid(context, "page.page_token", "not a token from a previous page")
            before = int(request.page.page_token)
        matching = [
            stored.info
            for stored in self.archive.documents.get(tenant, {}).values()
            if (not request.document_class or stored.info.document_class == request.document_class)
            and all(stored.info.metadata.get(k) == v for k, v in request.metadata.items())
            and (before is None or stored.info.event_position < before)
        ]
        matching.sort(key=lambda info: info.event_position, reverse=True)
        page = matching[:size]
        more = len(matching) > size
        return search_pb2.ListDocumentsResponse(
            documents=page,
            page=common_pb2.PageResponse(
                next_page_token=str(page[-1].event_position) if more else ""
            ),
        )

    async def Download(
        self, request: search_pb2.DownloadRequest, context: Context
    ) -> AsyncIterator[search_pb2.DownloadResponse]:
        tenant = await self._enter(context, "Download")
        stored = await self._find(context, tenant, request.document_id.value)
        yield search_pb2.DownloadResponse(info=stored.info)
        content = stored.content
        if self.archive.corrupt_downloads and content:
            content = bytes([content[0] ^ 0x01]) + content[1:]
        step = self.archive.download_chunk_size
        for start in range(0, len(content), step):
            yield search_pb2.DownloadResponse(chunk=content[start : start + step])

    async def _find(self, context: Context, tenant: str, document_id: str) -> StoredDocument:
        if not _UUID_RE.match(document_id):
            await invalid(context, "document_id.value", "a UUID in canonical text form")
        stored = self.archive.documents.get(tenant, {}).get(document_id)
        if stored is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "DOCUMENT_NOT_FOUND",
                f"no document {document_id} for this tenant",
            )
        return stored


class FakeTenancy(_Base, tenancy_pb2_grpc.TenancyServicer):
    async def WhoAmI(
        self, request: tenancy_pb2.WhoAmIRequest, context: Context
    ) -> tenancy_pb2.WhoAmIResponse:
        tenant = await self._enter(context, "WhoAmI")
        token_id = self.archive.tokens[_bearer(context)].token_id
        return tenancy_pb2.WhoAmIResponse(
            tenant=common_pb2.TenantId(value=tenant), token_id=token_id
        )


class FakeTenantAdmin(_Base, tenancy_pb2_grpc.TenantAdminServicer):
    async def CreateTenant(
        self, request: tenancy_pb2.CreateTenantRequest, context: Context
    ) -> tenancy_pb2.CreateTenantResponse:
        await self._enter(context, "CreateTenant", operator=True)
        tenant = request.tenant.value
        if not _TENANT_RE.match(tenant):
            await invalid(context, "tenant.value", "lower-case letters, digits and hyphens")
        if tenant in self.archive.tenants:
            await abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                "TENANT_ALREADY_EXISTS",
                f"tenant {tenant!r} already exists",
                metadata={"tenant": tenant},
            )
        self.archive.tenants[tenant] = request.display_name
        token_id, token = self.archive.new_token(tenant)
        return tenancy_pb2.CreateTenantResponse(
            tenant=common_pb2.TenantId(value=tenant),
            token=tenancy_pb2.IssuedToken(token_id=token_id, token=token, issued_at=_now()),
        )

    async def IssueToken(
        self, request: tenancy_pb2.IssueTokenRequest, context: Context
    ) -> tenancy_pb2.IssueTokenResponse:
        await self._enter(context, "IssueToken", operator=True)
        tenant = await self._known_tenant(context, request.tenant.value)
        token_id, token = self.archive.new_token(tenant)
        return tenancy_pb2.IssueTokenResponse(
            token=tenancy_pb2.IssuedToken(token_id=token_id, token=token, issued_at=_now())
        )

    async def RevokeToken(
        self, request: tenancy_pb2.RevokeTokenRequest, context: Context
    ) -> tenancy_pb2.RevokeTokenResponse:
        await self._enter(context, "RevokeToken", operator=True)
        tenant = await self._known_tenant(context, request.tenant.value)
        for record in self.archive.tokens.values():
            if record.tenant == tenant and record.token_id == request.token_id:
                record.revoked = True
                return tenancy_pb2.RevokeTokenResponse()
        await abort(
            context,
            grpc.StatusCode.NOT_FOUND,
            "TOKEN_NOT_FOUND",
            f"tenant {tenant!r} has no token {request.token_id!r}",
            metadata={"tenant": tenant, "token_id": request.token_id},
        )

    async def _known_tenant(self, context: Context, tenant: str) -> str:
        if tenant not in self.archive.tenants:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                "TENANT_NOT_FOUND",
                f"no tenant {tenant!r}",
                metadata={"tenant": tenant},
            )
        return tenant


class FakeArchiveServer:
    """Serves a FakeArchive on 127.0.0.1:<free port> from a background thread.

    with FakeArchiveServer() as server:
        token = server.archive.add_tenant("acme")
        ... ClientConfig(server.endpoint, token=token) ...
    """

    def __init__(self, archive: FakeArchive | None = None) -> None:
        self.archive = archive or FakeArchive()
        self.endpoint = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fake-archive", daemon=True)

    def __enter__(self) -> FakeArchiveServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake archive server did not start")
        if self._error is not None:
            raise RuntimeError("fake archive server failed to start") from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Stop from inside the server's own loop: grpc.aio objects belong to their loop.
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServicer_to_server(FakeIngest(self.archive), server)
        search_pb2_grpc.add_SearchServicer_to_server(FakeSearch(self.archive), server)
        tenancy_pb2_grpc.add_TenancyServicer_to_server(FakeTenancy(self.archive), server)
        tenancy_pb2_grpc.add_TenantAdminServicer_to_server(FakeTenantAdmin(self.archive), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.endpoint = f"127.0.0.1:{port}"
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop(None)

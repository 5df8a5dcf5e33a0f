"""Integrity audits on the in-memory adapters with real keys and a real (in-process) TSA, and
through the real Sealing servicer over gRPC: what an audit finds, that it reads only its
tenant, that its report stays bounded, one audit per tenant at a time, and the whole-store
audit for the operator only."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from archive.blobstore import DEFAULT_CHUNK_SIZE, BlobStream, InMemoryBlobStore
from archive.config import Secret, Settings
from archive.eventstore import (
    NO_STREAM,
    NewEvent,
    RecordedEvent,
    StreamFilter,
    StreamName,
)
from archive.eventstore.memory import InMemoryEventStore
from archive.eventstore.port import DEFAULT_MAX_EVENT_BYTES
from archive.sealing.cms import seal_detached
from archive.sealing.keys import DevelopmentPKI
from archive.tenancy.commands import create_tenant
from archive.tenancy.registry import TenantRegistry
from archive.v1 import common_pb2, events_pb2, sealing_pb2, sealing_pb2_grpc
from services.sealing.audit import MAX_DESCRIPTION_CHARS, MAX_LISTED_FAILURES, run_audit
from services.sealing.dev_tsa import InProcessTsa, TimeStampAuthority
from services.sealing.main import Keys, build, checkpoint_verifier, timestamper
from services.sealing.sealer import Sealer
from services.sealing.tsa_client import TsaClient, TsaTrust

OPERATOR = "operator-token-for-audit-tests-0123456"


class RecordingEventStore(InMemoryEventStore):
    """The in-memory store, noting the stream of every event it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_out: list[StreamName] = []

    async def read_stream(
        self, stream: StreamName | str, from_version: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        async for event in super().read_stream(stream, from_version):
            self.handed_out.append(event.stream)
            yield event

    async def read_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        async for event in super().read_all(after, filter):
            self.handed_out.append(event.stream)
            yield event


class GatedBlobStore(InMemoryBlobStore):
    """The in-memory blob store, noting who opens content; a tenant with a gate waits at it."""

    def __init__(self) -> None:
        super().__init__()
        self.opened_by: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, asyncio.Event] = {}

    def hold(self, tenant: str) -> asyncio.Event:
        self.waiting[tenant] = asyncio.Event()
        self.gates[tenant] = asyncio.Event()
        return self.gates[tenant]

    async def open(
        self, tenant: str, sha256: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobStream:
        self.opened_by.append(tenant)
        if tenant in self.gates:
            self.waiting[tenant].set()
            await self.gates[tenant].wait()
        return await super().open(tenant, sha256, chunk_size=chunk_size)


@dataclass
class Archive:
    pki: DevelopmentPKI
    store: RecordingEventStore = field(default_factory=RecordingEventStore)
    blobs: GatedBlobStore = field(default_factory=GatedBlobStore)
    offered: int = 0  # position up to which the sealer has been offered events

    def __post_init__(self) -> None:
        keys = Keys.of_development_pki(self.pki)
        tsa = TsaClient(
            InProcessTsa(TimeStampAuthority(self.pki.tsa_signer())),
            TsaTrust(keys.tsa_roots, keys.tsa_chain),
        )
        self.sealer = Sealer(
            self.store,
            origin="archive.test",
            seal=lambda data: seal_detached(data, keys.seal),
            timestamp=timestamper(tsa),
            max_leaves=1000,
            max_delay=0.0,
        )
        self.verify = checkpoint_verifier(keys)

    async def deposit(self, tenant: str, content: bytes, *, keep_content: bool = True) -> str:
        """A deposit event; its content is stored unless `keep_content` is False (lost)."""
        if keep_content:
            await self.blobs.put(tenant, one_chunk(content))
        document_id = str(uuid.uuid4())
        event = events_pb2.DocumentIngested(
            tenant=common_pb2.TenantId(value=tenant),
            document_id=common_pb2.DocumentId(value=document_id),
            sha256=common_pb2.Digest(value=hashlib.sha256(content).digest()),
            sha512=common_pb2.Digest(value=hashlib.sha512(content).digest()),
            size_bytes=len(content),
        )
        await self.store.append(
            StreamName(tenant, "document", document_id), [NewEvent.of(event)], NO_STREAM
        )
        return document_id

    async def seal(self) -> None:
        """Seal everything stored so far, as the running sealer would."""
        async for event in self.store.read_all(self.offered):
            self.sealer.offer(event)
            self.offered = event.position
        await self.sealer.seal_due()

    async def audit(self, tenant: str, **kwargs: int) -> events_pb2.IntegrityAuditCompleted:
        return await run_audit(
            self.store,
            self.blobs,
            self.sealer.logs[tenant],
            self.verify,
            trigger="on-demand",
            **kwargs,  # type: ignore[arg-type]
        )

    def alter(self, document_id: str) -> None:
        """Rewrite a stored deposit's recorded size, as someone with storage access could."""
        index = next(i for i, e in enumerate(self.store._all) if document_id in str(e.stream))
        forged = events_pb2.DocumentIngested.FromString(self.store._all[index].data)
        forged.size_bytes += 1
        self.store._all[index] = dataclasses.replace(
            self.store._all[index], data=forged.SerializeToString()
        )


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def archive(pki: DevelopmentPKI) -> Archive:
    return Archive(pki)


def checks_of(report: events_pb2.IntegrityAuditCompleted) -> dict[str, tuple[int, int]]:
    return {count.kind: (count.checked, count.failed) for count in report.checks}


# ---- what an audit finds, and what it reads ----


async def test_audit_reports_an_event_altered_after_sealing(archive: Archive) -> None:
    documents = [await archive.deposit("acme", content) for content in (b"first", b"second")]
    await archive.seal()

    clean = await archive.audit("acme")
    assert list(clean.failures) == [] and clean.events_checked == 2
    assert checks_of(clean) == {
        "journal": (2, 0),
        "log": (1, 0),
        "seal": (1, 0),
        "content": (2, 0),
    }

    archive.alter(documents[1])
    report = await archive.audit("acme")
    assert [(f.kind, f.document_id) for f in report.failures] == [("journal", documents[1])]
    assert "differs from what was sealed" in report.failures[0].description
    # The report is itself an event of the tenant, so the next checkpoint seals it.
    audits = [e async for e in archive.store.read_all() if e.stream.category == "audit"]
    assert [e.decode().audit_id for e in audits] == [clean.audit_id, report.audit_id]


async def test_a_tenants_audit_reads_only_that_tenant_even_when_another_is_damaged(
    archive: Archive,
) -> None:
    await create_tenant(archive.store, "acme")
    await create_tenant(archive.store, "globex")
    await archive.deposit("acme", b"acme's document")
    altered = await archive.deposit("globex", b"globex's first document")
    lost = await archive.deposit("globex", b"globex's second document", keep_content=False)
    await archive.seal()
    archive.alter(altered)

    archive.store.handed_out.clear()
    archive.blobs.opened_by.clear()
    report = await archive.audit("acme")

    assert list(report.failures) == [] and report.documents_checked == 1
    # acme's streams, and acme's record in the system tenant stream (a leaf of its log too).
    assert {
        (s.tenant, s.id if s.tenant == "_system" else "") for s in archive.store.handed_out
    } == {
        ("acme", ""),
        ("_system", "acme"),
    }
    assert set(archive.blobs.opened_by) == {"acme"}
    # globex's damage is real: its own audit finds both.
    damaged = await archive.audit("globex")
    assert {(f.kind, f.document_id) for f in damaged.failures} == {
        ("journal", altered),
        ("content", lost),
    }


async def test_the_report_lists_the_first_failures_and_counts_the_rest(
    archive: Archive,
) -> None:
    lost = MAX_LISTED_FAILURES + 30
    for number in range(lost):
        await archive.deposit("acme", b"lost document %d" % number, keep_content=False)
    await archive.seal()
    # A verifier's reason can be long; a listed failure is cut all the same.
    archive.verify = lambda checkpoint: "x" * (10 * MAX_DESCRIPTION_CHARS)

    report = await archive.audit("acme")

    assert len(report.failures) == MAX_LISTED_FAILURES
    assert report.failures_not_listed == lost + 1 - MAX_LISTED_FAILURES
    assert report.failures[0].kind == "seal"
    assert len(report.failures[0].description) == MAX_DESCRIPTION_CHARS
    assert checks_of(report)["content"] == (lost, lost)
    assert checks_of(report)["seal"] == (1, 1)
    assert report.ByteSize() < DEFAULT_MAX_EVENT_BYTES // 4
    stored = [e async for e in archive.store.read_all() if e.stream.category == "audit"]
    assert [e.decode().audit_id for e in stored] == [report.audit_id]


# ---- through the Sealing service ----


@dataclass
class Service:
    stub: sealing_pb2_grpc.SealingStub
    tokens: dict[str, tuple[tuple[str, str], ...]]
    operator: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {OPERATOR}"),)


@pytest.fixture
async def service(archive: Archive, tmp_path: Path) -> AsyncIterator[Service]:
    tokens = {}
    for tenant in ("acme", "globex"):
        created = await create_tenant(archive.store, tenant)
        tokens[tenant] = (("authorization", f"Bearer {created.token.token.reveal()}"),)
    settings = Settings(data_dir=tmp_path, grpc_port=0, operator_token=Secret(OPERATOR))
    keys = Keys.of_development_pki(archive.pki)
    server = build(
        settings, archive.store, archive.blobs, TenantRegistry(archive.store), archive.sealer, keys
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Service(sealing_pb2_grpc.SealingStub(channel), tokens)
    finally:
        await channel.close()
        await server.stop(0)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo")


async def test_a_second_audit_of_a_tenant_is_refused_while_the_first_runs(
    archive: Archive, service: Service
) -> None:
    await archive.deposit("acme", b"acme's document")
    await archive.deposit("globex", b"globex's document")
    await archive.seal()
    gate = archive.blobs.hold("acme")
    request = sealing_pb2.RunIntegrityAuditRequest()

    async def audit_acme() -> events_pb2.IntegrityAuditCompleted:
        return await service.stub.RunIntegrityAudit(request, metadata=service.tokens["acme"])

    first = asyncio.create_task(audit_acme())
    async with asyncio.timeout(10):  # bounds a broken run only
        await archive.blobs.waiting["acme"].wait()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        # The deadline bounds a broken run only (one that queues instead of refusing).
        await service.stub.RunIntegrityAudit(request, metadata=service.tokens["acme"], timeout=10)
    assert refused.value.code() == grpc.StatusCode.ABORTED
    assert reason_of(refused.value) == "AUDIT_ALREADY_RUNNING"
    assert "audit of tenant acme is already running" in (refused.value.details() or "")
    # One audit per tenant, not one for everybody: globex's runs meanwhile.
    other = await service.stub.RunIntegrityAudit(request, metadata=service.tokens["globex"])
    assert other.tenant.value == "globex" and not first.done()

    gate.set()
    report = await first
    assert report.tenant.value == "acme" and list(report.failures) == []
    again = await service.stub.RunIntegrityAudit(request, metadata=service.tokens["acme"])
    assert again.audit_id != report.audit_id


async def test_an_audit_of_every_tenant_is_for_the_operator_only(
    archive: Archive, service: Service
) -> None:
    await archive.deposit("acme", b"acme's document")
    lost = await archive.deposit("globex", b"globex's document", keep_content=False)
    await archive.seal()
    request = sealing_pb2.RunStoreIntegrityAuditRequest()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in service.stub.RunStoreIntegrityAudit(
            request, metadata=service.tokens["acme"]
        ):
            pass
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs the operator token" in (refused.value.details() or "")

    reports = [
        report
        async for report in service.stub.RunStoreIntegrityAudit(request, metadata=service.operator)
    ]
    assert [r.tenant.value for r in reports] == ["acme", "globex"]
    assert {r.trigger for r in reports} == {"operator"}
    assert list(reports[0].failures) == []
    assert [(f.kind, f.document_id) for f in reports[1].failures] == [("content", lost)]
    # The operator has no tenant of its own to audit on the tenant method.
    with pytest.raises(grpc.aio.AioRpcError) as tenant_method:
        await service.stub.RunIntegrityAudit(
            sealing_pb2.RunIntegrityAuditRequest(), metadata=service.operator
        )
    assert tenant_method.value.code() == grpc.StatusCode.PERMISSION_DENIED

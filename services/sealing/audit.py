"""Integrity audit: re-hash stored content against the sealed digests and check the journal
against the tenant's Merkle log and its last checkpoint. The report is itself an event
(IntegrityAuditCompleted), which becomes a leaf of the log like any other.

- An audit reads only its tenant: the tenant's own streams, its record in the system tenant
  stream (creation, tokens: leaves of its log too) and its content.
- Hashing (leaves and content) runs in worker threads, so the loop goes on serving calls.
- The report lists the first `MAX_LISTED_FAILURES` failures and counts the others, by kind,
  so it stays far below the event size limit however much is damaged.
- `IntegrityAuditor` runs one audit per tenant at a time: each re-reads everything.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from archive.audit_errors import AuditAlreadyRunning
from archive.blobstore import BlobNotFound, BlobStore, InvalidBlobKey
from archive.blobstore.port import BlobDigester
from archive.eventstore import (
    NO_STREAM,
    SYSTEM_TENANT,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamFilter,
    StreamName,
    StreamNotFound,
)
from archive.sealing.checkpoint import parse_checkpoint
from archive.sealing.leaves import SYSTEM_TENANT_CATEGORY, leaf_hash_of, leaf_tenant
from archive.v1 import common_pb2, events_pb2
from services.sealing.log import TenantLog

log = logging.getLogger(__name__)

AUDIT_CATEGORY = "audit"
INGESTED = events_pb2.DocumentIngested.DESCRIPTOR.full_name
# Checks a checkpoint's seal and time stamp: returns a reason when it fails, else None.
CheckpointVerifier = Callable[[events_pb2.CheckpointSealed], str | None]

# 100 failures of at most ~1.2 KB each: some 120 KB, a quarter of the 512 KiB event limit.
MAX_LISTED_FAILURES: Final = 100
MAX_DESCRIPTION_CHARS: Final = 1000  # our own texts are shorter; a verifier's reason may not be
_LEAF_BATCH: Final = 500  # events whose leaf hashes one worker-thread call computes
_REHASH_CHUNK: Final = 1024 * 1024

JOURNAL: Final = "journal"  # event vs sealed leaf
LOG: Final = "log"  # the leaves vs the last checkpoint's root
SEAL: Final = "seal"  # the last checkpoint's signature and time stamp
CONTENT: Final = "content"  # stored bytes vs the digests sealed at deposit
KINDS: Final = (JOURNAL, LOG, SEAL, CONTENT)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def audited_logs(logs: Mapping[str, TenantLog]) -> list[TenantLog]:
    """The logs an audit of every tenant covers: those with a checkpoint, by tenant name."""
    return [logs[tenant] for tenant in sorted(logs) if logs[tenant].latest_checkpoint is not None]


class _Findings:
    """The report's failures: every one counted by kind, only the first `limit` listed."""

    def __init__(self, report: events_pb2.IntegrityAuditCompleted, limit: int) -> None:
        self._report = report
        self._limit = limit
        self._checked = dict.fromkeys(KINDS, 0)
        self._failed = dict.fromkeys(KINDS, 0)

    def checked(self, kind: str, count: int = 1) -> None:
        self._checked[kind] += count

    def fail(self, kind: str, description: str, document_id: str = "", index: int = 0) -> None:
        self._failed[kind] += 1
        if len(self._report.failures) >= self._limit:
            self._report.failures_not_listed += 1
            return
        self._report.failures.add(
            kind=kind,
            description=description[:MAX_DESCRIPTION_CHARS],
            document_id=document_id,
            leaf_index=index,
        )

    def summarise(self) -> None:
        for kind in KINDS:
            self._report.checks.add(
                kind=kind, checked=self._checked[kind], failed=self._failed[kind]
            )


async def _tenant_events(store: EventStore, tenant: str) -> AsyncIterator[RecordedEvent]:
    """The stored events that can be leaves of the tenant's log, and no other tenant's."""
    try:
        async for event in store.read_stream(
            StreamName(SYSTEM_TENANT, SYSTEM_TENANT_CATEGORY, tenant)
        ):
            yield event
    except StreamNotFound:
        pass  # a tenant made before tenancy was recorded, or only in tests
    async for event in store.read_all(filter=StreamFilter(tenant=tenant)):
        yield event


async def _rehash(blobs: BlobStore, tenant: str, sha256: str) -> tuple[str, str, int]:
    """SHA-256, SHA-512 (hex) and size of stored content, hashed in a worker thread."""
    digester = BlobDigester()
    async with await blobs.open(tenant, sha256, chunk_size=_REHASH_CHUNK) as content:
        async for chunk in content:
            await asyncio.to_thread(digester.update, chunk)
    info = digester.result(tenant)
    return info.sha256, info.sha512, info.size


class _Audit:
    """One audit of one tenant, against the log as it was when the audit began (the sealer
    may go on appending meanwhile)."""

    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        tenant_log: TenantLog,
        report: events_pb2.IntegrityAuditCompleted,
        max_listed_failures: int,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._log = tenant_log
        self._tenant = tenant_log.tenant
        self._report = report
        self.findings = _Findings(report, max_listed_failures)
        self._last_position = tenant_log.last_position
        self._sealed_ids = list(tenant_log.event_ids)
        self._checkpoint = tenant_log.latest_checkpoint
        self._seen: set[str] = set()
        self._deposits: list[events_pb2.DocumentIngested] = []

    async def journal(self) -> None:
        """Every sealed event is still stored and still hashes to its leaf."""
        batch: list[RecordedEvent] = []
        async for event in _tenant_events(self._store, self._tenant):
            if leaf_tenant(event) != self._tenant or event.position > self._last_position:
                continue  # the log's own records, or not sealed yet
            batch.append(event)
            if len(batch) >= _LEAF_BATCH:
                await self._check_events(batch)
                batch = []
        if batch:
            await self._check_events(batch)
        missing = [i for i, event_id in enumerate(self._sealed_ids) if event_id not in self._seen]
        self.findings.checked(JOURNAL, len(missing))
        for index in missing:
            self.findings.fail(
                JOURNAL,
                f"sealed event {self._sealed_ids[index]} is missing from the store",
                index=index,
            )

    async def _check_events(self, events: list[RecordedEvent]) -> None:
        hashes = await asyncio.to_thread(lambda: [leaf_hash_of(event) for event in events])
        for event, hashed in zip(events, hashes, strict=True):
            self._report.events_checked += 1
            self.findings.checked(JOURNAL)
            self._seen.add(event.event_id)
            document_id = ""
            if event.type == INGESTED:
                deposit = events_pb2.DocumentIngested.FromString(event.data)
                self._deposits.append(deposit)
                document_id = deposit.document_id.value
            index = self._log.index_of_event.get(event.event_id)
            if index is None:
                self.findings.fail(
                    JOURNAL, f"event {event.event_id} ({event.type}) is not in the log", document_id
                )
            elif hashed != self._log.tree.leaf_hash(index):
                self.findings.fail(
                    JOURNAL,
                    f"event {event.event_id} ({event.type}) differs from what was sealed",
                    document_id,
                    index,
                )

    async def checkpoint(self, verify_checkpoint: CheckpointVerifier) -> None:
        """The leaves give the last checkpoint's root, whose seal and time stamp verify."""
        checkpoint = self._checkpoint
        if checkpoint is None:
            return
        self._report.tree_size = checkpoint.tree_size
        self._report.root_hash = self._log.tree.root(checkpoint.tree_size)
        self.findings.checked(LOG)
        text = parse_checkpoint(checkpoint.checkpoint)
        if text.root != self._report.root_hash or text.size != checkpoint.tree_size:
            self.findings.fail(
                LOG, f"the leaves do not give the root of checkpoint {checkpoint.tree_size}"
            )
        self.findings.checked(SEAL)
        reason = await asyncio.to_thread(verify_checkpoint, checkpoint)
        if reason is not None:
            self.findings.fail(SEAL, f"checkpoint {checkpoint.tree_size}: {reason}")

    async def content(self) -> None:
        """Every deposit's bytes re-hashed against the digests sealed at deposit."""
        for deposit in self._deposits:
            document_id = deposit.document_id.value
            self._report.documents_checked += 1
            self.findings.checked(CONTENT)
            try:
                sha256, sha512, size = await _rehash(
                    self._blobs, self._tenant, deposit.sha256.value.hex()
                )
            except BlobNotFound:
                self.findings.fail(CONTENT, "the stored content is missing", document_id)
                continue
            except InvalidBlobKey:
                self.findings.fail(CONTENT, "the deposit names no valid SHA-256", document_id)
                continue
            self._report.bytes_rehashed += size
            if sha256 != deposit.sha256.value.hex() or sha512 != deposit.sha512.value.hex():
                self.findings.fail(
                    CONTENT, "the stored content no longer matches its sealed digests", document_id
                )


async def run_audit(
    store: EventStore,
    blobs: BlobStore,
    tenant_log: TenantLog,
    verify_checkpoint: CheckpointVerifier,
    *,
    trigger: str,
    max_listed_failures: int = MAX_LISTED_FAILURES,
) -> events_pb2.IntegrityAuditCompleted:
    """Audit one tenant now and record the report as an event of the tenant. Does not guard
    against a concurrent audit of the same tenant: `IntegrityAuditor` does."""
    tenant = tenant_log.tenant
    report = events_pb2.IntegrityAuditCompleted(
        tenant=common_pb2.TenantId(value=tenant),
        audit_id=str(uuid.uuid4()),
        started_at=_now(),
        trigger=trigger,
    )
    audit = _Audit(store, blobs, tenant_log, report, max_listed_failures)
    await audit.journal()
    await audit.checkpoint(verify_checkpoint)
    await audit.content()
    audit.findings.summarise()
    report.completed_at.CopyFrom(_now())
    await store.append(
        StreamName(tenant, AUDIT_CATEGORY, report.audit_id), [NewEvent.of(report)], NO_STREAM
    )
    failures = len(report.failures) + report.failures_not_listed
    if failures:
        log.error("integrity audit %s of %s: %d failures", report.audit_id, tenant, failures)
    return report


class IntegrityAuditor:
    """Runs integrity audits, at most one per tenant at a time."""

    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        verify_checkpoint: CheckpointVerifier,
        *,
        max_listed_failures: int = MAX_LISTED_FAILURES,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._verify_checkpoint = verify_checkpoint
        self._max_listed_failures = max_listed_failures
        self._locks: dict[str, asyncio.Lock] = {}

    def running(self, tenant: str) -> bool:
        lock = self._locks.get(tenant)
        return lock is not None and lock.locked()

    async def audit(
        self, tenant_log: TenantLog, *, trigger: str, wait: bool = False
    ) -> events_pb2.IntegrityAuditCompleted:
        """Audit the tenant of `tenant_log`. While another audit of it runs: AuditAlreadyRunning,
        or with `wait`, audit after it ends."""
        lock = self._locks.setdefault(tenant_log.tenant, asyncio.Lock())
        if lock.locked() and not wait:
            raise AuditAlreadyRunning(tenant_log.tenant)
        async with lock:
            return await run_audit(
                self._store,
                self._blobs,
                tenant_log,
                self._verify_checkpoint,
                trigger=trigger,
                max_listed_failures=self._max_listed_failures,
            )

    async def audit_each(
        self, tenant_logs: Iterable[TenantLog], *, trigger: str
    ) -> AsyncIterator[events_pb2.IntegrityAuditCompleted]:
        """Audit the tenants one after the other, waiting for any audit of one that runs."""
        for tenant_log in tenant_logs:
            yield await self.audit(tenant_log, trigger=trigger, wait=True)

"""Integrity audit: re-hash stored content against the sealed digests and check the journal
against the tenant's Merkle log and its last checkpoint. The report is itself an event
(IntegrityAuditCompleted), which becomes a leaf of the log like any other."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from archive.blobstore import BlobNotFound, BlobStore
from archive.eventstore import NO_STREAM, EventStore, NewEvent, StreamName
from archive.sealing.checkpoint import parse_checkpoint
from archive.sealing.leaves import leaf_hash_of, leaf_tenant
from archive.v1 import common_pb2, events_pb2
from services.sealing.log import TenantLog

log = logging.getLogger(__name__)

AUDIT_CATEGORY = "audit"
INGESTED = events_pb2.DocumentIngested.DESCRIPTOR.full_name
# Checks a checkpoint's seal and time stamp: returns a reason when it fails, else None.
CheckpointVerifier = Callable[[events_pb2.CheckpointSealed], str | None]


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


async def run_audit(
    store: EventStore,
    blobs: BlobStore,
    tenant_log: TenantLog,
    verify_checkpoint: CheckpointVerifier,
    *,
    trigger: str,
) -> events_pb2.IntegrityAuditCompleted:
    tenant = tenant_log.tenant
    report = events_pb2.IntegrityAuditCompleted(
        tenant=common_pb2.TenantId(value=tenant),
        audit_id=str(uuid.uuid4()),
        started_at=_now(),
        trigger=trigger,
    )

    def fail(kind: str, description: str, document_id: str = "", index: int = 0) -> None:
        report.failures.add(
            kind=kind, description=description, document_id=document_id, leaf_index=index
        )

    # 1. The journal against the log: every sealed event still hashes to its leaf.
    seen: set[str] = set()
    deposits: list[events_pb2.DocumentIngested] = []
    async for event in store.read_all():
        if leaf_tenant(event) != tenant or event.position > tenant_log.last_position:
            continue
        report.events_checked += 1
        seen.add(event.event_id)
        document_id = ""
        if event.type == INGESTED:
            deposit = events_pb2.DocumentIngested.FromString(event.data)
            deposits.append(deposit)
            document_id = deposit.document_id.value
        index = tenant_log.index_of_event.get(event.event_id)
        if index is None:
            fail("journal", f"event {event.event_id} ({event.type}) is not in the log", document_id)
        elif leaf_hash_of(event) != tenant_log.tree.leaf_hash(index):
            fail(
                "journal",
                f"event {event.event_id} ({event.type}) differs from what was sealed",
                document_id,
                index,
            )
    for index, event_id in enumerate(tenant_log.event_ids):
        if event_id not in seen:
            fail("journal", f"sealed event {event_id} is missing from the store", index=index)

    # 2. The log against its last checkpoint, and the checkpoint's seal and time stamp.
    checkpoint = tenant_log.latest_checkpoint
    if checkpoint is not None:
        report.tree_size = checkpoint.tree_size
        report.root_hash = tenant_log.tree.root(checkpoint.tree_size)
        text = parse_checkpoint(checkpoint.checkpoint)
        if text.root != report.root_hash or text.size != checkpoint.tree_size:
            fail("log", f"the leaves do not give the root of checkpoint {checkpoint.tree_size}")
        reason = verify_checkpoint(checkpoint)
        if reason is not None:
            fail("seal", f"checkpoint {checkpoint.tree_size}: {reason}")

    # 3. Content: every deposit's bytes re-hashed against the digests sealed at deposit.
    for deposit in deposits:
        document_id = deposit.document_id.value
        report.documents_checked += 1
        sha256, sha512 = hashlib.sha256(), hashlib.sha512()
        try:
            async with await blobs.open(tenant, deposit.sha256.value.hex()) as content:
                async for chunk in content:
                    sha256.update(chunk)
                    sha512.update(chunk)
                    report.bytes_rehashed += len(chunk)
        except BlobNotFound:
            fail("content", "the stored content is missing", document_id)
            continue
        if sha256.digest() != deposit.sha256.value or sha512.digest() != deposit.sha512.value:
            fail("content", "the stored content no longer matches its sealed digests", document_id)

    report.completed_at.CopyFrom(_now())
    await store.append(
        StreamName(tenant, AUDIT_CATEGORY, report.audit_id), [NewEvent.of(report)], NO_STREAM
    )
    if report.failures:
        log.error(
            "integrity audit %s of %s: %d failures", report.audit_id, tenant, len(report.failures)
        )
    return report
